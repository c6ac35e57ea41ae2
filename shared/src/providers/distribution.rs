//! CNCF Distribution (`registry:2`, `registry:3`) notifications: an envelope
//! `{"events": [...]}` of unrelated events, `action` = push | pull | mount | delete, sent as
//! `application/vnd.docker.distribution.events.v1+json` (2.x) or `...events.v2+json` (3.x).
//!
//! Manifests and blobs (layers) both produce push events; only manifest pushes are images. A
//! delete names a digest (manifest delete), a tag (tag delete) or only the repository. The
//! registry host comes from `request.host` (the host the client called), else `target.url`.
//! Distribution signs nothing: authenticate with a static `Authorization` header in the
//! endpoint's `headers`.
//!
//! More than half of this file is its tests: pushes, deletes, batches and both media types.

use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::common::{ParseContext, ParseError, non_empty, reference, rejected, timestamp, typed};
use crate::model::event::{Action, IgnoredEvent, ImageEvent, Parsed, Provider, content_id};
use crate::model::reference::{Digest, ImageRef, Registry, Repository, Tag};

const P: Provider = Provider::Distribution;

/// `application/vnd.docker.distribution.events.v1+json` (2.x) and `.v2+json` (3.x).
const EVENTS_MEDIA_TYPE_PREFIX: &str = "application/vnd.docker.distribution.events.";

/// Manifest and index media types: a push of one of these is an image.
const MANIFEST_MEDIA_TYPES: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.artifact.manifest.v1+json",
];

pub(super) fn header_hint(h: &HeaderMap) -> bool {
    h.get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim()
                .to_ascii_lowercase()
                .starts_with(EVENTS_MEDIA_TYPE_PREFIX)
        })
}

pub(super) fn body_shape(v: &Value) -> bool {
    let Some(obj) = v.as_object() else {
        return false;
    };
    let Some(first) = obj
        .get("events")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    else {
        return false;
    };
    first.get("action").is_some_and(Value::is_string)
        && first.get("target").is_some_and(Value::is_object)
        && first.get("timestamp").is_some_and(Value::is_string)
}

#[derive(Deserialize)]
struct Envelope {
    events: Vec<Value>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
    action: String,
    #[serde(default)]
    target: Target,
    #[serde(default)]
    request: Option<Request>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Target {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    /// Deprecated duplicate of `size`, the only one some 2.x events carry.
    #[serde(default)]
    length: Option<u64>,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    repository: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    tag: Option<String>,
}

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    host: Option<String>,
}

/// What one event is, before its references are checked.
enum Kind {
    ManifestPush,
    DigestDelete,
    TagDelete,
    Ignore(String),
}

pub(super) fn parse(v: &Value, _ctx: &ParseContext<'_>) -> Result<Vec<Parsed>, ParseError> {
    let envelope: Envelope = typed(P, v)?;
    envelope
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            // Distribution retries a refused delivery for ever, holding up every event behind
            // it: an event that cannot be accepted is rejected alone, the rest go on.
            let event: Event = match typed(P, e) {
                Ok(event) => event,
                Err(err) => return Ok(Parsed::Rejected(unreadable(e, i, &err))),
            };
            Ok(parse_event(&event)
                .unwrap_or_else(|err| Parsed::Rejected(ignored(&event, rejection(&event, &err)))))
        })
        .collect()
}

