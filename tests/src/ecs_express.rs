//! A loopback stand-in for the two operations of Amazon ECS's JSON API that imagehook calls on
//! Express Mode services, which moto does not implement. It speaks the protocol the SDK speaks
//! to ECS (awsJson1_1): `POST /`, `Content-Type: application/x-amz-json-1.1`,
//! `X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Operation>`, a JSON body; errors are an
//! HTTP 400 with `{"__type": "<code>", "message": "..."}`. The shapes are the API reference's:
//!
//! - `DescribeExpressGatewayService {serviceArn, include?}` answers `{"service": {cluster,
//!   serviceName, serviceArn, infrastructureRoleArn, status: {statusCode}, currentDeployment,
//!   activeConfigurations: [{serviceRevisionArn, executionRoleArn, cpu, memory,
//!   primaryContainer: {image, containerPort, environment, ...}, createdAt, ...}], createdAt,
//!   updatedAt}}`; an unknown ARN is `ResourceNotFoundException` (the operation's error for a
//!   missing resource: its error list has no ServiceNotFoundException).
//! - `UpdateExpressGatewayService {serviceArn, primaryContainer?, cpu?, memory?, ...}` makes a
//!   new service revision from the newest configuration with each field the request names
//!   replaced as a whole (`primaryContainer` included: a container sent with only an image
//!   loses the rest, which is how a caller that changes more than it means to is caught), and
//!   answers `{"service": {serviceArn, cluster, serviceName, status, targetConfiguration,
//!   createdAt, updatedAt}}`; an unknown ARN is `ServiceNotFoundException`, a service that is
//!   not ACTIVE `ServiceNotActiveException`, a container without an image
//!   `InvalidParameterException`. The new revision replaces the active configurations at once:
//!   the stand-in's rollouts finish instantly.
//!
//! Every request's operation is logged in arrival order, each update's request body is kept,
//! and updates can be held back ([`ExpressEcs::set_update_delay`]) so that concurrent callers
//! overlap. Service ARNs read `arn:aws:ecs:us-east-1:123456789012:service/<cluster>/<name>`.
//! Clients reach it with [`ExpressEcs::sdk`] and `crate::calls::ecs_client`, so their calls are
//! recorded for the IAM check like every other ECS call.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};

const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";
const JSON_1_1: &str = "application/x-amz-json-1.1";
const ACCOUNT_REGION: &str = "us-east-1:123456789012";
/// The top-level fields of UpdateExpressGatewayService that change the configuration.
const UPDATABLE: &[&str] = &[
    "executionRoleArn",
    "healthCheckPath",
    "primaryContainer",
    "taskRoleArn",
    "networkConfiguration",
    "cpu",
    "memory",
    "scalingTarget",
    "taskDefinitionArn",
];

struct Service {
    cluster: String,
    name: String,
    status: String,
    configurations: Vec<Value>,
    revisions: u32,
}

#[derive(Default)]
struct State {
    services: BTreeMap<String, Service>,
    calls: Vec<String>,
    updates: Vec<Value>,
    update_delay: Duration,
    /// Answers to give instead of serving the next requests of an operation: (status, code).
    faults: BTreeMap<String, std::collections::VecDeque<(u16, String)>>,
    /// Seconds since the epoch the next configuration is created at: each one a second later,
    /// so "newest" is never a tie.
    clock: u64,
}

pub struct ExpressEcs {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    most_in_flight: Arc<AtomicUsize>,
}

