//! Angos registry event webhooks: one JSON object per request,
//! `{"id", "timestamp", "kind", "namespace", "digest"?, "reference"?, "tag"?, "actor"?, "repository"}`
//! with `kind` = manifest.push | manifest.pull | manifest.delete | blob.push | blob.pull |
//! tag.create | tag.delete, echoed in the `X-Registry-Event` header.
//!
//! A push by tag arrives as `manifest.push` (digest only) and then one `tag.create` per tag; a push
//! by digest only as `manifest.push`. A delete by tag arrives as `manifest.delete` without a digest
//! and `tag.delete`; a delete by digest as `manifest.delete` with the digest. `namespace` is the
//! image path; `repository` is Angos's repository group (`hub`), not part of the image name.
//!
//! The events name no registry host, so it comes from the `X-Imagehook-Registry` request header
//! (see [`REGISTRY_HEADER`]). With a `token`, Angos sends `Authorization: Bearer <token>` and
//! `X-Registry-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.

use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::common::{ParseContext, ParseError, header, non_empty, reference, timestamp, typed};
use crate::model::event::{Action, IgnoredEvent, ImageEvent, Parsed, Provider};
use crate::model::reference::{Digest, ImageRef, Registry, Repository, Tag};

const P: Provider = Provider::Angos;

/// The event kind Angos repeats in a header on every delivery.
const EVENT_HEADER: &str = "x-registry-event";

/// The registry host Angos's events leave out: the host clients push to, as configured for this
/// webhook (for instance from the webhook URL's `?registry=` by the edge).
pub(super) const REGISTRY_HEADER: &str = super::common::REGISTRY_HINT_HEADER;

const KINDS: &[&str] = &[
    "manifest.push",
    "manifest.pull",
    "manifest.delete",
    "blob.push",
    "blob.pull",
    "tag.create",
    "tag.delete",
];

pub(super) fn header_hint(h: &HeaderMap) -> bool {
    h.get(EVENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|k| KINDS.contains(&k))
}

pub(super) fn body_shape(v: &Value) -> bool {
    let s = |k: &str| v.get(k).is_some_and(Value::is_string);
    s("id")
        && s("timestamp")
        && s("namespace")
        && s("repository")
        && v.get("kind").and_then(Value::as_str).is_some_and(|k| {
            k.starts_with("manifest.") || k.starts_with("blob.") || k.starts_with("tag.")
        })
}

#[derive(Deserialize)]
struct Body {
    id: String,
    timestamp: String,
    kind: String,
    namespace: String,
    #[serde(default)]
    digest: Option<String>,
    /// The tag or digest the client's request named.
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    actor: Option<Actor>,
}

#[derive(Deserialize)]
struct Actor {
    /// Set instead of a client identity on Angos's own operations: `prune`, `cache`.
    #[serde(default)]
    internal: Option<String>,
}

