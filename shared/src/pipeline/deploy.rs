//! One event's deployments, through each service's door (see `converge`): every target is
//! proposed, applied by this delivery where it holds the lease, or reported `queued` or
//! `superseded`; then the event's other deployments are recorded and the event is closed.

use super::converge::{Door, Finish, Proposal, hold, holder_id, knock};
use super::deployments::{deployment_ops, finish_ops, records_ops, write_chunked};
use super::deps::{Deps, PipelineError};
use super::history::Source;
use crate::model::deployment::{DeployOutcome, Deployment};
use crate::model::event::{ImageEvent, Timestamp};
use crate::model::rules::Target;
use crate::ports::deployer::Unguarded;
use crate::ports::store::Key;
use crate::ports::store::ops::{Cond, Op};

/// Takes each target of one event through its service's door: proposes `proposal` there, and
/// applies as the holder, or reports the deployment `queued` or `superseded`. Then records the
/// event's other deployments (`known`: blocked, skipped...), removes the blocked entries it
/// settles and marks the receipt of `record` done. Answers the deployments in target order,
/// after `known`. `source` says what the event's history entries hold beyond the event.
pub async fn deploy_all(
    deps: &Deps<'_>,
    record: &ImageEvent,
    source: &Source,
    proposals: Vec<(Target, Proposal)>,
    known: Vec<Deployment>,
    settled: &[Key],
) -> Result<Vec<Deployment>, PipelineError> {
    let by = format!("{}#{}", record.provider, record.id);
    let holder = holder_id(&by);
    let at = Timestamp::now();
    // With one service, the event's closing records can ride on the holder's commit.
    let single = proposals.len() == 1;
    let close_with = |own: &Deployment| {
        let mut ops = records_ops(record, &known, &at);
        let mut all = known.clone();
        all.push(own.clone());
        ops.extend(finish_ops(record, source, &all, settled, &at, true));
        ops
    };
    let mut finished = false;
    let mut mine = Vec::with_capacity(proposals.len());
    for (t, p) in &proposals {
        if deps.deployer.dry_run() {
            mine.push(deps.deployer.apply(&p.image, t, false, &Unguarded).await?);
            continue;
        }
        let d = match knock(deps.store, t, p, &holder, deps.lease).await? {
            Door::Holder { resume } => {
                let finish: Option<Finish<'_>> = single.then_some(&close_with);
                let held = hold(deps, t, &holder, resume, &p.event, p.desired(t), finish).await?;
                finished |= held.finished;
                held.own.unwrap_or_else(|| {
                    Deployment::new(t, &p.image, DeployOutcome::Queued).with_reason(format!(
                        "{}/{} moved on to a newer push while this one was being applied",
                        t.cluster, t.service
                    ))
                })
            }
            Door::Queued { carrier } => Deployment::new(t, &p.image, DeployOutcome::Queued)
                .with_reason(format!(
                    "{}/{} is being deployed by {carrier}, which applies the newest desired state: no ECS call from this delivery",
                    t.cluster, t.service
                )),
            Door::Superseded {
                winner,
                same_digest: true,
            } => Deployment::new(t, &p.image, DeployOutcome::Superseded).with_reason(format!(
                "{winner} brings {}/{} the same digest: it is rolled out once, by that push",
                t.cluster, t.service
            )),
            Door::Superseded { winner, .. } => {
                Deployment::new(t, &p.image, DeployOutcome::Superseded).with_reason(format!(
                    "a newer push ({winner}) is what {}/{} should run: this one is not applied there",
                    t.cluster, t.service
                ))
            }
        };
        mine.push(d);
    }
    let mut all = known;
    if finished {
        all.extend(mine);
        return Ok(all);
    }
    let mut ops = records_ops(record, &all, &at);
    // A queued deployment is carried by another delivery that may yet die: the receipt stays
    // pending, so a redelivery goes through the door again instead of being answered as done.
    let carried = mine.iter().any(|d| d.outcome == DeployOutcome::Queued);
    let mut aside = Vec::new();
    for d in &mine {
        match d.outcome {
            // Never reached ECS. Recorded only where no delivery of this event recorded more:
            // the holder of the same event (a redelivery queued behind its own first delivery)
            // writes the same key, and what it applied is the truth.
            DeployOutcome::Queued | DeployOutcome::Superseded => {
                aside.extend(deployment_ops(record, d, &at).0.into_iter().map(if_absent));
            }
            // Dry-run plans go through no holder.
            DeployOutcome::Planned => ops.extend(deployment_ops(record, d, &at).0),
            // What a holder applied is on record already.
            _ => {}
        }
    }
    all.extend(mine);
    ops.extend(finish_ops(record, source, &all, settled, &at, !carried));
    write_chunked(deps.store, ops).await?;
    for op in aside {
        // Refused: a delivery of this event already recorded the deployment.
        let _ = deps.store.transact(vec![op]).await?;
    }
    Ok(all)
}

/// A put that writes nothing over an existing item.
fn if_absent(op: Op) -> Op {
    match op {
        Op::Put { key, item, .. } => Op::Put {
            key,
            item,
            cond: Some(Cond::ItemAbsent),
        },
        other => other,
    }
}
