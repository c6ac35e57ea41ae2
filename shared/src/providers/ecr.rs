//! Amazon ECR events as an EventBridge API destination POSTs them: the bare event JSON
//! (`detail-type`, `source`, kebab-case `detail`). ECR has no webhooks of its own.
//! The registry is `<account>.dkr.ecr.<region>.amazonaws.com`.

use http::HeaderMap;
use serde_json::Value;

use super::common::{ParseContext, ParseError, image_ref, non_empty, timestamp, typed};
use super::eventbridge::{Envelope, ImageAction, ignored, registry_host};
use crate::model::event::{Action, ImageEvent, Parsed, Provider};
use crate::model::reference::Registry;

const P: Provider = Provider::EcrEventbridge;

pub(super) fn header_hint(h: &HeaderMap) -> bool {
    super::common::user_agent_starts_with(h, "Amazon/EventBridge/ApiDestinations")
}

pub(super) fn body_shape(v: &Value) -> bool {
    v.get("detail-type").is_some_and(Value::is_string)
        && v.get("source").is_some_and(Value::is_string)
        && v.get("detail").is_some_and(Value::is_object)
}

pub(super) fn parse(v: &Value, ctx: &ParseContext<'_>) -> Result<Vec<Parsed>, ParseError> {
    let env: Envelope = typed(P, v)?;
    match (env.source.as_str(), env.detail_type.as_str()) {
        ("aws.ecr", "ECR Image Action") => {}
        ("aws.ecr", "ECR Replication Action") => return parse_replication(&env, ctx),
        ("aws.ecr", "ECR Image Scan") | ("aws.inspector2", "Inspector2 Scan") => {
            return super::ecr_scan::parse_scan(&env, ctx);
        }
        ("aws.inspector2", "Inspector2 Finding") => {
            return super::ecr_scan::parse_finding(&env, ctx);
        }
        _ => {
            let reason = format!(
                "{} events from {} are not handled by this function",
                env.detail_type, env.source
            );
            return Ok(vec![Parsed::Ignored(ignored(
                &env,
                None,
                &env.detail_type,
                reason,
            ))]);
        }
    }
    let detail: ImageAction = typed(P, &env.detail)?;
    let action_type = detail.action_type.as_deref().unwrap_or_default();
    let result = detail.result.as_deref().unwrap_or_default();
    let action = match (action_type, result) {
        ("PUSH", "SUCCESS") => Action::Push,
        ("DELETE", "SUCCESS") => Action::Delete,
        (a, r) => {
            let reason = if r == "SUCCESS" {
                format!("ECR action type {a:?} is not handled")
            } else {
                format!("ECR reported {a} with result {r:?}: nothing to apply")
            };
            return Ok(vec![Parsed::Ignored(ignored(
                &env,
                Some(&detail),
                &a.to_ascii_lowercase(),
                reason,
            ))]);
        }
    };
    let (account, region) = match (non_empty(&env.account), non_empty(&env.region)) {
        (Some(a), Some(r)) => (a, r),
        _ => {
            return Err(ParseError::malformed(
                P,
                "event without `account` and `region`: the registry is unknown",
            ));
        }
    };
    let image = ecr_image(
        (account, region),
        &detail.repository_name,
        detail.tag_and_digest(),
    )?;
    let occurred_at = event_time(env.time.as_ref(), ctx)?;
    Ok(vec![Parsed::Image(
        ImageEvent::new(env.id.clone(), P, action, image, occurred_at)
            // A push lands in the registry of its own Region first.
            .with_region(Some(region.to_owned()))
            .with_media_type(detail.manifest_media_type.clone()),
    )])
}