enum Kind {
    Push,
    TagCreate,
    ManifestDelete,
    TagDelete,
    Ignore(&'static str),
}

pub(super) fn parse(v: &Value, ctx: &ParseContext<'_>) -> Result<Vec<Parsed>, ParseError> {
    let body: Body = typed(P, v)?;
    let host = header(ctx.headers, REGISTRY_HEADER);
    let internal = body.actor.as_ref().and_then(|a| non_empty(&a.internal));
    let kind = match (body.kind.as_str(), internal) {
        ("manifest.push", Some("cache")) => Kind::Ignore(
            "pull-through cache fill (actor.internal = cache): an upstream image copied on a pull, not a push",
        ),
        ("manifest.push", _) => Kind::Push,
        ("tag.create", _) => Kind::TagCreate,
        ("manifest.delete", _) => Kind::ManifestDelete,
        ("tag.delete", _) => Kind::TagDelete,
        ("manifest.pull" | "blob.pull", _) => Kind::Ignore("pulls are not tracked"),
        ("blob.push", _) => {
            Kind::Ignore("blob push: layers are not images, the manifest push carries the image")
        }
        _ => Kind::Ignore("this Angos event kind is not handled"),
    };
    let (action, tag, digest) = match kind {
        Kind::Ignore(reason) => return Ok(vec![Parsed::Ignored(ignored(&body, host, reason))]),
        // Never tagged in practice: the tags follow as `tag.create` events.
        Kind::Push => (
            Action::Push,
            non_empty(&body.tag),
            Some(required_digest(&body)?),
        ),
        Kind::TagCreate => {
            let tag = named_tag(&body).ok_or_else(|| {
                ParseError::malformed(P, "tag.create event without `tag` or `reference`")
            })?;
            (Action::Push, Some(tag), Some(required_digest(&body)?))
        }
        Kind::ManifestDelete => match (non_empty(&body.digest), named_tag(&body)) {
            (Some(d), _) => (Action::Delete, None, Some(d)),
            (None, Some(t)) => (Action::Delete, Some(t), None),
            (None, None) => {
                return Err(ParseError::malformed(
                    P,
                    "manifest.delete event with neither `digest` nor a tag `reference`",
                ));
            }
        },
        Kind::TagDelete => {
            let tag = named_tag(&body).ok_or_else(|| {
                ParseError::malformed(P, "tag.delete event without `tag` or `reference`")
            })?;
            (Action::Delete, Some(tag), non_empty(&body.digest))
        }
    };
    // References first: an invalid one is the sender's data, whatever the configuration.
    let repository = reference(P, Repository::parse(&body.namespace))?;
    let tag = tag.map(|t| reference(P, Tag::parse(t))).transpose()?;
    let digest = digest.map(|d| reference(P, Digest::parse(d))).transpose()?;
    let host = host.ok_or_else(|| {
        ParseError::malformed(
            P,
            // Angos sends no custom headers: the webhook URL is where its configuration goes.
            "Angos events carry no registry host: add `?registry=<host clients push to>` to the \
             webhook URL",
        )
    })?;
    let image = ImageRef {
        registry: reference(P, Registry::parse(host))?,
        repository,
        tag,
        digest,
    };
    // A fresh UUID per event, repeated on the dispatcher's retries.
    let id = body.id.clone();
    let occurred_at = timestamp(P, &body.timestamp)?;
    Ok(vec![Parsed::Image(
        ImageEvent::new(id, P, action, image, occurred_at)
            .with_reason(internal.map(|i| format!("by Angos ({i})"))),
    )])
}

fn required_digest(body: &Body) -> Result<&str, ParseError> {
    non_empty(&body.digest)
        .ok_or_else(|| ParseError::malformed(P, format!("{} event without `digest`", body.kind)))
}

/// The tag an event names: `tag`, else a `reference` that is not a digest.
fn named_tag(body: &Body) -> Option<&str> {
    non_empty(&body.tag).or_else(|| non_empty(&body.reference).filter(|r| !r.contains(':')))
}

fn ignored(body: &Body, host: Option<&str>, reason: &str) -> IgnoredEvent {
    IgnoredEvent {
        id: Some(body.id.clone()),
        provider: P,
        action: body.kind.clone(),
        reason: reason.to_owned(),
        registry: host.map(str::to_owned),
        repository: Some(body.namespace.clone()),
        tag: named_tag(body).map(str::to_owned),
        digest: non_empty(&body.digest).map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::only_ignored as ignored_of;
    use super::*;
    use crate::model::event::Timestamp;

    const D: &str = "sha256:e3b1c4d5a6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091";
    const HOST: &str = "registry.platform.example";

    fn run_with(v: &Value, host: Option<&str>) -> Result<Vec<Parsed>, ParseError> {
        let Some(h) = host else {
            return super::super::common::run_parser(parse, v);
        };
        let mut headers = HeaderMap::new();
        headers.insert(REGISTRY_HEADER, h.parse().unwrap());
        let now = Timestamp::parse("2026-01-01T00:00:00Z").unwrap();
        parse(
            v,
            &ParseContext {
                headers: &headers,
                received_at: &now,
                provider: None,
            },
        )
    }

    fn run(v: &Value) -> Result<Vec<Parsed>, ParseError> {
        run_with(v, Some(HOST))
    }

    fn event(kind: &str, extra: Value) -> Value {
        let mut v = serde_json::json!({
            "id": "1c9f4b7a-3e2d-4c1b-9a8f-7e6d5c4b3a21",
            "timestamp": "2026-04-05T06:07:08.901234Z",
            "kind": kind,
            "namespace": "platform/gateway",
            "actor": {"username": "ci", "client_ip": "10.20.30.40"},
            "repository": "internal"
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    #[test]
    fn tag_create_is_a_tagged_push_with_every_field() {
        let out = run(&event(
            "tag.create",
            serde_json::json!({"digest": D, "reference": "1.9.0", "tag": "1.9.0"}),
        ))
        .unwrap();
        let e = super::super::common::only_image(&out);
        assert_eq!(e.id, "1c9f4b7a-3e2d-4c1b-9a8f-7e6d5c4b3a21");
        assert_eq!(e.provider, Provider::Angos);
        assert_eq!(e.action, Action::Push);
        assert_eq!(e.image.registry.as_str(), HOST);
        assert_eq!(e.image.repository.as_str(), "platform/gateway");
        assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("1.9.0"));
        assert_eq!(e.image.digest.as_ref().map(Digest::as_str), Some(D));
        assert_eq!(e.occurred_at.as_str(), "2026-04-05T06:07:08.901234000Z");
        assert_eq!(
            (e.media_type.as_deref(), e.size, e.reason.as_deref()),
            (None, None, None)
        );
    }

    #[test]
    fn manifest_push_is_untagged_even_when_pushed_by_tag() {
        for reference in ["1.9.0", D] {
            let out = run(&event(
                "manifest.push",
                serde_json::json!({"digest": D, "reference": reference}),
            ))
            .unwrap();
            let e = super::super::common::only_image(&out);
            assert_eq!(e.action, Action::Push);
            assert_eq!(e.image.tag, None);
            assert_eq!(e.image.digest.as_ref().map(Digest::as_str), Some(D));
        }
    }

    #[test]
    fn cache_fills_pulls_and_blobs_are_ignored() {
        let fill = event(
            "manifest.push",
            serde_json::json!({"digest": D, "reference": "1.9.0", "actor": {"internal": "cache"}}),
        );
        let out = run(&fill).unwrap();
        let i = ignored_of(&out);
        assert_eq!(i.action, "manifest.push");
        assert!(i.reason.contains("cache fill"), "{}", i.reason);
        assert_eq!(i.registry.as_deref(), Some(HOST));
        assert_eq!(i.repository.as_deref(), Some("platform/gateway"));
        assert_eq!(i.tag.as_deref(), Some("1.9.0"));
        assert_eq!(i.digest.as_deref(), Some(D));

        let out = run(&event(
            "manifest.pull",
            serde_json::json!({"digest": D, "reference": "1.9.0", "tag": "1.9.0"}),
        ))
        .unwrap();
        assert_eq!(ignored_of(&out).reason, "pulls are not tracked");
        let mut anonymous = event("blob.pull", serde_json::json!({"digest": D}));
        anonymous.as_object_mut().unwrap().remove("actor");
        assert_eq!(ignored_of(&run(&anonymous).unwrap()).action, "blob.pull");
        let out = run(&event(
            "blob.push",
            serde_json::json!({"digest": "sha512:abc"}),
        ))
        .unwrap();
        assert!(ignored_of(&out).reason.contains("blob push"));
        // Ignored events need no registry host.
        let out = run_with(&event("blob.push", serde_json::json!({"digest": D})), None).unwrap();
        assert_eq!(ignored_of(&out).registry, None);
        let out = run(&event("repository.delete", serde_json::json!({}))).unwrap();
        assert!(ignored_of(&out).reason.contains("not handled"));
    }

    #[test]
    fn deletes_by_digest_and_by_tag() {
        let out = run(&event(
            "manifest.delete",
            serde_json::json!({"digest": D, "reference": D}),
        ))
        .unwrap();
        let e = super::super::common::only_image(&out);
        assert_eq!(e.action, Action::Delete);
        assert_eq!(e.image.tag, None);
        assert_eq!(e.image.digest.as_ref().map(Digest::as_str), Some(D));

        let out = run(&event(
            "manifest.delete",
            serde_json::json!({"reference": "1.9.0"}),
        ))
        .unwrap();
        let e = super::super::common::only_image(&out);
        assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("1.9.0"));
        assert_eq!(e.image.digest, None);

        let out = run(&event(
            "tag.delete",
            serde_json::json!({"reference": "1.9.0", "tag": "1.9.0"}),
        ))
        .unwrap();
        let e = super::super::common::only_image(&out);
        assert_eq!(e.action, Action::Delete);
        assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("1.9.0"));
        assert_eq!(e.image.digest, None);
    }

    #[test]
    fn retention_prunes_are_real_deletes_and_say_so() {
        let out = run(&event(
            "manifest.delete",
            serde_json::json!({"digest": D, "reference": D, "actor": {"internal": "prune"}}),
        ))
        .unwrap();
        let e = super::super::common::only_image(&out);
        assert_eq!(e.action, Action::Delete);
        assert_eq!(e.reason.as_deref(), Some("by Angos (prune)"));
    }

    #[test]
    fn without_a_registry_host_an_image_event_is_malformed() {
        let err = run_with(
            &event("tag.create", serde_json::json!({"digest": D, "tag": "1"})),
            None,
        )
        .unwrap_err();
        assert!(matches!(err, ParseError::Malformed { .. }));
        assert!(err.to_string().contains("?registry="), "{err}");
        assert!(!err.to_string().contains(REGISTRY_HEADER), "{err}");
        // An invalid reference is refused as such, host or not.
        let bad = event(
            "tag.create",
            serde_json::json!({"digest": "sha256:abc", "tag": "1"}),
        );
        assert!(matches!(
            run_with(&bad, None),
            Err(ParseError::Reference { .. })
        ));
    }

    #[test]
    fn invalid_references_and_missing_fields_are_refused() {
        let docs_digest = event(
            "manifest.push",
            serde_json::json!({"digest": "sha256:abc123def456...", "tag": "latest"}),
        );
        assert!(matches!(
            run(&docs_digest),
            Err(ParseError::Reference { .. })
        ));
        let sha512 = event(
            "manifest.push",
            serde_json::json!({"digest": format!("sha512:{}", "ab".repeat(64))}),
        );
        assert!(matches!(run(&sha512), Err(ParseError::Reference { .. })));
        let mut upper = event("tag.create", serde_json::json!({"digest": D, "tag": "1"}));
        upper["namespace"] = "Platform/Gateway".into();
        assert!(matches!(run(&upper), Err(ParseError::Reference { .. })));
        assert!(matches!(
            run_with(
                &event("tag.create", serde_json::json!({"digest": D, "tag": "1"})),
                Some("bad_host")
            ),
            Err(ParseError::Reference { .. })
        ));
        let err = run(&event("manifest.push", serde_json::json!({}))).unwrap_err();
        assert!(err.to_string().contains("`digest`"), "{err}");
        let err = run(&event("tag.create", serde_json::json!({"digest": D}))).unwrap_err();
        assert!(err.to_string().contains("`tag`"), "{err}");
        let err = run(&event("manifest.delete", serde_json::json!({}))).unwrap_err();
        assert!(err.to_string().contains("neither"), "{err}");
        let mut late = event("tag.create", serde_json::json!({"digest": D, "tag": "1"}));
        late["timestamp"] = "tomorrow".into();
        assert!(matches!(run(&late), Err(ParseError::Timestamp { .. })));
    }

    #[test]
    fn header_hint_and_body_shape() {
        let mut h = HeaderMap::new();
        assert!(!header_hint(&h));
        h.insert(EVENT_HEADER, "tag.create".parse().unwrap());
        assert!(header_hint(&h));
        h.insert(EVENT_HEADER, "push".parse().unwrap());
        assert!(!header_hint(&h));

        assert!(body_shape(&event(
            "manifest.push",
            serde_json::json!({"digest": D})
        )));
        assert!(!body_shape(
            &serde_json::json!({"id": "1", "timestamp": "t", "action": "push", "target": {}})
        ));
        let mut other = event("push", serde_json::json!({}));
        assert!(!body_shape(&other));
        other["kind"] = "tag.create".into();
        other.as_object_mut().unwrap().remove("namespace");
        assert!(!body_shape(&other));
    }
}
