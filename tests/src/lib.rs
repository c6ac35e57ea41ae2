//! Shared harness for the end-to-end and conformance suites: real SDK clients pointed at moto's
//! server (started by `scripts/test`), unique resource names per test, and API Gateway events
//! read from `events/`.

pub mod calls;
pub mod capture;
pub mod ecs_express;
pub mod ecs_revisions;
pub mod faults;
pub mod iam;
pub mod layers;
pub mod proxy;
pub mod registry;
pub mod template;

pub use calls::{
    CONTROL, GUARD, IMAGES, OUTCOMES, as_function, dynamo_client, dynamo_client_from, ecs_client,
    ecs_client_from, sns_client,
};

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use aws_sdk_ecs::types::{ContainerDefinition, KeyValuePair, PortMapping, Tag};
use imagehook_core::adapters::DynamoStore;
use imagehook_core::adapters::{DryRunDeployer, EcsDeployer};
use imagehook_core::app::App;
use imagehook_core::app::config::{Config, DeployMode};
use imagehook_core::auth::{AuthMode, Secret, Verifier};
use imagehook_core::model::function::Function;
use imagehook_core::model::rules::Rules;
use imagehook_core::ports::deployer::Deployer;
use imagehook_core::ports::store::StoreDump;
use serde_json::Value;

/// The workspace root (where `events/` lives).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// moto's endpoint. The suites talk to a real DynamoDB/ECS wire API; without one they cannot
/// run, and saying so is better than passing vacuously.
pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!("AWS_ENDPOINT_URL is not set: run the suite with ./scripts/test, which starts moto's server")
    })
}

pub async fn sdk() -> SdkConfig {
    let _ = endpoint();
    imagehook_core::adapters::aws::sdk_config().await
}

/// The functions' SDK configuration with every call sent to `url` (a stand-in, a proxy).
pub async fn sdk_at(url: impl Into<String>) -> SdkConfig {
    imagehook_core::adapters::aws::sdk_config()
        .await
        .to_builder()
        .endpoint_url(url)
        .build()
}

/// How many task-definition revisions the fixture's family has: one per rollout imagehook made.
pub async fn revisions(sdk: &SdkConfig, fx: &EcsFixture) -> usize {
    aws_sdk_ecs::Client::new(sdk)
        .list_task_definitions()
        .family_prefix(&fx.family)
        .send()
        .await
        .expect("ListTaskDefinitions")
        .task_definition_arns()
        .len()
}

/// An SDK configuration whose every call fails to connect (a closed port on loopback), with
/// retries cut short so the test is quick.
pub async fn unreachable_sdk() -> SdkConfig {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    sdk_at(format!("http://127.0.0.1:{port}"))
        .await
        .to_builder()
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
        .build()
}

/// Seconds since the Unix epoch, as senders stamp their signatures.
pub fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other test in this run (or an earlier run against the same server) uses.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{}", std::process::id(), t % 1_000_000_000)
}

pub async fn create_table(sdk: &SdkConfig) -> String {
    let name = unique("imagehook");
    let client = aws_sdk_dynamodb::Client::new(sdk);
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute")
    };
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .expect("key")
    };
    client
        .create_table()
        .table_name(&name)
        .attribute_definitions(attr("PK"))
        .attribute_definitions(attr("SK"))
        .attribute_definitions(attr("running"))
        .key_schema(key("PK", KeyType::Hash))
        .key_schema(key("SK", KeyType::Range))
        // The same sparse index as template.yaml: services by the image they run.
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(imagehook_core::adapters::RUNNING_INDEX)
                .key_schema(key("running", KeyType::Hash))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::Include)
                        .non_key_attributes("cluster")
                        .non_key_attributes("service")
                        .build(),
                )
                .build()
                .expect("index"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table");
    name
}

/// An ECS cluster with one service whose task definition has the app container (running
/// `app_image`) and an unrelated sidecar, with tags, so tests can check that only the app
/// container's image changes.
pub struct EcsFixture {
    pub cluster: String,
    pub service: String,
    pub family: String,
    pub task_definition_arn: String,
}

pub const TD_TAGS: &[(&str, &str)] = &[("team", "shop"), ("cost-center", "42")];

