//! What every sender's parser shares: the parse error, the context a parser gets, and small
//! readers of JSON, headers, times and references.

use http::HeaderMap;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::model::event::{Parsed, Provider, Timestamp, TimestampError};
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

pub(crate) type ParseFn = fn(&Value, &ParseContext<'_>) -> Result<Vec<Parsed>, ParseError>;

/// Deserialises a sender's typed view of the body, naming the sender in the error.
/// `v` as `T`; a value of the wrong type is refused naming its field (`target.size: invalid
/// type: string "12", expected u64`), so the sender knows what to fix.
pub(crate) fn typed<T: DeserializeOwned>(provider: Provider, v: &Value) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        ParseError::malformed(
            provider,
            if path == "." {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            },
        )
    })
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
/// A rejected event that could not be read far enough to say what it was.
pub fn rejected(provider: Provider, reason: String) -> crate::model::event::IgnoredEvent {
    crate::model::event::IgnoredEvent {
        id: None,
        provider,
        action: "unknown".to_owned(),
        reason,
        registry: None,
        repository: None,
        tag: None,
        digest: None,
    }
}

#[cfg(test)]
pub(crate) fn only_image(out: &[Parsed]) -> &crate::model::event::ImageEvent {
    match out {
        [Parsed::Image(e)] => e,
        other => panic!("expected one image event, got {other:?}"),
    }
}

/// The single ignored event a parse gave (tests).
#[cfg(test)]
pub(crate) fn only_ignored(out: &[Parsed]) -> &crate::model::event::IgnoredEvent {
    match out {
        [Parsed::Ignored(i)] => i,
        other => panic!("expected one ignored event, got {other:?}"),
    }
}

/// Runs one parser on a JSON value with these headers and a fixed arrival time.
#[cfg(test)]
pub(crate) fn run_parser_with(
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
pub(crate) fn run_parser(parse: ParseFn, v: &Value) -> Result<Vec<Parsed>, ParseError> {
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
