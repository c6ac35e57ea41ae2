//! Google Artifact Registry (and Container Registry) notifications, published on the project's
//! `gcr` Pub/Sub topic and delivered by a push subscription:
//! `{"message": {"data": "<base64 JSON>", "messageId": ..., "publishTime": ...}, "subscription": ...}`.
//! The decoded data is `{"action": "INSERT" | "DELETE", "digest": "<image>@sha256:...",
//! "tag": "<image>:<tag>"}`, full image references with the registry host. A push by digest has no
//! `tag`, a tag deletion no `digest`. With payload unwrapping the body is the bare data and the id
//! and time come in `x-goog-pubsub-*` headers. Auth is Pub/Sub's OIDC token; nothing is signed.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::common::{ParseContext, ParseError, header, non_empty, reference, timestamp, typed};
use crate::model::event::{Action, IgnoredEvent, ImageEvent, Parsed, Provider, content_id};
use crate::model::reference::ImageRef;

const P: Provider = Provider::ArtifactRegistry;
const MESSAGE_ID_HEADER: &str = "x-goog-pubsub-message-id";
const PUBLISH_TIME_HEADER: &str = "x-goog-pubsub-publish-time";

/// Standard base64, with or without padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub(super) fn header_hint(h: &HeaderMap) -> bool {
    h.contains_key(MESSAGE_ID_HEADER) || super::common::user_agent_starts_with(h, "APIs-Google")
}

pub(super) fn body_shape(v: &Value) -> bool {
    is_wrapped(v) || is_unwrapped(v)
}

/// A push subscription's wrapper.
fn is_wrapped(v: &Value) -> bool {
    v.get("message").is_some_and(|m| {
        m.get("data").is_some_and(Value::is_string)
            && ["messageId", "message_id"]
                .iter()
                .any(|k| m.get(*k).is_some_and(Value::is_string))
    })
}

/// The bare notification (payload unwrapping): nothing but `action`, `digest` and `tag`.
fn is_unwrapped(v: &Value) -> bool {
    v.as_object().is_some_and(|o| {
        matches!(
            o.get("action").and_then(Value::as_str),
            Some("INSERT" | "DELETE")
        ) && (o.contains_key("digest") || o.contains_key("tag"))
            && o.keys()
                .all(|k| matches!(k.as_str(), "action" | "digest" | "tag"))
    })
}

#[derive(Deserialize)]
struct Envelope {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    data: String,
    #[serde(default, rename = "messageId")]
    message_id_camel: Option<String>,
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default, rename = "publishTime")]
    publish_time_camel: Option<String>,
    #[serde(default)]
    publish_time: Option<String>,
}

#[derive(Deserialize)]
struct Notification {
    action: String,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    tag: Option<String>,
}

pub(super) fn parse(v: &Value, ctx: &ParseContext<'_>) -> Result<Vec<Parsed>, ParseError> {
    let (data, message_id, publish_time, field) = if is_unwrapped(v) {
        (
            v.clone(),
            header(ctx.headers, MESSAGE_ID_HEADER).map(str::to_owned),
            header(ctx.headers, PUBLISH_TIME_HEADER).map(str::to_owned),
            "body",
        )
    } else {
        let env: Envelope = typed(P, v)?;
        let m = env.message;
        let bytes = BASE64
            .decode(m.data.trim())
            .map_err(|e| ParseError::malformed(P, format!("`message.data` is not base64: {e}")))?;
        let data: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ParseError::malformed(P, format!("`message.data` is not JSON: {e}")))?;
        let id = non_empty(&m.message_id_camel)
            .or_else(|| non_empty(&m.message_id))
            .map(str::to_owned);
        let time = non_empty(&m.publish_time_camel)
            .or_else(|| non_empty(&m.publish_time))
            .map(str::to_owned);
        (data, id, time, "message.data")
    };
    let n: Notification = Notification::deserialize(&data).map_err(|e| {
        ParseError::malformed(
            P,
            format!("`{field}` is not an Artifact Registry notification: {e}"),
        )
    })?;
    let id = message_id.unwrap_or_else(|| {
        content_id(&[
            P.as_str(),
            &n.action,
            n.digest.as_deref().unwrap_or_default(),
            n.tag.as_deref().unwrap_or_default(),
        ])
    });

    let action = match n.action.as_str() {
        "INSERT" => Action::Push,
        "DELETE" => Action::Delete,
        other => return Ok(vec![Parsed::Ignored(ignored(&n, id, other))]),
    };
    let image = image(&n, field)?;
    let occurred_at = match publish_time.as_deref() {
        Some(t) => timestamp(P, t)?,
        None => ctx.received_at.clone(),
    };
    Ok(vec![Parsed::Image(ImageEvent::new(
        id,
        P,
        action,
        image,
        occurred_at,
    ))])
}