pub async fn create_service(sdk: &SdkConfig, app_image: &str) -> EcsFixture {
    let ecs = aws_sdk_ecs::Client::new(sdk);
    let cluster = unique("cluster");
    let service = unique("api");
    let family = unique("shop-api");
    ecs.create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .expect("create cluster");
    let app = ContainerDefinition::builder()
        .name("api")
        .image(app_image)
        .memory(256)
        .essential(true)
        .port_mappings(PortMapping::builder().container_port(8080).build())
        .environment(KeyValuePair::builder().name("MODE").value("prod").build())
        .command("serve")
        .build();
    let sidecar = ContainerDefinition::builder()
        .name("proxy")
        .image("public.ecr.aws/nginx/nginx:1.27")
        .memory(64)
        .essential(false)
        .build();
    let mut reg = ecs
        .register_task_definition()
        .family(&family)
        .container_definitions(app)
        .container_definitions(sidecar)
        .cpu("256")
        .memory("512")
        .execution_role_arn("arn:aws:iam::123456789012:role/ecsTaskExecutionRole");
    for (k, v) in TD_TAGS {
        reg = reg.tags(Tag::builder().key(*k).value(*v).build());
    }
    let td = reg.send().await.expect("register task definition");
    let arn = td
        .task_definition()
        .and_then(|t| t.task_definition_arn())
        .expect("task definition arn")
        .to_owned();
    ecs.create_service()
        .cluster(&cluster)
        .service_name(&service)
        .task_definition(&arn)
        .desired_count(1)
        .send()
        .await
        .expect("create service");
    EcsFixture {
        cluster,
        service,
        family,
        task_definition_arn: arn,
    }
}

/// A table and a service running `running_image`, for tests of one deployment path.
pub struct World {
    pub sdk: SdkConfig,
    pub table: String,
    pub fx: EcsFixture,
}

pub async fn world(running_image: &str) -> World {
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let fx = create_service(&sdk, running_image).await;
    World { sdk, table, fx }
}

impl World {
    /// Moves the service back to the fixture's own revision, as a person (or ECS's rollback)
    /// would, behind imagehook's back.
    pub async fn back_to_the_first_revision(&self) {
        aws_sdk_ecs::Client::new(&self.sdk)
            .update_service()
            .cluster(&self.fx.cluster)
            .service(&self.fx.service)
            .task_definition(&self.fx.task_definition_arn)
            .send()
            .await
            .expect("UpdateService");
    }

    /// An EventBridge "ECS Deployment State Change" for this world's service.
    pub fn state_change(&self, name: &str, deployment_id: &str, reason: &str) -> String {
        serde_json::json!({
            "version": "0", "id": unique("evb"), "detail-type": "ECS Deployment State Change",
            "source": "aws.ecs", "account": "123456789012", "time": "2026-11-20T10:15:30Z",
            "region": "us-east-1",
            "resources": [format!("arn:aws:ecs:us-east-1:123456789012:service/{}/{}",
                                  self.fx.cluster, self.fx.service)],
            "detail": {"eventType": "INFO", "eventName": name, "deploymentId": deployment_id,
                       "updatedAt": "2026-11-20T10:15:28Z", "reason": reason}
        })
        .to_string()
    }

    pub async fn item(&self, pk: &str, sk: &str) -> Option<Value> {
        get_item(&self.sdk, &self.table, pk, sk).await
    }

    /// The one deployment record the table holds.
    pub async fn only_deployment(&self) -> serde_json::Map<String, Value> {
        let mut deps: Vec<_> = all_items(&self.sdk, &self.table)
            .await
            .into_iter()
            .filter(|i| i["type"] == "deployment")
            .collect();
        assert_eq!(deps.len(), 1, "{deps:?}");
        deps.remove(0)
    }
}

/// Options for building an `App` the way a function's init would, with the pieces under test.
pub struct AppSpec<'a> {
    pub table: &'a str,
    pub rules: &'a str,
    pub auth: AuthMode,
    pub secrets: &'a [&'a str],
    pub deploy_mode: DeployMode,
    pub dynamo_sdk: &'a SdkConfig,
    pub ecs_sdk: &'a SdkConfig,
}

