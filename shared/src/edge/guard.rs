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
    // One line per decision, with the same fields at whatever level it is logged.
    macro_rules! decided {
        ($level:ident, $message:literal $(, $field:ident)*) => {
            tracing::$level!(
                hook_status = verdict.status.as_str(),
                execution,
                stage,
                service,
                revision,
                mode = settings.mode.as_str(),
                on_store_error = settings.on_store_error.as_str(),
                images = %images,
                $($field,)*
                $message
            )
        };
    }
    match verdict.status {
        HookStatus::Succeeded if unchecked > 0 => decided!(
            warn,
            "deployment allowed: imagehook's records could not be read",
            unchecked
        ),
        HookStatus::Succeeded => decided!(info, "deployment allowed", reason),
        HookStatus::Failed => decided!(warn, "deployment refused", reason),
        HookStatus::InProgress => {
            decided!(warn, "deployment not checked yet: ECS asks again", reason)
        }
    }
    let notices = guard::notices(event.as_ref(), &verdict);
    if !notices.is_empty() {
        app.notifier().notify(notices).await;
    }
    verdict.response()
}
