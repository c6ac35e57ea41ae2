//! The generic form for CI scripts and anything else that can POST JSON:
//! `{"image": "registry/org/app:tag", "digest": "sha256:...", "id": "...", "timestamp": "...",
//!   "action": "push" | "delete" | "replicate" | "replication-failed", "region": "..."}`; only
//! `image` is required. `replicate` says the digest arrived in `region` (a registry replica):
//! how a replication that sends no digest of its own (Harbor's) is reported from a script.
//!
//! Standard Webhooks senders wrap the same object as the `data` of their envelope
//! (`{"type": "image.pushed", "timestamp": "...", "data": {...}}`); the `webhook-id` header is
//! then the event id, and the type's last word (`pushed`, `deleted`, `quarantined`, `released`)
//! the action when `data` names none.

use serde::Deserialize;
use serde_json::Value;

use super::common::{ParseContext, ParseError, reference, timestamp, typed};
use crate::model::event::{Action, ImageEvent, Parsed, Provider, content_id};
use crate::model::quarantine::{ALL, SOURCES};
use crate::model::reference::{Digest, ImageRef, Registry};

const P: Provider = Provider::Generic;

/// A Standard Webhooks delivery, by its headers (Svix's own names too).
pub(super) fn header_hint(h: &http::HeaderMap) -> bool {
    h.contains_key("webhook-id") || h.contains_key("svix-id")
}

pub(super) fn body_shape(v: &Value) -> bool {
    v.get("image").is_some_and(Value::is_string) || envelope_data(v).is_some()
}

/// The `data` of a Standard Webhooks envelope (`type`, `data`), whatever its type: one of an
/// unknown type is refused naming the type, not as an unknown format. CloudEvents
/// (`specversion`) and Event Grid (`eventType`) envelopes are their senders'.
fn envelope_data(v: &Value) -> Option<&Value> {
    v.get("type")?.as_str()?;
    if v.get("specversion").is_some() || v.get("eventType").is_some() {
        return None;
    }
    v.get("data").filter(|d| d.is_object())
}

/// The event id a Standard Webhooks sender gives in its headers.
fn header_id(h: &http::HeaderMap) -> Option<&str> {
    h.get("webhook-id")
        .or_else(|| h.get("svix-id"))
        .and_then(|v| v.to_str().ok())
}

/// The generic form inside a Standard Webhooks envelope, with its id, time and action filled in
/// from the envelope where `data` leaves them out.
fn unwrap_envelope<'v>(
    v: &'v Value,
    ctx: &ParseContext<'_>,
) -> Result<std::borrow::Cow<'v, Value>, ParseError> {
    let Some(data) = envelope_data(v) else {
        return Ok(std::borrow::Cow::Borrowed(v));
    };
    let mut data = data.clone();
    let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
    if !data.get("image").is_some_and(Value::is_string) {
        return Err(ParseError::malformed(
            P,
            format!(
                "event type {:?} carries no `data.image`: only image events are handled",
                kind.chars().take(100).collect::<String>()
            ),
        ));
    }
    let action = match kind.rsplit('.').next().unwrap_or_default() {
        "pushed" | "push" | "created" => "push",
        "deleted" | "delete" => "delete",
        "quarantined" | "quarantine" => "quarantine",
        "released" | "release" => "release",
        other => {
            return Err(ParseError::malformed(
                P,
                format!(
                    "event type {kind:?} ends in {other:?}: expected pushed, deleted, quarantined or released"
                ),
            ));
        }
    };
    let Some(obj) = data.as_object_mut() else {
        return Err(ParseError::malformed(P, "`data` must be an object"));
    };
    if !obj.contains_key("action") && !obj.contains_key("quarantine") {
        obj.insert("action".into(), action.into());
    }
    if let (false, Some(id)) = (obj.contains_key("id"), header_id(ctx.headers)) {
        obj.insert("id".into(), id.into());
    }
    if let (false, Some(t)) = (obj.contains_key("timestamp"), v.get("timestamp")) {
        obj.insert("timestamp".into(), t.clone());
    }
    Ok(std::borrow::Cow::Owned(data))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    image: String,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    /// `true` quarantines the digest, `false` releases it.
    #[serde(default)]
    quarantine: Option<bool>,
    #[serde(default)]
    reason: Option<String>,
    /// Where the event happened: the replica a push landed in or a replication reached.
    #[serde(default)]
    region: Option<String>,
    /// For a replication: the registry the replica serves the image from, when it is not the
    /// image's own (a second registry that a replication job copies to).
    #[serde(default)]
    registry: Option<String>,
    /// For a release: the one source whose hold it lifts (`manual`, `inspector2`, ...); without
    /// it a release lifts every hold.
    #[serde(default)]
    source: Option<String>,
}

