//! Quay.io / Red Hat Quay repository notifications (webhook method). Every notification kind
//! shares `repository`, `namespace`, `name`, `docker_url` and `homepage`; the body names no
//! event kind, so `repo_push` is recognised by `updated_tags`. A push names tags only (no
//! digest, no id, no time): one unpinned event per tag, identified by a content hash.
//! Quay signs nothing and sends no auth header: a secret in the URL, or mutual TLS with Quay's
//! client certificate.

use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::common::{ParseContext, ParseError, reference, typed};
use crate::model::event::{Action, IgnoredEvent, ImageEvent, Parsed, Provider, content_id};
use crate::model::reference::{ImageRef, Registry, Repository, Tag};

const P: Provider = Provider::Quay;

/// Quay sends only `Content-Type` and the HTTP library's User-Agent: nothing decisive.
pub(super) fn header_hint(_h: &HeaderMap) -> bool {
    false
}

pub(super) fn body_shape(v: &Value) -> bool {
    v.get("docker_url").is_some_and(Value::is_string)
        && v.get("repository").is_some_and(Value::is_string)
        && v.get("namespace").is_some_and(Value::is_string)
}

#[derive(Deserialize)]
struct Body {
    docker_url: String,
    #[serde(default)]
    repository: Option<String>,
    /// A list of tags; older Quay releases sent a `{tag: image_id}` map.
    #[serde(default)]
    updated_tags: Option<Value>,
}

pub(super) fn parse(v: &Value, ctx: &ParseContext<'_>) -> Result<Vec<Parsed>, ParseError> {
    let body: Body = typed(P, v)?;
    let Some(updated) = &body.updated_tags else {
        return Ok(vec![Parsed::Ignored(ignored_kind(v, &body))]);
    };
    let tags = tag_names(updated)?;
    if tags.is_empty() {
        return Ok(vec![Parsed::Ignored(ignored(
            &body,
            "repo_push",
            "repo_push without updated tags: nothing to record".to_owned(),
        ))]);
    }
    let (host, path) = split_docker_url(&body.docker_url)?;
    let registry = reference(P, Registry::parse(host))?;
    let repository = reference(P, Repository::parse(path))?;
    // The whole notification is the only thing that identifies it: a redelivery is the same
    // body, so the same id.
    let canonical = v.to_string();
    tags.into_iter()
        .map(|tag| {
            let tag = reference(P, Tag::parse(tag))?;
            let id = content_id(&[
                "repo_push",
                registry.as_str(),
                repository.as_str(),
                tag.as_str(),
                &canonical,
            ]);
            let image = ImageRef {
                registry: registry.clone(),
                repository: repository.clone(),
                tag: Some(tag),
                digest: None,
            };
            // Quay's notification carries no time: the same body is a retry or a re-push.
            let event = ImageEvent::new(id, P, Action::Push, image, ctx.received_at.clone())
                .identified_by_content(true);
            Ok(Parsed::Image(event))
        })
        .collect()
}

/// `["latest", "v2"]`, or the legacy `{"latest": "<image id>"}` (image ids are not digests).
fn tag_names(updated: &Value) -> Result<Vec<&str>, ParseError> {
    let bad = || ParseError::malformed(P, "`updated_tags` must be a list of tag names");
    match updated {
        Value::Array(tags) => tags.iter().map(|t| t.as_str().ok_or_else(bad)).collect(),
        Value::Object(map) => Ok(map.keys().map(String::as_str).collect()),
        _ => Err(bad()),
    }
}

/// `quay.io/ns/repo` -> (`quay.io`, `ns/repo`): the host is always there, there is no scheme.
fn split_docker_url(url: &str) -> Result<(&str, &str), ParseError> {
    match url.split_once('/') {
        Some((host, path)) if !host.is_empty() && !path.is_empty() => Ok((host, path)),
        _ => Err(ParseError::malformed(
            P,
            format!("`docker_url` {url:?} is not <registry host>/<repository>"),
        )),
    }
}

/// The notification kinds other than `repo_push`, told apart by their own fields.
fn ignored_kind(v: &Value, body: &Body) -> IgnoredEvent {
    let has = |k: &str| v.get(k).is_some();
    let (kind, reason) = if has("vulnerability") {
        (
            "vulnerability_found",
            "Quay vulnerability notifications carry no digest to quarantine",
        )
    } else if has("build_id") {
        ("build", "Quay build notifications are not pushes")
    } else if has("expiring_in") {
        (
            "repo_image_expiry",
            "Quay tag expiry notices are not pushes",
        )
    } else {
        (
            "notification",
            "Quay notification without `updated_tags` is not a repo_push",
        )
    };
    ignored(body, kind, reason.to_owned())
}

