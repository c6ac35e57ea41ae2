//! `imagehook approve|deny <id>` and `imagehook waiting`: decisions on held deployments from a
//! terminal, recorded under the local user's name (or `--as`), as the approvals API records the
//! caller's IAM principal.

use std::process::ExitCode;

use imagehook_core::app::App;
use imagehook_core::pipeline::PipelineError;
pub use imagehook_core::pipeline::approve::Decision;
use imagehook_core::pipeline::approve::DecisionError;
use serde_json::json;

use crate::print_json;

/// Who decides: `--as`, else the login name the shell gives.
pub fn principal(given: Option<String>) -> Option<String> {
    given
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("USERNAME").ok())
        .filter(|s| !s.trim().is_empty())
}

/// Exit code of a decision the store refused as the caller's mistake (unknown id, already
/// decided): distinct from 2, a failure to run at all.
const REFUSED: u8 = 1;

/// Prints the decision's answer; a refusal prints `{"error", "message"}` as the API's body
/// would, and exits 1.
pub async fn decide(
    app: &App,
    id: &str,
    decision: Decision,
    by: Option<String>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let Some(by) = principal(by) else {
        return Err("no name to record the decision under: pass --as NAME (or set USER)".into());
    };
    match app.decide(id, decision, &by).await {
        Ok(result) => {
            print_json(&result)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(PipelineError::Decision(e)) => {
            let code = match &e {
                DecisionError::UnknownId(_) => "unknown_hold",
                DecisionError::Closed { .. } => "already_decided",
                DecisionError::NotAwaitingApproval { .. } => "not_awaiting_approval",
                DecisionError::NoPrincipal => "no_principal",
            };
            print_json(&json!({"error": code, "message": e.to_string()}))?;
            Ok(ExitCode::from(REFUSED))
        }
        Err(e) => Err(e.into()),
    }
}

/// Prints what waits for approvals or an earlier stage, and why.
pub async fn waiting(app: &App) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let waiting = app.waiting().await?;
    print_json(&json!({"waiting": waiting}))?;
    Ok(ExitCode::SUCCESS)
}