pub(super) fn parse(v: &Value, ctx: &ParseContext<'_>) -> Result<Vec<Parsed>, ParseError> {
    let body: Body = typed(P, &*unwrap_envelope(v, ctx)?)?;
    let action = match (body.action.as_deref(), body.quarantine) {
        (None, Some(true)) | (Some("quarantine"), None | Some(true)) => Action::Quarantine,
        (None, Some(false)) | (Some("release"), None | Some(false)) => Action::Release,
        (None | Some("push"), None) => Action::Push,
        (Some("delete"), None) => Action::Delete,
        (Some("replicate"), None) => Action::Replicate,
        (Some("replication-failed"), None) => Action::ReplicationFailed,
        (Some(other), Some(q)) => {
            return Err(ParseError::malformed(
                P,
                format!("`action` {other:?} contradicts `quarantine`: {q}"),
            ));
        }
        (Some(other), None) => {
            return Err(ParseError::malformed(
                P,
                format!(
                    "unknown action {other:?}: expected \"push\", \"delete\", \"quarantine\", \"release\", \"replicate\" or \"replication-failed\""
                ),
            ));
        }
    };
    let mut image = reference(P, ImageRef::parse(&body.image))?;
    if let Some(d) = body.digest.as_deref().filter(|d| !d.is_empty()) {
        let d = reference(P, Digest::parse(d))?;
        if image.digest.as_ref().is_some_and(|own| *own != d) {
            return Err(ParseError::malformed(
                P,
                "`digest` differs from the digest inside `image`",
            ));
        }
        image.digest = Some(d);
    }
    if image.tag.is_none() && image.digest.is_none() {
        return Err(ParseError::malformed(P, "`image` needs a tag or a digest"));
    }
    let region = body.region.filter(|r| !r.is_empty());
    if matches!(action, Action::Replicate | Action::ReplicationFailed)
        && (image.digest.is_none() || region.is_none())
    {
        return Err(ParseError::malformed(
            P,
            "a replication names the digest and the `region` it reached",
        ));
    }
    if matches!(action, Action::Quarantine | Action::Release) && image.digest.is_none() {
        return Err(ParseError::malformed(
            P,
            "a quarantine or release needs a digest: a tag can move, a digest cannot",
        ));
    }
    let replica_registry = match body.registry.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(_) if !matches!(action, Action::Replicate | Action::ReplicationFailed) => {
            return Err(ParseError::malformed(
                P,
                "`registry` names the replica a replication reached: only a replication takes it",
            ));
        }
        Some(r) => Some(reference(P, Registry::parse(r))?),
    };
    let release_source = match body.source.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(_) if action != Action::Release => {
            return Err(ParseError::malformed(
                P,
                "`source` names the hold a release lifts: only a release takes it",
            ));
        }
        Some(s) if s == ALL => None,
        Some(s) => match SOURCES.iter().find(|k| **k == s) {
            Some(k) => Some((*k).to_owned()),
            None => {
                return Err(ParseError::malformed(
                    P,
                    format!(
                        "unknown `source`: expected \"{ALL}\" or one of {}",
                        SOURCES.join(", ")
                    ),
                ));
            }
        },
    };
    let occurred_at = match body.timestamp.as_deref() {
        Some(t) => timestamp(P, t)?,
        None => ctx.received_at.clone(),
    };
    // Without a sender id, the event is identified by what it says, so a retried POST of the
    // same body is recognised; the time is part of it only when the sender gave one.
    let content_identified =
        body.id.as_deref().is_none_or(str::is_empty) && body.timestamp.is_none();
    let id = match body.id.filter(|s| !s.is_empty()) {
        Some(id) => id,
        None => {
            let image = image.to_string();
            let mut parts = vec![
                action.as_str(),
                image.as_str(),
                body.timestamp.as_deref().unwrap_or(""),
            ];
            parts.extend(release_source.as_deref());
            content_id(&parts)
        }
    };
    Ok(vec![Parsed::Image(
        ImageEvent::new(id, P, action, image, occurred_at)
            .identified_by_content(content_identified)
            .with_region(region)
            .with_media_type(body.media_type)
            .with_size(body.size)
            .with_reason(body.reason)
            .with_release_source(release_source)
            .with_replica_registry(replica_registry),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:1d0c9b8a7f6e5d4c3b2a19080f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c";

    fn run(v: Value) -> Result<Vec<Parsed>, ParseError> {
        super::super::common::run_parser(parse, &v)
    }

    #[test]
    fn image_and_digest_fields_combine() {
        let out =
            run(serde_json::json!({"image": "registry.example.com/org/app:1.4.2", "digest": D}))
                .unwrap();
        let [Parsed::Image(e)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(
            e.image.to_string(),
            format!("registry.example.com/org/app:1.4.2@{D}")
        );
        assert_eq!(e.action, Action::Push);
        assert_eq!(e.occurred_at.as_str(), "2026-01-01T00:00:00.000000000Z");
        assert!(e.id.starts_with("sha256:"));
    }

    #[test]
    fn same_body_gives_same_id_and_explicit_id_wins() {
        let v = serde_json::json!({"image": "r.example.com/a:1", "digest": D});
        let a = run(v.clone()).unwrap();
        let b = run(v).unwrap();
        assert_eq!(a, b);
        let out = run(serde_json::json!({"image": "r.example.com/a:1", "id": "build-42"})).unwrap();
        let [Parsed::Image(e)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(e.id, "build-42");
    }

    #[test]
    fn conflicting_or_invalid_input_is_refused() {
        let other = D.replace('1', "2");
        let err =
            run(serde_json::json!({"image": format!("r.example.com/a@{D}"), "digest": other}))
                .unwrap_err();
        assert!(err.to_string().contains("differs"));
        assert!(matches!(
            run(serde_json::json!({"image": "r.example.com/A:1"})),
            Err(ParseError::Reference { .. })
        ));
        assert!(matches!(
            run(serde_json::json!({"image": "r.example.com/a"})),
            Err(ParseError::Malformed { .. })
        ));
        assert!(matches!(
            run(serde_json::json!({"image": "r.example.com/a:1", "action": "pull"})),
            Err(ParseError::Malformed { .. })
        ));
        assert!(matches!(
            run(serde_json::json!({"image": "r.example.com/a:1", "extra": 1})),
            Err(ParseError::Malformed { .. })
        ));
    }

    #[test]
    fn only_a_body_without_id_and_time_is_identified_by_its_content() {
        let img = "r.example.com/a:1";
        let flag = |body: serde_json::Value| match run(body).unwrap().as_slice() {
            [Parsed::Image(e)] => e.identified_by_content,
            other => panic!("{other:?}"),
        };
        assert!(flag(serde_json::json!({"image": img})));
        assert!(!flag(serde_json::json!({"image": img, "id": "run-7"})));
        assert!(!flag(
            serde_json::json!({"image": img, "timestamp": "2026-11-20T10:00:00Z"})
        ));
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused_naming_its_field() {
        for (body, field) in [
            (
                serde_json::json!({"image": "r.example.com/a:1", "digest": 5}),
                "digest",
            ),
            (serde_json::json!({"image": ["r.example.com/a:1"]}), "image"),
            (
                serde_json::json!({"image": "r.example.com/a:1", "quarantine": "yes"}),
                "quarantine",
            ),
        ] {
            let err = run(body.clone()).unwrap_err();
            assert!(
                err.to_string().contains(&format!("{field}: invalid type")),
                "{body}: {err}"
            );
        }
    }

    #[test]
    fn replication_forms_need_a_digest_and_a_region() {
        let img = format!("r.example.com/a:1@{D}");
        let out =
            run(serde_json::json!({"image": img, "action": "replicate", "region": "eu-west-1"}))
                .unwrap();
        let [Parsed::Image(e)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(
            (e.action, e.region.as_deref()),
            (Action::Replicate, Some("eu-west-1"))
        );
        assert!(run(serde_json::json!({"image": img, "action": "replicate"})).is_err());
        assert!(
            run(serde_json::json!({"image": "r.example.com/a:1", "action": "replication-failed", "region": "x"}))
                .is_err()
        );
    }

    #[test]
    fn quarantine_and_release_forms() {
        let out = run(serde_json::json!({"image": format!("r.example.com/a@{D}"), "quarantine": true, "reason": "CVE-2026-1"})).unwrap();
        let [Parsed::Image(e)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(
            (e.action, e.reason.as_deref()),
            (Action::Quarantine, Some("CVE-2026-1"))
        );
        let out =
            run(serde_json::json!({"image": format!("r.example.com/a@{D}"), "quarantine": false}))
                .unwrap();
        let [Parsed::Image(e)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(e.action, Action::Release);
        let out =
            run(serde_json::json!({"image": format!("r.example.com/a:1@{D}"), "action": "delete"}))
                .unwrap();
        let [Parsed::Image(e)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(e.action, Action::Delete);
        // A quarantine needs a digest, and `action` must agree with `quarantine`.
        assert!(matches!(
            run(serde_json::json!({"image": "r.example.com/a:1", "quarantine": true})),
            Err(ParseError::Malformed { .. })
        ));
        assert!(matches!(
            run(
                serde_json::json!({"image": format!("r.example.com/a@{D}"), "action": "push", "quarantine": true})
            ),
            Err(ParseError::Malformed { .. })
        ));
    }

    #[test]
    fn standard_webhooks_envelopes_carry_the_generic_form() {
        let v = serde_json::json!({"type": "image.deleted", "timestamp": "2026-03-01T10:00:00Z",
            "data": {"image": format!("r.example.com/a@{D}")}});
        let out = run(v).unwrap();
        let [Parsed::Image(e)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(e.action, Action::Delete);
        assert_eq!(e.occurred_at.as_str(), "2026-03-01T10:00:00.000000000Z");
        let bad =
            serde_json::json!({"type": "image.scanned", "data": {"image": "r.example.com/a:1"}});
        assert!(matches!(run(bad), Err(ParseError::Malformed { .. })));
        // Any type is read as this envelope, so a type imagehook does not know is refused by name.
        let other = serde_json::json!({"type": "contact.updated", "data": {"id": "x"}});
        assert!(body_shape(&other));
        let err = run(other).unwrap_err();
        assert!(err.to_string().contains("contact.updated"), "{err}");
        // CloudEvents and Event Grid envelopes are not this one.
        let ce = serde_json::json!({"specversion": "1.0", "type": "a.pushed", "data": {}});
        assert!(!body_shape(&ce));
    }
}
