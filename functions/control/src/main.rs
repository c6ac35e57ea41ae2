//! The control function: deploy, roll back and approve by hand, and what a service runs and
//! waits for. API Gateway authorizes callers with IAM; who asked is their principal ARN.

fn main() -> Result<(), lambda_http::Error> {
    imagehook_core::edge::lambda::run_control()
}
