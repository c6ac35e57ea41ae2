//! The deployment guard: ECS calls it as a deployment lifecycle hook, and it fails the
//! deployment when an image of the revision is quarantined or deleted in imagehook's records.

fn main() -> Result<(), lambda_http::Error> {
    imagehook_core::edge::lambda::run_guard()
}
