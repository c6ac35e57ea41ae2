//! A loopback HTTP/1.1 reverse proxy in front of moto's server, for tests of what concurrent
//! callers do to DynamoDB and ECS: every request is forwarded as it came (method, path, query,
//! headers, body) and moto's answer is handed back as it came, while the proxy
//!
//! - records each request's operation, in arrival order ([`Proxy::calls`], [`Proxy::count`]);
//! - holds each ECS request for [`ProxyOptions::ecs_delay`] before forwarding it, so that ECS
//!   answers as slowly as it does in AWS (about 1.5 s per call) and concurrent callers really do
//!   overlap while one of them deploys;
//! - can fail the next request for an operation ([`Proxy::fail_next`]): [`Fail::Hang`] never
//!   answers it (a caller killed mid-call, as seen by the others: its call neither completes nor
//!   fails), [`Fail::Drop`] closes the connection without an answer. A failed request counts as
//!   arrived; it never reaches moto;
//! - with [`ProxyOptions::serialize_dynamodb_writes`], forwards DynamoDB writes one at a time.
//!
//! # Serialized DynamoDB writes
//!
//! DynamoDB applies each write atomically: a conditional `PutItem`, `UpdateItem` or
//! `DeleteItem` checks its condition and writes in one step, and a `TransactWriteItems` checks
//! all its conditions and writes all its items in one step, so two concurrent writers can never
//! both see a condition hold when only one of them may. moto's server answers requests on
//! several threads and applies these operations without a lock, so truly concurrent conditional
//! writes can interleave there (both read "absent", both write) in a way DynamoDB never allows.
//! With `serialize_dynamodb_writes`, the proxy forwards the DynamoDB write operations
//! (`TransactWriteItems`, `PutItem`, `UpdateItem`, `DeleteItem`, and `BatchWriteItem`) one at a
//! time through a Tokio mutex, held until moto's whole answer is read; reads pass freely. That
//! restores exactly DynamoDB's own per-request atomicity and nothing more: each write still
//! runs its conditions against whatever the writes before it left, requests still arrive in
//! whatever order the callers' concurrency produces, and no assertion of a test is weakened.
//!
//! # Use
//!
//! ```ignore
//! let proxy = Proxy::start(&endpoint(), ProxyOptions {
//!     ecs_delay: Duration::from_millis(1500),
//!     serialize_dynamodb_writes: true,
//! });
//! let sdk = proxy.sdk().await;                                    // waits as long as it takes
//! let quitter = proxy.sdk_with_timeout(Duration::from_secs(1), 1).await; // gives up
//! proxy.fail_next("UpdateService", Fail::Hang);
//! ```
//!
//! Dropping the [`Proxy`] stops it: it accepts no more connections and closes the ones it has,
//! hung requests included. [`Proxy::start`] must be called inside a Tokio runtime.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::watch;

/// The X-Amz-Target prefix of ECS's JSON API.
const ECS_TARGET: &str = "AmazonEC2ContainerServiceV20141113";
/// The X-Amz-Target prefix of DynamoDB's JSON API.
const DYNAMODB_TARGET: &str = "DynamoDB_20120810";

/// DynamoDB's write operations: forwarded one at a time with `serialize_dynamodb_writes`.
pub const DYNAMODB_WRITES: &[&str] = &[
    "TransactWriteItems",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
];

/// Headers that describe one connection rather than the message (RFC 9110 §7.6.1): not
/// forwarded in either direction; each side of the proxy frames its own messages.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

#[derive(Debug, Clone, Default)]
pub struct ProxyOptions {
    /// How long each ECS request is held before it is forwarded (zero: not at all).
    pub ecs_delay: Duration,
    /// Forward DynamoDB writes one at a time, as DynamoDB applies each atomically (see the
    /// module's documentation).
    pub serialize_dynamodb_writes: bool,
}

/// How [`Proxy::fail_next`] fails a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fail {
    /// Never answered: the proxy holds the request (until the proxy is dropped), so the caller's
    /// call times out if it has a timeout and waits forever if not.
    Hang,
    /// The connection is closed without an answer.
    Drop,
}

