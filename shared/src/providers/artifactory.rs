//! JFrog Artifactory webhooks (predefined payloads of the JFrog event service):
//! `{"domain": "docker", "event_type": "pushed", "data": {"repo_key", "path", "name", "sha256",
//! "size", "image_name", "tag", "platforms"}, "subscription_key", "jpd_origin", "source"}`.
//! Releases before the envelope sent the `data` object alone, with `event_type` inside it: both
//! are read.
//!
//! `pushed` and `deleted` name one tag of one image; `data.sha256` is the checksum of the tag's
//! `manifest.json` (or `list.manifest.json`), which is the manifest digest, so a push is pinned.
//! `promoted` copies a tag into another repository without naming the target, and the other
//! domains (artifacts, builds, Release Bundles) are not images: acknowledged and ignored.
//!
//! The payload names the repository key but not the host clients pull from (which depends on the
//! Docker access method: subdomain, port or repository path), so the webhook URL carries it as
//! `?registry=<host>`. No delivery id and no time either: the id is a hash of the body.
//! Auth: the webhook's Secret Token arrives verbatim in `X-JFrog-Event-Auth`, or, with "Use
//! secret for payload signing", as the bare hex HMAC-SHA256 of the body in that header.

use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::common::{ParseContext, ParseError, REGISTRY_HINT_HEADER, header, reference, typed};
use crate::model::event::{Action, IgnoredEvent, ImageEvent, Parsed, Provider, content_id};
use crate::model::reference::{Digest, ImageRef, Registry, Repository, Tag};

const P: Provider = Provider::Artifactory;
/// The header the webhook's secret (or its HMAC of the body) travels in.
pub(super) const AUTH_HEADER: &str = "x-jfrog-event-auth";
/// Domain and event names are echoed in the answer: cut to this many characters.
const MAX_NAME: usize = 64;

pub(super) fn header_hint(h: &HeaderMap) -> bool {
    h.contains_key(AUTH_HEADER)
}

pub(super) fn body_shape(v: &Value) -> bool {
    let envelope = v.get("domain").is_some_and(Value::is_string)
        && v.get("event_type").is_some_and(Value::is_string)
        && v.get("data").is_some_and(Value::is_object);
    envelope || bare_docker(v)
}

/// The pre-envelope form: the docker `data` object on its own.
fn bare_docker(v: &Value) -> bool {
    v.get("repo_key").is_some_and(Value::is_string)
        && v.get("event_type").is_some_and(Value::is_string)
        && v.get("image_name").is_some_and(Value::is_string)
}

#[derive(Deserialize)]
struct Docker {
    #[serde(default)]
    repo_key: Option<String>,
    image_name: String,
    tag: String,
    #[serde(default)]
    sha256: Option<String>,
}

pub(super) fn parse(v: &Value, ctx: &ParseContext<'_>) -> Result<Vec<Parsed>, ParseError> {
    let (domain, event, data) = if bare_docker(v) {
        (
            Some("docker"),
            v.get("event_type").and_then(Value::as_str),
            v,
        )
    } else {
        let data = v
            .get("data")
            .filter(|d| d.is_object())
            .ok_or_else(|| ParseError::malformed(P, "`data` must be an object"))?;
        (
            v.get("domain").and_then(Value::as_str),
            v.get("event_type").and_then(Value::as_str),
            data,
        )
    };
    let (Some(domain), Some(event)) = (domain, event) else {
        return Err(ParseError::malformed(
            P,
            "`domain` and `event_type` must be strings",
        ));
    };
    let kind = format!("{}:{}", cut(domain), cut(event));
    if domain != "docker" {
        return Ok(vec![Parsed::Ignored(ignored(
            kind,
            "Artifactory events outside the docker domain are not image events",
            None,
        ))]);
    }
    let action = match event {
        "pushed" => Action::Push,
        "deleted" => Action::Delete,
        "promoted" => {
            return Ok(vec![Parsed::Ignored(ignored(
                kind,
                "a promotion copies a tag to a repository the event does not name; the push \
                 webhook of the target repository records it",
                Some(data),
            ))]);
        }
        _ => {
            return Ok(vec![Parsed::Ignored(ignored(
                kind,
                "this Artifactory docker event is not handled",
                Some(data),
            ))]);
        }
    };
    let docker: Docker = typed(P, data)?;
    let digest = docker
        .sha256
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| format!("sha256:{s}"));
    // References first, so an invalid one is the sender's data whatever the configuration.
    let repository = reference(P, Repository::parse(&docker.image_name))?;
    let tag = reference(P, Tag::parse(&docker.tag))?;
    let digest = digest
        .map(|d| reference(P, Digest::parse(&d)))
        .transpose()?;
    let host = header(ctx.headers, REGISTRY_HINT_HEADER).ok_or_else(|| {
        ParseError::malformed(
            P,
            "Artifactory events carry no registry host: add `?registry=<host clients pull from>` \
             to the webhook URL",
        )
    })?;
    let image = ImageRef {
        registry: reference(P, Registry::parse(host))?,
        repository,
        tag: Some(tag),
        digest,
    };
    let canonical = v.to_string();
    let id = content_id(&[
        "artifactory",
        event,
        docker.repo_key.as_deref().unwrap_or(""),
        image.registry.as_str(),
        image.repository.as_str(),
        docker.tag.as_str(),
        &canonical,
    ]);
    let event =
        ImageEvent::new(id, P, action, image, ctx.received_at.clone()).identified_by_content(true);
    Ok(vec![Parsed::Image(event)])
}

