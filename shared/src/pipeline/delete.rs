//! The delete path: a tombstone for a deleted digest (history kept), or a removed tag, and a
//! warning naming every service that still runs a deleted digest. Nothing is rolled back.

use super::Deps;
use crate::model::event::{ImageEvent, Timestamp};
use crate::model::result::{EventOutcome, EventResult};
use crate::pipeline::PipelineError;
use crate::pipeline::ledger::{self, DeleteOutcome};

pub(super) async fn delete_one(
    deps: &Deps<'_>,
    event: &ImageEvent,
    received_at: &Timestamp,
) -> Result<EventResult, PipelineError> {
    let receipt = deps.receipt(event, received_at);
    Ok(match ledger::record_delete(deps.store, &receipt).await? {
        DeleteOutcome::Duplicate => EventResult::of(event, EventOutcome::Duplicate)
            .with_reason("event already applied: nothing changed"),
        DeleteOutcome::Stale => EventResult::of(event, EventOutcome::Stale)
            .with_reason("the digest was pushed again after this delete: left active"),
        DeleteOutcome::Applied {
            removed_tags,
            services,
            note,
        } => {
            let what = match &event.image.tag {
                Some(t) => format!("tag {t} removed"),
                None => "digest marked deleted (tombstone kept)".to_owned(),
            };
            let reason = match (note, removed_tags.is_empty() || event.image.tag.is_some()) {
                (Some(n), _) => n,
                (None, true) => what,
                (None, false) => format!("{what}; tags removed: {}", removed_tags.join(", ")),
            };
            let mut result = EventResult::of(event, EventOutcome::Applied).with_reason(reason);
            for service in services {
                tracing::warn!(
                    service = %service,
                    image = %event.image,
                    "a running service uses a deleted digest"
                );
                result.warnings.push(format!(
                    "service {service} runs {}, which was deleted: its next scale-out or task replacement will fail to pull it",
                    event.image.deployable()
                ));
                result.running_services.push(service);
            }
            result
        }
    })
}
