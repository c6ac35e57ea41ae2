//! Every AWS operation each function makes while the e2e suite runs, recorded on the real SDK
//! clients, for the least-privilege check (`iam-check`, see [`crate::iam`]).
//!
//! Which function makes a call is the scope a harness entry point opens around it: `invoke`
//! (push, delete, quarantine), `outcomes` (the outcomes function's `App::rollout`),
//! `images_api` (the images function), `control_api` (the control function) and the guard's
//! hook invocations (`as_function(GUARD, ..)`). Inside it, a task-local names the function. The
//! notifier sends from tasks it spawns, which a task-local does not reach; those calls are
//! attributed to the scope open on the thread that runs them. Each `#[tokio::test]` runs on its own
//! current-thread runtime, so that is the test's one open scope. When several are open on one
//! thread, the call is recorded without a function, and the check fails on it rather than guess.
//!
//! Only clients built here record (`dynamo_client`, `ecs_client`, `sns_client`,
//! `secrets_client` and their
//! `_from` forms, which `app`, `counted_clients` and the tests use for the clients they wire
//! into an `App`), and only inside a scope: fixtures that create tables and services are not
//! functions and are not recorded.
//!
//! Records are JSON lines ([`Call`]), each distinct one written once per test process, to a file
//! of its own under `IMAGEHOOK_IAM_CALLS` (default `target/iam-calls` in the workspace), so that
//! the whole suite's calls can be compared with `template.yaml` after every test ran.

use std::collections::HashSet;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::thread::ThreadId;

use aws_config::SdkConfig;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde::{Deserialize, Serialize};

/// The outcomes function's name in records (its binary is `imagehook-outcomes`).
pub const OUTCOMES: &str = "outcomes";
/// The images function's name in records (its binary is `imagehook-images`).
pub const IMAGES: &str = "images";
/// The control function's name in records (its binary is `imagehook-control`).
pub const CONTROL: &str = "control";
/// The deployment guard's name in records (its binary is `imagehook-guard`).
pub const GUARD: &str = "guard";
/// What a call is recorded as when several function scopes were open on its thread.
pub const UNATTRIBUTED: &str = "?";

/// The environment variable naming the directory of records.
pub const CALLS_DIR_VAR: &str = "IMAGEHOOK_IAM_CALLS";

/// Where records are written and read: `IMAGEHOOK_IAM_CALLS`, else `target/iam-calls` in the
/// workspace.
pub fn calls_dir() -> PathBuf {
    std::env::var_os(CALLS_DIR_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target").join("iam-calls"))
}

/// One AWS operation a function made, with what IAM needs to know beyond its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Call {
    /// `push`, `delete`, `quarantine`, `outcomes`, `images`: the binary is `imagehook-<name>`.
    pub function: String,
    /// The IAM service prefix: `dynamodb`, `ecs`, `sns`.
    pub service: String,
    /// The SDK operation, e.g. `TransactWriteItems`.
    pub operation: String,
    /// TransactWriteItems: the kinds of item the request held (`Put`, `Update`, `Delete`,
    /// `ConditionCheck`), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<String>,
    /// Query and Scan: the index named, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// RegisterTaskDefinition: tags were sent with it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub tags: bool,
    /// RegisterTaskDefinition: the definition names a task role or an execution role.
    #[serde(default, skip_serializing_if = "is_false")]
    pub roles: bool,
    /// For an unattributed call: the functions whose scopes were open on its thread.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Call {
    /// A call with nothing but its names.
    pub fn new(function: &str, service: &str, operation: &str) -> Self {
        Self {
            function: function.to_owned(),
            service: service.to_owned(),
            operation: operation.to_owned(),
            items: Vec::new(),
            index: None,
            tags: false,
            roles: false,
            candidates: Vec::new(),
        }
    }
}

// ------------------------------------------------------------------------------------------
// Function scopes.
// ------------------------------------------------------------------------------------------

tokio::task_local! {
    static FUNCTION: &'static str;
}

