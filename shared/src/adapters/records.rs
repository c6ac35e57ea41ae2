//! Stored items to typed records, for both stores: DynamoDB items become the same JSON maps the
//! embedded store keeps, and this is where either turns into what the pipeline reads. An item
//! is read by its `type` attribute; an attribute that is absent, empty (DynamoDB updates copy
//! `""` where there was nothing) or of the wrong shape reads as none.

use serde_json::Value;

use crate::model::event::Provider;
use crate::model::payload::UrlHints;
use crate::model::quarantine::{Hold, Holds, SOURCES, legacy_source};
use crate::model::records::{
    Applied, BlockedRecord, DeploymentRecord, Desired, GateRecord, GateStatus, HistoryApplied,
    HistoryRecord, HistoryService, ImageRecord, ImageStatus, ImageTagRecord, KeptPayload, Lease,
    ManualRequestRecord, Quarantine, ReceiptRecord, ReceiptStatus, Record, RegionRecord,
    RolloutRecord, ServiceRecord, StageMark, TagRecord,
};
use crate::ports::store::{Item, StoreError};

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The strings of a string-set (or list) attribute; none when absent.
pub(crate) fn texts(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A digest's holds: the `holds` map (source → reason, time, event) and `hold_releases` (source
/// → time). An item written before holds were kept per source has one quarantine and one
/// release time, which read as that source's hold and as every source's release.
fn holds(item: &Item) -> Holds {
    let at = |a: &str| text(item.get(a));
    let version = item
        .get("holds_version")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let mut h = Holds {
        version,
        ..Holds::default()
    };
    match item.get("holds").and_then(Value::as_object) {
        Some(map) => {
            for (source, v) in map {
                h.held.push(Hold {
                    source: source.clone(),
                    reason: text(v.get("reason")).unwrap_or_default(),
                    at: text(v.get("at")).unwrap_or_default(),
                    event: text(v.get("event")),
                });
            }
            h.held.sort_by(|a, b| a.source.cmp(&b.source));
            if let Some(map) = item.get("hold_releases").and_then(Value::as_object) {
                for (source, t) in map {
                    if let Some(t) = t.as_str() {
                        h.released.insert(source.clone(), t.to_owned());
                    }
                }
            }
        }
        None => {
            if let Some(reason) = at("quarantine_reason") {
                h.held.push(Hold {
                    source: legacy_source(at("quarantine_source").as_deref()),
                    reason,
                    at: at("quarantined_at").unwrap_or_default(),
                    event: None,
                });
            }
            if let Some(t) = at("released_at") {
                for s in SOURCES {
                    h.released.insert(s.to_owned(), t.clone());
                }
            }
        }
    }
    h
}

/// The typed record an item holds. An item whose required attributes are missing is corrupt:
/// the pipeline wrote every one of them.
pub fn decode(item: &Item) -> Result<Record, StoreError> {
    let at = |a: &str| text(item.get(a));
    let required = |a: &str| {
        at(a).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "a {} record has no {a}",
                at("type").unwrap_or_default()
            ))
        })
    };
    Ok(match at("type").as_deref().unwrap_or_default() {
        "receipt" => Record::Receipt(ReceiptRecord {
            // Receipts written before they had a status were complete.
            status: at("status")
                .and_then(|s| ReceiptStatus::parse(&s))
                .unwrap_or(ReceiptStatus::Done),
            occurred_at: at("occurred_at"),
            received_at: at("received_at"),
            payload: item.get("payload").and_then(Value::as_object).map(|p| {
                let p = |a: &str| text(p.get(a));
                KeptPayload {
                    body: p("body"),
                    sha256: p("sha256"),
                    size: item
                        .get("payload")
                        .and_then(|v| v.get("size"))
                        .and_then(Value::as_u64),
                    hints: UrlHints {
                        provider: p("provider").as_deref().and_then(Provider::parse),
                        registry: p("registry_hint"),
                        region: p("region"),
                    },
                }
            }),
        }),
        "image" => Record::Image(ImageRecord {
            digest: at("digest"),
            status: at("status").and_then(|s| ImageStatus::parse(&s)),
            legacy_tags: texts(item.get("tags")),
            last_pushed_at: at("last_pushed_at"),
            deleted_at: at("deleted_at"),
            released_at: at("released_at"),
            quarantine: at("quarantine_reason").map(|reason| Quarantine {
                reason,
                source: at("quarantine_source"),
            }),
            holds: holds(item),
            legacy_regions: texts(item.get("regions")),
            legacy_region_arrivals: item.get("region_arrivals").cloned(),
            legacy_replication_failures: item.get("replication_failures").cloned(),
        }),
        "image_tag" => Record::ImageTag(ImageTagRecord {
            digest: required("digest")?,
            tag: required("tag")?,
        }),
        "region" => Record::Region(RegionRecord {
            digest: required("digest")?,
            region: required("region")?,
            registry: at("registry"),
            arrived_at: at("arrived_at"),
            arrival_event: at("arrival_event"),
            failed_at: at("failed_at"),
            failure_event: at("failure_event"),
            failure_reason: at("failure_reason"),
            failures: item.get("failures").and_then(Value::as_u64).unwrap_or(0),
        }),
        "tag" => Record::Tag(TagRecord {
            tag: required("tag")?,
            digest: at("digest"),
            event_id: at("event_id"),
        }),
        "service" => Record::Service(ServiceRecord {
            cluster: required("cluster")?,
            service: required("service")?,
            digest: at("digest"),
            tag: at("tag"),
            image: at("image"),
            task_definition_arn: at("task_definition_arn"),
            previous_image: at("previous_image"),
            previous_task_definition: at("previous_task_definition"),
            drift: at("drift_image"),
            legacy_failed_digests: texts(item.get("failed_digests")),
            desired: match (
                at("desired_event"),
                at("desired_image"),
                at("desired_order"),
            ) {
                (Some(event), Some(image), Some(order)) => Some(Desired {
                    event,
                    image,
                    order,
                    container: at("desired_container"),
                    stage: at("desired_stage"),
                    replicas: at("desired_replicas")
                        .map(|r| r.split(',').map(str::to_owned).collect())
                        .unwrap_or_default(),
                }),
                _ => None,
            },
            applied: match (at("applied_event"), at("applied_at")) {
                (Some(event), Some(at_)) => Some(Applied {
                    event,
                    outcome: at("applied_outcome").unwrap_or_default(),
                    at: at_,
                }),
                _ => None,
            },
            lease: match (at("lease_holder"), at("lease_until")) {
                (Some(holder), Some(until)) => Some(Lease { holder, until }),
                _ => None,
            },
        }),
        "blocked" => Record::Blocked(BlockedRecord {
            digest: required("digest")?,
            cluster: required("cluster")?,
            service: required("service")?,
            container: at("container"),
            stage: at("stage"),
            tag: at("tag"),
            waiting_region: at("waiting_region"),
            event: at("event"),
            pushed_at: at("pushed_at"),
            blocked_at: at("blocked_at"),
        }),
        "rollout" => Record::Rollout(RolloutRecord {
            deployment_sk: required("deployment_sk")?,
            digest: at("digest"),
            image: at("image"),
        }),
        "history" => Record::History(HistoryRecord {
            stage: at("stage"),
            kind: at("kind"),
            outcome: at("outcome"),
            reason: at("reason"),
            tag: at("tag"),
            digest: at("digest"),
            pushed_at: at("pushed_at").unwrap_or_default(),
            push_event: at("push_event"),
            event: at("event").unwrap_or_default(),
            at: at("at"),
            received_at: at("received_at"),
            by: at("by"),
            forced_over: at("forced_over"),
            force_reason: at("force_reason"),
            rolled_back_from: at("rolled_back_from"),
            services: item
                .get("services")
                .and_then(Value::as_array)
                .map(|list| list.iter().filter_map(history_service).collect())
                .unwrap_or_default(),
        }),
        "history_applied" => Record::HistoryApplied(HistoryApplied {
            stage: at("stage"),
            push_event: required("push_event")?,
            cluster: required("cluster")?,
            service: required("service")?,
            outcome: required("outcome")?,
            at: at("at").unwrap_or_default(),
            task_definition: at("task_definition"),
            reason: at("reason"),
            by: at("by"),
        }),
        "deployment" => Record::Deployment(DeploymentRecord {
            // Items of every version had these; read leniently all the same, since a
            // service's deployments are listed together and one odd item must not hide the
            // others.
            event: at("event").unwrap_or_default(),
            outcome: at("outcome").unwrap_or_default(),
            image: at("to").unwrap_or_default(),
            recorded_at: at("recorded_at").unwrap_or_default(),
            task_definition: at("task_definition"),
            stage: at("stage"),
            reason: at("reason"),
            ecs_deployment_id: at("ecs_deployment_id"),
            state: at("state"),
            state_at: at("state_at"),
        }),
        "manual_request" => Record::ManualRequest(ManualRequestRecord {
            request_id: required("request_id")?,
            action: required("action")?,
            status: at("status")
                .and_then(|s| ReceiptStatus::parse(&s))
                .ok_or_else(|| {
                    StoreError::Corrupt("a manual_request record has no status".into())
                })?,
            cluster: required("cluster")?,
            service: required("service")?,
            image: required("image")?,
            order: required("order")?,
            fingerprint: required("fingerprint")?,
            by: required("by")?,
            force_reason: at("force_reason"),
            result: item.get("result").filter(|v| v.is_object()).cloned(),
        }),
        "gate" => Record::Gate(GateRecord {
            id: required("id")?,
            status: at("status")
                .and_then(|s| GateStatus::parse(&s))
                .ok_or_else(|| StoreError::Corrupt("a gate record has no known status".into()))?,
            cluster: required("cluster")?,
            service: required("service")?,
            container: at("container"),
            stage: at("stage"),
            image: required("image")?,
            digest: required("digest")?,
            event: required("event")?,
            pushed_at: required("pushed_at")?,
            order: required("order")?,
            received_at: at("received_at"),
            required: item
                .get("required")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            approvers: texts(item.get("approvers")),
            expires_secs: item
                .get("expires_secs")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            deadline: at("deadline"),
            after: at("after"),
            soak_secs: item.get("soak_secs").and_then(Value::as_u64).unwrap_or(0),
            reason: at("reason"),
            created_at: required("created_at")?,
            decided_by: at("decided_by"),
            decided_at: at("decided_at"),
            outcome: at("outcome"),
            task_definition: at("task_definition"),
            version: item.get("version").and_then(Value::as_u64).unwrap_or(0),
        }),
        "stage_mark" => Record::StageMark(StageMark {
            digest: required("digest")?,
            cluster: required("cluster")?,
            service: required("service")?,
            state: required("state")?,
            at: required("at")?,
            reason: at("reason"),
        }),
        other => Record::Other(other.to_owned()),
    })
}

