//! Sonatype Nexus Repository 3 webhooks (the `Webhook: Repository` capability):
//! `{"timestamp", "nodeId", "initiator", "repositoryName", "action": "CREATED" | "UPDATED" |
//! "DELETED", "component": {"id", "componentId", "format", "name", "group", "version"}}` for
//! `rm:repository:component`, the same with `asset` for `rm:repository:asset`; the event kind is
//! also in `X-Nexus-Webhook-Id`.
//!
//! A docker component is an image tag: `name` is the repository, `version` the tag. CREATED and
//! UPDATED (the tag now names other content) are pushes, DELETED a delete by tag; neither
//! carries a digest, so pushes are unpinned. Asset events repeat what the component event says
//! file by file, and components of other formats are not images: acknowledged and ignored.
//! The host clients pull from (the repository's Docker connector or a proxy in front) is not in
//! the payload: the webhook URL carries it as `?registry=<host>`.
//! Auth: with a Secret Key, `X-Nexus-Webhook-Signature` is the hex HMAC-SHA1 of the body
//! (`AUTH_MODE=hmac-sha1`).

use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::common::{
    ParseContext, ParseError, REGISTRY_HINT_HEADER, header, reference, timestamp, typed,
    user_agent_starts_with,
};
use crate::model::event::{Action, IgnoredEvent, ImageEvent, Parsed, Provider, content_id};
use crate::model::reference::{ImageRef, Registry, Repository, Tag};

const P: Provider = Provider::Nexus;
/// Values echoed in an ignored event's answer are cut to this many characters.
const MAX_NAME: usize = 256;

pub(super) fn header_hint(h: &HeaderMap) -> bool {
    header(h, "x-nexus-webhook-id").is_some_and(|id| id.starts_with("rm:"))
        || user_agent_starts_with(h, "Nexus/")
}

pub(super) fn body_shape(v: &Value) -> bool {
    let node = v.get("nodeId").is_some_and(Value::is_string)
        && v.get("initiator").is_some_and(Value::is_string);
    let repository_event = v.get("repositoryName").is_some_and(Value::is_string)
        && v.get("action").is_some_and(Value::is_string)
        && (v.get("component").is_some_and(Value::is_object)
            || v.get("asset").is_some_and(Value::is_object));
    let other = v.get("repository").is_some_and(Value::is_object)
        || v.get("audit").is_some_and(Value::is_object);
    node && (repository_event || other)
}

#[derive(Deserialize)]
struct Body {
    timestamp: String,
    #[serde(rename = "repositoryName")]
    repository_name: String,
    action: String,
    component: Component,
}

#[derive(Deserialize)]
struct Component {
    format: String,
    name: String,
    version: String,
}

pub(super) fn parse(v: &Value, ctx: &ParseContext<'_>) -> Result<Vec<Parsed>, ParseError> {
    // Named by `?provider=nexus`, a body of another shape must be refused, not ignored.
    if !body_shape(v) {
        return Err(ParseError::malformed(
            P,
            "expected `nodeId`, `initiator` and a `component`, `asset`, `repository` or `audit` \
             object",
        ));
    }
    if v.get("component").is_none() {
        let (kind, reason) = if v.get("asset").is_some() {
            (
                "asset",
                "asset events list a component's files; its component event carries the tag",
            )
        } else if v.get("audit").is_some() {
            ("audit", "Nexus audit events are not image events")
        } else {
            (
                "repository",
                "Nexus repository configuration events are not image events",
            )
        };
        return Ok(vec![Parsed::Ignored(ignored(v, kind, reason))]);
    }
    let body: Body = typed(P, v)?;
    if body.component.format != "docker" {
        return Ok(vec![Parsed::Ignored(ignored(
            v,
            "component",
            "only docker components are container images",
        ))]);
    }
    let action = match body.action.as_str() {
        "CREATED" | "UPDATED" => Action::Push,
        "DELETED" => Action::Delete,
        _ => {
            return Ok(vec![Parsed::Ignored(ignored(
                v,
                "component",
                "this Nexus component action is not handled",
            ))]);
        }
    };
    // References first, so an invalid one is the sender's data whatever the configuration.
    let repository = reference(P, Repository::parse(&body.component.name))?;
    let tag = reference(P, Tag::parse(&body.component.version))?;
    let occurred_at = timestamp(P, &rfc3339(&body.timestamp))?;
    let host = header(ctx.headers, REGISTRY_HINT_HEADER).ok_or_else(|| {
        ParseError::malformed(
            P,
            "Nexus events carry no registry host: add `?registry=<host of the repository's \
             Docker connector>` to the webhook URL",
        )
    })?;
    let image = ImageRef {
        registry: reference(P, Registry::parse(host))?,
        repository,
        tag: Some(tag),
        digest: None,
    };
    // The body holds its own time, so a redelivery is the same id and a re-push a new one.
    let id = content_id(&[
        "nexus",
        body.action.as_str(),
        body.repository_name.as_str(),
        image.registry.as_str(),
        image.repository.as_str(),
        body.component.version.as_str(),
        body.timestamp.as_str(),
    ]);
    Ok(vec![Parsed::Image(ImageEvent::new(
        id,
        P,
        action,
        image,
        occurred_at,
    ))])
}