/// A running proxy; see the module's documentation.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Dropped with the proxy, which ends the accept loop and every connection.
    _shutdown: watch::Sender<()>,
}

struct Shared {
    /// moto's endpoint, without a trailing slash.
    upstream: String,
    options: ProxyOptions,
    client: Client<HttpConnector, Full<Bytes>>,
    calls: Mutex<Vec<String>>,
    faults: Mutex<HashMap<String, VecDeque<Fail>>>,
    writes: tokio::sync::Mutex<()>,
    /// DynamoDB writes forwarded and not yet answered, and the most there ever were.
    writes_in_flight: AtomicUsize,
    most_writes_in_flight: AtomicUsize,
}

/// One DynamoDB write forwarded to moto and not yet answered.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn new(shared: &'a Shared) -> Self {
        let now = shared.writes_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared
            .most_writes_in_flight
            .fetch_max(now, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.writes_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The request was failed with [`Fail::Drop`]: returned to hyper, which closes the connection
/// without writing a response.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the test proxy")
    }
}

impl std::error::Error for Dropped {}

impl Proxy {
    /// Starts a proxy on a free loopback port in front of `upstream` (moto's endpoint, e.g.
    /// [`crate::endpoint`]).
    pub fn start(upstream: &str, options: ProxyOptions) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let listener =
            tokio::net::TcpListener::from_std(listener).expect("the proxy inside a Tokio runtime");
        // A fresh connection to moto per request: no pooled connection can be closed by moto
        // just as a request is written to it.
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http();
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            options,
            client,
            calls: Mutex::default(),
            faults: Mutex::default(),
            writes: tokio::sync::Mutex::new(()),
            writes_in_flight: AtomicUsize::new(0),
            most_writes_in_flight: AtomicUsize::new(0),
        });
        let (shutdown, stopped) = watch::channel(());
        tokio::spawn(accept(listener, Arc::clone(&shared), stopped));
        Proxy {
            addr,
            shared,
            _shutdown: shutdown,
        }
    }

    /// A proxy in front of moto that only forwards DynamoDB writes one at a time, as DynamoDB
    /// applies each atomically: what every test of concurrent writers needs.
    pub fn atomic_writes() -> Proxy {
        Self::start(
            &crate::endpoint(),
            ProxyOptions {
                serialize_dynamodb_writes: true,
                ..ProxyOptions::default()
            },
        )
    }

    /// `http://127.0.0.1:PORT`: the endpoint clients use to go through the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests for `op` (e.g. `UpdateService`) arrived, failed ones included.
    pub fn count(&self, op: &str) -> usize {
        self.shared
            .calls
            .lock()
            .expect("call log")
            .iter()
            .filter(|c| *c == op)
            .count()
    }

    /// The operation of every request that arrived, in arrival order, failed ones included.
    pub fn calls(&self) -> Vec<String> {
        self.shared.calls.lock().expect("call log").clone()
    }

    /// The most DynamoDB writes (see [`DYNAMODB_WRITES`]) that moto was ever handling at once
    /// through this proxy: 1 with `serialize_dynamodb_writes`, however many callers write.
    pub fn most_concurrent_writes(&self) -> usize {
        self.shared.most_writes_in_flight.load(Ordering::SeqCst)
    }

    /// Forgets the requests that arrived so far and the most concurrent writes (faults armed
    /// with `fail_next` stay armed).
    pub fn reset(&self) {
        self.shared.calls.lock().expect("call log").clear();
        self.shared.most_writes_in_flight.store(
            self.shared.writes_in_flight.load(Ordering::SeqCst),
            Ordering::SeqCst,
        );
    }

    /// Fails the next request for `op` that arrives, as `kind` says. Several calls for one
    /// operation fail that many of its requests, in order.
    pub fn fail_next(&self, op: &str, kind: Fail) {
        self.shared
            .faults
            .lock()
            .expect("faults")
            .entry(op.to_owned())
            .or_default()
            .push_back(kind);
    }

    /// An SDK configuration whose clients go through the proxy, loaded as the functions load
    /// theirs; without timeouts, so a hung request holds its caller.
    pub async fn sdk(&self) -> SdkConfig {
        crate::sdk_at(self.url()).await
    }

    /// `sdk` for clients that give up: each attempt times out after `attempt_timeout`, and a
    /// call makes at most `max_attempts` attempts.
    pub async fn sdk_with_timeout(
        &self,
        attempt_timeout: Duration,
        max_attempts: u32,
    ) -> SdkConfig {
        self.sdk()
            .await
            .to_builder()
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(attempt_timeout)
                    .build(),
            )
            .retry_config(
                aws_config::retry::RetryConfig::standard().with_max_attempts(max_attempts),
            )
            .build()
    }
}