fn ignored(body: &Body, kind: &str, reason: String) -> IgnoredEvent {
    let (registry, repository) = match split_docker_url(&body.docker_url) {
        Ok((h, p)) => (Some(h.to_owned()), Some(p.to_owned())),
        Err(_) => (None, body.repository.clone()),
    };
    IgnoredEvent {
        id: None,
        provider: P,
        action: kind.to_owned(),
        reason,
        registry,
        repository,
        tag: None,
        digest: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::Timestamp;
    use serde_json::json;

    fn run(v: Value) -> Result<Vec<Parsed>, ParseError> {
        super::super::common::run_parser(parse, &v)
    }

    fn push(tags: Value) -> Value {
        json!({
            "repository": "acme/billing-api",
            "namespace": "acme",
            "name": "billing-api",
            "docker_url": "registry.acme.example:8443/acme/billing-api",
            "homepage": "https://registry.acme.example:8443/repository/acme/billing-api",
            "updated_tags": tags
        })
    }

    #[test]
    fn push_maps_every_field() {
        let v = push(json!(["v3.2.0"]));
        assert!(body_shape(&v));
        let out = run(v).unwrap();
        let [Parsed::Image(e)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(e.provider, Provider::Quay);
        assert_eq!(e.action, Action::Push);
        assert_eq!(e.image.registry.as_str(), "registry.acme.example:8443");
        assert_eq!(e.image.repository.as_str(), "acme/billing-api");
        assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("v3.2.0"));
        assert_eq!(e.image.digest, None);
        assert_eq!(e.occurred_at, Timestamp::from_unix(1_767_225_600).unwrap());
        assert!(e.id.starts_with("sha256:"));
        assert_eq!((e.media_type.as_ref(), e.size), (None, None));
    }

    #[test]
    fn one_event_per_tag_with_distinct_stable_ids() {
        let v = push(json!(["v3.2.0", "stable"]));
        let out = run(v.clone()).unwrap();
        let [Parsed::Image(a), Parsed::Image(b)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(a.image.tag.as_ref().map(Tag::as_str), Some("v3.2.0"));
        assert_eq!(b.image.tag.as_ref().map(Tag::as_str), Some("stable"));
        assert_ne!(a.id, b.id);
        assert_eq!(run(v).unwrap(), out, "a redelivery gets the same ids");
        let other = run(push(json!(["v3.2.1"]))).unwrap();
        let [Parsed::Image(c)] = other.as_slice() else {
            panic!()
        };
        assert_ne!(c.id, a.id);
    }

    #[test]
    fn legacy_tag_map_uses_its_keys() {
        let out = run(push(
            json!({"nightly": "4f2a0c1e9b8d7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f"}),
        ))
        .unwrap();
        let [Parsed::Image(e)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("nightly"));
        assert_eq!(e.image.digest, None);
    }

    #[test]
    fn other_notifications_are_ignored() {
        let mut vuln = push(json!(null));
        let o = vuln.as_object_mut().unwrap();
        o.remove("updated_tags");
        o.insert("tags".into(), json!(["v3.2.0"]));
        o.insert(
            "vulnerability".into(),
            json!({"id": "CVE-2026-0001", "priority": "High"}),
        );
        assert!(body_shape(&vuln));
        let out = run(vuln).unwrap();
        let [Parsed::Ignored(i)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(i.action, "vulnerability_found");
        assert_eq!(i.registry.as_deref(), Some("registry.acme.example:8443"));
        assert_eq!(i.repository.as_deref(), Some("acme/billing-api"));
        let mut build = push(json!(null));
        build.as_object_mut().unwrap().remove("updated_tags");
        build["build_id"] = "b-1".into();
        let out = run(build).unwrap();
        let [Parsed::Ignored(i)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(i.action, "build");
        let out = run(push(json!([]))).unwrap();
        let [Parsed::Ignored(i)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(i.action, "repo_push");
    }

    #[test]
    fn invalid_or_missing_parts_are_refused() {
        assert!(matches!(
            run(push(json!(["bad:tag"]))),
            Err(ParseError::Reference { .. })
        ));
        let mut v = push(json!(["1"]));
        v["docker_url"] = "quay.io/Acme/Billing".into();
        assert!(matches!(run(v), Err(ParseError::Reference { .. })));
        let mut v = push(json!(["1"]));
        v["docker_url"] = "billing-api".into();
        let err = run(v).unwrap_err();
        assert!(err.to_string().contains("docker_url"), "{err}");
        let err = run(push(json!([1]))).unwrap_err();
        assert!(err.to_string().contains("updated_tags"), "{err}");
        let mut v = push(json!(["1"]));
        v.as_object_mut().unwrap().remove("docker_url");
        assert!(matches!(run(v), Err(ParseError::Malformed { .. })));
    }

    #[test]
    fn shape_and_headers() {
        assert!(!body_shape(&json!({"repository": "a/b", "namespace": "a"})));
        assert!(!body_shape(
            &json!({"push_data": {}, "repository": {"repo_name": "a/b"}})
        ));
        let mut h = HeaderMap::new();
        h.insert("user-agent", "python-requests/2.31.0".parse().unwrap());
        assert!(!header_hint(&h));
    }
}