/// One image from the `digest` reference (`...@sha256:...`) and the `tag` reference (`...:tag`).
fn image(n: &Notification, field: &str) -> Result<ImageRef, ParseError> {
    let by_digest = non_empty(&n.digest)
        .map(|d| reference(P, ImageRef::parse(d)))
        .transpose()?;
    let by_tag = non_empty(&n.tag)
        .map(|t| reference(P, ImageRef::parse(t)))
        .transpose()?;
    if let Some(d) = &by_digest
        && d.digest.is_none()
    {
        return Err(ParseError::malformed(
            P,
            format!(
                "`{field}.digest` {:?} holds no digest",
                n.digest.as_deref().unwrap_or_default()
            ),
        ));
    }
    if let Some(t) = &by_tag
        && t.tag.is_none()
    {
        return Err(ParseError::malformed(
            P,
            format!(
                "`{field}.tag` {:?} holds no tag",
                n.tag.as_deref().unwrap_or_default()
            ),
        ));
    }
    match (by_digest, by_tag) {
        (Some(d), Some(t)) => {
            if (&d.registry, &d.repository) != (&t.registry, &t.repository) {
                return Err(ParseError::malformed(
                    P,
                    format!("`{field}.digest` and `{field}.tag` name different images"),
                ));
            }
            Ok(ImageRef { tag: t.tag, ..d })
        }
        (Some(d), None) => Ok(ImageRef { tag: None, ..d }),
        (None, Some(t)) => Ok(ImageRef {
            digest: t.digest,
            ..t
        }),
        (None, None) => Err(ParseError::malformed(
            P,
            format!("`{field}` has neither `digest` nor `tag`"),
        )),
    }
}

