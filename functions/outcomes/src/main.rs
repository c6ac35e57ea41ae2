//! The outcomes function: ECS deployment state changes (EventBridge) -> completed, failed and
//! rolled-back rollouts on the deployment records.

fn main() -> Result<(), lambda_http::Error> {
    imagehook_core::edge::lambda::run_outcomes()
}
