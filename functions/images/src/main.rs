//! The images function: GET /images/{repository} -> the repository's rollout history per stage.
//! Read-only; API Gateway authorizes callers with IAM.

fn main() -> Result<(), lambda_http::Error> {
    imagehook_core::edge::lambda::run_images()
}