/// The configuration a function would read for `table` and `rules`, without authentication:
/// for tests that wire their own clients into an `App`.
pub fn open_config(table: &str, rules: &str, deploy_mode: DeployMode) -> Config {
    Config {
        table_name: Some(table.to_owned()),
        state_dir: None,
        webhooks: true,
        follow_clusters: Vec::new(),
        service_region: Some("us-east-1".to_owned()),
        registry_aliases: Default::default(),
        verifier: Verifier::new(AuthMode::None, None, vec![]).expect("verifier"),
        oidc_issuers: Vec::new(),
        rules: Rules::parse(rules).expect("rules"),
        deploy_mode,
        receipt_ttl_days: 7,
        lease: imagehook_core::pipeline::converge::DEFAULT_LEASE,
        quarantine: Default::default(),
        registry: Default::default(),
        notify: Default::default(),
    }
}

/// An app the way the sample events expect it (token auth with their token), on one SDK
/// configuration for both DynamoDB and ECS.
pub fn sample_app(sdk: &SdkConfig, table: &str, rules: &str, deploy_mode: DeployMode) -> App {
    sample_app_on(sdk, sdk, table, rules, deploy_mode)
}

/// `sample_app` with ECS reached through its own SDK configuration (a failing one, say).
pub fn sample_app_on(
    sdk: &SdkConfig,
    ecs_sdk: &SdkConfig,
    table: &str,
    rules: &str,
    deploy_mode: DeployMode,
) -> App {
    app(AppSpec {
        table,
        rules,
        auth: AuthMode::Token,
        secrets: &["sample-webhook-token"],
        deploy_mode,
        dynamo_sdk: sdk,
        ecs_sdk,
    })
}