fn cut(s: &str) -> String {
    s.chars().take(MAX_NAME).collect()
}

fn ignored(kind: String, reason: &str, data: Option<&Value>) -> IgnoredEvent {
    let field = |k: &str| {
        data.and_then(|d| d.get(k))
            .and_then(Value::as_str)
            .map(|s| s.chars().take(256).collect())
    };
    IgnoredEvent {
        id: None,
        provider: P,
        action: kind,
        reason: reason.to_owned(),
        registry: None,
        repository: field("image_name"),
        tag: field("tag"),
        digest: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::{only_ignored, only_image, run_parser_with};
    use super::*;
    use serde_json::json;

    const SHA: &str = "35c4a2c15539c6c1e4e5fa4e554dac323ad0107d8eb5c582d6ff386b383b7dce";
    const HOST: &str = "artifactory.acme.example";

    fn event(kind: &str) -> Value {
        json!({
            "domain": "docker",
            "event_type": kind,
            "data": {
                "repo_key": "docker-local",
                "path": "billing-api/v3.2.0/manifest.json",
                "name": "manifest.json",
                "sha256": SHA,
                "size": 1206,
                "image_name": "billing-api",
                "tag": "v3.2.0",
                "platforms": [{"architecture": "amd64", "os": "linux"}]
            },
            "subscription_key": "imagehook",
            "jpd_origin": "https://artifactory.acme.example",
            "source": "jfrog/artifactory"
        })
    }

    fn run(v: &Value) -> Result<Vec<Parsed>, ParseError> {
        run_parser_with(parse, v, &[(REGISTRY_HINT_HEADER, HOST)])
    }

    #[test]
    fn push_is_pinned_to_the_manifest_checksum() {
        let v = event("pushed");
        assert!(body_shape(&v));
        let out = run(&v).unwrap();
        let e = only_image(&out);
        assert_eq!((e.provider, e.action), (P, Action::Push));
        assert_eq!(e.image.registry.as_str(), HOST);
        assert_eq!(e.image.repository.as_str(), "billing-api");
        assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("v3.2.0"));
        assert_eq!(
            e.image.digest.as_ref().map(|d| d.as_str().to_owned()),
            Some(format!("sha256:{SHA}"))
        );
        assert!(e.identified_by_content);
        assert_eq!(run(&v).unwrap(), out, "a redelivery gets the same id");
    }

    #[test]
    fn delete_names_the_tag_and_digest() {
        let out = run(&event("deleted")).unwrap();
        let e = only_image(&out);
        assert_eq!(e.action, Action::Delete);
        assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("v3.2.0"));
        assert_ne!(e.id, only_image(&run(&event("pushed")).unwrap()).id);
    }

    #[test]
    fn the_pre_envelope_form_is_read_too() {
        let v = event("pushed")["data"].clone();
        let mut v = v;
        v["event_type"] = "pushed".into();
        assert!(body_shape(&v));
        let out = run(&v).unwrap();
        assert_eq!(only_image(&out).image.repository.as_str(), "billing-api");
    }

    #[test]
    fn promotions_and_other_domains_are_ignored_with_a_reason() {
        let out = run(&event("promoted")).unwrap();
        let i = only_ignored(&out);
        assert_eq!(i.action, "docker:promoted");
        assert_eq!(i.repository.as_deref(), Some("billing-api"));
        let mut artifact = event("deployed");
        artifact["domain"] = "artifact".into();
        let out = run(&artifact).unwrap();
        assert_eq!(only_ignored(&out).action, "artifact:deployed");
        assert!(!only_ignored(&out).reason.is_empty());
    }

    #[test]
    fn a_missing_host_names_the_query_parameter() {
        let err = run_parser_with(parse, &event("pushed"), &[]).unwrap_err();
        assert!(err.to_string().contains("?registry="), "{err}");
    }

    #[test]
    fn malformed_fields_are_refused_by_name() {
        let mut v = event("pushed");
        v["data"].as_object_mut().unwrap().remove("tag");
        let err = run(&v).unwrap_err();
        assert!(err.to_string().contains("tag"), "{err}");
        let mut v = event("pushed");
        v["data"]["sha256"] = "sample_checksum".into();
        assert!(matches!(run(&v), Err(ParseError::Reference { .. })));
        let mut v = event("pushed");
        v["data"]["image_name"] = "Billing API".into();
        assert!(matches!(run(&v), Err(ParseError::Reference { .. })));
        let mut v = event("pushed");
        v["data"] = json!("x");
        assert!(!body_shape(&v));
        assert!(matches!(run(&v), Err(ParseError::Malformed { .. })));
    }

    #[test]
    fn shape_and_headers() {
        assert!(!body_shape(
            &json!({"domain": "docker", "event_type": "pushed"})
        ));
        assert!(!body_shape(&json!({"type": "x", "data": {}})));
        let mut h = HeaderMap::new();
        assert!(!header_hint(&h));
        h.insert(AUTH_HEADER, "s3cret".parse().unwrap());
        assert!(header_hint(&h));
    }
}
