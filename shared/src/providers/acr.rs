//! Azure Container Registry native webhooks: one JSON object per request, camelCase,
//! `action` = push | delete | quarantine | chart_push | chart_delete | ping.
//! The registry host comes from `request.host`; ACR signs nothing (auth is a custom header).

use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::common::{ParseContext, ParseError, image_ref, non_empty, timestamp, typed};
use crate::model::event::{Action, IgnoredEvent, ImageEvent, Parsed, Provider};

const P: Provider = Provider::Acr;

pub(super) fn header_hint(h: &HeaderMap) -> bool {
    super::common::user_agent_starts_with(h, "AzureContainerRegistry/")
}

pub(super) fn body_shape(v: &Value) -> bool {
    v.get("action").is_some_and(Value::is_string)
        && v.get("id").is_some()
        && v.get("timestamp").is_some()
        && (v.get("target").is_some_and(Value::is_object)
            || v.get("action").and_then(Value::as_str) == Some("ping"))
}

#[derive(Deserialize)]
struct Body {
    id: String,
    timestamp: String,
    action: String,
    #[serde(default)]
    target: Option<Target>,
    #[serde(default)]
    request: Option<Request>,
}

/// ACR's `target`, the same in its webhooks and in its Event Grid events' `data`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Target {
    #[serde(default)]
    pub(super) media_type: Option<String>,
    #[serde(default)]
    pub(super) size: Option<u64>,
    #[serde(default)]
    pub(super) digest: Option<String>,
    #[serde(default)]
    pub(super) repository: Option<String>,
    #[serde(default)]
    pub(super) tag: Option<String>,
}

/// ACR's `request`: its `host` is the registry.
#[derive(Deserialize)]
pub(super) struct Request {
    #[serde(default)]
    pub(super) host: Option<String>,
}

pub(super) fn parse(v: &Value, _ctx: &ParseContext<'_>) -> Result<Vec<Parsed>, ParseError> {
    let body: Body = typed(P, v)?;
    let action = match body.action.as_str() {
        "push" => Action::Push,
        "delete" => Action::Delete,
        "quarantine" => Action::Quarantine,
        other => return Ok(vec![Parsed::Ignored(ignored(&body, other))]),
    };
    let target = body.target.as_ref().ok_or_else(|| {
        ParseError::malformed(P, format!("{} event without `target`", body.action))
    })?;
    let host = body
        .request
        .as_ref()
        .and_then(|r| non_empty(&r.host))
        .ok_or_else(|| {
            ParseError::malformed(P, "event without `request.host`: the registry is unknown")
        })?;
    let repository = non_empty(&target.repository)
        .ok_or_else(|| ParseError::malformed(P, "event without `target.repository`"))?;
    let image = image_ref(
        P,
        host,
        repository,
        non_empty(&target.tag),
        non_empty(&target.digest),
        || "event with neither `target.tag` nor `target.digest`".to_owned(),
    )?;
    let occurred_at = timestamp(P, &body.timestamp)?;
    Ok(vec![Parsed::Image(
        ImageEvent::new(body.id.clone(), P, action, image, occurred_at)
            .with_media_type(target.media_type.clone())
            .with_size(target.size)
            .with_reason(
                (action == Action::Quarantine)
                    .then(|| "quarantined by Azure Container Registry".to_owned()),
            ),
    )])
}

fn ignored(body: &Body, action: &str) -> IgnoredEvent {
    let reason = match action {
        "ping" => "ping acknowledged".to_owned(),
        "chart_push" | "chart_delete" => "Helm chart events are not container images".to_owned(),
        other => format!("ACR action {other:?} is not handled"),
    };
    ignored_event(
        P,
        &body.id,
        action,
        reason,
        body.target.as_ref(),
        body.request.as_ref(),
    )
}

