//! Azure Container Registry events delivered by Azure Event Grid, in either delivery schema:
//! the Event Grid schema (always a JSON array of `{id, eventType, eventTime, data}`) or
//! CloudEvents 1.0 structured mode (one object, or an array when batching is on, of
//! `{specversion, id, type, time, data}`). `data` is the ACR webhook body (`target`, `request`).
//! Event Grid signs nothing: auth is an Entra ID token or a custom delivery header.
//!
//! The Event Grid schema's subscription handshake (`Microsoft.EventGrid.SubscriptionValidationEvent`)
//! becomes a [`Parsed::Handshake`] carrying `{"validationResponse": <validationCode>}`. The
//! CloudEvents schema validates with an HTTP OPTIONS request instead, which never reaches a parser.
//!
//! More than half of this file is its tests: both schemas, the handshake, and batches.

use http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::acr::{Request, Target, ignored_event};
use super::common::{ParseContext, ParseError, image_ref, non_empty, timestamp, typed};
use crate::model::event::{Action, ImageEvent, Parsed, Provider};

const P: Provider = Provider::AcrEventGrid;

const ACR_PREFIX: &str = "Microsoft.ContainerRegistry.";
const IMAGE_PUSHED: &str = "Microsoft.ContainerRegistry.ImagePushed";
const IMAGE_DELETED: &str = "Microsoft.ContainerRegistry.ImageDeleted";
const CHART_PUSHED: &str = "Microsoft.ContainerRegistry.ChartPushed";
const CHART_DELETED: &str = "Microsoft.ContainerRegistry.ChartDeleted";
const SUBSCRIPTION_VALIDATION: &str = "Microsoft.EventGrid.SubscriptionValidationEvent";
const SUBSCRIPTION_DELETED: &str = "Microsoft.EventGrid.SubscriptionDeletedEvent";

/// `aeg-event-type` is sent on every Event Grid-schema delivery; a binary-mode CloudEvent names
/// its type in `ce-type`. A bare CloudEvents content type is not decisive (other senders use
/// it too), so the body's `type` decides those.
pub(super) fn header_hint(h: &HeaderMap) -> bool {
    if h.contains_key("aeg-event-type") {
        return true;
    }
    h.contains_key("ce-specversion")
        && h.get("ce-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with(ACR_PREFIX))
}

pub(super) fn body_shape(v: &Value) -> bool {
    match v {
        Value::Array(events) => events.first().is_some_and(|e| {
            str_field(e, "eventType").is_some_and(|t| t.starts_with("Microsoft."))
                || (e.get("specversion").is_some()
                    && str_field(e, "type").is_some_and(|t| t.starts_with("Microsoft.")))
        }),
        Value::Object(_) => {
            v.get("specversion").is_some()
                && str_field(v, "type").is_some_and(|t| t.starts_with(ACR_PREFIX))
        }
        _ => false,
    }
}

fn str_field<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

/// One event of either schema: the Event Grid schema's `eventType`/`eventTime` or the
/// CloudEvents `type`/`time`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    id: String,
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default, rename = "type")]
    ce_type: Option<String>,
    #[serde(default)]
    event_time: Option<String>,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    data: Option<Value>,
}

impl Envelope {
    fn kind(&self) -> Option<&str> {
        non_empty(&self.event_type).or_else(|| non_empty(&self.ce_type))
    }

    fn time(&self) -> Option<&str> {
        non_empty(&self.event_time).or_else(|| non_empty(&self.time))
    }
}