impl ExpressEcs {
    /// Starts the stand-in on a free loopback port; must be called inside a Tokio runtime.
    pub fn start() -> ExpressEcs {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the stand-in");
        let addr = listener.local_addr().expect("the stand-in's address");
        listener.set_nonblocking(true).expect("non-blocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("inside a Tokio runtime");
        let state = Arc::new(Mutex::new(State {
            clock: 1_796_000_000,
            ..State::default()
        }));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most_in_flight = Arc::new(AtomicUsize::new(0));
        let shared = (in_flight, Arc::clone(&state), Arc::clone(&most_in_flight));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (in_flight, state, most) = shared.clone();
                        answer(state, in_flight, most, req)
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        ExpressEcs {
            addr,
            state,
            most_in_flight,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An SDK configuration whose clients send every ECS call here.
    pub async fn sdk(&self) -> SdkConfig {
        crate::sdk_at(self.url()).await
    }

    /// Creates an ACTIVE Express service running `image`, with a primary container that also
    /// has a port, a log configuration, a command, environment and a secret (what an update must
    /// keep); its ARN.
    pub fn create(&self, cluster: &str, name: &str, image: &str) -> String {
        let arn = format!("arn:aws:ecs:{ACCOUNT_REGION}:service/{cluster}/{name}");
        let mut state = self.lock();
        let container = json!({
            "image": image,
            "containerPort": 8080,
            "awsLogsConfiguration": {"logGroup": format!("/ecs/{name}"), "logStreamPrefix": "web"},
            "command": ["serve", "--port", "8080"],
            "environment": [{"name": "MODE", "value": "production"}],
            "secrets": [{"name": "DB_PASSWORD",
                         "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db"}],
        });
        let config = json!({
            "executionRoleArn": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
            "cpu": "256",
            "memory": "512",
            "healthCheckPath": "/health",
            "primaryContainer": container,
            "scalingTarget": {"minTaskCount": 1, "maxTaskCount": 4,
                              "autoScalingMetric": "AVERAGE_CPU", "autoScalingTargetValue": 60},
        });
        let mut service = Service {
            cluster: cluster.to_owned(),
            name: name.to_owned(),
            status: "ACTIVE".to_owned(),
            configurations: Vec::new(),
            revisions: 0,
        };
        let config = revision(&mut state.clock, &mut service, config);
        service.configurations = vec![config];
        state.services.insert(arn.clone(), service);
        arn
    }

    /// A change made elsewhere (the console, a pipeline): a new revision whose primary container
    /// runs `image`, nothing counted.
    pub fn set_image_elsewhere(&self, arn: &str, image: &str) {
        let mut state = self.lock();
        let State {
            services, clock, ..
        } = &mut *state;
        let service = services.get_mut(arn).expect("a service of the stand-in");
        let mut config = newest(service).clone();
        config["primaryContainer"]["image"] = json!(image);
        let config = revision(clock, service, config);
        service.configurations = vec![config];
    }

    /// Marks the service as being deleted: neither described ACTIVE nor updatable.
    pub fn set_status(&self, arn: &str, status: &str) {
        let mut state = self.lock();
        state
            .services
            .get_mut(arn)
            .expect("a service of the stand-in")
            .status = status.to_owned();
    }

    /// The newest configuration's primary container.
    pub fn primary_container(&self, arn: &str) -> Value {
        let state = self.lock();
        newest(state.services.get(arn).expect("a service of the stand-in"))["primaryContainer"]
            .clone()
    }

    /// The primary container's image.
    pub fn image(&self, arn: &str) -> String {
        self.primary_container(arn)["image"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Holds each UpdateExpressGatewayService back by `delay` before it is applied.
    pub fn set_update_delay(&self, delay: Duration) {
        self.lock().update_delay = delay;
    }

    /// Answers the next request for `op` with an error of `code` and HTTP `status` instead of
    /// serving it (ECS answers `ServerException` with a 500, throttling with a 400). Several
    /// calls fail that many requests, in order.
    pub fn fail_next(&self, op: &str, status: u16, code: &str) {
        self.lock()
            .faults
            .entry(op.to_owned())
            .or_default()
            .push_back((status, code.to_owned()));
    }

    /// How many requests for `op` arrived, refused ones included.
    pub fn count(&self, op: &str) -> usize {
        self.lock().calls.iter().filter(|c| *c == op).count()
    }

    /// The body of every UpdateExpressGatewayService that was applied, in order.
    pub fn updates(&self) -> Vec<Value> {
        self.lock().updates.clone()
    }

    /// The most UpdateExpressGatewayService requests that were ever being handled at once.
    pub fn most_concurrent_updates(&self) -> usize {
        self.most_in_flight.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The configuration the service was last given.
fn newest(service: &Service) -> &Value {
    service
        .configurations
        .iter()
        .max_by_key(|c| c["createdAt"].as_u64())
        .expect("a service has a configuration")
}

/// `config` as the service's next revision: its own revision ARN and creation time.
fn revision(clock: &mut u64, service: &mut Service, mut config: Value) -> Value {
    service.revisions += 1;
    *clock += 1;
    config["serviceRevisionArn"] = json!(format!(
        "arn:aws:ecs:{ACCOUNT_REGION}:service-revision/{}/{}/{}",
        service.cluster, service.name, service.revisions
    ));
    config["createdAt"] = json!(*clock);
    config
}

fn error(code: &str, message: &str) -> Response<Full<Bytes>> {
    error_with(StatusCode::BAD_REQUEST, code, message)
}

fn error_with(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = json!({"__type": code, "message": message}).to_string();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, JSON_1_1.parse().expect("a header"));
    resp
}

fn ok(body: &Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, JSON_1_1.parse().expect("a header"));
    resp
}

/// One InFlight per update being handled.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn answer(
    state: Arc<Mutex<State>>,
    in_flight: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let op = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .unwrap_or("?")
        .to_owned();
    let fault = {
        let mut state = lock(&state);
        state.calls.push(op.clone());
        state
            .faults
            .get_mut(&op)
            .and_then(std::collections::VecDeque::pop_front)
    };
    if let Some((status, code)) = fault {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Ok(error_with(status, &code, "failed by the test"));
    }
    if parts.method != Method::POST || parts.uri.path() != "/" {
        return Ok(error(
            "UnknownOperationException",
            "ECS's JSON API is POST /",
        ));
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if content_type != Some(JSON_1_1) {
        return Ok(error(
            "SerializationException",
            "expected Content-Type application/x-amz-json-1.1",
        ));
    }
    let Ok(Value::Object(input)) = serde_json::from_slice::<Value>(&body) else {
        return Ok(error(
            "SerializationException",
            "the body is not a JSON object",
        ));
    };
    let Some(arn) = input
        .get("serviceArn")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Ok(error("InvalidParameterException", "serviceArn is required"));
    };
    Ok(match op.as_str() {
        "DescribeExpressGatewayService" => describe(&state, &arn),
        "UpdateExpressGatewayService" => {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            let _counted = InFlight(&in_flight);
            let delay = lock(&state).update_delay;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            update(&state, &arn, input)
        }
        other => error(
            "UnknownOperationException",
            &format!("the stand-in does not serve {other}"),
        ),
    })
}

fn describe(state: &Mutex<State>, arn: &str) -> Response<Full<Bytes>> {
    let state = lock(state);
    let Some(service) = state.services.get(arn) else {
        return error(
            "ResourceNotFoundException",
            &format!("The specified Express service {arn} was not found."),
        );
    };
    ok(&json!({"service": {
        "cluster": service.cluster,
        "serviceName": service.name,
        "serviceArn": arn,
        "infrastructureRoleArn": "arn:aws:iam::123456789012:role/ecsInfrastructureRoleForExpressServices",
        "status": {"statusCode": service.status},
        "currentDeployment": format!("{arn}/deployment/{}", service.revisions),
        "activeConfigurations": service.configurations,
        "createdAt": 1_796_000_000,
        "updatedAt": newest(service)["createdAt"],
    }}))
}

fn update(state: &Mutex<State>, arn: &str, input: Map<String, Value>) -> Response<Full<Bytes>> {
    let mut state = lock(state);
    let State {
        services,
        updates,
        clock,
        ..
    } = &mut *state;
    let Some(service) = services.get_mut(arn) else {
        return error(
            "ServiceNotFoundException",
            &format!("Service not found: {arn}"),
        );
    };
    if service.status != "ACTIVE" {
        return error(
            "ServiceNotActiveException",
            &format!("Service {arn} is {}", service.status),
        );
    }
    if let Some(container) = input.get("primaryContainer")
        && container
            .get("image")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return error(
            "InvalidParameterException",
            "primaryContainer.image is required",
        );
    }
    let mut config = newest(service).clone();
    for field in UPDATABLE {
        if let Some(v) = input.get(*field) {
            config[*field] = v.clone();
        }
    }
    let config = revision(clock, service, config);
    service.configurations = vec![config.clone()];
    updates.push(Value::Object(input));
    ok(&json!({"service": {
        "serviceArn": arn,
        "cluster": service.cluster,
        "serviceName": service.name,
        "status": {"statusCode": service.status},
        "targetConfiguration": config,
        "createdAt": 1_796_000_000,
        "updatedAt": config["createdAt"],
    }}))
}