/// Nexus writes `2016-11-10T23:57:49.664+0000` (Java's `Z` pattern): RFC 3339 wants `+00:00`.
fn rfc3339(t: &str) -> String {
    let b = t.as_bytes();
    let n = b.len();
    let numeric_offset =
        n > 5 && matches!(b[n - 5], b'+' | b'-') && b[n - 4..].iter().all(u8::is_ascii_digit);
    if numeric_offset {
        format!("{}:{}", &t[..n - 2], &t[n - 2..])
    } else {
        t.to_owned()
    }
}

fn ignored(v: &Value, kind: &str, reason: &str) -> IgnoredEvent {
    let text = |x: Option<&Value>| {
        x.and_then(Value::as_str)
            .map(|s| s.chars().take(MAX_NAME).collect::<String>())
    };
    let item = v.get("component").or_else(|| v.get("asset"));
    IgnoredEvent {
        id: None,
        provider: P,
        action: kind.to_owned(),
        reason: reason.to_owned(),
        registry: None,
        repository: text(item.and_then(|c| c.get("name"))),
        tag: text(v.get("component").and_then(|c| c.get("version"))),
        digest: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::{only_ignored, only_image, run_parser_with};
    use super::*;
    use crate::model::event::Timestamp;
    use serde_json::json;

    const HOST: &str = "nexus.acme.example:8443";

    fn component(action: &str, format: &str) -> Value {
        json!({
            "timestamp": "2026-11-10T23:57:49.664+0000",
            "nodeId": "52905B51-085CCABB-CEBBEAAD-16795588-FC927D93",
            "initiator": "ci/10.0.0.7",
            "repositoryName": "docker-hosted",
            "action": action,
            "component": {
                "id": "08909bf0c86cf6c9600aade89e1c5e25",
                "componentId": "ZG9ja2VyLWhvc3RlZDowODkwOWJmMGM4NmNmNmM5NjAwYWFkZTg5ZTFjNWUyNQ",
                "format": format,
                "name": "acme/billing-api",
                "group": null,
                "version": "v3.2.0"
            }
        })
    }

    fn run(v: &Value) -> Result<Vec<Parsed>, ParseError> {
        run_parser_with(parse, v, &[(REGISTRY_HINT_HEADER, HOST)])
    }

    #[test]
    fn a_created_docker_component_is_an_unpinned_push() {
        let v = component("CREATED", "docker");
        assert!(body_shape(&v));
        let out = run(&v).unwrap();
        let e = only_image(&out);
        assert_eq!((e.provider, e.action), (P, Action::Push));
        assert_eq!(e.image.registry.as_str(), HOST);
        assert_eq!(e.image.repository.as_str(), "acme/billing-api");
        assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("v3.2.0"));
        assert_eq!(e.image.digest, None);
        assert_eq!(
            e.occurred_at,
            Timestamp::parse("2026-11-10T23:57:49.664Z").unwrap()
        );
        assert_eq!(run(&v).unwrap(), out, "a redelivery gets the same id");
        let updated = run(&component("UPDATED", "docker")).unwrap();
        assert_eq!(only_image(&updated).action, Action::Push);
        assert_ne!(only_image(&updated).id, e.id);
    }

    #[test]
    fn a_deleted_docker_component_deletes_the_tag() {
        let out = run(&component("DELETED", "docker")).unwrap();
        let e = only_image(&out);
        assert_eq!(e.action, Action::Delete);
        assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("v3.2.0"));
    }

    #[test]
    fn other_formats_assets_and_audits_are_ignored_with_a_reason() {
        let out = run(&component("CREATED", "maven2")).unwrap();
        assert_eq!(only_ignored(&out).action, "component");
        let asset = json!({
            "timestamp": "2016-11-10T23:57:49.664+0000",
            "nodeId": "52905B51-085CCABB-CEBBEAAD-16795588-FC927D93",
            "initiator": "admin/127.0.0.1",
            "repositoryName": "npm-proxy",
            "action": "CREATED",
            "asset": {"id": "31c9", "assetId": "bnBt", "format": "npm", "name": "concrete"}
        });
        assert!(body_shape(&asset));
        let out = run(&asset).unwrap();
        let i = only_ignored(&out);
        assert_eq!(
            (i.action.as_str(), i.repository.as_deref()),
            ("asset", Some("concrete"))
        );
        let audit = json!({
            "nodeId": "7FFA7361", "initiator": "admin/127.0.0.1",
            "audit": {"domain": "security.user", "type": "created"}
        });
        assert!(body_shape(&audit));
        assert_eq!(only_ignored(&run(&audit).unwrap()).action, "audit");
    }

    #[test]
    fn a_missing_host_names_the_query_parameter() {
        let err = run_parser_with(parse, &component("CREATED", "docker"), &[]).unwrap_err();
        assert!(err.to_string().contains("?registry="), "{err}");
    }

    #[test]
    fn malformed_fields_are_refused_by_name() {
        let mut v = component("CREATED", "docker");
        v["component"].as_object_mut().unwrap().remove("version");
        let err = run(&v).unwrap_err();
        assert!(err.to_string().contains("component"), "{err}");
        assert!(err.to_string().contains("version"), "{err}");
        let mut v = component("CREATED", "docker");
        v["timestamp"] = "yesterday".into();
        assert!(matches!(run(&v), Err(ParseError::Timestamp { .. })));
        let mut v = component("CREATED", "docker");
        v["component"]["version"] = "bad:tag".into();
        assert!(matches!(run(&v), Err(ParseError::Reference { .. })));
    }

    #[test]
    fn a_body_of_another_shape_is_refused_not_ignored() {
        let err = run(&json!({"id": "1", "action": "push", "target": {}})).unwrap_err();
        assert!(err.to_string().contains("nodeId"), "{err}");
    }

    #[test]
    fn offsets_become_rfc3339() {
        assert_eq!(
            rfc3339("2016-11-10T23:57:49.664+0000"),
            "2016-11-10T23:57:49.664+00:00"
        );
        assert_eq!(
            rfc3339("2016-11-10T23:57:49.664-0530"),
            "2016-11-10T23:57:49.664-05:30"
        );
        assert_eq!(rfc3339("2016-11-10T23:57:49Z"), "2016-11-10T23:57:49Z");
        assert_eq!(rfc3339("é"), "é");
    }

    #[test]
    fn shape_and_headers() {
        assert!(!body_shape(
            &json!({"repositoryName": "r", "action": "CREATED"})
        ));
        let mut h = HeaderMap::new();
        assert!(!header_hint(&h));
        h.insert(
            "x-nexus-webhook-id",
            "rm:repository:component".parse().unwrap(),
        );
        assert!(header_hint(&h));
    }
}
