//! The HTTP edge shared by the Lambda functions and the local server: check the request, verify
//! it, parse it, run the function's path, and map the result to a response exactly once.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, header};
use lambda_http::{Body, RequestExt, Response};

use crate::app::config::{MAX_BODY_BYTES, MAX_EVENTS_PER_REQUEST};
use crate::app::{App, Function};
use crate::auth::oidc::Claims;
use crate::auth::{AuthMode, Presented};
pub use crate::edge::error::ApiError;
use crate::edge::metrics::Report;
pub use crate::edge::response::json_response;
use crate::model::event::{OutOfBounds, Parsed, Provider, Timestamp};
use crate::model::payload::Payload;
use crate::model::result::Accepted;
use crate::model::rules::Rules;
use crate::pipeline;
use crate::providers::{self, ParseError, UrlHints};

/// The body as bytes, whatever API Gateway made of it (text, or binary it base64-decoded).
pub fn body_bytes(body: &Body) -> Bytes {
    Bytes::copy_from_slice(body.as_ref())
}

/// How the body is encoded, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    /// `payload=<json>`, as GitHub and Gitea send when configured for form encoding.
    Form,
}

/// The request's content type, if it names one: its essence (lower case, parameters dropped),
/// and the refusal that names it (at most 100 characters of what the sender wrote).
pub(crate) fn content_type(headers: &HeaderMap) -> Option<(String, ApiError)> {
    let raw = headers.get(header::CONTENT_TYPE)?.to_str().unwrap_or("");
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Some((
        essence,
        ApiError::UnsupportedMediaType(raw.chars().take(100).collect()),
    ))
}

fn encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let Some((essence, refused)) = content_type(headers) else {
        return Ok(Encoding::Json);
    };
    if essence.is_empty() || essence == "application/json" || essence.ends_with("+json") {
        Ok(Encoding::Json)
    } else if essence == "application/x-www-form-urlencoded" {
        Ok(Encoding::Form)
    } else {
        Err(refused)
    }
}

/// The JSON document of a form-encoded delivery: its `payload` field.
fn form_payload(body: &[u8]) -> Result<Bytes, ApiError> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| Bytes::from(v.into_owned()))
        .ok_or(ApiError::Parse(ParseError::MissingFormPayload))
}

/// Event Grid's CloudEvents abuse protection: an OPTIONS request naming the sender's origin is
/// answered with that origin allowed. It carries no event and no credentials, and reveals
/// nothing.
fn abuse_protection(req: &lambda_http::Request) -> Response<Body> {
    let origin = req
        .headers()
        .get("webhook-request-origin")
        .and_then(|v| v.to_str().ok())
        .filter(|o| !o.is_empty() && o.len() <= 255)
        .unwrap_or("*");
    let mut resp = Response::new(Body::Empty);
    let headers = resp.headers_mut();
    if let Ok(v) = http::HeaderValue::from_str(origin) {
        headers.insert("webhook-allowed-origin", v);
    }
    headers.insert("webhook-allowed-rate", http::HeaderValue::from_static("*"));
    headers.insert(
        header::ALLOW,
        http::HeaderValue::from_static("POST, OPTIONS"),
    );
    resp
}

/// The sender named by `?provider=` or a `{provider}` route segment, if any.
fn provider_override(req: &lambda_http::Request) -> Result<Option<Provider>, ApiError> {
    let named = req
        .query_string_parameters_ref()
        .and_then(|q| q.first("provider").map(str::to_owned))
        .or_else(|| {
            req.path_parameters_ref()
                .and_then(|p| p.first("provider").map(str::to_owned))
        });
    match named {
        None => Ok(None),
        Some(name) => Provider::parse(&name).map(Some).ok_or_else(|| {
            ApiError::Parse(ParseError::UnknownProvider {
                name: name.chars().take(40).collect(),
            })
        }),
    }
}