fn parse_event(e: &Event) -> Result<Parsed, ParseError> {
    let t = &e.target;
    let kind = match e.action.as_str() {
        "push" if is_manifest(t) => Kind::ManifestPush,
        "push" => Kind::Ignore(format!(
            "blob push ({}): layers are not images, the manifest push carries the image",
            non_empty(&t.media_type).unwrap_or("no media type")
        )),
        "pull" => Kind::Ignore("pulls are not tracked".to_owned()),
        "mount" => Kind::Ignore(
            "cross-repository blob mount: layers are not images, the manifest push carries the image"
                .to_owned(),
        ),
        "delete" if non_empty(&t.digest).is_some() => Kind::DigestDelete,
        "delete" if non_empty(&t.tag).is_some() => Kind::TagDelete,
        "delete" => Kind::Ignore("repository deletes are not tracked".to_owned()),
        other => Kind::Ignore(format!("Distribution action {other:?} is not handled")),
    };
    let action = match kind {
        Kind::ManifestPush => Action::Push,
        Kind::DigestDelete | Kind::TagDelete => Action::Delete,
        Kind::Ignore(reason) => return Ok(Parsed::Ignored(ignored(e, reason))),
    };
    let host = registry_host(e).ok_or_else(|| {
        ParseError::malformed(
            P,
            format!(
                "{} event without `request.host` or `target.url`: the registry is unknown",
                e.action
            ),
        )
    })?;
    let repository = non_empty(&t.repository).ok_or_else(|| {
        ParseError::malformed(P, format!("{} event without `target.repository`", e.action))
    })?;
    let digest = non_empty(&t.digest)
        .map(|d| reference(P, Digest::parse(d)))
        .transpose()?;
    if matches!(kind, Kind::ManifestPush) && digest.is_none() {
        return Err(ParseError::malformed(
            P,
            "manifest push without `target.digest`",
        ));
    }
    // A manifest delete removes the digest with all its tags; only a tag delete names a tag.
    let tag = match kind {
        Kind::DigestDelete => None,
        _ => non_empty(&t.tag)
            .map(|s| reference(P, Tag::parse(s)))
            .transpose()?,
    };
    let image = ImageRef {
        registry: reference(P, Registry::parse(&host))?,
        repository: reference(P, Repository::parse(repository))?,
        tag,
        digest,
    };
    let occurred_at = match non_empty(&e.timestamp) {
        Some(s) => timestamp(P, s)?,
        None => return Err(ParseError::malformed(P, "event without `timestamp`")),
    };
    Ok(Parsed::Image(
        ImageEvent::new(event_id(e), P, action, image, occurred_at)
            .with_media_type(non_empty(&t.media_type).map(str::to_owned))
            .with_size(t.size.filter(|s| *s > 0).or(t.length.filter(|l| *l > 0))),
    ))
}

/// A manifest by its media type, or by its URL when the media type is unknown or absent.
fn is_manifest(t: &Target) -> bool {
    match non_empty(&t.media_type) {
        Some(mt) if MANIFEST_MEDIA_TYPES.contains(&mt) => true,
        _ => non_empty(&t.url).is_some_and(|u| u.contains("/manifests/")),
    }
}

/// The host the client pushed to, else the host of `target.url`.
fn registry_host(e: &Event) -> Option<String> {
    if let Some(h) = e.request.as_ref().and_then(|r| non_empty(&r.host)) {
        return Some(h.to_owned());
    }
    let url = non_empty(&e.target.url)?;
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    (!host.is_empty()).then(|| host.to_owned())
}

/// The event's own id (a UUID per event, unique within an envelope), or, if a sender left it
/// out, a hash of what identifies the event.
fn event_id(e: &Event) -> String {
    match non_empty(&e.id) {
        Some(id) => id.to_owned(),
        None => content_id(&[
            &e.action,
            e.target.repository.as_deref().unwrap_or_default(),
            e.target.digest.as_deref().unwrap_or_default(),
            e.target.tag.as_deref().unwrap_or_default(),
            e.timestamp.as_deref().unwrap_or_default(),
        ]),
    }
}

/// Why an event is rejected; a host that is no registry name is most often a reverse proxy that
/// did not forward the client's `Host`.
fn rejection(e: &Event, err: &ParseError) -> String {
    let host = registry_host(e).unwrap_or_default();
    if !host.is_empty() && Registry::parse(&host).is_err() {
        return format!(
            "{err}: `{}` is not a registry name a client can pull from; behind a reverse proxy, forward the client's Host (nginx: proxy_set_header Host $http_host)",
            host.chars().take(255).collect::<String>()
        );
    }
    err.to_string()
}

