//! The quarantine function: quarantines, scan results and releases -> blocked digests and deploy-on-release.

fn main() -> Result<(), lambda_http::Error> {
    imagehook_core::edge::lambda::run_lambda(imagehook_core::model::function::Function::Quarantine)
}