/// Whether the app takes path tokens and `token` (the `{token}` route segment) is not one of
/// them. Such a request is answered as a path that does not exist (`ApiError::PathToken`), before
/// anything else about it is looked at, its body included.
pub fn path_token_refused(app: &App, token: Option<&str>) -> bool {
    let verifier = &app.config().verifier;
    let presented = Presented {
        path_token: token,
        now: 0,
    };
    verifier.mode() == AuthMode::PathToken
        && verifier.verify(&[], &HeaderMap::new(), presented).is_err()
}

/// Refuses the whole request, before anything is written, when an event's image is followed by a
/// service whose rule requires a claim the token lacks. Every rule naming the service counts,
/// whether or not it matched this image: a service is only as open as its strictest rule.
fn rule_claims(rules: &Rules, events: &[Parsed], claims: &Claims) -> Result<(), ApiError> {
    for e in events {
        let Parsed::Image(e) = e else { continue };
        for t in rules.targets(&e.image) {
            let unmet = rules
                .specs()
                .filter(|r| r.cluster == t.cluster && r.service == t.service)
                .find_map(|r| claims.unmet(&r.require_claims));
            if let Some(claim) = unmet {
                tracing::warn!(cluster = %t.cluster, service = %t.service, claim, "a deploy rule refuses the token");
                return Err(ApiError::ClaimRefused(claim.to_owned()));
            }
        }
    }
    Ok(())
}

/// Whether `sender` would retry the refusal `err` for ever, so it is answered as a rejected
/// event in a 200 instead. A wrong webhook URL (`?region=`, `?provider=`) is a setup fault every
/// event repeats: it stays a 4xx, for the operator to see in the sender's log.
fn retries(sender: Provider, err: &ApiError) -> bool {
    !matches!(
        err,
        ApiError::Parse(ParseError::BadRegion { .. } | ParseError::UnknownProvider { .. })
    ) && sender.retries_refusal(err.status().as_u16())
}

/// How far ahead of this clock a retrying sender's event may be and still be asked again
/// (503) rather than rejected: the accepted skew plus an hour.
const RETRYABLE_SKEW: std::time::Duration = std::time::Duration::from_secs(70 * 60);

/// Runs one request through a function: the single entry point of every binary.
pub async fn handle(app: &App, function: Function, req: lambda_http::Request) -> Response<Body> {
    handle_reported(app, function, req).await.0
}

/// `handle`, with what the request did for the metrics.
pub async fn handle_reported(
    app: &App,
    function: Function,
    req: lambda_http::Request,
) -> (Response<Body>, Report) {
    let mut report = Report::default();
    let resp = match handle_inner(app, function, req).await {
        Ok(Reply::Accepted(receipt)) => {
            report.notify_failures =
                crate::pipeline::notices::send(app.notifier(), &receipt.events).await;
            for e in &receipt.events {
                report
                    .events
                    .push((e.provider, e.action.to_string(), e.outcome.as_str()));
                report
                    .deployments
                    .extend(e.deployments.iter().map(|d| d.outcome.as_str()));
            }
            json_response(StatusCode::OK, &receipt)
        }
        Ok(Reply::Handshake(body)) => json_response(StatusCode::OK, &body),
        Ok(Reply::Raw(resp)) => resp,
        Err(e) => {
            report.auth_failed = match &e {
                ApiError::Unauthorized(_) | ApiError::PathToken | ApiError::ClaimRefused(_) => true,
                ApiError::Oidc(e) => !e.is_retryable(),
                _ => false,
            };
            e.into_response()
        }
    };
    report.status = resp.status().as_u16();
    (resp, report)
}

enum Reply {
    Accepted(Accepted),
    Handshake(serde_json::Value),
    Raw(Response<Body>),
}

