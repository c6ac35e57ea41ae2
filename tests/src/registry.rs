//! A loopback stand-in for a container registry's API, as the Distribution specification
//! (OCI distribution-spec v1.1, and Docker's token authentication) defines what the push
//! function's resolver relies on:
//!
//! - `HEAD` and `GET /v2/<name>/manifests/<reference>`: `200` with `Docker-Content-Digest` (the
//!   SHA-256 of the manifest's bytes), `Content-Type` and `Content-Length`; the body on `GET`
//!   only. The manifest is served only if its media type is in `Accept` (an OCI index asked for
//!   without the index type is `404 MANIFEST_UNKNOWN`, as Distribution answers).
//! - Unknown tags and repositories: `404` with `{"errors": [{"code": "MANIFEST_UNKNOWN" |
//!   "NAME_UNKNOWN", ...}]}` on `GET` (a `HEAD` answer has no body).
//! - [`Auth::Token`]: a request without a token is `401` with `WWW-Authenticate: Bearer
//!   realm="http://<host>/token",service="<host>",scope="repository:<name>:pull"`; `GET /token`
//!   hands out a token only for that service and a pull scope of a repository it holds, and
//!   only with the right HTTP Basic login when the stand-in has one (a private repository).
//!   A token is good for the one scope it was issued for.
//! - [`Auth::Basic`]: `401` with `WWW-Authenticate: Basic realm="..."` until the login is sent.
//!
//! Every request is logged ([`Registry::requests`]), and answers can be held back
//! ([`Registry::set_delay`]) to stand for a registry that does not answer in time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use sha2::{Digest as _, Sha256};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// How the stand-in wants to be asked.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No authentication.
    Open,
    /// Docker's token flow; with a login, the token service refuses anonymous requests.
    Token { login: Option<(String, String)> },
    /// HTTP Basic on every registry request.
    Basic { login: (String, String) },
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub accept: Option<String>,
    pub authorization: Option<String>,
}

struct State {
    /// (repository, tag) -> (media type, manifest bytes).
    manifests: HashMap<(String, String), (String, Vec<u8>)>,
    auth: Auth,
    /// Issued token -> the scope it was issued for.
    tokens: HashMap<String, String>,
    delay: Duration,
    log: Vec<Logged>,
}

pub struct Registry {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Registry {
    pub fn start(auth: Auth) -> Registry {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the registry");
        let addr = listener.local_addr().expect("the registry's address");
        listener.set_nonblocking(true).expect("non-blocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("inside a Tokio runtime");
        let state = Arc::new(Mutex::new(State {
            manifests: HashMap::new(),
            auth,
            tokens: HashMap::new(),
            delay: Duration::ZERO,
            log: Vec::new(),
        }));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(Arc::clone(&shared), addr, req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Registry { addr, state }
    }

    /// `127.0.0.1:PORT`: the registry host images on the stand-in are named with.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Pushes a manifest of `media_type` whose content `seed` makes unique, under `tag`
    /// (moving the tag if it was there); its digest.
    pub fn push(&self, repository: &str, tag: &str, media_type: &str, seed: &str) -> String {
        let manifest = json!({
            "schemaVersion": 2, "mediaType": media_type,
            "annotations": {"org.opencontainers.image.revision": seed},
            "manifests": [], "layers": [],
        })
        .to_string()
        .into_bytes();
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest)));
        self.lock().manifests.insert(
            (repository.to_owned(), tag.to_owned()),
            (media_type.to_owned(), manifest),
        );
        digest
    }

    /// Holds every answer back by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.lock().log.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("registry state")
    }
}

fn reply(status: StatusCode, headers: &[(&str, String)], body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            header::HeaderName::from_bytes(k.as_bytes()),
            header::HeaderValue::from_str(v),
        ) {
            resp.headers_mut().append(k, v);
        }
    }
    resp
}

fn errors(
    status: StatusCode,
    code: &str,
    message: &str,
    extra: &[(&str, String)],
) -> Response<Full<Bytes>> {
    let body = json!({"errors": [{"code": code, "message": message, "detail": null}]})
        .to_string()
        .into_bytes();
    let mut headers = vec![("content-type", "application/json".to_owned())];
    headers.extend(extra.iter().cloned());
    reply(status, &headers, body)
}