/// An ignored ACR event (webhook or Event Grid), with what it named of the image.
pub(super) fn ignored_event(
    provider: Provider,
    id: &str,
    action: &str,
    reason: String,
    target: Option<&Target>,
    request: Option<&Request>,
) -> IgnoredEvent {
    IgnoredEvent {
        id: Some(id.to_owned()),
        provider,
        action: action.to_owned(),
        reason,
        registry: request.and_then(|r| r.host.clone()),
        repository: target.and_then(|t| t.repository.clone()),
        tag: target.and_then(|t| t.tag.clone()),
        digest: target.and_then(|t| t.digest.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::reference::{Digest, Tag};

    const D: &str = "sha256:3f1c6f5b0e3a4d2f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f";

    fn run(v: Value) -> Result<Vec<Parsed>, ParseError> {
        super::super::common::run_parser(parse, &v)
    }

    fn push(tag: &str, digest: &str) -> Value {
        serde_json::json!({
            "id": "6c1f3c8e-1111-4a2b-9c3d-0123456789ab",
            "timestamp": "2026-03-04T05:06:07.123456789Z",
            "action": "push",
            "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1234,
                       "digest": digest, "length": 1234, "repository": "shop/api", "tag": tag},
            "request": {"id": "r1", "host": "contoso.azurecr.io", "method": "PUT", "useragent": "docker/27"}
        })
    }

    #[test]
    fn push_maps_every_field() {
        let out = run(push("v1.4.2", D)).unwrap();
        let [Parsed::Image(e)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(e.id, "6c1f3c8e-1111-4a2b-9c3d-0123456789ab");
        assert_eq!(e.provider, Provider::Acr);
        assert_eq!(e.action, Action::Push);
        assert_eq!(e.image.registry.as_str(), "contoso.azurecr.io");
        assert_eq!(e.image.repository.as_str(), "shop/api");
        assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("v1.4.2"));
        assert_eq!(e.image.digest.as_ref().map(Digest::as_str), Some(D));
        assert_eq!(e.occurred_at.as_str(), "2026-03-04T05:06:07.123456789Z");
        assert_eq!(
            e.media_type.as_deref(),
            Some("application/vnd.oci.image.manifest.v1+json")
        );
        assert_eq!(e.size, Some(1234));
    }

    #[test]
    fn empty_tag_is_a_digest_only_push() {
        let out = run(push("", D)).unwrap();
        let [Parsed::Image(e)] = out.as_slice() else {
            panic!()
        };
        assert_eq!(e.image.tag, None);
    }

    #[test]
    fn masked_digest_is_a_reference_error() {
        let err = run(push("v1", "sha256:xxxx")).unwrap_err();
        assert!(matches!(err, ParseError::Reference { .. }), "{err}");
    }

    #[test]
    fn ping_and_chart_events_are_ignored_with_a_reason() {
        let ping =
            serde_json::json!({"id": "p", "timestamp": "2026-01-01T00:00:00Z", "action": "ping"});
        let out = run(ping).unwrap();
        let [Parsed::Ignored(i)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(i.action, "ping");
        assert_eq!(i.reason, "ping acknowledged");
        let mut chart = push("wordpress-5.4.0.tgz", "sha256:xxxx");
        chart["action"] = "chart_push".into();
        let out = run(chart).unwrap();
        let [Parsed::Ignored(i)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert!(i.reason.contains("Helm"));
    }

    #[test]
    fn delete_and_quarantine_become_their_actions() {
        let mut d = push("", D);
        d["action"] = "delete".into();
        let out = run(d).unwrap();
        let [Parsed::Image(e)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(e.action, Action::Delete);
        let mut q = push("1", D);
        q["action"] = "quarantine".into();
        let out = run(q).unwrap();
        let [Parsed::Image(e)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(e.action, Action::Quarantine);
    }

    #[test]
    fn missing_host_or_repository_is_malformed() {
        let mut v = push("v1", D);
        v["request"] = serde_json::json!({});
        assert!(run(v).unwrap_err().to_string().contains("request.host"));
        let mut v = push("v1", D);
        v["target"]["repository"] = "".into();
        assert!(
            run(v)
                .unwrap_err()
                .to_string()
                .contains("target.repository")
        );
        let mut v = push("v1", D);
        v["timestamp"] = "not a time".into();
        assert!(matches!(run(v), Err(ParseError::Timestamp { .. })));
    }
}