async fn handle_inner(
    app: &App,
    function: Function,
    req: lambda_http::Request,
) -> Result<Reply, ApiError> {
    let verifier = &app.config().verifier;
    let presented = Presented {
        path_token: req.path_parameters_ref().and_then(|p| p.first("token")),
        now: time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    // With path tokens the URL is the secret: a wrong one must look exactly like a path that
    // does not exist, whatever else is wrong with the request, so it is checked first.
    if path_token_refused(app, presented.path_token) {
        return Err(ApiError::PathToken);
    }
    if req.method() == Method::OPTIONS {
        return Ok(Reply::Raw(abuse_protection(&req)));
    }
    if req.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed(req.method().clone(), "POST"));
    }
    let body = body_bytes(req.body());
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge(body.len()));
    }
    let encoding = encoding(req.headers())?;
    // The token is checked before the body is parsed, as a secret is; its claims are kept for
    // the deploy rules that require some.
    let claims = match app.oidc() {
        Some(oidc) => Some(oidc.verify(req.headers(), presented.now).await?),
        None => {
            verifier.verify(&body, req.headers(), presented)?;
            None
        }
    };
    let provider = provider_override(&req)?;
    let body = match encoding {
        Encoding::Json => body,
        Encoding::Form => form_payload(&body)?,
    };

    let received_at = Timestamp::now();
    let query = |k: &str| {
        req.query_string_parameters_ref()
            .and_then(|q| q.first(k))
            .map(str::to_owned)
    };
    let hints = UrlHints {
        provider,
        registry: query("registry"),
        region: query("region"),
    };
    // A sender that retries every refusal for ever gets its refusals as `rejected` events in a
    // 200: a 4xx would hold up every event it sends after this one. Others get the 4xx, which
    // they (or their dead-letter queue) show.
    // Who sent a request that could not be read far enough to say: found again only then, so a
    // delivery that parses is not parsed twice.
    let sender = std::sync::OnceLock::new();
    let retrying =
        || *sender.get_or_init(|| providers::retrying_sender(&body, req.headers(), &hints));
    let reject = |err: ApiError| match retrying() {
        Some(p) if retries(p, &err) => {
            Ok(Parsed::Rejected(providers::rejected(p, err.to_string())))
        }
        _ => Err(err),
    };
    let mut events = match providers::parse_request(&body, req.headers(), &hints, &received_at) {
        Ok(events) => events,
        Err(e) => vec![reject(ApiError::Parse(e))?],
    };
    // Refused whole, before the first write: a sender retrying the same batch would hit the
    // same limit, so half of it must not be recorded.
    if events.len() > MAX_EVENTS_PER_REQUEST {
        events = vec![reject(ApiError::TooManyEvents(events.len()))?];
    }
    // Also whole: one event over a limit refuses the request before anything is written; a
    // retrying sender's event is rejected alone.
    for e in &mut events {
        if let Parsed::Image(event) = e
            && let Err(over) = event.check_bounds(&received_at)
        {
            // A clock a little fast is outlived by the sender's retries; far ahead, never.
            if event.provider.retries_refusals()
                && matches!(over, OutOfBounds::Future { .. })
                && event.occurred_at.as_str() <= received_at.plus(RETRYABLE_SKEW).as_str()
            {
                return Err(ApiError::AheadForNow(over));
            }
            let over = ApiError::from(over);
            if !retries(event.provider, &over) {
                return Err(over);
            }
            let mut r = providers::rejected(event.provider, over.to_string());
            r.id = Some(event.id.chars().take(256).collect());
            r.action = event.action.as_str().to_owned();
            *e = Parsed::Rejected(r);
        }
    }
    if let Some(claims) = &claims {
        rule_claims(&app.config().rules, &events, claims)?;
    }
    if let Some(Parsed::Handshake(body)) = events.iter().find(|e| matches!(e, Parsed::Handshake(_)))
    {
        tracing::info!("handshake answered");
        return Ok(Reply::Handshake(body.clone()));
    }
    let payload = Payload::new(&body, hints);
    let deps = app.deps(Some(&payload));
    let results = pipeline::handle(&deps, function, events, &received_at).await?;
    Ok(Reply::Accepted(Accepted {
        received: results.len(),
        events: results,
    }))
}