fn ignored(n: &Notification, id: String, action: &str) -> IgnoredEvent {
    let parsed = non_empty(&n.digest)
        .or_else(|| non_empty(&n.tag))
        .and_then(|r| ImageRef::parse(r).ok());
    IgnoredEvent {
        id: Some(id),
        provider: P,
        action: action.to_owned(),
        reason: format!("Artifact Registry action {action:?} is not handled"),
        registry: parsed.as_ref().map(|r| r.registry.to_string()),
        repository: parsed.as_ref().map(|r| r.repository.to_string()),
        tag: n.tag.clone(),
        digest: n.digest.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::only_image as image_of;
    use super::*;
    use crate::model::event::Timestamp;
    use crate::model::reference::{Digest, Tag};

    const D: &str = "sha256:c4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3";
    const IMG: &str = "europe-west4-docker.pkg.dev/acme-prod/services/payments";

    fn run(v: Value) -> Result<Vec<Parsed>, ParseError> {
        super::super::common::run_parser(parse, &v)
    }

    fn wrap(data: &Value, pad: bool) -> Value {
        let mut b64 = base64::engine::general_purpose::STANDARD.encode(data.to_string());
        if !pad {
            b64 = b64.trim_end_matches('=').to_owned();
        }
        serde_json::json!({
            "message": {"attributes": {}, "data": b64, "messageId": "17023948571203",
                        "message_id": "17023948571203", "publishTime": "2026-07-08T09:10:11.123Z",
                        "publish_time": "2026-07-08T09:10:11.123Z"},
            "subscription": "projects/acme-prod/subscriptions/gcr-to-imagehook"
        })
    }

    #[test]
    fn tagged_insert_maps_every_field() {
        let data = serde_json::json!({"action": "INSERT", "digest": format!("{IMG}@{D}"),
            "tag": format!("{IMG}:2026.07.1")});
        let out = run(wrap(&data, true)).unwrap();
        let e = image_of(&out);
        assert_eq!(e.id, "17023948571203");
        assert_eq!(e.provider, Provider::ArtifactRegistry);
        assert_eq!(e.action, Action::Push);
        assert_eq!(e.image.registry.as_str(), "europe-west4-docker.pkg.dev");
        assert_eq!(e.image.repository.as_str(), "acme-prod/services/payments");
        assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("2026.07.1"));
        assert_eq!(e.image.digest.as_ref().map(Digest::as_str), Some(D));
        assert_eq!(e.occurred_at.as_str(), "2026-07-08T09:10:11.123000000Z");
    }

    #[test]
    fn digest_only_insert_and_unpadded_data() {
        let data = serde_json::json!({"action": "INSERT", "digest": format!("{IMG}@{D}")});
        for pad in [true, false] {
            let out = run(wrap(&data, pad)).unwrap();
            let e = image_of(&out);
            assert_eq!(e.image.tag, None);
            assert_eq!(e.image.digest.as_ref().map(Digest::as_str), Some(D));
        }
    }

    #[test]
    fn tag_delete_has_no_digest() {
        let data = serde_json::json!({"action": "DELETE", "tag": format!("{IMG}:old")});
        let out = run(wrap(&data, true)).unwrap();
        let e = image_of(&out);
        assert_eq!(e.action, Action::Delete);
        assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("old"));
        assert_eq!(e.image.digest, None);
    }

    #[test]
    fn snake_case_keys_and_missing_id_or_time() {
        let data =
            serde_json::json!({"action": "DELETE", "digest": format!("gcr.io/acme/web@{D}")});
        let mut v = wrap(&data, true);
        let m = v["message"].as_object_mut().unwrap();
        m.remove("messageId");
        m.remove("publishTime");
        let out = run(v.clone()).unwrap();
        let e = image_of(&out);
        assert_eq!(e.id, "17023948571203");
        assert_eq!(e.image.registry.as_str(), "gcr.io");
        assert_eq!(e.occurred_at.as_str(), "2026-07-08T09:10:11.123000000Z");
        let m = v["message"].as_object_mut().unwrap();
        m.remove("message_id");
        m.remove("publish_time");
        let out = run(v).unwrap();
        let e = image_of(&out);
        assert!(e.id.starts_with("sha256:"));
        assert_eq!(e.occurred_at.as_str(), "2026-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn unwrapped_body_takes_id_and_time_from_headers() {
        let data = serde_json::json!({"action": "INSERT", "digest": format!("{IMG}@{D}")});
        let mut h = HeaderMap::new();
        h.insert(MESSAGE_ID_HEADER, "99".parse().unwrap());
        h.insert(PUBLISH_TIME_HEADER, "2026-07-08T09:10:11Z".parse().unwrap());
        let now = Timestamp::parse("2026-02-03T04:05:06Z").unwrap();
        let ctx = ParseContext {
            headers: &h,
            received_at: &now,
            provider: None,
        };
        let out = parse(&data, &ctx).unwrap();
        let e = image_of(&out);
        assert_eq!(e.id, "99");
        assert_eq!(e.occurred_at.as_str(), "2026-07-08T09:10:11.000000000Z");
        let out = run(data.clone()).unwrap();
        let a = image_of(&out);
        assert!(a.id.starts_with("sha256:"));
        assert_eq!(a.id, image_of(&run(data).unwrap()).id);
    }

    #[test]
    fn other_actions_are_ignored() {
        let data = serde_json::json!({"action": "UPDATE", "digest": format!("{IMG}@{D}")});
        let out = run(wrap(&data, true)).unwrap();
        let [Parsed::Ignored(i)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(i.action, "UPDATE");
        assert_eq!(i.repository.as_deref(), Some("acme-prod/services/payments"));
        assert_eq!(i.id.as_deref(), Some("17023948571203"));
    }

    #[test]
    fn bad_data_is_malformed_and_names_message_data() {
        let mut v = wrap(&serde_json::json!({}), true);
        v["message"]["data"] = "%%%not base64%%%".into();
        let err = run(v.clone()).unwrap_err();
        assert!(matches!(err, ParseError::Malformed { .. }));
        assert!(err.to_string().contains("message.data"), "{err}");
        v["message"]["data"] = base64::engine::general_purpose::STANDARD
            .encode("Hello Pub/Sub")
            .into();
        let err = run(v).unwrap_err();
        assert!(err.to_string().contains("message.data"), "{err}");
        let err = run(wrap(&serde_json::json!({"digest": "x"}), true)).unwrap_err();
        assert!(err.to_string().contains("message.data"), "{err}");
        let err = run(wrap(&serde_json::json!({"action": "INSERT"}), true)).unwrap_err();
        assert!(err.to_string().contains("neither"), "{err}");
    }

    #[test]
    fn inconsistent_or_invalid_references_are_refused() {
        let data = serde_json::json!({"action": "INSERT", "digest": format!("{IMG}@sha256:6ec128e26cd5...")});
        assert!(matches!(
            run(wrap(&data, true)),
            Err(ParseError::Reference { .. })
        ));
        let data = serde_json::json!({"action": "INSERT", "digest": format!("{IMG}@{D}"),
            "tag": "europe-west4-docker.pkg.dev/acme-prod/services/other:1"});
        assert!(
            run(wrap(&data, true))
                .unwrap_err()
                .to_string()
                .contains("different images")
        );
        let data = serde_json::json!({"action": "INSERT", "digest": IMG});
        assert!(
            run(wrap(&data, true))
                .unwrap_err()
                .to_string()
                .contains("holds no digest")
        );
        let data = serde_json::json!({"action": "DELETE", "tag": IMG});
        assert!(
            run(wrap(&data, true))
                .unwrap_err()
                .to_string()
                .contains("holds no tag")
        );
        let data =
            serde_json::json!({"action": "DELETE", "tag": "europe-west4-docker.pkg.dev/Acme/x:1"});
        assert!(matches!(
            run(wrap(&data, true)),
            Err(ParseError::Reference { .. })
        ));
    }

    #[test]
    fn header_hint_and_body_shape() {
        let mut h = HeaderMap::new();
        assert!(!header_hint(&h));
        h.insert(
            http::header::USER_AGENT,
            "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"
                .parse()
                .unwrap(),
        );
        assert!(header_hint(&h));
        let data = serde_json::json!({"action": "INSERT", "digest": format!("{IMG}@{D}")});
        assert!(body_shape(&wrap(&data, true)));
        assert!(body_shape(&data));
        assert!(!body_shape(
            &serde_json::json!({"action": "INSERT", "digest": "x", "id": 1})
        ));
        assert!(!body_shape(
            &serde_json::json!({"action": "push", "tag": "x"})
        ));
        assert!(!body_shape(
            &serde_json::json!({"message": {"data": "e30="}})
        ));
    }
}