/// An event that is not even an event: what little it says, and why.
fn unreadable(v: &Value, i: usize, err: &ParseError) -> IgnoredEvent {
    let text = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(|s| s.chars().take(256).collect())
    };
    let mut r = rejected(P, format!("events[{i}]: {err}"));
    r.id = text("id");
    if let Some(action) = text("action") {
        r.action = action;
    }
    r
}

fn ignored(e: &Event, reason: String) -> IgnoredEvent {
    let t = &e.target;
    IgnoredEvent {
        id: Some(event_id(e)),
        provider: P,
        action: e.action.clone(),
        reason,
        registry: registry_host(e),
        repository: non_empty(&t.repository).map(str::to_owned),
        tag: non_empty(&t.tag).map(str::to_owned),
        digest: non_empty(&t.digest).map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:7d3a1f0e9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a21";
    const LAYER: &str = "sha256:0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

    fn run(v: Value) -> Result<Vec<Parsed>, ParseError> {
        super::super::common::run_parser(parse, &v)
    }

    fn event(id: &str, action: &str, target: Value) -> Value {
        serde_json::json!({
            "id": id,
            "timestamp": "2026-02-03T04:05:06.789012345+01:00",
            "action": action,
            "target": target,
            "request": {"id": "req-1", "addr": "10.1.2.3:51234", "host": "registry.internal.example:5000",
                        "method": "PUT", "useragent": "buildkit/v0.18"},
            "actor": {"name": "deployer"},
            "source": {"addr": "registry-1:5000", "instanceID": "inst-1"}
        })
    }

    fn manifest(tag: Option<&str>) -> Value {
        let mut t = serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": D, "size": 1610, "length": 1610, "repository": "payments/ledger",
            "url": format!("https://registry.internal.example:5000/v2/payments/ledger/manifests/{D}")
        });
        if let Some(tag) = tag {
            t["tag"] = tag.into();
        }
        t
    }

    fn envelope(events: Vec<Value>) -> Value {
        serde_json::json!({ "events": events })
    }

    fn one(v: Value) -> Parsed {
        let out = run(v).unwrap();
        let [p] = out.as_slice() else {
            panic!("{out:?}")
        };
        p.clone()
    }

    #[test]
    fn tagged_manifest_push_maps_every_field() {
        let Parsed::Image(e) = one(envelope(vec![event(
            "ev-1",
            "push",
            manifest(Some("2.7.0")),
        )])) else {
            panic!()
        };
        assert_eq!(e.id, "ev-1");
        assert_eq!(e.provider, Provider::Distribution);
        assert_eq!(e.action, Action::Push);
        assert_eq!(e.image.registry.as_str(), "registry.internal.example:5000");
        assert_eq!(e.image.repository.as_str(), "payments/ledger");
        assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("2.7.0"));
        assert_eq!(e.image.digest.as_ref().map(Digest::as_str), Some(D));
        assert_eq!(e.occurred_at.as_str(), "2026-02-03T03:05:06.789012345Z");
        assert_eq!(
            e.media_type.as_deref(),
            Some("application/vnd.oci.image.index.v1+json")
        );
        assert_eq!(e.size, Some(1610));
        assert_eq!(e.scan, None);
    }

    #[test]
    fn push_by_digest_is_untagged_and_length_stands_in_for_size() {
        let mut t = manifest(None);
        t.as_object_mut().unwrap().remove("size");
        t["length"] = 999.into();
        let Parsed::Image(e) = one(envelope(vec![event("ev-2", "push", t)])) else {
            panic!()
        };
        assert_eq!(e.image.tag, None);
        assert_eq!(e.image.digest.as_ref().map(Digest::as_str), Some(D));
        assert_eq!(e.size, Some(999));
    }

    #[test]
    fn a_batch_gives_one_entry_per_event_in_order() {
        let layer = serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": LAYER,
            "size": 31_457_280, "repository": "payments/ledger",
            "url": format!("https://registry.internal.example:5000/v2/payments/ledger/blobs/{LAYER}")
        });
        let mut mount = layer.clone();
        mount["fromRepository"] = "payments/base".into();
        let out = run(envelope(vec![
            event("a", "push", layer),
            event("b", "mount", mount),
            event("c", "push", manifest(Some("2.7.0"))),
            event("d", "pull", manifest(Some("2.7.0"))),
        ]))
        .unwrap();
        let [
            Parsed::Ignored(a),
            Parsed::Ignored(b),
            Parsed::Image(c),
            Parsed::Ignored(d),
        ] = out.as_slice()
        else {
            panic!("{out:?}")
        };
        assert_eq!((a.action.as_str(), a.id.as_deref()), ("push", Some("a")));
        assert!(a.reason.contains("blob push"), "{}", a.reason);
        assert_eq!(a.digest.as_deref(), Some(LAYER));
        assert_eq!(
            a.registry.as_deref(),
            Some("registry.internal.example:5000")
        );
        assert_eq!(b.action, "mount");
        assert!(b.reason.contains("mount"));
        assert_eq!(c.id, "c");
        assert_eq!(d.action, "pull");
        assert_eq!(d.reason, "pulls are not tracked");
        assert_eq!(d.tag.as_deref(), Some("2.7.0"));
    }

    #[test]
    fn unknown_media_type_falls_back_to_the_url() {
        let mut t = manifest(Some("x"));
        t["mediaType"] = "application/vnd.example.custom+json".into();
        assert!(matches!(
            one(envelope(vec![event("m", "push", t.clone())])),
            Parsed::Image(_)
        ));
        t["url"] = format!("https://r.example/v2/payments/ledger/blobs/{D}").into();
        assert!(matches!(
            one(envelope(vec![event("m", "push", t)])),
            Parsed::Ignored(_)
        ));
    }

    #[test]
    fn deletes_by_digest_tag_and_repository() {
        // 3.x serialises empty descriptor fields instead of omitting them.
        let by_digest = serde_json::json!({"mediaType": "", "digest": D, "size": 0, "repository": "payments/ledger"});
        let Parsed::Image(e) = one(envelope(vec![event("d1", "delete", by_digest)])) else {
            panic!()
        };
        assert_eq!(e.action, Action::Delete);
        assert_eq!(e.image.tag, None);
        assert_eq!(e.image.digest.as_ref().map(Digest::as_str), Some(D));
        assert_eq!(e.media_type, None);
        assert_eq!(e.size, None);

        let by_tag = serde_json::json!({"mediaType": "", "digest": "", "size": 0,
                                        "repository": "payments/ledger", "tag": "2.7.0"});
        let Parsed::Image(e) = one(envelope(vec![event("d2", "delete", by_tag)])) else {
            panic!()
        };
        assert_eq!(e.action, Action::Delete);
        assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("2.7.0"));
        assert_eq!(e.image.digest, None);

        let repo = serde_json::json!({"repository": "payments/ledger"});
        let Parsed::Ignored(i) = one(envelope(vec![event("d3", "delete", repo)])) else {
            panic!()
        };
        assert_eq!(i.action, "delete");
        assert_eq!(i.reason, "repository deletes are not tracked");
        assert_eq!(i.repository.as_deref(), Some("payments/ledger"));
    }

    #[test]
    fn host_falls_back_to_the_target_url() {
        let mut v = event("u", "push", manifest(Some("1")));
        v.as_object_mut().unwrap().remove("request");
        let Parsed::Image(e) = one(envelope(vec![v])) else {
            panic!()
        };
        assert_eq!(e.image.registry.as_str(), "registry.internal.example:5000");

        let mut v = event("u", "push", manifest(Some("1")));
        v["request"] = serde_json::json!({});
        v["target"].as_object_mut().unwrap().remove("url");
        assert!(rejected(envelope(vec![v])).contains("request.host"));
    }

    /// The reason an envelope's only event is rejected for.
    fn rejected(v: Value) -> String {
        match one(v) {
            Parsed::Rejected(r) => r.reason,
            other => panic!("not rejected: {other:?}"),
        }
    }

    #[test]
    fn invalid_references_and_missing_fields_are_rejected_alone() {
        let mut t = manifest(Some("1"));
        t["digest"] = "sha256:1234".into();
        assert!(rejected(envelope(vec![event("x", "push", t)])).contains("digest"));
        let mut t = manifest(Some("1"));
        t["repository"] = "Payments/Ledger".into();
        assert!(rejected(envelope(vec![event("x", "push", t)])).contains("Payments/Ledger"));
        let mut t = manifest(Some("bad tag"));
        t["digest"] = D.into();
        assert!(rejected(envelope(vec![event("x", "push", t)])).contains("bad tag"));
        let mut t = manifest(Some("1"));
        t.as_object_mut().unwrap().remove("digest");
        assert!(rejected(envelope(vec![event("x", "push", t)])).contains("target.digest"));
        let mut v = event("x", "push", manifest(Some("1")));
        v["timestamp"] = "last tuesday".into();
        assert!(rejected(envelope(vec![v])).contains("last tuesday"));
        let unreadable = serde_json::json!({"events": [{"timestamp": "t", "target": {}}]});
        assert!(rejected(unreadable).contains("events[0]"));
        // A proxy that did not forward Host: the hint says so; the good event still goes on.
        let mut bad = event("h", "push", manifest(Some("1")));
        bad["request"]["host"] = "shop_registry:5000".into();
        let out = run(envelope(vec![
            bad,
            event("ok", "push", manifest(Some("2"))),
        ]))
        .unwrap();
        let [Parsed::Rejected(r), Parsed::Image(e)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert!(r.reason.contains("proxy_set_header Host"), "{}", r.reason);
        assert_eq!(r.id.as_deref(), Some("h"));
        assert_eq!(e.id, "ok");
    }

    #[test]
    fn an_invalid_layer_digest_does_not_fail_the_batch() {
        let layer = serde_json::json!({"mediaType": "application/octet-stream",
            "digest": "sha256:not-checked", "repository": "payments/ledger"});
        let out = run(envelope(vec![
            event("l", "push", layer),
            event("m", "push", manifest(None)),
        ]))
        .unwrap();
        assert!(matches!(
            out.as_slice(),
            [Parsed::Ignored(_), Parsed::Image(_)]
        ));
    }

    #[test]
    fn missing_event_id_gets_a_stable_content_id() {
        let mut v = event("", "push", manifest(Some("1")));
        v.as_object_mut().unwrap().remove("id");
        let a = run(envelope(vec![v.clone()])).unwrap();
        let b = run(envelope(vec![v])).unwrap();
        assert_eq!(a, b);
        let [Parsed::Image(e)] = a.as_slice() else {
            panic!()
        };
        assert!(e.id.starts_with("sha256:"));
    }

    #[test]
    fn header_hint_and_body_shape() {
        let mut h = HeaderMap::new();
        assert!(!header_hint(&h));
        h.insert(
            http::header::CONTENT_TYPE,
            "application/vnd.docker.distribution.events.v2+json"
                .parse()
                .unwrap(),
        );
        assert!(header_hint(&h));
        h.insert(
            http::header::CONTENT_TYPE,
            "application/vnd.docker.distribution.events.v1+json; charset=utf-8"
                .parse()
                .unwrap(),
        );
        assert!(header_hint(&h));
        h.insert(
            http::header::CONTENT_TYPE,
            "application/json".parse().unwrap(),
        );
        assert!(!header_hint(&h));

        assert!(body_shape(&envelope(vec![event(
            "a",
            "push",
            manifest(None)
        )])));
        assert!(!body_shape(&serde_json::json!({"events": []})));
        assert!(!body_shape(&serde_json::json!({"events": [{"type": "x"}]})));
        assert!(!body_shape(&serde_json::json!([{"eventType": "x"}])));
        assert!(!body_shape(
            &serde_json::json!({"id": "1", "timestamp": "t", "action": "push", "target": {}})
        ));
    }
}
