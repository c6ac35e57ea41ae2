//! `imagehook`: the functions' real handlers on this machine, never deployed.
//!
//! `invoke` runs one API Gateway event file through a function, `serve` answers the same routes
//! over HTTP on loopback, and `state` prints what the store holds.

mod serve;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use imagehook_core::{App, Function};
use lambda_http::RequestExt;
use serde_json::{Map, Value, json};

#[derive(Parser)]
#[command(
    name = "imagehook",
    version,
    about = "Run imagehook's functions locally"
)]
struct Cli {
    /// Where the embedded store keeps its records.
    #[arg(long, global = true, env = "STATE_DIR", default_value = ".imagehook")]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a function's handler on an event file and print its result: for push, delete and
    /// quarantine an API Gateway event (REST v1 or HTTP API v2), printed back as API Gateway
    /// would receive the response; for outcomes an EventBridge "ECS Deployment State Change".
    Invoke {
        /// push, delete, quarantine or outcomes
        function: String,
        /// The event file.
        event: PathBuf,
    },
    /// Print a repository's rollout history per stage, newest first, as GET /images/{repository}
    /// answers it.
    History {
        /// The repository's full name, registry included: contoso.azurecr.io/shop/api
        repository: String,
        /// Only this stage (dev, staging, prod...).
        #[arg(long)]
        stage: Option<String>,
    },
    /// Answer POST /push, /delete and /quarantine on an address, with the same handler code and
    /// responses as in AWS.
    Serve {
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: std::net::SocketAddr,
    },
    /// Print every stored record as JSON, grouped by kind.
    State,
}

fn init_tracing() {
    let filter = std::env::var("LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            filter.to_ascii_lowercase(),
        ))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

// One thread: the embedded store is one lock and a request is tens of microseconds of CPU, so
// more workers mostly add cross-thread wake-ups (measured: 22k events/s on one thread against
// 17k on two, on 2 cores with the load generator beside it).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("imagehook: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let app = App::local(&cli.state_dir).await?;
    match cli.command {
        Command::Invoke { function, event } => invoke(&app, &function, &event).await,
        Command::Serve { addr } => {
            serve::serve(app, addr).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::History { repository, stage } => history(&app, &repository, stage).await,
        Command::State => {
            let records = app.store().dump().await?;
            println!("{}", serde_json::to_string_pretty(&group(records))?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn invoke(
    app: &App,
    function: &str,
    path: &Path,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if function == "outcomes" {
        return invoke_outcomes(app, &text).await;
    }
    let function = Function::parse(function).ok_or_else(|| {
        format!("unknown function {function:?}: expected push, delete, quarantine or outcomes")
    })?;
    let req = lambda_http::request::from_str(&text)
        .map_err(|e| format!("{} is not an API Gateway event: {e}", path.display()))?;
    let resp = imagehook_core::http::handle(app, function, req).await;
    let status = resp.status();
    let headers: Map<String, Value> = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
        .collect();
    let body = String::from_utf8_lossy(resp.body().as_ref()).into_owned();
    let out = json!({"statusCode": status.as_u16(), "headers": headers, "body": body});
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The images function's answer, through the same handler, for the terminal.
async fn history(
    app: &App,
    repository: &str,
    stage: Option<String>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut req = lambda_http::Request::default().with_path_parameters(HashMap::from([(
        "repository".to_owned(),
        repository.to_owned(),
    )]));
    *req.method_mut() = lambda_http::http::Method::GET;
    if let Some(stage) = stage {
        req = req.with_query_string_parameters(HashMap::from([("stage".to_owned(), stage)]));
    }
    let resp = imagehook_core::images_api::handle(app, req).await;
    let body: Value = serde_json::from_slice(resp.body().as_ref())?;
    if resp.status().is_success() {
        println!("{}", serde_json::to_string_pretty(&body)?);
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "imagehook: {}",
            body["message"].as_str().unwrap_or("failed")
        );
        Ok(ExitCode::FAILURE)
    }
}

/// The outcomes function on an EventBridge event file: prints what it recorded.
async fn invoke_outcomes(app: &App, text: &str) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let out = imagehook_core::pipeline::rollout::handle(
        app.store(),
        text.as_bytes(),
        app.config().receipt_ttl_days,
    )
    .await?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(if out["outcome"] == "rejected" {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Groups raw items by what they are, in key order.
fn group(records: Vec<Map<String, Value>>) -> Value {
    let mut out = json!({
        "images": [], "tags": [], "services": [], "deployments": [], "blocked": [],
        "rollouts": [], "failed_rollouts": [], "receipts": []
    });
    for r in records {
        let kind = match r.get("type").and_then(Value::as_str) {
            Some("image") => "images",
            Some("tag") => "tags",
            Some("service") => "services",
            Some("deployment") => "deployments",
            Some("blocked") => "blocked",
            Some("rollout") => "rollouts",
            Some("failed-rollout") => "failed_rollouts",
            _ => "receipts",
        };
        if let Some(Value::Array(list)) = out.get_mut(kind) {
            list.push(Value::Object(r));
        }
    }
    out
}
