//! Turning a verified request body into events: detect who sent it, then let that sender's parser
//! map its format onto the one event model.
//!
//! Detection is one table (`DETECTORS`): header hints first, because they are cheap and decisive,
//! then the body's shape. Parsers never see a sender they were not picked for.

mod acr;
mod alibaba_acr;
mod angos;
mod artifactory;
mod common;
mod distribution;
mod dockerhub;
mod ecr;
mod ecr_scan;
mod eventbridge;
mod eventgrid;
mod gar;
mod generic;
mod gitea;
mod github;
mod harbor;
mod nexus;
mod quay;

use http::HeaderMap;
use serde_json::Value;

use crate::model::event::{Action, Parsed, Provider, Timestamp};
use common::ParseFn;
pub use common::{ParseContext, ParseError, REGISTRY_HINT_HEADER, rejected};

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
        Provider::Artifactory,
        "JFrog Artifactory webhook",
        artifactory::header_hint,
        artifactory::body_shape,
        artifactory::parse,
    ),
    detector(
        Provider::AlibabaAcr,
        "Alibaba Cloud Container Registry webhook",
        alibaba_acr::header_hint,
        alibaba_acr::body_shape,
        alibaba_acr::parse,
    ),
    detector(
        Provider::Nexus,
        "Sonatype Nexus Repository webhook",
        nexus::header_hint,
        nexus::body_shape,
        nexus::parse,
    ),
    detector(
        Provider::Generic,
        "generic {\"image\": ...}",
        generic::header_hint,
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

/// The sender of a verified delivery, when it is one that retries every refusal for ever
/// ([`Provider::retries_refusals`]): named by the URL, its headers or its body's shape.
pub fn retrying_sender(body: &[u8], headers: &HeaderMap, hints: &UrlHints) -> Option<Provider> {
    hints
        .provider
        .or_else(|| {
            DETECTORS
                .iter()
                .find(|d| (d.header_hint)(headers))
                .map(|d| d.provider)
        })
        .or_else(|| {
            serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| detect(&v, headers))
        })
        .filter(|p| p.retries_refusals())
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

#[cfg(test)]
mod tests;