/// Scopes open per thread: (thread, scope id, function).
static OPEN: Mutex<Vec<(ThreadId, u64, &'static str)>> = Mutex::new(Vec::new());
static SCOPE_IDS: AtomicU64 = AtomicU64::new(0);

/// An open scope; closing it forgets it, on whatever thread that happens.
struct Open(u64);

impl Open {
    fn enter(function: &'static str) -> Self {
        let id = SCOPE_IDS.fetch_add(1, Ordering::Relaxed);
        open_scopes().push((std::thread::current().id(), id, function));
        Self(id)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        open_scopes().retain(|(_, id, _)| *id != self.0);
    }
}

fn open_scopes() -> std::sync::MutexGuard<'static, Vec<(ThreadId, u64, &'static str)>> {
    OPEN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `fut` as `function`: the AWS calls it makes on recording clients are that function's.
pub async fn as_function<F: Future>(function: &'static str, fut: F) -> F::Output {
    let _open = Open::enter(function);
    FUNCTION.scope(function, fut).await
}

/// The function a call made now belongs to: the task's scope, else the one scope open on this
/// thread; `Err` with the candidates when several are; `None` outside every scope.
fn current_function() -> Option<Result<&'static str, Vec<&'static str>>> {
    if let Ok(f) = FUNCTION.try_with(|f| *f) {
        return Some(Ok(f));
    }
    let me = std::thread::current().id();
    let mut here: Vec<&'static str> = open_scopes()
        .iter()
        .filter(|(thread, _, _)| *thread == me)
        .map(|(_, _, f)| *f)
        .collect();
    here.sort_unstable();
    here.dedup();
    match here.len() {
        0 => None,
        1 => Some(Ok(here[0])),
        _ => Some(Err(here)),
    }
}

// ------------------------------------------------------------------------------------------
// The recording interceptor and the clients that carry it.
// ------------------------------------------------------------------------------------------

/// Records each operation once, before it is serialized (so retries are one call), with the
/// details from its typed input.
#[derive(Debug, Clone, Copy)]
struct Recorder {
    service: &'static str,
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "IamCallRecorder"
    }

    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(function) = current_function() else {
            return Ok(());
        };
        let operation = cfg
            .load::<Metadata>()
            .map(|m| m.name().to_owned())
            .ok_or("the SDK gave the operation no metadata")?;
        let mut call = Call::new(UNATTRIBUTED, self.service, &operation);
        match function {
            Ok(f) => call.function = f.to_owned(),
            Err(candidates) => {
                call.candidates = candidates.iter().map(|s| (*s).to_owned()).collect()
            }
        }
        let input = context.input();
        if let Some(i) = input
            .downcast_ref::<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput>()
        {
            let mut kinds: Vec<String> = i
                .transact_items()
                .iter()
                .flat_map(|item| {
                    [
                        item.put().map(|_| "Put"),
                        item.update().map(|_| "Update"),
                        item.delete().map(|_| "Delete"),
                        item.condition_check().map(|_| "ConditionCheck"),
                    ]
                })
                .flatten()
                .map(str::to_owned)
                .collect();
            kinds.sort();
            kinds.dedup();
            call.items = kinds;
        } else if let Some(i) =
            input.downcast_ref::<aws_sdk_dynamodb::operation::query::QueryInput>()
        {
            call.index = i.index_name().map(str::to_owned);
        } else if let Some(i) = input.downcast_ref::<aws_sdk_dynamodb::operation::scan::ScanInput>()
        {
            call.index = i.index_name().map(str::to_owned);
        } else if let Some(i) = input.downcast_ref::<
            aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionInput,
        >() {
            call.tags = !i.tags().is_empty();
            call.roles = i.task_role_arn().is_some() || i.execution_role_arn().is_some();
        }
        record(call)
    }
}

/// A DynamoDB client on `sdk` whose calls are recorded.
pub fn dynamo_client(sdk: &SdkConfig) -> aws_sdk_dynamodb::Client {
    dynamo_client_from(aws_sdk_dynamodb::Config::from(sdk))
}

/// A DynamoDB client with `config` (its own interceptors, retries) whose calls are recorded.
pub fn dynamo_client_from(config: aws_sdk_dynamodb::Config) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        config
            .to_builder()
            .interceptor(Recorder {
                service: "dynamodb",
            })
            .build(),
    )
}

/// An ECS client on `sdk` whose calls are recorded.
pub fn ecs_client(sdk: &SdkConfig) -> aws_sdk_ecs::Client {
    ecs_client_from(aws_sdk_ecs::Config::from(sdk))
}

/// An ECS client with `config` whose calls are recorded.
pub fn ecs_client_from(config: aws_sdk_ecs::Config) -> aws_sdk_ecs::Client {
    aws_sdk_ecs::Client::from_conf(
        config
            .to_builder()
            .interceptor(Recorder { service: "ecs" })
            .build(),
    )
}

/// An SNS client on `sdk` whose calls are recorded.
pub fn sns_client(sdk: &SdkConfig) -> aws_sdk_sns::Client {
    let config = aws_sdk_sns::config::Builder::from(sdk)
        .interceptor(Recorder { service: "sns" })
        .build();
    aws_sdk_sns::Client::from_conf(config)
}

/// A Secrets Manager client on `sdk` whose calls are recorded (the webhook secret, read at init).
pub fn secrets_client(sdk: &SdkConfig) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(sdk)
            .interceptor(Recorder {
                service: "secretsmanager",
            })
            .build(),
    )
}

// ------------------------------------------------------------------------------------------
// The record file.
// ------------------------------------------------------------------------------------------

struct Sink {
    seen: HashSet<Call>,
    file: Option<std::fs::File>,
}

static SINK: LazyLock<Mutex<Sink>> = LazyLock::new(|| {
    Mutex::new(Sink {
        seen: HashSet::new(),
        file: None,
    })
});

/// Appends `call` to this process's record file, unless it is there already.
fn record(call: Call) -> Result<(), BoxError> {
    let mut sink = SINK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if sink.seen.contains(&call) {
        return Ok(());
    }
    if sink.file.is_none() {
        let dir = calls_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = dir.join(format!("calls-{}-{nanos}.jsonl", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        sink.file = Some(file);
    }
    let mut line = serde_json::to_string(&call)?;
    line.push('\n');
    if let Some(file) = sink.file.as_mut() {
        file.write_all(line.as_bytes())
            .map_err(|e| format!("cannot record an AWS call: {e}"))?;
    }
    sink.seen.insert(call);
    Ok(())
}

/// Every call recorded under `dir` (all its `*.jsonl` files).
pub fn read_calls(dir: &std::path::Path) -> Result<Vec<Call>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            out.push(
                serde_json::from_str(line)
                    .map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?,
            );
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}
