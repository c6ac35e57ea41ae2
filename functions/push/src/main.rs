//! The push function: registry push events -> image records -> ECS deployments.

use imagehook_core::{App, Function};
use lambda_http::{Error, run, service_fn, tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let app = App::from_env().await?;
    run(service_fn(|req| async {
        Ok::<_, Error>(imagehook_core::http::handle(&app, Function::Push, req).await)
    }))
    .await
}