async fn accept(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<()>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => return,
        };
        let Ok((stream, _)) = accepted else {
            // Out of file descriptors, say: try again shortly rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let shared = Arc::clone(&shared);
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(Arc::clone(&shared), req));
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = stopped.changed() => {}
            }
        });
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let (mut parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Err(Dropped);
    };
    let (service, op) = classify(&parts.headers, &body);
    shared.calls.lock().expect("call log").push(op.clone());
    let fault = shared
        .faults
        .lock()
        .expect("faults")
        .get_mut(&op)
        .and_then(VecDeque::pop_front);
    match fault {
        Some(Fail::Hang) => std::future::pending::<()>().await,
        Some(Fail::Drop) => return Err(Dropped),
        None => {}
    }
    if service == "ecs" && !shared.options.ecs_delay.is_zero() {
        tokio::time::sleep(shared.options.ecs_delay).await;
    }
    let write = service == "dynamodb" && DYNAMODB_WRITES.contains(&op.as_str());
    let _serialized = if write && shared.options.serialize_dynamodb_writes {
        Some(shared.writes.lock().await)
    } else {
        None
    };
    let _in_flight = write.then(|| InFlight::new(&shared));

    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("{}{path}", shared.upstream)
        .parse::<Uri>()
        .expect("the upstream URI");
    parts.extensions = http::Extensions::new();
    strip_hop_by_hop(&mut parts.headers);
    let upstream = shared
        .client
        .request(Request::from_parts(parts, Full::new(body)))
        .await;
    let answer = match upstream {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            match body.collect().await {
                Ok(body) => {
                    strip_hop_by_hop(&mut parts.headers);
                    parts.extensions = http::Extensions::new();
                    Response::from_parts(parts, Full::new(body.to_bytes()))
                }
                Err(e) => bad_gateway(&format!("reading the upstream answer: {e}")),
            }
        }
        Err(e) => bad_gateway(&format!("forwarding to the upstream: {e}")),
    };
    Ok(answer)
}

fn bad_gateway(why: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(format!("test proxy: {why}"))));
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(HeaderName::from_static(name));
    }
}

/// A request's service (`ecs`, `dynamodb`, `sns`, ...) and operation. The JSON APIs name both
/// in X-Amz-Target; the query APIs (SNS) name the operation in the form body's `Action`, and
/// every signed request names its service in the credential scope of its Authorization.
pub fn classify(headers: &HeaderMap, body: &[u8]) -> (String, String) {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    let service = match target.and_then(|t| t.split_once('.')).map(|(p, _)| p) {
        Some(ECS_TARGET) => Some("ecs".to_owned()),
        Some(DYNAMODB_TARGET) => Some("dynamodb".to_owned()),
        _ => None,
    }
    .or_else(|| signed_service(headers))
    .unwrap_or_else(|| "?".to_owned());
    let op = match target {
        Some(t) => crate::operation_of(Some(t)),
        None => form_urlencoded::parse(body)
            .find(|(k, _)| k == "Action")
            .map_or_else(|| "?".to_owned(), |(_, v)| v.into_owned()),
    };
    (service, op)
}

/// The service in a SigV4 Authorization's credential scope (`Credential=AKID/date/region/
/// service/aws4_request`).
fn signed_service(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let credential = auth.split("Credential=").nth(1)?;
    let scope = credential.split([',', ' ']).next()?;
    scope.split('/').nth(3).map(str::to_owned)
}