/// The ACR webhook body Event Grid carries as `data`.
#[derive(Deserialize, Default)]
struct AcrData {
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    target: Option<Target>,
    #[serde(default)]
    request: Option<Request>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ValidationData {
    validation_code: String,
}

pub(super) fn parse(v: &Value, ctx: &ParseContext<'_>) -> Result<Vec<Parsed>, ParseError> {
    let events: &[Value] = match v {
        Value::Array(events) => events,
        Value::Object(_) => std::slice::from_ref(v),
        _ => {
            return Err(ParseError::malformed(
                P,
                "expected an event object or an array of events",
            ));
        }
    };
    if events.is_empty() {
        return Err(ParseError::malformed(P, "empty event array"));
    }
    let batch = events.len() > 1;
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            parse_one(e, ctx).map_err(|err| match err {
                ParseError::Malformed { provider, message } if batch => ParseError::Malformed {
                    provider,
                    message: format!("event {i}: {message}"),
                },
                other => other,
            })
        })
        .collect()
}

fn parse_one(v: &Value, ctx: &ParseContext<'_>) -> Result<Parsed, ParseError> {
    let env: Envelope = typed(P, v)?;
    let kind = env
        .kind()
        .ok_or_else(|| ParseError::malformed(P, "event without `eventType` or `type`"))?;
    let action = match kind {
        IMAGE_PUSHED => Action::Push,
        IMAGE_DELETED => Action::Delete,
        SUBSCRIPTION_VALIDATION => return handshake(&env),
        _ => return ignored(&env, kind),
    };
    let data: AcrData = match &env.data {
        Some(d) => typed(P, d)?,
        None => {
            return Err(ParseError::malformed(
                P,
                format!("{kind} event without `data`"),
            ));
        }
    };
    let target = data
        .target
        .as_ref()
        .ok_or_else(|| ParseError::malformed(P, format!("{kind} event without `data.target`")))?;
    let host = data
        .request
        .as_ref()
        .and_then(|r| non_empty(&r.host))
        .ok_or_else(|| {
            ParseError::malformed(
                P,
                "event without `data.request.host`: the registry is unknown",
            )
        })?;
    let repository = non_empty(&target.repository)
        .ok_or_else(|| ParseError::malformed(P, "event without `data.target.repository`"))?;
    let image = image_ref(
        P,
        host,
        repository,
        non_empty(&target.tag),
        non_empty(&target.digest),
        || "event with neither `data.target.tag` nor `data.target.digest`".to_owned(),
    )?;
    let occurred_at = match env.time().or_else(|| non_empty(&data.timestamp)) {
        Some(t) => timestamp(P, t)?,
        None => ctx.received_at.clone(),
    };
    Ok(Parsed::Image(
        ImageEvent::new(env.id.clone(), P, action, image, occurred_at)
            .with_media_type(target.media_type.clone())
            .with_size(target.size),
    ))
}

fn handshake(env: &Envelope) -> Result<Parsed, ParseError> {
    let data: ValidationData = match &env.data {
        Some(d) => typed(P, d)?,
        None => {
            return Err(ParseError::malformed(
                P,
                "SubscriptionValidationEvent without `data.validationCode`",
            ));
        }
    };
    if data.validation_code.is_empty() {
        return Err(ParseError::malformed(
            P,
            "SubscriptionValidationEvent with an empty `data.validationCode`",
        ));
    }
    Ok(Parsed::Handshake(
        json!({"validationResponse": data.validation_code}),
    ))
}

