//! The push function: registry push events -> image records -> ECS deployments.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    imagehook_core::app::run_lambda(imagehook_core::Function::Push).await
}
