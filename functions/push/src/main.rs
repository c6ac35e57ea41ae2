//! The push function: registry push events -> image records -> ECS deployments.

fn main() -> Result<(), lambda_http::Error> {
    imagehook_core::edge::lambda::run_lambda(imagehook_core::model::function::Function::Push)
}
