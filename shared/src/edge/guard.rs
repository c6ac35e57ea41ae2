//! The deployment guard's edge: ECS invokes the function as a deployment lifecycle hook with
//! one event; the answer is the hook's response. Every invocation is answered (a function
//! error would also fail the deployment, but without saying why), logged with its decision,
//! and a `FAILED` answer is notified (`deployment-refused`).

use serde_json::Value;

use crate::app::guard::GuardApp;
use crate::pipeline::guard::{self, HookStatus, Standing};

/// One invocation: the event's bytes in, the hook's response out.
pub async fn handle(app: &GuardApp, body: &[u8]) -> Value {
    let (event, verdict) = app.decide(body).await;
    let settings = app.settings();
    let images = serde_json::to_string(&verdict.images).unwrap_or_default();
    let (execution, stage, service, revision) = match &event {
        Some(e) => (
            e.execution_id.as_str(),
            e.lifecycle_stage.as_str(),
            e.service.as_str(),
            e.target_revision_arn.as_str(),
        ),
        None => ("", "", "", ""),
    };
    let reason = verdict.reason.as_deref().unwrap_or("");
    // Let through without a check (GUARD_ON_STORE_ERROR=open): worth a warning, not an error.
    let unchecked = verdict
        .images
        .iter()
        .filter(|c| matches!(c.standing, Standing::Unreadable { .. }))
        .count();
    match verdict.status {
        HookStatus::Succeeded if unchecked > 0 => tracing::warn!(
            hook_status = verdict.status.as_str(),
            execution,
            stage,
            service,
            revision,
            mode = settings.mode.as_str(),
            on_store_error = settings.on_store_error.as_str(),
            images = %images,
            unchecked,
            "deployment allowed: imagehook's records could not be read"
        ),
        HookStatus::Succeeded => tracing::info!(
            hook_status = verdict.status.as_str(),
            execution,
            stage,
            service,
            revision,
            mode = settings.mode.as_str(),
            on_store_error = settings.on_store_error.as_str(),
            images = %images,
            reason,
            "deployment allowed"
        ),
        HookStatus::Failed => tracing::warn!(
            hook_status = verdict.status.as_str(),
            execution,
            stage,
            service,
            revision,
            mode = settings.mode.as_str(),
            on_store_error = settings.on_store_error.as_str(),
            images = %images,
            reason,
            "deployment refused"
        ),
        HookStatus::InProgress => tracing::warn!(
            hook_status = verdict.status.as_str(),
            execution,
            stage,
            service,
            revision,
            reason,
            "deployment not checked yet: ECS asks again"
        ),
    }
    let notices = guard::notices(event.as_ref(), &verdict);
    if !notices.is_empty() {
        app.notifier().notify(notices).await;
    }
    verdict.response()
}
