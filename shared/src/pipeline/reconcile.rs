//! The scheduled reconcile: nothing a delivery started is left undone, and what ECS runs is
//! checked against what imagehook applied.
//!
//! For every service a rule names or that follows an image by its tag, the service record is
//! read. A service whose desired state was never applied (its holder died, or gave up after
//! several newer pushes) is converged through the same lease as a delivery, resuming: a
//! revision the dead holder registered is used rather than another. A settled service that
//! runs, in the container imagehook manages, an image it did not deploy has *drifted* (changed
//! by hand, or by infrastructure as code): the drift is recorded on the service and notified,
//! and, where the rule says `on_drift: restore`, what the service should run is applied again.

use serde::Serialize;

use super::converge::{self, Door};
use super::deployments::service_record;
use super::deps::{Deps, PipelineError};
use crate::model::deployment::Deployment;
use crate::model::notice::{Notice, NoticeKind};
use crate::model::policy::OnDrift;
use crate::model::records::{Desired, ServiceRecord};
use crate::model::reference::{ImageRef, image_name_of};
use crate::model::rules::Target;
use crate::ports::store::keys;
use crate::ports::store::ops::{Cond, Op, Update};
use crate::ports::store::{Key, StoreError};

/// Whether an outcomes event is the reconcile's trigger: the schedule's constant input
/// `{"imagehook": "reconcile"}`, or an EventBridge `Scheduled Event`.
pub fn is_trigger(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    v.get("imagehook").and_then(serde_json::Value::as_str) == Some("reconcile")
        || v.get("detail-type").and_then(serde_json::Value::as_str) == Some("Scheduled Event")
}

/// What the reconcile did to one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Desired and applied agree, and ECS runs what was applied.
    InSync,
    /// Nothing was ever proposed for the service: nothing to compare.
    Unmanaged,
    /// The desired state was applied now.
    Converged,
    /// Another holder is applying it now.
    Busy,
    /// ECS runs an image imagehook did not deploy; recorded and notified.
    DriftReported,
    /// ... and what the service should run was applied again.
    DriftRestored,
}

/// One line of the reconcile's report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub cluster: String,
    pub service: String,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<Deployment>,
}

/// Reconciles every managed service; the notices go out through the caller's notifier.
pub async fn reconcile(deps: &Deps<'_>) -> Result<(Vec<Report>, Vec<Notice>), PipelineError> {
    let mut services = deps.rules.all_targets();
    for f in deps.deployer.all_followers().await? {
        if !services
            .iter()
            .any(|t| t.cluster == f.cluster && t.service == f.service)
        {
            services.push(f);
        }
    }
    let mut reports = Vec::with_capacity(services.len());
    let mut notices = Vec::new();
    for t in services {
        let report = one(deps, &t, &mut notices).await?;
        tracing::info!(
            cluster = %report.cluster,
            service = %report.service,
            action = ?report.action,
            detail = report.detail.as_deref().unwrap_or(""),
            "reconciled"
        );
        reports.push(report);
    }
    Ok((reports, notices))
}