/// The first event's deployments as (service, outcome, stage), sorted by service.
pub fn deployments_by_service(reply: &Value) -> Vec<(String, String, Value)> {
    let mut out: Vec<_> = reply["events"][0]["deployments"]
        .as_array()
        .expect("deployments")
        .iter()
        .map(|d| {
            (
                d["service"].as_str().unwrap_or_default().to_owned(),
                d["outcome"].as_str().unwrap_or_default().to_owned(),
                d["stage"].clone(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// An app without authentication that deploys, with DynamoDB and ECS both on `sdk`.
pub fn open_app(sdk: &SdkConfig, table: &str, rules: &str) -> App {
    app(AppSpec {
        table,
        rules,
        auth: AuthMode::None,
        secrets: &[],
        deploy_mode: DeployMode::Apply,
        dynamo_sdk: sdk,
        ecs_sdk: sdk,
    })
}

pub fn app(spec: AppSpec<'_>) -> App {
    app_with_policy(
        spec,
        imagehook_core::app::config::QuarantinePolicy::default(),
    )
}

/// `app` with a QUARANTINE_SEVERITY policy of the test's choosing.
pub fn app_with_policy(
    spec: AppSpec<'_>,
    quarantine: imagehook_core::app::config::QuarantinePolicy,
) -> App {
    configured_app(spec, quarantine, Default::default())
}

/// `app` with REGISTRY_ALIASES of the test's choosing.
pub fn app_with_aliases(
    spec: AppSpec<'_>,
    aliases: imagehook_core::app::config::RegistryAliases,
) -> App {
    configured_app(spec, Default::default(), aliases)
}

fn configured_app(
    spec: AppSpec<'_>,
    quarantine: imagehook_core::app::config::QuarantinePolicy,
    registry_aliases: imagehook_core::app::config::RegistryAliases,
) -> App {
    let verifier = Verifier::new(
        spec.auth,
        None,
        spec.secrets.iter().map(|s| Secret::new(*s)).collect(),
    )
    .expect("verifier");
    let config = Config {
        table_name: Some(spec.table.to_owned()),
        state_dir: None,
        webhooks: true,
        follow_clusters: Vec::new(),
        service_region: Some("us-east-1".to_owned()),
        registry_aliases,
        verifier,
        oidc_issuers: Vec::new(),
        rules: Rules::parse(spec.rules).expect("rules"),
        deploy_mode: spec.deploy_mode,
        receipt_ttl_days: 7,
        lease: imagehook_core::pipeline::converge::DEFAULT_LEASE,
        quarantine,
        registry: Default::default(),
        notify: Default::default(),
    };
    let store = Arc::new(DynamoStore::new(dynamo_client(spec.dynamo_sdk), spec.table));
    let deployer: Arc<dyn Deployer> = match spec.deploy_mode {
        DeployMode::Apply => Arc::new(
            EcsDeployer::new(ecs_client(spec.ecs_sdk))
                .with_aliases(config.registry_aliases.clone()),
        ),
        DeployMode::DryRun => Arc::new(DryRunDeployer),
    };
    App::new(config, store, deployer)
}

/// The text of an API Gateway event file in `events/`.
pub fn event_file(name: &str) -> String {
    let path = workspace_root().join("events").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An event file with its body replaced (and content-length kept right), for variants of the
/// shipped samples.
pub fn with_body(event: &str, body: &Value) -> String {
    let mut v: Value = serde_json::from_str(event).expect("event JSON");
    let text = body.to_string();
    let len = text.len().to_string();
    v["body"] = Value::String(text);
    for headers in ["headers", "multiValueHeaders"] {
        if let Some(Value::Object(h)) = v.get_mut(headers) {
            for (k, val) in h.iter_mut() {
                if k.eq_ignore_ascii_case("content-length") {
                    *val = if headers == "headers" {
                        Value::String(len.clone())
                    } else {
                        Value::Array(vec![Value::String(len.clone())])
                    };
                }
            }
        }
    }
    v.to_string()
}

/// The JSON body embedded in an event file.
pub fn body_of(event: &str) -> Value {
    let v: Value = serde_json::from_str(event).expect("event JSON");
    serde_json::from_str(v["body"].as_str().expect("body string")).expect("body JSON")
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
}

/// Runs an API Gateway event through a function exactly as the Lambda runtime would hand it over.
pub async fn invoke(app: &App, function: Function, event: &str) -> Reply {
    let req = lambda_http::request::from_str(event).expect("API Gateway event");
    let resp = as_function(
        function.name(),
        imagehook_core::edge::http::handle(app, function, req),
    )
    .await;
    let status = resp.status().as_u16();
    let body = serde_json::from_slice(resp.body().as_ref()).expect("JSON response body");
    Reply { status, body }
}

/// A request through a webhook function's handler, with what it reports for the metrics.
pub async fn handle_reported(
    app: &App,
    function: Function,
    req: lambda_http::Request,
) -> (
    lambda_http::Response<lambda_http::Body>,
    imagehook_core::edge::metrics::Report,
) {
    as_function(
        function.name(),
        imagehook_core::edge::http::handle_reported(app, function, req),
    )
    .await
}

/// An EventBridge event through the outcomes function, as its Lambda runtime hands it over.
pub async fn outcomes(
    app: &App,
    event: &str,
) -> Result<Value, imagehook_core::pipeline::PipelineError> {
    outcomes_reported(app, event).await.0
}

/// An EventBridge event through the outcomes function, with the metric lines it prints.
pub async fn outcomes_reported(
    app: &App,
    event: &str,
) -> (
    Result<Value, imagehook_core::pipeline::PipelineError>,
    Vec<String>,
) {
    as_function(
        OUTCOMES,
        imagehook_core::edge::lambda::outcome_reported(app, event.as_bytes(), 1_795_169_730_412),
    )
    .await
}

/// The raw item at a key, as DynamoDB holds it, read with the real client.
pub async fn get_item(sdk: &SdkConfig, table: &str, pk: &str, sk: &str) -> Option<Value> {
    let client = aws_sdk_dynamodb::Client::new(sdk);
    let out = client
        .get_item()
        .table_name(table)
        .key(
            "PK",
            aws_sdk_dynamodb::types::AttributeValue::S(pk.to_owned()),
        )
        .key(
            "SK",
            aws_sdk_dynamodb::types::AttributeValue::S(sk.to_owned()),
        )
        .consistent_read(true)
        .send()
        .await
        .expect("get item");
    out.item()
        .map(|item| Value::Object(imagehook_core::adapters::item_to_json(item)))
}

/// A digest as its items record it: the image item, with the items kept beside it gathered in:
/// `tags` (its `D#<digest>#T#` links), `regions`, `region_arrivals` and `replication_failures`
/// (its `D#<digest>#R#` items) and `history` (its `C#<digest>#` changes, in time order).
pub async fn get_image(sdk: &SdkConfig, table: &str, pk: &str, digest: &str) -> Option<Value> {
    let image = get_item(sdk, table, pk, &format!("D#{digest}")).await?;
    Some(gather_image(
        image,
        &all_items(sdk, table).await,
        pk,
        digest,
    ))
}

/// `get_image` over a dump already read (either store's).
pub fn gather_image(
    mut image: Value,
    items: &[serde_json::Map<String, Value>],
    pk: &str,
    digest: &str,
) -> Value {
    let under = |prefix: String| {
        items
            .iter()
            .filter(move |i| i["PK"] == pk)
            .filter(move |i| i["SK"].as_str().is_some_and(|sk| sk.starts_with(&prefix)))
    };
    let mut tags: Vec<Value> = under(format!("D#{digest}#T#"))
        .map(|i| i["tag"].clone())
        .collect();
    tags.sort_by_key(ToString::to_string);
    let regions: Vec<_> = under(format!("D#{digest}#R#")).collect();
    let arrived: Vec<&serde_json::Map<String, Value>> = regions
        .iter()
        .copied()
        .filter(|r| r.contains_key("arrived_at"))
        .collect();
    let o = image.as_object_mut().expect("an image item is an object");
    if !tags.is_empty() {
        o.insert("tags".into(), Value::Array(tags));
    }
    if !arrived.is_empty() {
        o.insert(
            "regions".into(),
            arrived.iter().map(|r| r["region"].clone()).collect(),
        );
        o.insert(
            "region_arrivals".into(),
            arrived
                .iter()
                .map(|r| {
                    serde_json::json!({"region": r["region"], "at": r["arrived_at"],
                                            "event": r["arrival_event"]})
                })
                .collect(),
        );
    }
    let failures: Vec<Value> = regions
        .iter()
        .filter(|r| r.contains_key("failed_at"))
        .map(|r| {
            serde_json::json!({"region": r["region"], "at": r["failed_at"],
                                    "reason": r["failure_reason"], "failures": r["failures"]})
        })
        .collect();
    if !failures.is_empty() {
        o.insert("replication_failures".into(), Value::Array(failures));
    }
    let history: Vec<Value> = under(format!("C#{digest}#"))
        .map(|c| Value::Object(c.clone()))
        .collect();
    if !history.is_empty() {
        o.insert("history".into(), Value::Array(history));
    }
    image
}

/// Every item in the table, via the store's own dump (a Scan).
pub async fn all_items(sdk: &SdkConfig, table: &str) -> Vec<serde_json::Map<String, Value>> {
    DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), table)
        .dump()
        .await
        .expect("scan")
}

/// What the service runs now: its task definition and that definition's containers and tags.
pub struct Running {
    pub task_definition_arn: String,
    pub task_definition: aws_sdk_ecs::types::TaskDefinition,
    pub tags: Vec<(String, String)>,
}

pub async fn running(sdk: &SdkConfig, fx: &EcsFixture) -> Running {
    let ecs = aws_sdk_ecs::Client::new(sdk);
    let svc = ecs
        .describe_services()
        .cluster(&fx.cluster)
        .services(&fx.service)
        .send()
        .await
        .expect("describe services");
    let arn = svc.services()[0]
        .task_definition()
        .expect("service task definition")
        .to_owned();
    let td = ecs
        .describe_task_definition()
        .task_definition(&arn)
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await
        .expect("describe task definition");
    let mut tags: Vec<(String, String)> = td
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or("").to_owned(),
                t.value().unwrap_or("").to_owned(),
            )
        })
        .collect();
    tags.sort();
    Running {
        task_definition_arn: arn,
        task_definition: td.task_definition().expect("task definition").clone(),
        tags,
    }
}

pub fn container_image(td: &aws_sdk_ecs::types::TaskDefinition, name: &str) -> String {
    td.container_definitions()
        .iter()
        .find(|c| c.name() == Some(name))
        .and_then(|c| c.image())
        .unwrap_or_else(|| panic!("no container {name}"))
        .to_owned()
}

/// The operation a DynamoDB or ECS request calls: both APIs speak JSON-RPC, and the operation
/// is the last part of X-Amz-Target.
pub fn operation_of(x_amz_target: Option<&str>) -> String {
    x_amz_target
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("?")
        .to_owned()
}

/// Every AWS call a client makes, by operation name, in order: the round-trip budget test counts
/// them. Recorded before each transmission, so a retried call counts again.
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<std::sync::Mutex<Vec<String>>>);