/// "ECR Replication Action": the event comes from the destination Region and account; the image
/// it concerns is the source's, so the arrival is recorded on the source registry's image.
fn parse_replication(env: &Envelope, ctx: &ParseContext<'_>) -> Result<Vec<Parsed>, ParseError> {
    let detail: ImageAction = typed(P, &env.detail)?;
    let action = match detail.result.as_deref().unwrap_or_default() {
        "SUCCESS" => Action::Replicate,
        "FAILED" | "FAILURE" => Action::ReplicationFailed,
        other => {
            return Err(ParseError::malformed(
                P,
                format!("replication result {other:?}: expected SUCCESS or FAILED"),
            ));
        }
    };
    let (Some(dest_region), Some(source_account), Some(source_region)) = (
        non_empty(&env.region),
        non_empty(&detail.source_account).or(non_empty(&env.account)),
        non_empty(&detail.source_region),
    ) else {
        return Err(ParseError::malformed(
            P,
            "replication event without `region` and `detail.source-region`",
        ));
    };
    let image = ecr_image(
        (source_account, source_region),
        &detail.repository_name,
        detail.tag_and_digest(),
    )?;
    if image.digest.is_none() {
        return Err(ParseError::malformed(
            P,
            "replication event without `image-digest`",
        ));
    }
    // A cross-account replica is named by account and Region, a same-account one by Region.
    let region = match non_empty(&env.account) {
        Some(a) if a != source_account => format!("{a}:{dest_region}"),
        _ => dest_region.to_owned(),
    };
    // The replica is the same repository under the destination account's Region's registry.
    let replica = registry_host(
        non_empty(&env.account).unwrap_or(source_account),
        dest_region,
    );
    let replica = Registry::parse(&replica)
        .map_err(|_| ParseError::malformed(P, "replication event with an invalid `region`"))?;
    let occurred_at = event_time(env.time.as_ref(), ctx)?;
    let reason = (action == Action::ReplicationFailed)
        .then(|| format!("ECR could not replicate the image to {region}"));
    Ok(vec![Parsed::Image(
        ImageEvent::new(env.id.clone(), P, action, image, occurred_at)
            .with_region(Some(region))
            .with_replica_registry(Some(replica))
            .with_reason(reason),
    )])
}

/// The image an ECR event names, in the registry of `(account, region)`.
fn ecr_image(
    (account, region): (&str, &str),
    repository: &Option<String>,
    (tag, digest): (&Option<String>, &Option<String>),
) -> Result<crate::model::reference::ImageRef, ParseError> {
    let repository = non_empty(repository)
        .ok_or_else(|| ParseError::malformed(P, "event without `detail.repository-name`"))?;
    image_ref(
        P,
        &registry_host(account, region),
        repository,
        non_empty(tag),
        non_empty(digest),
        || "event with neither `image-tag` nor `image-digest`".to_owned(),
    )
}

