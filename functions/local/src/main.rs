//! `imagehook`: the functions' real handlers on this machine, never deployed.
//!
//! `invoke` runs one API Gateway event file through a function, `serve` answers the same routes
//! over HTTP on loopback, and `state` prints what the store holds.

mod approvals;
mod connections;
mod serve;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use imagehook_core::adapters::DryRunDeployer;
use imagehook_core::adapters::EmbeddedStore;
use imagehook_core::app::App;
use imagehook_core::model::function::Function;
use imagehook_core::pipeline::manual;
use imagehook_core::ports::store::StoreDump;
use lambda_http::RequestExt;
use serde_json::{Map, Value, json};

// A request through `serve` makes a few hundred small allocations; with glibc's malloc they
// were a fifth of the server's CPU (measured with perf under the bench load). The Lambda
// functions keep the system allocator: they handle one event at a time, and cold start counts
// there, not allocation throughput.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run an event file like `invoke`, on a scratch copy of the store and with deploys only
    /// planned: print the response and every record that would change. Nothing is written.
    Simulate {
        /// push, delete, quarantine or outcomes
        function: String,
        /// The event file.
        event: PathBuf,
    },
    /// Re-drive the request kept by a receipt (`<provider>#<event id>`, as `state` lists
    /// receipts) through the functions that own its events. Idempotent: an applied event is a
    /// duplicate; one whose deployments were never recorded gets them now.
    Replay {
        /// <provider>#<event id>, e.g. acr#7f3c2a10-5b6e-4c1d-9e8f-0a1b2c3d4e5f
        receipt: String,
    },
    /// Converge every service a rule names (or that follows an image by its tag): apply a
    /// desired state no delivery finished, and report services that run an image imagehook did
    /// not deploy (restoring them where the rule says `on_drift: restore`). What the outcomes
    /// function does on its schedule.
    Reconcile,
    /// Print a repository's history (every push, release and arrival that concerned a service,
    /// per stage and all together, newest first) and its digests, as GET /images/{repository}
    /// answers them.
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
        /// The most connections open at once; one more is answered 503 `too_many_connections`
        /// and closed, unread.
        #[arg(long, env = "SERVE_MAX_CONNECTIONS", default_value_t = 512,
              value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        max_connections: u32,
    },
    /// Print every stored record as JSON, grouped by kind.
    State,
    /// Approve a held deployment (`imagehook waiting` lists them): once enough people have,
    /// it is deployed. Approving twice counts once.
    Approve {
        /// The id the push's answer, the notification or `waiting` gives.
        id: String,
        /// Whom to record as the approver (default: $USER).
        #[arg(long = "as")]
        by: Option<String>,
    },
    /// Deny a held deployment: it is never deployed.
    Deny {
        id: String,
        /// Whom to record as denying it (default: $USER).
        #[arg(long = "as")]
        by: Option<String>,
    },
    /// List the deployments that wait for approvals or an earlier stage, and why.
    Waiting,
    /// Deploy an image to a service by hand, pinned by digest (a tag is resolved through
    /// imagehook's records of it, else its registry), through the service's desired state:
    /// applied once, recorded in the history with who asked.
    Deploy {
        /// cluster/service
        service: String,
        /// registry/repository@sha256:… or registry/repository:tag
        image: String,
        #[command(flatten)]
        ask: Ask,
    },
    /// Return a service to the last digest whose deployment completed there before the one it
    /// runs.
    Rollback {
        /// cluster/service
        service: String,
        #[command(flatten)]
        ask: Ask,
    },
    /// Print what a service runs, what it should run, who is applying it, and its last
    /// deployments.
    Status {
        /// cluster/service
        service: String,
    },
}

/// What `deploy` and `rollback` share.
#[derive(clap::Args)]
struct Ask {
    /// Deploy even a quarantined or deleted digest; needs --reason.
    #[arg(long, requires = "reason")]
    force: bool,
    /// Why it is forced: recorded in the history.
    #[arg(long)]
    reason: Option<String>,
    /// Who asks, as recorded (default: $USER).
    #[arg(long = "as", value_name = "NAME")]
    by: Option<String>,
    /// The idempotency key: the same id again is the same request, answered and never applied
    /// twice. Without one, the same request within 10 to 20 minutes is the same request.
    #[arg(long)]
    request_id: Option<String>,
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
    // A person runs this binary, with profiles and SSO: the SDK's whole configuration chain,
    // which the Lambda functions leave out (their credentials are in their environment).
    imagehook_core::adapters::aws::use_chain(|http| {
        Box::pin(async move {
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .http_client(http)
                .load()
                .await
        })
    });
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("imagehook: {e}");
            ExitCode::from(2)
        }
    }
}