async fn one(
    deps: &Deps<'_>,
    t: &Target,
    notices: &mut Vec<Notice>,
) -> Result<Report, PipelineError> {
    let record = service_record(deps.store, &t.cluster, &t.service).await?;
    let report = |action, detail: Option<String>, deployment| Report {
        cluster: t.cluster.clone(),
        service: t.service.clone(),
        action,
        detail,
        deployment,
    };
    let Some(desired) = record.desired.clone() else {
        return Ok(report(Action::Unmanaged, None, None));
    };
    let applied = record.applied.as_ref().map(|a| a.event.as_str());
    if applied != Some(desired.event.as_str()) {
        return Ok(match converge_now(deps, t, &record, desired).await? {
            Some(d) => report(Action::Converged, d.reason.clone(), Some(d)),
            None => report(
                Action::Busy,
                Some("another holder is applying it".into()),
                None,
            ),
        });
    }
    // Drift: judged only on a settled service, against what imagehook made it run.
    let (Some(ours), Some(running)) = (
        record.image.as_deref(),
        deps.deployer.running(t).await?.filter(|r| r.settled),
    ) else {
        return Ok(report(Action::InSync, None, None));
    };
    let name = image_name_of(ours);
    let theirs: Vec<&String> = running
        .containers
        .iter()
        .filter(|(c, image)| match desired.container.as_deref() {
            Some(wanted) if !wanted.is_empty() => c == wanted,
            _ => image_name_of(image) == name,
        })
        .map(|(_, image)| image)
        .filter(|image| !same_image(image, ours))
        .collect();
    let Some(found) = theirs.first().map(|s| (*s).clone()).or_else(|| {
        // The container imagehook manages runs another repository now, or is gone.
        let ours_there = running
            .containers
            .iter()
            .any(|(_, image)| image_name_of(image) == name);
        (!ours_there).then(|| format!("no container of {name}"))
    }) else {
        return Ok(report(Action::InSync, None, None));
    };
    record_drift(deps, t, &found, &running.task_definition).await?;
    let detail = format!(
        "runs {found} (task definition {}), not {ours}, which imagehook deployed",
        running.task_definition
    );
    notices.push(Notice {
        kind: NoticeKind::ServiceDrifted,
        service: format!("{}/{}", t.cluster, t.service),
        image: found.clone(),
        stage: t.stage.clone(),
        detail: Some(detail.clone()),
        event_id: None,
    });
    tracing::warn!(cluster = %t.cluster, service = %t.service, running = %found, expected = %ours, "service drifted");
    if t.policy.on_drift != OnDrift::Restore {
        return Ok(report(Action::DriftReported, Some(detail), None));
    }
    Ok(match converge_now(deps, t, &record, desired).await? {
        Some(d) => report(Action::DriftRestored, Some(detail), Some(d)),
        None => report(Action::Busy, Some(detail), None),
    })
}

/// Two references to one image: equal as written, or naming the same repository and digest.
fn same_image(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (ImageRef::parse(a), ImageRef::parse(b)) {
        (Ok(x), Ok(y)) => x.name() == y.name() && x.digest.is_some() && x.digest == y.digest,
        _ => false,
    }
}

/// Applies the desired state as a lease holder, resuming; `None` when a live holder has it.
async fn converge_now(
    deps: &Deps<'_>,
    t: &Target,
    record: &ServiceRecord,
    desired: Desired,
) -> Result<Option<Deployment>, PipelineError> {
    let holder = converge::holder_id("reconcile");
    match converge::take_over(deps.store, t, record, &holder, deps.lease).await? {
        Door::Holder { .. } => {}
        Door::Queued { .. } | Door::Superseded { .. } => return Ok(None),
    }
    let mut target = t.clone();
    target.last_deployed = record
        .digest
        .clone()
        .map(|d| (d, record.tag.clone().filter(|t| !t.is_empty())));
    // Whatever it applies, a delivery proposed and never finished: under the holder's own name,
    // every round is recorded as carried for that delivery's history.
    let held = converge::hold(deps, &target, &holder, true, &holder, desired, None).await?;
    Ok(held.own.or_else(|| held.carried.into_iter().last()))
}

/// Drift on the service record: what was found, where, and when.
async fn record_drift(
    deps: &Deps<'_>,
    t: &Target,
    image: &str,
    task_definition: &str,
) -> Result<(), StoreError> {
    let at = crate::model::event::Timestamp::now();
    let u = Update::new(Key::new(
        keys::service_pk(&t.cluster, &t.service),
        keys::SERVICE_CURRENT,
    ))
    .set("drift_image", image)
    .set("drift_task_definition", task_definition)
    .set("drift_at", at.as_str())
    .when(Cond::ItemPresent);
    // Refused: the record is gone (never written); nothing to mark.
    let _ = deps.store.transact(vec![Op::Update(u)]).await?;
    Ok(())
}
