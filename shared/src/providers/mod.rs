//! Turning a verified request body into events: detect who sent it, then let that sender's parser
//! map its format onto the one event model.
//!
//! Detection is one table (`DETECTORS`): header hints first, because they are cheap and decisive,
//! then the body's shape. Parsers never see a sender they were not picked for.

mod acr;
mod angos;
mod distribution;
mod dockerhub;
mod ecr;
mod ecr_scan;
mod eventgrid;
mod gar;
mod generic;
mod gitea;
mod github;
mod harbor;
mod quay;

use http::HeaderMap;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::model::event::{Action, Parsed, Provider, Timestamp, TimestampError};
use crate::model::reference::ReferenceError;

/// Why a body could not be turned into events. Each variant maps to one status at the edge.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("the body is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("a form-encoded delivery needs a `payload` field holding the JSON event")]
    MissingFormPayload,
    #[error("unknown provider {name:?}: expected one of {}", provider_names())]
    UnknownProvider { name: String },
    #[error("region {value:?} is not a region name: 1 to 64 letters, digits, '-', '_', '.' or ':'")]
    BadRegion { value: String },
    #[error("unrecognised body: expected one of {}", .tried.join(", "))]
    UnknownShape { tried: Vec<&'static str> },
    #[error("{provider}: {message}")]
    Malformed { provider: Provider, message: String },
    #[error("{provider}: {source}")]
    Reference {
        provider: Provider,
        #[source]
        source: ReferenceError,
    },
    #[error("{provider}: {source}")]
    Timestamp {
        provider: Provider,
        #[source]
        source: TimestampError,
    },
}

fn provider_names() -> String {
    Provider::ALL
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl ParseError {
    pub(crate) fn malformed(provider: Provider, message: impl Into<String>) -> Self {
        Self::Malformed {
            provider,
            message: message.into(),
        }
    }
}

/// Where a sender whose events name no registry host (Angos) finds it: the edge fills this
/// header from the webhook URL's `?registry=<host>`, or the sender sets it.
pub const REGISTRY_HINT_HEADER: &str = "x-imagehook-registry";

/// Context a parser needs besides the body.
pub struct ParseContext<'a> {
    pub headers: &'a HeaderMap,
    /// When the request arrived: the event time for senders that give none.
    pub received_at: &'a Timestamp,
    /// The sender named by the route or `?provider=`: detection is skipped.
    pub provider: Option<Provider>,
}