/// Prints a document on stdout. A reader that stopped reading (`imagehook state | head`) is
/// not an error: the rest of the output is simply not wanted.
fn print_json(value: &impl serde::Serialize) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(value)?;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    // Commands that only read open the store read-only: they run beside the one process that
    // writes a state dir (an `imagehook serve`), which the others are refused beside.
    let app = match cli.command {
        Command::State
        | Command::History { .. }
        | Command::Simulate { .. }
        | Command::Status { .. }
        | Command::Waiting => App::local_read_only(&cli.state_dir).await?,
        Command::Deploy { .. } | Command::Rollback { .. } => App::local(&cli.state_dir).await?,
        Command::Invoke { .. }
        | Command::Serve { .. }
        | Command::Replay { .. }
        | Command::Reconcile
        | Command::Approve { .. }
        | Command::Deny { .. } => App::local(&cli.state_dir).await?,
    };
    match cli.command {
        Command::Invoke { function, event } => invoke(&app, &function, &event).await,
        Command::Serve {
            addr,
            max_connections,
        } => {
            serve::serve(app, addr, max_connections as usize).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::History { repository, stage } => history(&app, &repository, stage).await,
        Command::Simulate { function, event } => simulate(&app, &function, &event).await,
        Command::Replay { receipt } => {
            let results = app.replay(&receipt).await?;
            print_json(&results)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Reconcile => {
            let report = app.reconcile().await?;
            print_json(&report)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::State => {
            let records = app.dump().await?;
            print_json(&group(records))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Deploy {
            service,
            image,
            ask,
        } => deploy(&app, &service, image, ask).await,
        Command::Rollback { service, ask } => rollback(&app, &service, ask).await,
        Command::Status { service } => status(&app, &service).await,
        Command::Approve { id, by } => {
            approvals::decide(&app, &id, approvals::Decision::Approve, by).await
        }
        Command::Deny { id, by } => {
            approvals::decide(&app, &id, approvals::Decision::Deny, by).await
        }
        Command::Waiting => approvals::waiting(&app).await,
    }
}

/// `cluster/service`.
fn service_of(text: &str) -> Result<(String, String), String> {
    match text.split_once('/') {
        Some((c, s)) if !c.is_empty() && !s.is_empty() => Ok((c.to_owned(), s.to_owned())),
        _ => Err(format!("{text:?} is not cluster/service")),
    }
}

/// Who asks: --as, else the login name.
fn asker(ask: &Ask) -> String {
    ask.by
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .unwrap_or_else(|| "local".to_owned())
}

/// Prints a request's answer; a refusal goes to stderr, named as the API names it.
fn answered<T: serde::Serialize>(
    answer: Result<T, manual::ManualError>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match answer {
        Ok(a) => {
            print_json(&a)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(manual::ManualError::Pipeline(e)) => Err(e.into()),
        Err(refused) => {
            eprintln!("imagehook: {refused}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn deploy(
    app: &App,
    service: &str,
    image: String,
    ask: Ask,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let (cluster, service) = service_of(service)?;
    let by = asker(&ask);
    let request = manual::DeployRequest {
        cluster,
        service,
        image,
        force: ask.force,
        reason: ask.reason,
        request_id: ask.request_id,
    };
    answered(manual::deploy(&app.deps(None), request, &by).await)
}

async fn rollback(
    app: &App,
    service: &str,
    ask: Ask,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let (cluster, service) = service_of(service)?;
    let by = asker(&ask);
    let request = manual::RollbackRequest {
        cluster,
        service,
        force: ask.force,
        reason: ask.reason,
        request_id: ask.request_id,
    };
    answered(manual::rollback(&app.deps(None), request, &by).await)
}

async fn status(app: &App, service: &str) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let (cluster, service) = service_of(service)?;
    answered(manual::status(&app.deps(None), &cluster, &service).await)
}

async fn invoke(
    app: &App,
    function: &str,
    path: &Path,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let (out, ok) = run_event(app, function, path).await?;
    print_json(&out)?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs an event file through a function: what `invoke` prints, and whether it succeeded.
async fn run_event(
    app: &App,
    function: &str,
    path: &Path,
) -> Result<(Value, bool), Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let function = Function::parse(function)
        .filter(|f| *f != Function::Images)
        .ok_or_else(|| {
            format!("unknown function {function:?}: expected push, delete, quarantine or outcomes")
        })?;
    if function == Function::Outcomes {
        let out = app.outcome(text.as_bytes()).await?;
        let ok = out["outcome"] != "rejected";
        return Ok((out, ok));
    }
    let req = lambda_http::request::from_str(&text)
        .map_err(|e| format!("{} is not an API Gateway event: {e}", path.display()))?;
    let resp = imagehook_core::edge::http::handle(app, function, req).await;
    let status = resp.status();
    let headers: Map<String, Value> = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
        .collect();
    let body = String::from_utf8_lossy(resp.body().as_ref()).into_owned();
    let out = json!({"statusCode": status.as_u16(), "headers": headers, "body": body});
    Ok((out, status.is_success()))
}

/// `invoke` on a scratch copy of the store with deploys planned only: prints the response and
/// every record that would change, and changes nothing.
async fn simulate(
    app: &App,
    function: &str,
    path: &Path,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let before = app.dump().await?;
    let scratch = Arc::new(EmbeddedStore::seeded(before.clone())?);
    let sim = App::new(
        app.config().clone(),
        scratch.clone(),
        Arc::new(DryRunDeployer),
    );
    let (out, ok) = run_event(&sim, function, path).await?;
    let after = scratch.dump().await?;
    let changes = changes(before, after);
    print_json(&json!({"response": out, "changes": changes}))?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The records that differ, keyed by PK and SK, as {PK, SK, before, after} (null: absent).
fn changes(before: Vec<Map<String, Value>>, after: Vec<Map<String, Value>>) -> Vec<Value> {
    let key = |i: &Map<String, Value>| {
        (
            i.get("PK").and_then(Value::as_str).unwrap_or("").to_owned(),
            i.get("SK").and_then(Value::as_str).unwrap_or("").to_owned(),
        )
    };
    let mut all: std::collections::BTreeMap<(String, String), (Value, Value)> =
        std::collections::BTreeMap::new();
    for i in before {
        let k = key(&i);
        all.entry(k).or_insert((Value::Null, Value::Null)).0 = Value::Object(i);
    }
    for i in after {
        let k = key(&i);
        all.entry(k).or_insert((Value::Null, Value::Null)).1 = Value::Object(i);
    }
    all.into_iter()
        .filter(|(_, (b, a))| b != a)
        .map(|((pk, sk), (b, a))| json!({"PK": pk, "SK": sk, "before": b, "after": a}))
        .collect()
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
    let resp = imagehook_core::edge::images::handle(app.reader(), req).await;
    let body: Value = serde_json::from_slice(resp.body().as_ref())?;
    if resp.status().is_success() {
        print_json(&body)?;
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "imagehook: {}",
            body["message"].as_str().unwrap_or("failed")
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Groups raw items by what they are, in key order.
fn group(records: Vec<Map<String, Value>>) -> Value {
    let mut out = json!({
        "images": [], "image_tags": [], "regions": [], "changes": [], "tags": [],
        "services": [], "failed_rollouts": [], "deployments": [], "blocked": [],
        "rollouts": [], "history": [], "receipts": []
    });
    for r in records {
        let kind = match r.get("type").and_then(Value::as_str) {
            Some("image") => "images",
            Some("image_tag") => "image_tags",
            Some("region") => "regions",
            Some("change") => "changes",
            Some("failed_rollout") => "failed_rollouts",
            Some("tag") => "tags",
            Some("service") => "services",
            Some("deployment") => "deployments",
            Some("blocked") => "blocked",
            Some("rollout") => "rollouts",
            Some("gate") => "held",
            Some("stage_mark") => "stage_marks",
            Some("history" | "history_applied") => "history",
            _ => "receipts",
        };
        if let Some(Value::Array(list)) = out.get_mut(kind) {
            list.push(Value::Object(r));
        }
    }
    out
}
