//! The Lambda functions' mains: init once, then one call into the edge per invocation.

use crate::app::App;
use crate::model::function::Function;
use crate::pipeline::PipelineError;

/// A Lambda function's whole main: one thread, logging Lambda can filter by level, then `main`.
/// Lambda hands an environment one invocation at a time: worker threads would only add start-up
/// time and cross-thread wake-ups.
fn lambda_main<F>(main: F) -> Result<(), lambda_http::Error>
where
    F: std::future::Future<Output = Result<(), lambda_http::Error>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        crate::edge::logging::init();
        main.await
    })
}

/// The webhook functions: init once, then one call into the shared edge per request.
pub fn run_lambda(function: Function) -> Result<(), lambda_http::Error> {
    lambda_main(async {
        let app = App::from_env(function).await?;
        lambda_http::run(lambda_http::service_fn(|req| async {
            let started = std::time::Instant::now();
            let (resp, report) = crate::edge::http::handle_reported(&app, function, req).await;
            emit_metrics(function.name(), &report, started);
            Ok::<_, lambda_http::Error>(resp)
        }))
        .await
    })
}

/// Prints the request's EMF documents on stdout, where Lambda sends them to CloudWatch Logs.
fn emit_metrics(
    function: &str,
    report: &crate::edge::metrics::Report,
    started: std::time::Instant,
) {
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    print_lines(crate::edge::metrics::emf_lines(
        function,
        report,
        latency_ms,
        now_ms(),
    ));
}

fn now_ms() -> i64 {
    let ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ms).unwrap_or_default()
}

fn print_lines(lines: Vec<String>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for line in lines {
        // A lost metric line must never fail the delivery it describes.
        let _ = writeln!(out, "{line}");
    }
}

/// One event through the outcomes function: its answer, and the metric lines it prints (one
/// `Rollouts` line for a state change it recorded).
pub async fn outcome_reported(
    app: &App,
    body: &[u8],
    now_ms: i64,
) -> (Result<serde_json::Value, PipelineError>, Vec<String>) {
    let answer = app.outcome(body).await;
    let lines = answer
        .as_ref()
        .ok()
        .and_then(crate::pipeline::outcomes::recorded_state)
        .map(|state| crate::edge::metrics::rollout_line(Function::Outcomes.name(), state, now_ms))
        .into_iter()
        .collect();
    (answer, lines)
}

/// The outcomes function: one EventBridge event per invocation.
pub fn run_outcomes() -> Result<(), lambda_http::Error> {
    use lambda_http::lambda_runtime::{LambdaEvent, run, service_fn};
    lambda_main(async {
        let app = App::for_outcomes().await?;
        run(service_fn(|event: LambdaEvent<serde_json::Value>| {
            let app = &app;
            async move {
                let body = serde_json::to_vec(&event.payload)?;
                let (answer, lines) = outcome_reported(app, &body, now_ms()).await;
                print_lines(lines);
                answer.map_err(lambda_http::Error::from)
            }
        }))
        .await
    })
}

/// The read-only images function: GET /images/{repository}.
pub fn run_images() -> Result<(), lambda_http::Error> {
    lambda_main(async {
        let store = App::reader_from_env().await?;
        lambda_http::run(lambda_http::service_fn(|req| async {
            Ok::<_, lambda_http::Error>(crate::edge::images::handle(store.as_ref(), req).await)
        }))
        .await
    })
}

/// The control function: deploys, rollbacks and approvals by hand, behind IAM.
pub fn run_control() -> Result<(), lambda_http::Error> {
    lambda_main(async {
        let app = App::for_control().await?;
        lambda_http::run(lambda_http::service_fn(|req| async {
            Ok::<_, lambda_http::Error>(crate::edge::control::handle(&app, req).await)
        }))
        .await
    })
}

/// The deployment guard: one ECS lifecycle hook event per invocation, answered with the hook's
/// response.
pub fn run_guard() -> Result<(), lambda_http::Error> {
    use lambda_http::lambda_runtime::{LambdaEvent, run, service_fn};
    lambda_main(async {
        let app = crate::app::guard::GuardApp::from_env().await?;
        run(service_fn(|event: LambdaEvent<serde_json::Value>| {
            let app = &app;
            async move {
                let body = serde_json::to_vec(&event.payload)?;
                Ok::<_, lambda_http::Error>(crate::edge::guard::handle(app, &body).await)
            }
        }))
        .await
    })
}