type ParseFn = fn(&Value, &ParseContext<'_>) -> Result<Vec<Parsed>, ParseError>;

/// One sender: how to recognise it by header and by body, and how to parse it.
struct Detector {
    provider: Provider,
    /// The name used in the 400 that lists what was tried.
    format: &'static str,
    header_hint: fn(&HeaderMap) -> bool,
    body_shape: fn(&Value) -> bool,
    parse: ParseFn,
}

/// Every sender, most specific body shape first: a header hint picks a sender outright (when its
/// body shape agrees), otherwise the first shape that matches wins.
const DETECTORS: &[Detector] = &[
    detector(
        Provider::AcrEventGrid,
        "Azure Event Grid (Event Grid or CloudEvents schema)",
        eventgrid::header_hint,
        eventgrid::body_shape,
        eventgrid::parse,
    ),
    detector(
        Provider::EcrEventbridge,
        "Amazon EventBridge event (ECR, Inspector)",
        ecr::header_hint,
        ecr::body_shape,
        ecr::parse,
    ),
    detector(
        Provider::Distribution,
        "CNCF Distribution notification envelope",
        distribution::header_hint,
        distribution::body_shape,
        distribution::parse,
    ),
    detector(
        Provider::Harbor,
        "Harbor webhook (Default or CloudEvents)",
        harbor::header_hint,
        harbor::body_shape,
        harbor::parse,
    ),
    detector(
        Provider::ArtifactRegistry,
        "Google Artifact Registry via Pub/Sub push",
        gar::header_hint,
        gar::body_shape,
        gar::parse,
    ),
    detector(
        Provider::Gitea,
        "Gitea/Forgejo package webhook",
        gitea::header_hint,
        gitea::body_shape,
        gitea::parse,
    ),
    detector(
        Provider::GitHubPackages,
        "GitHub package / registry_package webhook",
        github::header_hint,
        github::body_shape,
        github::parse,
    ),
    detector(
        Provider::Quay,
        "Quay repo_push notification",
        quay::header_hint,
        quay::body_shape,
        quay::parse,
    ),
    detector(
        Provider::DockerHub,
        "Docker Hub webhook",
        dockerhub::header_hint,
        dockerhub::body_shape,
        dockerhub::parse,
    ),
    detector(
        Provider::Angos,
        "Angos registry event",
        angos::header_hint,
        angos::body_shape,
        angos::parse,
    ),
    detector(
        Provider::Acr,
        "Azure Container Registry webhook",
        acr::header_hint,
        acr::body_shape,
        acr::parse,
    ),
    detector(
        Provider::Generic,
        "generic {\"image\": ...}",
        |_| false,
        generic::body_shape,
        generic::parse,
    ),
];

const fn detector(
    provider: Provider,
    format: &'static str,
    header_hint: fn(&HeaderMap) -> bool,
    body_shape: fn(&Value) -> bool,
    parse: ParseFn,
) -> Detector {
    Detector {
        provider,
        format,
        header_hint,
        body_shape,
        parse,
    }
}

/// Parses a verified body into events, one entry per event in the request, in order.
pub fn parse(body: &[u8], ctx: &ParseContext<'_>) -> Result<Vec<Parsed>, ParseError> {
    let value: Value = serde_json::from_slice(body).map_err(ParseError::Json)?;
    if let Some(provider) = ctx.provider {
        let d = DETECTORS.iter().find(|d| d.provider == provider);
        return match d {
            Some(d) => (d.parse)(&value, ctx),
            None => Err(ParseError::UnknownShape { tried: Vec::new() }),
        };
    }
    match pick(&value, ctx.headers) {
        Some(d) => (d.parse)(&value, ctx),
        None => Err(ParseError::UnknownShape {
            tried: DETECTORS.iter().map(|d| d.format).collect(),
        }),
    }
}

pub use crate::model::payload::UrlHints;

/// Parses a request's body with what its URL said: the one path from bytes to events, for
/// deliveries and replays alike.
pub fn parse_request(
    body: &[u8],
    headers: &HeaderMap,
    hints: &UrlHints,
    received_at: &Timestamp,
) -> Result<Vec<Parsed>, ParseError> {
    let hint = hints
        .registry
        .as_deref()
        .and_then(|r| http::HeaderValue::from_str(r).ok());
    let headers = match hint {
        None => std::borrow::Cow::Borrowed(headers),
        Some(v) => {
            let mut h = headers.clone();
            h.insert(REGISTRY_HINT_HEADER, v);
            std::borrow::Cow::Owned(h)
        }
    };
    let mut events = parse(
        body,
        &ParseContext {
            headers: &headers,
            received_at,
            provider: hints.provider,
        },
    )?;
    in_region(&mut events, hints.region.as_deref())?;
    Ok(events)
}

/// Events a replica sent, with `?region=` on its webhook URL (ACR geo-replication: one webhook
/// per replica location). A push the sender did not place is placed there, and its id gets the
/// region, because each replica may send the same event id for its own arrival.
pub fn in_region(events: &mut [Parsed], region: Option<&str>) -> Result<(), ParseError> {
    let Some(region) = region else {
        return Ok(());
    };
    let valid = !region.is_empty()
        && region.len() <= 64
        && region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if !valid {
        return Err(ParseError::BadRegion {
            value: region.chars().take(64).collect(),
        });
    }
    for e in events.iter_mut() {
        if let Parsed::Image(e) = e
            && e.action == Action::Push
            && e.region.is_none()
        {
            e.region = Some(region.to_owned());
            e.id = format!("{}@{region}", e.id);
        }
    }
    Ok(())
}

/// Which provider a body would be parsed as (for logs on failure paths).
pub fn detect(body: &Value, headers: &HeaderMap) -> Option<Provider> {
    pick(body, headers).map(|d| d.provider)
}

/// The one detection, for `parse` and `detect` alike: the first sender whose header hint
/// matches, if its body shape agrees, else the first sender whose body shape matches.
fn pick(body: &Value, headers: &HeaderMap) -> Option<&'static Detector> {
    DETECTORS
        .iter()
        .find(|d| (d.header_hint)(headers))
        .filter(|d| (d.body_shape)(body))
        .or_else(|| DETECTORS.iter().find(|d| (d.body_shape)(body)))
}