/// The event's `time`, or when it was received if it has none.
fn event_time(
    time: Option<&String>,
    ctx: &ParseContext<'_>,
) -> Result<crate::model::event::Timestamp, ParseError> {
    match time.filter(|t| !t.is_empty()) {
        Some(t) => timestamp(P, t),
        None => Ok(ctx.received_at.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::reference::{Digest, Tag};

    const D: &str = "sha256:9b2e0c6f1d8a7e5c4b3a291807f6e5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c";

    fn run(v: Value) -> Result<Vec<Parsed>, ParseError> {
        super::super::common::run_parser(parse, &v)
    }

    fn event(action: &str, result: &str, tag: Option<&str>) -> Value {
        let mut detail = serde_json::json!({"result": result, "repository-name": "shop/api",
            "image-digest": D, "action-type": action});
        if let Some(t) = tag {
            detail["image-tag"] = t.into();
        }
        serde_json::json!({"version": "0", "id": "0b8e4c1a-2d3f-4a5b-8c9d-0e1f2a3b4c5d",
            "detail-type": "ECR Image Action", "source": "aws.ecr", "account": "210987654321",
            "time": "2026-05-06T07:08:09Z", "region": "eu-central-1", "resources": [], "detail": detail})
    }

    #[test]
    fn replication_marks_the_destination_on_the_source_image() {
        let v = serde_json::json!({"version": "0", "id": "r-1", "detail-type": "ECR Replication Action",
            "source": "aws.ecr", "account": "210987654321", "time": "2026-05-06T07:08:09Z",
            "region": "us-east-1", "resources": [],
            "detail": {"result": "SUCCESS", "repository-name": "shop/api", "image-digest": D,
                       "source-account": "210987654321", "action-type": "REPLICATE",
                       "source-region": "eu-central-1", "image-tag": "2.0.1"}});
        let out = run(v.clone()).unwrap();
        let [Parsed::Image(e)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(e.action, Action::Replicate);
        assert_eq!(e.region.as_deref(), Some("us-east-1"));
        assert_eq!(
            e.image.registry.as_str(),
            "210987654321.dkr.ecr.eu-central-1.amazonaws.com"
        );
        let mut failed = v.clone();
        failed["detail"]["result"] = "FAILED".into();
        failed["account"] = "111122223333".into();
        let out = run(failed).unwrap();
        let [Parsed::Image(e)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(e.action, Action::ReplicationFailed);
        assert_eq!(e.region.as_deref(), Some("111122223333:us-east-1"));
        let mut odd = v;
        odd["detail"]["result"] = "MAYBE".into();
        assert!(run(odd).is_err());
    }

    #[test]
    fn push_maps_every_field() {
        let out = run(event("PUSH", "SUCCESS", Some("2.0.1"))).unwrap();
        let [Parsed::Image(e)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(e.id, "0b8e4c1a-2d3f-4a5b-8c9d-0e1f2a3b4c5d");
        assert_eq!(e.provider, Provider::EcrEventbridge);
        assert_eq!(e.action, Action::Push);
        assert_eq!(
            e.image.registry.as_str(),
            "210987654321.dkr.ecr.eu-central-1.amazonaws.com"
        );
        assert_eq!(e.image.repository.as_str(), "shop/api");
        assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("2.0.1"));
        assert_eq!(e.image.digest.as_ref().map(Digest::as_str), Some(D));
        assert_eq!(e.occurred_at.as_str(), "2026-05-06T07:08:09.000000000Z");
    }

    #[test]
    fn untagged_push_has_no_tag() {
        let out = run(event("PUSH", "SUCCESS", None)).unwrap();
        let [Parsed::Image(e)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(e.image.tag, None);
    }

    #[test]
    fn failed_push_and_other_action_types_are_ignored() {
        let out = run(event("PUSH", "FAILURE", Some("1"))).unwrap();
        let [Parsed::Ignored(i)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert!(i.reason.contains("FAILURE"), "{}", i.reason);
        let out = run(event("UPDATE_STORAGE_CLASS", "SUCCESS", None)).unwrap();
        let [Parsed::Ignored(i)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert!(i.reason.contains("UPDATE_STORAGE_CLASS"));
    }

    #[test]
    fn delete_becomes_a_delete_event() {
        let out = run(event("DELETE", "SUCCESS", Some("old"))).unwrap();
        let [Parsed::Image(e)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(e.action, Action::Delete);
    }

    #[test]
    fn other_detail_types_are_ignored() {
        let mut v = event("PUSH", "SUCCESS", Some("1"));
        v["detail-type"] = "ECR Image Scan".into();
        let out = run(v).unwrap();
        let [Parsed::Ignored(i)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(i.action, "ECR Image Scan");
        assert_eq!(i.repository.as_deref(), Some("shop/api"));
    }

    #[test]
    fn short_digest_is_a_reference_error() {
        let mut v = event("PUSH", "SUCCESS", Some("1"));
        v["detail"]["image-digest"] = "sha256:7f5b2640fe6fb4f4".into();
        assert!(matches!(run(v), Err(ParseError::Reference { .. })));
    }
}
