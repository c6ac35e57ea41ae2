//! The functions behind a loopback HTTP server, so curl or a local registry can send real
//! deliveries. Requests go through exactly the handler the Lambda runs.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use imagehook_core::app::App;
use imagehook_core::app::config::MAX_BODY_BYTES;
use imagehook_core::auth::{AuthMode, Presented};
use imagehook_core::edge::http::{ApiError, handle, json_response, path_token_refused};
use imagehook_core::model::function::Function;
use lambda_http::RequestExt;
use tokio::net::TcpListener;

use crate::connections::Connections;

/// The most request headers a connection may send, and their total size with the request line:
/// more is answered 431 and the connection closed, before any handler runs. In AWS, API
/// Gateway's own limits are tighter (10 KiB of request line and headers for an HTTP API).
const MAX_HEADERS: usize = 100;
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// How long a client may take to send a request's headers, and then its body. API Gateway
/// gives a webhook sender 30 s for the whole request; a registry sends a few KiB at once.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub async fn serve(app: App, addr: SocketAddr, max_connections: usize) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let app = Arc::new(app);
    tracing::info!(addr = %listener.local_addr()?, max_connections, "imagehook serving POST /push, /delete, /quarantine");
    let mut connections = Connections::new(max_connections);
    let mut refusing = false;
    loop {
        let accepted = tokio::select! {
            conn = listener.accept() => conn,
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("shutting down");
                return Ok(());
            }
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                refusing = false;
                stream
            }
            // Out of file descriptors (or a connection reset before it was accepted): keep
            // serving the connections already open, and try again shortly. Logged once per
            // episode, not per attempt.
            Err(e) => {
                if !refusing {
                    tracing::warn!(error = %e, "cannot accept connections for now; retrying");
                    refusing = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some((stream, slot)) = connections.admit(stream) else {
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(route(app, req).await) }
            });
            if let Err(e) = http1::Builder::new()
                .max_headers(MAX_HEADERS)
                .max_header_size(MAX_HEADER_BYTES)
                // A client that trickles its headers (slowloris) is cut off, and so is an idle
                // kept-alive connection that never sends the next request's headers.
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(error = %e, "connection closed");
            }
        });
    }
}

/// The routes of the template: `/<function>`, `/<function>/<provider>` and
/// `/hooks/<token>/<function>`; anything else is the one 404.
fn route_of(path: &str) -> Option<(Function, HashMap<String, String>)> {
    let function = |name: &str| Function::parse(name).filter(|f| f.is_webhook());
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        [f] => Some((function(f)?, HashMap::new())),
        [f, provider] => Some((
            function(f)?,
            HashMap::from([("provider".to_owned(), (*provider).to_owned())]),
        )),
        ["hooks", token, f] => Some((
            function(f)?,
            HashMap::from([("token".to_owned(), (*token).to_owned())]),
        )),
        _ => None,
    }
}

/// `GET /images/<repository>` takes the webhooks' credentials here, as IAM on the route does in
/// AWS: a header credential in the header modes; in `path-token` mode only
/// `/hooks/<token>/images/<repository>` exists, and `/images/...` is the unknown path's 404.
/// `None`: not an images path.
async fn images_route(
    app: &App,
    req: &hyper::Request<Incoming>,
) -> Option<Result<String, ApiError>> {
    let path = req.uri().path();
    let verifier = &app.config().verifier;
    let (token, repository) = match path.strip_prefix("/images/") {
        Some(r) => (None, r),
        None => {
            let rest = path.strip_prefix("/hooks/")?;
            let (token, r) = rest.split_once("/images/")?;
            (Some(token), r)
        }
    };
    if repository.is_empty() {
        return None;
    }
    let allowed = match (verifier.mode(), token) {
        (AuthMode::PathToken, None) => Err(ApiError::NotFound),
        (AuthMode::PathToken, Some(t)) if path_token_refused(app, Some(t)) => {
            Err(ApiError::PathToken)
        }
        (AuthMode::PathToken, Some(_)) => Ok(()),
        (_, Some(_)) => Err(ApiError::NotFound),
        // A GET has no body: a signature mode signs the empty body.
        (_, None) => verify_headers(app, req.headers()).await,
    };
    Some(allowed.map(|()| repository.to_owned()))
}