/// Deserialises a sender's typed view of the body, naming the sender in the error.
pub(crate) fn typed<T: DeserializeOwned>(provider: Provider, v: &Value) -> Result<T, ParseError> {
    T::deserialize(v).map_err(|e| ParseError::malformed(provider, e.to_string()))
}

/// A header's value, trimmed; `None` when it is absent, empty or not text.
pub(crate) fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

pub(crate) fn user_agent_starts_with(headers: &HeaderMap, prefix: &str) -> bool {
    headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.starts_with(prefix))
}

pub(crate) fn timestamp(provider: Provider, s: &str) -> Result<Timestamp, ParseError> {
    Timestamp::parse(s).map_err(|source| ParseError::Timestamp { provider, source })
}

pub(crate) fn reference<T>(
    provider: Provider,
    r: Result<T, ReferenceError>,
) -> Result<T, ParseError> {
    r.map_err(|source| ParseError::Reference { provider, source })
}

/// An image reference from the parts an event names; `neither` is the error, in the sender's
/// own field names, for an event that names neither a tag nor a digest.
pub(crate) fn image_ref(
    provider: Provider,
    registry: &str,
    repository: &str,
    tag: Option<&str>,
    digest: Option<&str>,
    neither: impl FnOnce() -> String,
) -> Result<crate::model::reference::ImageRef, ParseError> {
    use crate::model::reference::{Digest, ImageRef, Registry, Repository, Tag};
    let image = ImageRef {
        registry: reference(provider, Registry::parse(registry))?,
        repository: reference(provider, Repository::parse(repository))?,
        tag: tag
            .map(|t| reference(provider, Tag::parse(t)))
            .transpose()?,
        digest: digest
            .map(|d| reference(provider, Digest::parse(d)))
            .transpose()?,
    };
    if image.tag.is_none() && image.digest.is_none() {
        return Err(ParseError::malformed(provider, neither()));
    }
    Ok(image)
}

/// An empty string means "absent" in several senders' formats (ACR's untagged pushes).
pub(crate) fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// The single image event a parse gave (tests).
#[cfg(test)]
fn only_image(out: &[Parsed]) -> &crate::model::event::ImageEvent {
    match out {
        [Parsed::Image(e)] => e,
        other => panic!("expected one image event, got {other:?}"),
    }
}

/// The single ignored event a parse gave (tests).
#[cfg(test)]
fn only_ignored(out: &[Parsed]) -> &crate::model::event::IgnoredEvent {
    match out {
        [Parsed::Ignored(i)] => i,
        other => panic!("expected one ignored event, got {other:?}"),
    }
}

/// Runs one parser on a JSON value with these headers and a fixed arrival time.
#[cfg(test)]
fn run_parser_with(
    parse: ParseFn,
    v: &Value,
    headers: &[(&'static str, &str)],
) -> Result<Vec<Parsed>, ParseError> {
    let mut h = HeaderMap::new();
    for (k, val) in headers {
        if let Ok(val) = http::HeaderValue::from_str(val) {
            h.insert(*k, val);
        }
    }
    let now = Timestamp::parse("2026-02-03T04:05:06Z").unwrap_or_else(|_| Timestamp::now());
    parse(
        v,
        &ParseContext {
            headers: &h,
            received_at: &now,
            provider: None,
        },
    )
}

/// Runs one parser on a JSON value with no headers and a fixed arrival time.
#[cfg(test)]
fn run_parser(parse: ParseFn, v: &Value) -> Result<Vec<Parsed>, ParseError> {
    let headers = HeaderMap::new();
    let now = Timestamp::from_unix(1_767_225_600).unwrap_or_else(Timestamp::now);
    parse(
        v,
        &ParseContext {
            headers: &headers,
            received_at: &now,
            provider: None,
        },
    )
}

#[cfg(test)]
mod tests;