/// Chart events, subscription deletions and any other event type: acknowledged, with whatever
/// reference the ACR `data` holds.
fn ignored(env: &Envelope, kind: &str) -> Result<Parsed, ParseError> {
    let reason = match kind {
        CHART_PUSHED | CHART_DELETED => "Helm chart events are not container images".to_owned(),
        SUBSCRIPTION_DELETED => "Event Grid subscription deleted: nothing to record".to_owned(),
        k if k.starts_with(ACR_PREFIX) => format!("ACR event type {k:?} is not handled"),
        k => format!("event type {k:?} is not an Azure Container Registry event"),
    };
    // Best effort only: an unexpected `data` shape must not fail an ignorable event.
    let data: AcrData = env
        .data
        .as_ref()
        .and_then(|d| AcrData::deserialize(d).ok())
        .unwrap_or_default();
    Ok(Parsed::Ignored(ignored_event(
        P,
        &env.id,
        kind,
        reason,
        data.target.as_ref(),
        data.request.as_ref(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::Timestamp;
    use crate::model::reference::{Digest, Tag};

    const D: &str = "sha256:9c4e2a7b1f3d5e6c8a0b2d4f6e8a1c3e5b7d9f0a2c4e6b8d1f3a5c7e9b0d2f4a";

    fn run(v: Value) -> Result<Vec<Parsed>, ParseError> {
        super::super::common::run_parser(parse, &v)
    }

    fn data(action: &str, tag: Option<&str>) -> Value {
        let mut target = json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "size": 2048,
            "digest": D,
            "length": 2048,
            "repository": "payments/ledger"
        });
        if let Some(t) = tag {
            target["tag"] = t.into();
        }
        json!({
            "id": "a7d3b5e1-0c2f-4e6a-9b8d-1f3e5a7c9b0d",
            "timestamp": "2026-05-06T07:08:09.987654321Z",
            "action": action,
            "target": target,
            "request": {"id": "r-1", "host": "fabrikam.azurecr.io", "method": "PUT", "useragent": "buildkit/0.16"}
        })
    }

    fn eg(kind: &str, id: &str, data: Value) -> Value {
        json!({
            "id": id,
            "topic": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/fabrikam",
            "subject": "payments/ledger:2.0.1",
            "eventType": kind,
            "eventTime": "2026-05-06T07:08:10.1234567Z",
            "data": data,
            "dataVersion": "1.0",
            "metadataVersion": "1"
        })
    }

    fn ce(kind: &str, id: &str, data: Value) -> Value {
        json!({
            "specversion": "1.0",
            "id": id,
            "source": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/fabrikam",
            "subject": "payments/ledger:2.0.1",
            "type": kind,
            "time": "2026-05-06T07:08:11.5Z",
            "data": data
        })
    }

    #[test]
    fn event_grid_schema_push_maps_every_field() {
        let v = json!([eg(IMAGE_PUSHED, "evt-push-1", data("push", Some("2.0.1")))]);
        assert!(body_shape(&v));
        let out = run(v).unwrap();
        let e = super::super::common::only_image(&out);
        assert_eq!(e.id, "evt-push-1");
        assert_eq!(e.provider, Provider::AcrEventGrid);
        assert_eq!(e.action, Action::Push);
        assert_eq!(e.image.registry.as_str(), "fabrikam.azurecr.io");
        assert_eq!(e.image.repository.as_str(), "payments/ledger");
        assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("2.0.1"));
        assert_eq!(e.image.digest.as_ref().map(Digest::as_str), Some(D));
        assert_eq!(e.occurred_at.as_str(), "2026-05-06T07:08:10.123456700Z");
        assert_eq!(
            e.media_type.as_deref(),
            Some("application/vnd.oci.image.manifest.v1+json")
        );
        assert_eq!(e.size, Some(2048));
        assert_eq!(e.scan, None);
        assert_eq!(e.reason, None);
    }

    #[test]
    fn cloudevents_object_and_batch_parse_alike() {
        let obj = ce(IMAGE_PUSHED, "ce-1", data("push", Some("2.0.1")));
        assert!(body_shape(&obj));
        let out = run(obj.clone()).unwrap();
        let e = super::super::common::only_image(&out);
        assert_eq!(e.id, "ce-1");
        assert_eq!(e.action, Action::Push);
        assert_eq!(e.occurred_at.as_str(), "2026-05-06T07:08:11.500000000Z");
        let mut second = ce(IMAGE_DELETED, "ce-2", data("delete", None));
        second["time"] = "2026-05-06T08:00:00Z".into();
        let batch = json!([obj, second]);
        assert!(body_shape(&batch));
        let out = run(batch).unwrap();
        let [Parsed::Image(a), Parsed::Image(b)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!((a.id.as_str(), a.action), ("ce-1", Action::Push));
        assert_eq!((b.id.as_str(), b.action), ("ce-2", Action::Delete));
        assert_eq!(b.image.tag, None);
        assert_eq!(b.image.digest.as_ref().map(Digest::as_str), Some(D));
    }

    #[test]
    fn delete_without_tag_is_digest_only() {
        let out = run(json!([eg(IMAGE_DELETED, "evt-del", data("delete", None))])).unwrap();
        let e = super::super::common::only_image(&out);
        assert_eq!(e.action, Action::Delete);
        assert_eq!(e.image.tag, None);
        assert_eq!(e.image.digest.as_ref().map(Digest::as_str), Some(D));
    }

    #[test]
    fn time_falls_back_to_data_timestamp_then_arrival() {
        let mut v = ce(IMAGE_PUSHED, "ce-t", data("push", Some("1")));
        v.as_object_mut().unwrap().remove("time");
        let out = run(v.clone()).unwrap();
        assert_eq!(
            super::super::common::only_image(&out).occurred_at.as_str(),
            "2026-05-06T07:08:09.987654321Z"
        );
        v["data"].as_object_mut().unwrap().remove("timestamp");
        let out = run(v).unwrap();
        assert_eq!(
            super::super::common::only_image(&out).occurred_at,
            Timestamp::from_unix(1_767_225_600).unwrap()
        );
    }

    #[test]
    fn subscription_validation_is_a_handshake() {
        let v = json!([{
            "id": "f1e2d3c4-0000-4000-8000-000000000001",
            "topic": "/subscriptions/0000",
            "subject": "",
            "data": {"validationCode": "c0ffee00-1234-4abc-8def-0123456789ab",
                     "validationUrl": "https://rp-westeurope.eventgrid.azure.net:553/eventsubscriptions/s/validate?id=1"},
            "eventType": SUBSCRIPTION_VALIDATION,
            "eventTime": "2026-05-06T07:00:00Z",
            "metadataVersion": "1",
            "dataVersion": "1"
        }]);
        assert!(body_shape(&v));
        let out = run(v.clone()).unwrap();
        assert_eq!(
            out,
            vec![Parsed::Handshake(
                json!({"validationResponse": "c0ffee00-1234-4abc-8def-0123456789ab"})
            )]
        );
        let mut bad = v;
        bad[0]["data"] = json!({});
        assert!(matches!(run(bad), Err(ParseError::Malformed { .. })));
    }

    #[test]
    fn charts_and_foreign_types_are_ignored_in_a_batch() {
        let chart = json!({
            "id": "chart-data",
            "timestamp": "2026-05-06T07:08:09+00:00",
            "action": "chart_push",
            "target": {"mediaType": "application/vnd.acr.helm.chart", "size": 1,
                       "digest": "sha256:not-checked", "repository": "charts",
                       "tag": "ledger-2.0.1.tgz", "name": "ledger", "version": "2.0.1"}
        });
        let v = json!([
            eg(CHART_PUSHED, "evt-chart", chart),
            eg(IMAGE_PUSHED, "evt-img", data("push", Some("2.0.1"))),
            eg("Microsoft.Storage.BlobCreated", "evt-blob", json!("opaque")),
            eg(SUBSCRIPTION_DELETED, "evt-gone", json!({})),
        ]);
        let out = run(v).unwrap();
        let [
            Parsed::Ignored(c),
            Parsed::Image(i),
            Parsed::Ignored(b),
            Parsed::Ignored(g),
        ] = out.as_slice()
        else {
            panic!("{out:?}")
        };
        assert_eq!(c.action, CHART_PUSHED);
        assert!(c.reason.contains("Helm"));
        assert_eq!(c.id.as_deref(), Some("evt-chart"));
        assert_eq!(c.repository.as_deref(), Some("charts"));
        assert_eq!(c.tag.as_deref(), Some("ledger-2.0.1.tgz"));
        assert_eq!(c.registry, None);
        assert_eq!(i.id, "evt-img");
        assert_eq!(b.action, "Microsoft.Storage.BlobCreated");
        assert!(b.reason.contains("not an Azure Container Registry event"));
        assert!(g.reason.contains("subscription deleted"));
    }

    #[test]
    fn invalid_references_are_reference_errors() {
        let mut d = data("push", Some("2.0.1"));
        d["target"]["digest"] = "sha256:abc".into();
        assert!(matches!(
            run(json!([eg(IMAGE_PUSHED, "x", d)])),
            Err(ParseError::Reference { .. })
        ));
        let mut d = data("push", Some("2.0.1"));
        d["target"]["repository"] = "Payments/Ledger".into();
        assert!(matches!(
            run(ce(IMAGE_PUSHED, "x", d)),
            Err(ParseError::Reference { .. })
        ));
        let d = data("push", Some("-bad"));
        assert!(matches!(
            run(ce(IMAGE_PUSHED, "x", d)),
            Err(ParseError::Reference { .. })
        ));
    }

    #[test]
    fn missing_fields_are_malformed_and_named() {
        let mut d = data("push", Some("1"));
        d.as_object_mut().unwrap().remove("request");
        let err = run(json!([eg(IMAGE_PUSHED, "x", d)])).unwrap_err();
        assert!(err.to_string().contains("data.request.host"), "{err}");
        let mut d = data("push", Some("1"));
        d["target"]["repository"] = "".into();
        let err = run(json!([eg(IMAGE_PUSHED, "x", d)])).unwrap_err();
        assert!(err.to_string().contains("data.target.repository"), "{err}");
        let mut d = data("push", None);
        d["target"].as_object_mut().unwrap().remove("digest");
        let err = run(json!([eg(IMAGE_PUSHED, "x", d)])).unwrap_err();
        assert!(err.to_string().contains("neither"), "{err}");
        let mut v = eg(IMAGE_PUSHED, "x", data("push", Some("1")));
        v.as_object_mut().unwrap().remove("data");
        let err = run(json!([eg(CHART_PUSHED, "c", json!({})), v])).unwrap_err();
        assert!(err.to_string().contains("event 1:"), "{err}");
        assert!(matches!(run(json!([])), Err(ParseError::Malformed { .. })));
        let mut v = eg(IMAGE_PUSHED, "x", data("push", Some("1")));
        v["eventTime"] = "yesterday".into();
        assert!(matches!(run(json!([v])), Err(ParseError::Timestamp { .. })));
    }

    #[test]
    fn body_shape_claims_only_microsoft_events() {
        assert!(!body_shape(&json!([])));
        assert!(!body_shape(&json!([{"eventType": "push"}])));
        assert!(!body_shape(&json!({"eventType": IMAGE_PUSHED})));
        assert!(!body_shape(
            &json!({"specversion": "1.0", "type": "harbor.artifact.pushed"})
        ));
        assert!(!body_shape(
            &json!({"specversion": "1.0", "type": "Microsoft.Storage.BlobCreated"})
        ));
        assert!(!body_shape(&json!([{"type": IMAGE_PUSHED}])));
        assert!(body_shape(
            &json!([{"specversion": "1.0", "type": IMAGE_DELETED}])
        ));
        assert!(!body_shape(&json!({"events": []})));
    }

    #[test]
    fn header_hints() {
        let mut h = HeaderMap::new();
        assert!(!header_hint(&h));
        h.insert(
            "content-type",
            "application/cloudevents+json".parse().unwrap(),
        );
        assert!(!header_hint(&h));
        h.insert("aeg-event-type", "Notification".parse().unwrap());
        assert!(header_hint(&h));
        let mut h = HeaderMap::new();
        h.insert("ce-specversion", "1.0".parse().unwrap());
        h.insert("ce-type", "harbor.artifact.pushed".parse().unwrap());
        assert!(!header_hint(&h));
        h.insert("ce-type", IMAGE_PUSHED.parse().unwrap());
        assert!(header_hint(&h));
    }
}
