//! What the services run: an event's deployments recorded (with what each service now runs and
//! the history of its stage), and the services the running index names for a digest.

use serde_json::{Map, json};

use super::history;
use super::receipt::unexpected;
use crate::model::deployment::{DeployOutcome, Deployment};
use crate::model::event::{ImageEvent, Timestamp};
use crate::model::records::{ReceiptStatus, ServiceRecord};
use crate::ports::store::keys;
use crate::ports::store::ops::{Op, Update};
use crate::ports::store::{Item, Key, MAX_TRANSACTION_ITEMS, Store, StoreError};

pub(super) fn deployment_item(event: &ImageEvent, d: &Deployment, at: &Timestamp) -> (Key, Item) {
    let what = event
        .image
        .digest
        .as_ref()
        .map_or_else(|| event.image.to_string(), ToString::to_string);
    let mut item = Map::new();
    item.insert("type".into(), json!("deployment"));
    item.insert("cluster".into(), json!(d.cluster));
    item.insert("service".into(), json!(d.service));
    item.insert("outcome".into(), json!(d.outcome.as_str()));
    item.insert("to".into(), json!(d.image));
    item.insert(
        "event".into(),
        json!(format!("{}#{}", event.provider, event.id)),
    );
    item.insert("recorded_at".into(), json!(at.as_str()));
    for (k, v) in [
        ("task_definition", &d.task_definition),
        ("from_task_definition", &d.previous_task_definition),
        ("stage", &d.stage),
        ("reason", &d.reason),
        ("ecs_deployment_id", &d.ecs_deployment_id),
    ] {
        if let Some(v) = v {
            item.insert(k.into(), json!(v));
        }
    }
    // The event is part of the key: two pushes of one digest at the same sender time (tags
    // pushed together) are two deployments.
    let key = Key::new(
        keys::service_pk(&d.cluster, &d.service),
        keys::deployment_sk(
            event.occurred_at.as_str(),
            &[what.as_str(), "#", event.provider.as_str(), "#", &event.id].concat(),
        ),
    );
    (key, item)
}

/// The records of one deployment: its item, the pointer ECS state changes follow and, for a
/// service that now runs the image, the update of what the service runs. The update is
/// returned apart so that a lease holder can fold its own conditions into it (one transaction
/// may hold one operation per item).
pub(super) fn deployment_ops(
    event: &ImageEvent,
    d: &Deployment,
    at: &Timestamp,
) -> (Vec<Op>, Option<Update>) {
    let mut ops = Vec::new();
    let (key, mut item) = deployment_item(event, d, at);
    if let Some(from) = &d.previous_image {
        item.insert("from_image".into(), json!(from));
    }
    if let Some(id) = &d.ecs_deployment_id {
        // State changes name ECS's deployment id: this points them at the record.
        let mut pointer = Map::new();
        pointer.insert("type".into(), json!("rollout"));
        pointer.insert("deployment_sk".into(), json!(key.sk));
        pointer.insert("image".into(), json!(d.image));
        if let Some(digest) = &event.image.digest {
            pointer.insert("digest".into(), json!(digest.as_str()));
        }
        ops.push(Op::Put {
            key: Key::new(key.pk.clone(), keys::rollout_sk(id)),
            item: pointer,
            cond: None,
        });
    }
    ops.push(Op::Put {
        key,
        item,
        cond: None,
    });
    let runs = matches!(d.outcome, DeployOutcome::Updated | DeployOutcome::Unchanged)
        .then(|| runs_update(event, d, at));
    (ops, runs)
}

/// The service now runs the event's image.
fn runs_update(event: &ImageEvent, d: &Deployment, at: &Timestamp) -> Update {
    let key = Key::new(
        keys::service_pk(&d.cluster, &d.service),
        keys::SERVICE_CURRENT,
    );
    let mut u = Update::new(key)
        .set("type", "service")
        .set("cluster", d.cluster.as_str())
        .set("service", d.service.as_str())
        .set("image", d.image.as_str())
        .set("updated_at", at.as_str())
        .set("tag", event.image.tag.as_ref().map_or("", |t| t.as_str()))
        .set_opt("task_definition_arn", d.task_definition.as_deref())
        // ECS was just seen running what imagehook deployed: no drift.
        .remove("drift_image")
        .remove("drift_task_definition")
        .remove("drift_at")
        .add("version", 1);
    if d.outcome == DeployOutcome::Updated {
        // What it ran before, so a rollback can be recorded as a return to it. Only a real
        // change moves it: another tag of the running digest must not make the digest its own
        // predecessor.
        u = u
            .copy("previous_digest", "digest", "")
            .copy("previous_tag", "tag", "")
            .set_opt("previous_image", d.previous_image.as_deref())
            .set_opt(
                "previous_task_definition",
                d.previous_task_definition.as_deref(),
            );
    }
    match &event.image.digest {
        // `running` feeds the index that answers "which services run this digest?".
        Some(digest) => u
            .set("digest", digest.as_str())
            .set("running", format!("{}@{digest}", event.image.name())),
        None => u.remove("digest").remove("running"),
    }
}