/// The services the running index names. The index projects only what its answer needs
/// (template.yaml: `cluster` and `service`), so its items carry no `type` and are read as
/// services with nothing else known.
pub fn services(items: &[Item]) -> Result<Vec<ServiceRecord>, StoreError> {
    items
        .iter()
        .map(|i| {
            let at = |a: &str| {
                text(i.get(a)).ok_or_else(|| {
                    StoreError::Corrupt(format!("an item of the running index has no {a}"))
                })
            };
            Ok(ServiceRecord {
                cluster: at("cluster")?,
                service: at("service")?,
                ..ServiceRecord::default()
            })
        })
        .collect()
}

fn history_service(v: &Value) -> Option<HistoryService> {
    let at = |a: &str| text(v.get(a));
    Some(HistoryService {
        cluster: at("cluster")?,
        service: at("service")?,
        outcome: at("outcome").unwrap_or_default(),
        at: at("at").unwrap_or_default(),
        task_definition: at("task_definition"),
        reason: at("reason"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(v: Value) -> Item {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn images_read_their_status_and_quarantine_typed() {
        let r = decode(&item(
            json!({"type": "image", "digest": "sha256:a", "status": "quarantined",
            "quarantine_reason": "1 critical", "quarantine_source": "acr", "tags": ["v1", "v2"],
            "deleted_at": ""}),
        ))
        .unwrap();
        let Record::Image(i) = r else {
            panic!("not an image: {r:?}")
        };
        assert_eq!(i.status, Some(ImageStatus::Quarantined));
        assert_eq!(i.quarantine.unwrap().source.as_deref(), Some("acr"));
        assert_eq!(
            i.legacy_tags,
            ["v1", "v2"],
            "tags kept on the item by earlier versions"
        );
        assert_eq!(i.deleted_at, None, "an empty copy reads as none");
    }

    #[test]
    fn regions_read_their_arrival_and_last_failure() {
        let r = decode(&item(json!({"type": "region", "digest": "sha256:a",
            "region": "eu-west-1", "failed_at": "t1", "failure_reason": "denied", "failures": 2})))
        .unwrap()
        .region()
        .unwrap();
        assert_eq!(r.arrived_at, None);
        assert_eq!(
            (r.failure_reason.as_deref(), r.failures),
            (Some("denied"), 2)
        );
        assert!(matches!(
            decode(&item(json!({"type": "image_tag", "digest": "sha256:a"}))),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn receipts_without_a_status_are_done_and_keep_their_payload() {
        let r = decode(&item(json!({"type": "receipt", "payload": {"body": "{}",
            "sha256": "ab", "size": 2, "provider": "acr", "region": "westeurope"}})))
        .unwrap()
        .receipt()
        .unwrap();
        assert_eq!(r.status, ReceiptStatus::Done);
        let p = r.payload.unwrap();
        assert_eq!((p.body.as_deref(), p.size), (Some("{}"), Some(2)));
        assert_eq!(p.hints.provider, Some(Provider::Acr));
        assert_eq!(p.hints.region.as_deref(), Some("westeurope"));
    }

    #[test]
    fn running_index_items_are_services_by_their_projected_attributes() {
        let projected = item(
            json!({"PK": "SVC#prod/api", "SK": "CURRENT", "running": "r/a@sha256:1",
            "cluster": "prod", "service": "api"}),
        );
        let s = services(&[projected]).unwrap();
        assert_eq!(
            (s[0].cluster.as_str(), s[0].service.as_str()),
            ("prod", "api")
        );
        assert!(matches!(
            services(&[item(json!({"running": "r/a@sha256:1"}))]),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn history_entries_of_earlier_versions_read_with_what_they_kept() {
        let legacy = decode(&item(
            json!({"type": "history", "stage": "prod", "tag": "v1",
            "digest": "sha256:a", "pushed_at": "t1", "event": "acr#1",
            "services": [{"cluster": "prod", "service": "api", "outcome": "updated", "at": "t2"}]}),
        ))
        .unwrap()
        .history()
        .unwrap();
        assert_eq!(legacy.stage.as_deref(), Some("prod"));
        assert_eq!(
            (&legacy.kind, &legacy.at, &legacy.received_at),
            (&None, &None, &None)
        );
        assert_eq!(legacy.order().0, "t1", "ordered by the push time it kept");
        assert_eq!(legacy.services[0].outcome, "updated");
        let unstaged = decode(&item(json!({"type": "history", "kind": "push",
            "outcome": "stale", "pushed_at": "t1", "at": "t1", "received_at": "t3",
            "event": "acr#2", "push_event": "acr#2"})))
        .unwrap()
        .history()
        .unwrap();
        assert_eq!(unstaged.stage, None);
        let applied = decode(&item(json!({"type": "history_applied", "stage": "prod",
            "push_event": "acr#3", "cluster": "prod", "service": "api", "outcome": "updated",
            "at": "t4", "by": "acr#2"})))
        .unwrap();
        assert!(
            matches!(&applied, Record::HistoryApplied(a) if a.by.as_deref() == Some("acr#2")),
            "{applied:?}"
        );
        assert_eq!(unstaged.order(), ("t1", "t3", "acr#2", "", "acr#2"));
    }

    #[test]
    fn a_record_missing_what_was_always_written_is_corrupt() {
        assert!(matches!(
            decode(&item(json!({"type": "blocked", "cluster": "prod"}))),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode(&item(json!({"type": "manual_request", "request_id": "r1"}))),
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(
            decode(&item(json!({"type": "failed_rollout"}))).unwrap(),
            Record::Other("failed_rollout".into())
        );
    }
}
