//! A loopback stand-in for the one ECS call moto does not implement and the deployment guard
//! makes: DescribeServiceRevisions, as the Amazon ECS API reference defines it.
//!
//! - The ECS API is AWS JSON 1.1: `POST /` with `Content-Type: application/x-amz-json-1.1` and
//!   `X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Operation>`; answers are JSON of the
//!   same content type.
//! - Request: `{"serviceRevisionArns": ["string"]}`, required, at most 20 ARNs.
//! - Response: `{"serviceRevisions": [ServiceRevision], "failures": [Failure]}`. A revision
//!   carries `serviceRevisionArn`, `serviceArn`, `clusterArn`, `taskDefinition`, `launchType`,
//!   `createdAt` (epoch seconds) and `containerImages`: `[{"containerName", "image",
//!   "imageDigest"}]`. A revision the stand-in does not hold is a `Failure` (`arn`, `reason`),
//!   with `MISSING` as ECS's describe calls name a resource they do not find.
//! - Errors are HTTP 400 (the caller's) or 500 (`ServerException`) with `{"__type": "<code>",
//!   "message": "<text>"}`: `InvalidParameterException` for a missing, empty or oversized ARN
//!   list, `UnknownOperationException` for any other operation.
//!
//! Every request is logged ([`EcsRevisions::requests`]), and [`EcsRevisions::fail_with`] makes
//! every answer an error, to stand for ECS throttling or failing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

pub const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// DescribeServiceRevisions' bound on `serviceRevisionArns`.
pub const MAX_ARNS: usize = 20;
const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";

/// One container image of a revision, as `containerImages` lists it.
#[derive(Debug, Clone)]
pub struct Image {
    pub container: String,
    pub image: String,
    pub digest: Option<String>,
}

impl Image {
    pub fn new(container: &str, image: &str, digest: Option<&str>) -> Self {
        Self {
            container: container.to_owned(),
            image: image.to_owned(),
            digest: digest.map(str::to_owned),
        }
    }
}

/// One request as it arrived: its `X-Amz-Target` and JSON body.
#[derive(Debug, Clone)]
pub struct Logged {
    pub target: String,
    pub content_type: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct State {
    revisions: BTreeMap<String, Value>,
    next: u64,
    /// Every answer is this error while set: (status, `__type`).
    fault: Option<(StatusCode, String)>,
    log: Vec<Logged>,
}

pub struct EcsRevisions {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl EcsRevisions {
    /// Listens on 127.0.0.1 (an ephemeral port) from inside a Tokio runtime.
    pub fn start() -> EcsRevisions {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the ECS stand-in");
        let addr = listener.local_addr().expect("the stand-in's address");
        listener.set_nonblocking(true).expect("non-blocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("inside a Tokio runtime");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(Arc::clone(&shared), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        EcsRevisions { addr, state }
    }

    /// The endpoint an ECS client is pointed at.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Records a revision of `cluster/service` running `images`; its ARN.
    pub fn add_revision(&self, cluster: &str, service: &str, images: &[Image]) -> String {
        let mut s = self.lock();
        s.next += 1;
        let arn = format!(
            "arn:aws:ecs:{REGION}:{ACCOUNT}:service-revision/{cluster}/{service}/{}",
            9_313_423_515_462_893_900_u64 - s.next
        );
        let container_images: Vec<Value> = images
            .iter()
            .map(|i| {
                let mut c = json!({"containerName": i.container, "image": i.image});
                if let Some(d) = &i.digest {
                    c["imageDigest"] = json!(d);
                }
                c
            })
            .collect();
        let revision = json!({
            "serviceRevisionArn": arn,
            "serviceArn": format!("arn:aws:ecs:{REGION}:{ACCOUNT}:service/{cluster}/{service}"),
            "clusterArn": format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{cluster}"),
            "taskDefinition": format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{service}:{}", s.next),
            "launchType": "FARGATE",
            "platformVersion": "1.4.0",
            "containerImages": container_images,
            "guardDutyEnabled": false,
            "createdAt": 1_796_601_600.0,
        });
        s.revisions.insert(arn.clone(), revision);
        arn
    }

    /// Every answer is `code` with `status` until cleared with `None`.
    pub fn fail_with(&self, fault: Option<(u16, &str)>) {
        self.lock().fault = fault.map(|(status, code)| {
            (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                code.to_owned(),
            )
        });
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.lock().log.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("stand-in state")
    }
}

fn reply(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(CONTENT_TYPE),
    );
    resp
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    reply(status, &json!({"__type": code, "message": message}))
}

async fn answer(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let header_of = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let target = header_of("x-amz-target").unwrap_or_default();
    let content_type = header_of("content-type");
    let bytes = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut s = state.lock().expect("stand-in state");
    s.log.push(Logged {
        target: target.clone(),
        content_type: content_type.clone(),
        body: body.clone(),
    });
    if let Some((status, code)) = &s.fault {
        return Ok(error(*status, code, "injected by the test"));
    }
    if content_type.as_deref() != Some(CONTENT_TYPE) {
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "expected application/x-amz-json-1.1",
        ));
    }
    let Some(operation) = target.strip_prefix(TARGET_PREFIX) else {
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            "missing or foreign X-Amz-Target",
        ));
    };
    if operation != "DescribeServiceRevisions" {
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            &format!("{operation} is not served by this stand-in"),
        ));
    }
    let arns: Vec<String> = match body.get("serviceRevisionArns").and_then(Value::as_array) {
        Some(list) if !list.is_empty() && list.len() <= MAX_ARNS => {
            match list.iter().map(|v| v.as_str().map(str::to_owned)).collect() {
                Some(arns) => arns,
                None => {
                    return Ok(error(
                        StatusCode::BAD_REQUEST,
                        "InvalidParameterException",
                        "serviceRevisionArns must be strings",
                    ));
                }
            }
        }
        Some(list) if list.len() > MAX_ARNS => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterException",
                "You can specify a maximum of 20 ARNs.",
            ));
        }
        _ => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterException",
                "serviceRevisionArns is required",
            ));
        }
    };
    let mut revisions = Vec::new();
    let mut failures = Vec::new();
    for arn in arns {
        match s.revisions.get(&arn) {
            Some(r) => revisions.push(r.clone()),
            None => failures.push(json!({"arn": arn, "reason": "MISSING"})),
        }
    }
    Ok(reply(
        StatusCode::OK,
        &json!({"serviceRevisions": revisions, "failures": failures}),
    ))
}
