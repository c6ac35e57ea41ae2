//! The delete function: registry delete events -> tombstones and warnings for services still running the digest.

fn main() -> Result<(), lambda_http::Error> {
    imagehook_core::edge::lambda::run_lambda(imagehook_core::model::function::Function::Delete)
}