/// The credential of a request whose body is not read (yet): in a signature mode, the
/// signature of an empty body; in `oidc` mode, the token.
async fn verify_headers(app: &App, headers: &http::HeaderMap) -> Result<(), ApiError> {
    let presented = Presented {
        path_token: None,
        now: time_now(),
    };
    if let Some(oidc) = app.oidc() {
        oidc.verify(headers, presented.now).await?;
        return Ok(());
    }
    app.config()
        .verifier
        .verify(&[], headers, presented)
        .map_err(ApiError::Unauthorized)
}

/// In the header modes (token, basic, oidc) a webhook's credential is all in its headers, so a POST
/// without the right one is refused before a byte of its body is read: an unauthenticated
/// client cannot make the server buffer up to the body limit, or wait out the body timeout.
/// The handler verifies again, as in AWS. The signature modes sign the body and must read it.
async fn refused_before_body(app: &App, req: &hyper::Request<Incoming>) -> Option<ApiError> {
    let header_mode = matches!(
        app.config().verifier.mode(),
        AuthMode::Token | AuthMode::Basic | AuthMode::Oidc
    );
    // Other methods keep the handler's answers: 405, and Event Grid's OPTIONS handshake.
    if !header_mode || req.method() != http::Method::POST {
        return None;
    }
    verify_headers(app, req.headers()).await.err()
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

async fn route(app: Arc<App>, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let images = images_route(&app, &req).await;
    let resp = match (images, route_of(req.uri().path())) {
        (Some(Err(e)), _) => e.into_response(),
        (Some(Ok(repository)), _) => match to_lambda(req).await {
            Ok(req) => {
                let params = HashMap::from([("repository".to_owned(), repository)]);
                imagehook_core::edge::images::handle(app.reader(), req.with_path_parameters(params))
                    .await
            }
            Err(e) => e.into_response(),
        },
        (None, route) => route_response(&app, route, req).await,
    };
    let (parts, body) = resp.into_parts();
    hyper::Response::from_parts(parts, Full::new(Bytes::copy_from_slice(body.as_ref())))
}

async fn route_response(
    app: &Arc<App>,
    route: Option<(Function, HashMap<String, String>)>,
    req: hyper::Request<Incoming>,
) -> lambda_http::Response<lambda_http::Body> {
    match route {
        None => ApiError::NotFound.into_response(),
        // Before the body is read: a wrong token with a body over the limit is still the
        // unknown path's 404, not a 413 that shows the route exists.
        Some((_, params)) if path_token_refused(app, params.get("token").map(String::as_str)) => {
            ApiError::PathToken.into_response()
        }
        Some((function, params)) => {
            if let Some(e) = refused_before_body(app, &req).await {
                let mut resp = e.into_response();
                // The body stays unread: closing is cheaper than draining up to a mebibyte of it.
                resp.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
                return resp;
            }
            handled(app, function, params, req).await
        }
    }
}

/// The request read and run through the function's handler.
async fn handled(
    app: &Arc<App>,
    function: Function,
    params: HashMap<String, String>,
    req: hyper::Request<Incoming>,
) -> lambda_http::Response<lambda_http::Body> {
    match to_lambda(req).await {
        Ok(req) => {
            // In a task of its own: once the request is read, its work finishes even if the
            // client hangs up, as a Lambda invocation does when API Gateway stops waiting.
            // Dropping the connection drops only the wait for the answer.
            let app = Arc::clone(app);
            let req = req.with_path_parameters(params);
            match tokio::spawn(async move { handle(&app, function, req).await }).await {
                Ok(resp) => resp,
                Err(e) => {
                    tracing::error!(error = %e, "request handler failed");
                    json_response(
                        http::StatusCode::INTERNAL_SERVER_ERROR,
                        &serde_json::json!({"error": "internal", "message": "internal error"}),
                    )
                }
            }
        }
        Err(e) => e.into_response(),
    }
}

/// The request as lambda_http hands it to a function: same method, headers, body and query.
async fn to_lambda(req: hyper::Request<Incoming>) -> Result<lambda_http::Request, ApiError> {
    let (parts, body) = req.into_parts();
    // One byte over the limit is enough to answer 413 without reading an endless body.
    let read = tokio::time::timeout(
        BODY_READ_TIMEOUT,
        Limited::new(body, MAX_BODY_BYTES + 1).collect(),
    );
    let bytes = match read.await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(_)) => return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES + 1)),
        Err(_) => return Err(ApiError::RequestTimeout(BODY_READ_TIMEOUT)),
    };
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let body = if bytes.is_empty() {
        lambda_http::Body::Empty
    } else {
        lambda_http::Body::Binary(bytes.to_vec())
    };
    Ok(lambda_http::Request::from_parts(parts, body).with_query_string_parameters(query))
}