impl CallLog {
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("call log"))
    }
}

impl aws_sdk_dynamodb::config::Intercept for CallLog {
    fn name(&self) -> &'static str {
        "CallLog"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_dynamodb::config::RuntimeComponents,
        _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let operation = operation_of(context.request().headers().get("x-amz-target"));
        self.0.lock().expect("call log").push(operation);
        Ok(())
    }
}

/// DynamoDB and ECS clients that log their calls (and record them, as every client of an app).
pub fn counted_clients(
    sdk: &SdkConfig,
    dynamo: &CallLog,
    ecs: &CallLog,
) -> (aws_sdk_dynamodb::Client, aws_sdk_ecs::Client) {
    let d = aws_sdk_dynamodb::config::Builder::from(sdk)
        .interceptor(dynamo.clone())
        .build();
    let e = aws_sdk_ecs::config::Builder::from(sdk)
        .interceptor(ecs.clone())
        .build();
    (dynamo_client_from(d), ecs_client_from(e))
}

/// GET /images/{repository}[?stage=] through the images function's handler.
pub async fn images_api(app: &App, repository: &str, stage: Option<&str>) -> (u16, Value) {
    use lambda_http::RequestExt;
    let mut req = lambda_http::Request::default().with_path_parameters(
        std::collections::HashMap::from([("repository".to_owned(), repository.to_owned())]),
    );
    *req.method_mut() = lambda_http::http::Method::GET;
    if let Some(s) = stage {
        req = req.with_query_string_parameters(std::collections::HashMap::from([(
            "stage".to_owned(),
            s.to_owned(),
        )]));
    }
    let resp = as_function(
        IMAGES,
        imagehook_core::edge::images::handle(app.reader(), req),
    )
    .await;
    let body = serde_json::from_slice(resp.body().as_ref()).expect("JSON body");
    (resp.status().as_u16(), body)
}

