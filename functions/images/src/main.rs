//! The images function: GET /images/{repository} -> the repository's history and its digests.
//! Read-only; API Gateway authorizes callers with IAM.

fn main() -> Result<(), lambda_http::Error> {
    imagehook_core::edge::lambda::run_images()
}