fn basic_login(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

async fn answer(
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (method, path, query, headers) = (
        req.method().clone(),
        req.uri().path().to_owned(),
        req.uri().query().unwrap_or_default().to_owned(),
        req.headers().clone(),
    );
    let delay = {
        let mut s = state.lock().expect("registry state");
        s.log.push(Logged {
            method: method.to_string(),
            path: path.clone(),
            accept: headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            authorization: headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        });
        s.delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut s = state.lock().expect("registry state");
    let host = addr.to_string();
    if path == "/token" && method == Method::GET {
        return Ok(token(&mut s, &host, &query, &headers));
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Ok(errors(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "not a registry path",
            &[],
        ));
    };
    let Some((name, reference)) = rest.rsplit_once("/manifests/") else {
        return Ok(errors(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "not a manifest path",
            &[],
        ));
    };
    if method != Method::HEAD && method != Method::GET {
        return Ok(errors(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "read only",
            &[],
        ));
    }
    let scope = format!("repository:{name}:pull");
    let authorized = match &s.auth {
        Auth::Open => true,
        Auth::Token { .. } => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| s.tokens.get(t) == Some(&scope)),
        Auth::Basic { login } => basic_login(&headers).as_ref() == Some(login),
    };
    if !authorized {
        let challenge = match &s.auth {
            Auth::Basic { .. } => r#"Basic realm="stand-in registry""#.to_owned(),
            _ => format!(r#"Bearer realm="http://{host}/token",service="{host}",scope="{scope}""#),
        };
        let resp = errors(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required",
            &[("www-authenticate", challenge)],
        );
        return Ok(without_body(resp, &method));
    }
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.split(';').next().unwrap_or_default().trim().to_owned())
        .collect::<Vec<_>>();
    let resp = match s.manifests.get(&(name.to_owned(), reference.to_owned())) {
        None if !s.manifests.keys().any(|(n, _)| n == name) => errors(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to registry",
            &[],
        ),
        None => errors(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
            &[],
        ),
        Some((media_type, _)) if !accept.iter().any(|a| a == media_type) => errors(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "the manifest's media type is not in Accept",
            &[],
        ),
        Some((media_type, bytes)) => {
            let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
            reply(
                StatusCode::OK,
                &[
                    ("content-type", media_type.clone()),
                    ("docker-content-digest", digest),
                ],
                bytes.clone(),
            )
        }
    };
    Ok(without_body(resp, &method))
}

/// A HEAD answer: the GET's headers (Content-Length included), no body.
fn without_body(resp: Response<Full<Bytes>>, method: &Method) -> Response<Full<Bytes>> {
    if method != Method::HEAD {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let len = hyper::body::Body::size_hint(&body).exact().unwrap_or(0);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    Response::from_parts(parts, Full::new(Bytes::new()))
}

fn token(s: &mut State, host: &str, query: &str, headers: &HeaderMap) -> Response<Full<Bytes>> {
    let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let scope = params.get("scope").cloned().unwrap_or_default();
    let wanted = match &s.auth {
        Auth::Token { login } => login.clone(),
        _ => return errors(StatusCode::NOT_FOUND, "NOT_FOUND", "no token service", &[]),
    };
    if wanted.is_some() && basic_login(headers) != wanted {
        return errors(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "login required",
            &[],
        );
    }
    let known = scope
        .strip_prefix("repository:")
        .and_then(|r| r.strip_suffix(":pull"))
        .is_some_and(|name| s.manifests.keys().any(|(n, _)| n == name));
    if params.get("service").map(String::as_str) != Some(host) || !known {
        return errors(
            StatusCode::FORBIDDEN,
            "DENIED",
            "scope or service not granted",
            &[],
        );
    }
    let token = format!(
        "tok-{}-{}",
        s.tokens.len(),
        hex::encode(Sha256::digest(scope.as_bytes()))
    );
    s.tokens.insert(token.clone(), scope);
    reply(
        StatusCode::OK,
        &[("content-type", "application/json".to_owned())],
        json!({"token": token, "access_token": token, "expires_in": 300})
            .to_string()
            .into_bytes(),
    )
}