/// A request to the control API through the control function's handler, as API Gateway hands
/// it over (HTTP API v2): `caller` is the IAM principal ARN its authorizer verified, `None` for
/// a request that reached the function unsigned.
pub async fn control_api(
    app: &App,
    method: &str,
    path: &str,
    body: Option<&str>,
    caller: Option<&str>,
) -> (u16, Value) {
    let mut context = serde_json::json!({
        "accountId": "123456789012",
        "apiId": "e2e",
        "domainName": "e2e.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "e2e",
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                 "sourceIp": "127.0.0.1", "userAgent": "e2e"},
        "requestId": "e2e",
        "routeKey": "$default",
        "stage": "$default",
        "time": "07/Dec/2026:00:00:00 +0000",
        "timeEpoch": 0,
    });
    if let Some(arn) = caller {
        context["authorizer"] = serde_json::json!({"iam": {
            "accessKey": "ASIAE2E", "accountId": "123456789012", "callerId": "AROAE2E:e2e",
            "principalOrgId": null, "userArn": arn, "userId": "AROAE2E:e2e"}});
    }
    let event = serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "e2e.execute-api.us-east-1.amazonaws.com"},
        "requestContext": context,
        "body": body,
        "isBase64Encoded": false,
    });
    let req = lambda_http::request::from_str(&event.to_string()).expect("an HTTP API v2 event");
    let resp = as_function(CONTROL, imagehook_core::edge::control::handle(app, req)).await;
    let body = serde_json::from_slice(resp.body().as_ref()).expect("JSON body");
    (resp.status().as_u16(), body)
}