/// What closes an event: the history of its stages, the removal of the blocked entries it
/// settles, and its receipt marked done (last, so `done` means everything is on record). With
/// `close` false the receipt stays pending: a deployment of the event is still carried by
/// another delivery, and a redelivery must go through the service's door again rather than be
/// answered as done.
pub(super) fn finish_ops(
    event: &ImageEvent,
    source: &history::Source,
    deployments: &[Deployment],
    settled: &[Key],
    at: &Timestamp,
    close: bool,
) -> Vec<Op> {
    let mut ops = history::history_ops(event, source, deployments, at);
    for key in settled {
        ops.push(Op::Delete {
            key: key.clone(),
            cond: None,
        });
    }
    if close {
        ops.push(Op::Update(
            Update::new(keys::receipt(event.provider.as_str(), &event.id))
                .set("status", ReceiptStatus::Done.as_str())
                .set("deployed_at", at.as_str()),
        ));
    }
    ops
}

/// Records an event's deployments (and what a service now runs), removes the blocked entries
/// they settle, and marks the receipt done last, so `done` means everything is on record. Its
/// history entries name the event's own push and no receipt time: the pipeline's paths record
/// through `deploy::deploy_all`, which knows both.
pub async fn record_deployments(
    store: &dyn Store,
    event: &ImageEvent,
    deployments: &[Deployment],
    settled: &[Key],
    at: &Timestamp,
) -> Result<(), StoreError> {
    let mut ops = records_ops(event, deployments, at);
    let source = history::Source::of(event, None);
    ops.extend(finish_ops(event, &source, deployments, settled, at, true));
    write_chunked(store, ops).await
}

/// The records of each deployment, with what each service now runs.
pub(super) fn records_ops(
    event: &ImageEvent,
    deployments: &[Deployment],
    at: &Timestamp,
) -> Vec<Op> {
    let mut ops = Vec::new();
    for d in deployments {
        let (records, runs) = deployment_ops(event, d, at);
        ops.extend(records);
        ops.extend(runs.map(Op::Update));
    }
    ops
}

/// Writes `ops` in transactions of at most the port's size, in order: the last operation (the
/// receipt's) lands last.
pub(super) async fn write_chunked(store: &dyn Store, ops: Vec<Op>) -> Result<(), StoreError> {
    for chunk in ops.chunks(MAX_TRANSACTION_ITEMS) {
        store
            .transact(chunk.to_vec())
            .await?
            .map_err(|c| unexpected(&c))?;
    }
    Ok(())
}

/// The services whose CURRENT item says they run this digest, as `cluster/service`.
pub async fn services_running(
    store: &dyn Store,
    event: &ImageEvent,
) -> Result<Vec<String>, StoreError> {
    let Some(digest) = &event.image.digest else {
        return Ok(Vec::new());
    };
    let mut out: Vec<String> = store
        .running(&format!("{}@{digest}", event.image.name()))
        .await?
        .iter()
        .map(|s| format!("{}/{}", s.cluster, s.service))
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// What imagehook knows of a service (an empty record when nothing): the digest and tag it last
/// deployed there, and the digests whose rollout there failed.
pub async fn service_record(
    store: &dyn Store,
    cluster: &str,
    service: &str,
) -> Result<ServiceRecord, StoreError> {
    Ok(store
        .get(&Key::new(
            keys::service_pk(cluster, service),
            keys::SERVICE_CURRENT,
        ))
        .await?
        .and_then(|r| r.service())
        .unwrap_or_else(|| ServiceRecord {
            cluster: cluster.to_owned(),
            service: service.to_owned(),
            ..ServiceRecord::default()
        }))
}

/// The service's record, and whether the rollout of the event's digest there failed before
/// (its own `F#` item, or the list records of earlier versions kept on the service).
pub async fn service_record_with_failure(
    store: &dyn Store,
    cluster: &str,
    service: &str,
    event: &ImageEvent,
) -> Result<(ServiceRecord, bool), StoreError> {
    let Some(digest) = &event.image.digest else {
        return Ok((service_record(store, cluster, service).await?, false));
    };
    let failure = Key::new(
        keys::service_pk(cluster, service),
        keys::failed_rollout_sk(digest.as_str()),
    );
    let (record, failure) =
        tokio::join!(service_record(store, cluster, service), store.get(&failure));
    let record = record?;
    let failed = failure?.is_some()
        || record
            .legacy_failed_digests
            .iter()
            .any(|f| f == digest.as_str());
    Ok((record, failed))
}
