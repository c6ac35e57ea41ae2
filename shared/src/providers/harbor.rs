//! Harbor (2.x) webhooks in either payload format of a webhook policy:
//! - Default: `{"type": "PUSH_ARTIFACT", "occur_at": <unix seconds>, "operator": ..,
//!   "event_data": {"resources": [{"digest", "tag", "resource_url"}], "repository": {..}}}`;
//! - CloudEvents (structured mode): `{"specversion": "1.0", "id", "type": "harbor.artifact.pushed",
//!   "time", "data": {<the same event_data>}}`.
//!
//! One event per resource. The registry host is the first component of `resource_url`
//! (`<host>/<project>/<repo>:<tag>` or `...@sha256:..`), the repository `repository.repo_full_name`.
//! A push by digest repeats the digest in `tag`: that is an untagged push. `DELETE_ARTIFACT`
//! removes the whole artifact (Harbor refuses deletes by tag), so it is a delete by digest.
//! `SCANNING_COMPLETED` carries the vulnerability counts and becomes a quarantine candidate.
//! Harbor signs nothing and sends no delivery id: the policy's Auth Header is sent verbatim as
//! `Authorization`.

use std::collections::BTreeMap;

use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::common::{ParseContext, ParseError, non_empty, reference, timestamp, typed};
use crate::model::event::{
    Action, IgnoredEvent, ImageEvent, Parsed, Provider, ScanSummary, Timestamp, content_id,
};
use crate::model::reference::{Digest, ImageRef, Registry, Repository, Tag};

const P: Provider = Provider::Harbor;

/// Every CloudEvents `type` Harbor sends starts with this.
const CE_TYPE_PREFIX: &str = "harbor.";

pub(super) fn header_hint(h: &HeaderMap) -> bool {
    // Harbor sends CloudEvents in structured mode; a binary-mode relay would move the type here.
    h.get("ce-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with(CE_TYPE_PREFIX))
}

pub(super) fn body_shape(v: &Value) -> bool {
    let ty = v.get("type").and_then(Value::as_str);
    let default = ty.is_some()
        && v.get("occur_at").is_some_and(Value::is_number)
        && v.get("event_data").is_some_and(Value::is_object);
    let cloudevents = v.get("specversion").is_some_and(Value::is_string)
        && ty.is_some_and(|t| t.starts_with(CE_TYPE_PREFIX))
        && v.get("data").is_some_and(Value::is_object);
    default || cloudevents
}

#[derive(Deserialize)]
struct Body {
    #[serde(rename = "type")]
    kind: String,
    /// CloudEvents only: Harbor formats the payload once per delivery, so retries repeat it.
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    specversion: Option<String>,
    /// CloudEvents only, RFC 3339.
    #[serde(default)]
    time: Option<String>,
    /// Default only, Unix seconds.
    #[serde(default)]
    occur_at: Option<i64>,
    #[serde(default)]
    event_data: Option<Data>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize, Default)]
struct Data {
    #[serde(default)]
    resources: Option<Vec<Resource>>,
    #[serde(default)]
    repository: Option<RepositoryInfo>,
}

#[derive(Deserialize, Default)]
struct Resource {
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    resource_url: Option<String>,
    /// Scan events: reports keyed by their MIME type.
    #[serde(default)]
    scan_overview: Option<BTreeMap<String, Value>>,
}

#[derive(Deserialize, Default)]
struct RepositoryInfo {
    #[serde(default)]
    repo_full_name: Option<String>,
}

#[derive(Deserialize)]
struct Report {
    #[serde(default)]
    scan_status: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    summary: Option<ReportSummary>,
    #[serde(default)]
    scanner: Option<Scanner>,
}

#[derive(Deserialize)]
struct ReportSummary {
    /// Counts by severity: `Critical`, `High`, `Medium`, `Low`, `Negligible`, `Unknown`.
    #[serde(default)]
    summary: Option<BTreeMap<String, u32>>,
}

#[derive(Deserialize)]
struct Scanner {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
}

enum Kind {
    Push,
    Delete,
    Scan,
    Ignore(&'static str),
}

/// Default types, their CloudEvents names, and Harbor 1.x's names for the image events.
fn kind_of(ty: &str) -> Kind {
    match ty {
        "PUSH_ARTIFACT" | "harbor.artifact.pushed" | "pushImage" => Kind::Push,
        "DELETE_ARTIFACT" | "harbor.artifact.deleted" | "deleteImage" => Kind::Delete,
        "SCANNING_COMPLETED" | "harbor.scan.completed" => Kind::Scan,
        "SCANNING_FAILED" | "harbor.scan.failed" => {
            Kind::Ignore("scan failed: no result to act on")
        }
        "SCANNING_STOPPED" | "harbor.scan.stopped" => {
            Kind::Ignore("scan stopped: no result to act on")
        }
        "PULL_ARTIFACT" | "harbor.artifact.pulled" | "pullImage" => {
            Kind::Ignore("pulls are not tracked")
        }
        "QUOTA_EXCEED" | "QUOTA_WARNING" | "harbor.quota.exceeded" | "harbor.quota.warned" => {
            Kind::Ignore("project quota notices are not image events")
        }
        "REPLICATION" | "harbor.replication.status.changed" => Kind::Ignore(
            "Harbor replication events name no digest (only \"<name> [n item(s) in total]\"), so they cannot say where a digest arrived: report arrivals with the generic form's \"replicate\" action",
        ),
        "TAG_RETENTION" | "harbor.tag_retention.finished" => Kind::Ignore(
            "tag retention summary: each artifact it deletes arrives as its own DELETE_ARTIFACT event",
        ),
        "UPLOAD_CHART" | "DOWNLOAD_CHART" | "DELETE_CHART" => {
            Kind::Ignore("Helm chart events are not container images")
        }
        _ => Kind::Ignore("this Harbor event type is not handled"),
    }
}

pub(super) fn parse(v: &Value, ctx: &ParseContext<'_>) -> Result<Vec<Parsed>, ParseError> {
    let body: Body = typed(P, v)?;
    let cloudevents = body.specversion.is_some();
    let data = if cloudevents {
        body.data.as_ref()
    } else {
        body.event_data.as_ref()
    };
    let empty = Data::default();
    let data = data.unwrap_or(&empty);
    let resources = data.resources.as_deref().unwrap_or_default();
    let repo_name = data
        .repository
        .as_ref()
        .and_then(|r| non_empty(&r.repo_full_name));
    let kind = kind_of(&body.kind);
    if let Kind::Ignore(reason) = kind {
        if resources.is_empty() {
            return Ok(vec![Parsed::Ignored(ignored(
                &body, None, 0, 1, repo_name, reason,
            ))]);
        }
        return Ok(resources
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Parsed::Ignored(ignored(
                    &body,
                    Some(r),
                    i,
                    resources.len(),
                    repo_name,
                    reason,
                ))
            })
            .collect());
    }
    let field = if cloudevents { "data" } else { "event_data" };
    if resources.is_empty() {
        return Err(ParseError::malformed(
            P,
            format!("{} event without `{field}.resources`", body.kind),
        ));
    }
    let occurred_at = occurred_at(&body, ctx)?;
    let mut out = Vec::with_capacity(resources.len());
    for (i, r) in resources.iter().enumerate() {
        let at = |name: &str| format!("`{field}.resources[{i}].{name}`");
        let url = non_empty(&r.resource_url).ok_or_else(|| {
            ParseError::malformed(
                P,
                format!(
                    "{} without {}: the registry is unknown",
                    body.kind,
                    at("resource_url")
                ),
            )
        })?;
        let (host, url_repo) = split_resource_url(url);
        let repository = repo_name.or(url_repo).ok_or_else(|| {
            ParseError::malformed(
                P,
                format!("{} without `{field}.repository.repo_full_name`", body.kind),
            )
        })?;
        let digest = non_empty(&r.digest)
            .map(|d| reference(P, Digest::parse(d)))
            .transpose()?;
        let tag = match kind {
            // The artifact goes with every tag it had.
            Kind::Delete | Kind::Scan => None,
            _ => real_tag(r)
                .map(|t| reference(P, Tag::parse(t)))
                .transpose()?,
        };
        let image = ImageRef {
            registry: reference(P, Registry::parse(host))?,
            repository: reference(P, Repository::parse(repository))?,
            tag,
            digest,
        };
        // The two must name one repository: an artifact is deployed by the host of one and
        // the path of the other, so a disagreement would deploy an image that is not there.
        if let (Some(named), Some(in_url)) = (repo_name, url_repo)
            && named != in_url
        {
            return Err(ParseError::malformed(
                P,
                format!(
                    "{} names repository {named:?} in `{field}.repository.repo_full_name` but {in_url:?} in {}",
                    body.kind,
                    at("resource_url")
                ),
            ));
        }
        if image.digest.is_none() && (image.tag.is_none() || matches!(kind, Kind::Scan)) {
            return Err(ParseError::malformed(
                P,
                format!("{} without {}", body.kind, at("digest")),
            ));
        }
        let (action, scan, reason) = match kind {
            Kind::Push => (Action::Push, None, None),
            Kind::Delete => (Action::Delete, None, None),
            _ => match scan_result(r) {
                Ok((scan, reason)) => (Action::Quarantine, Some(scan), Some(reason)),
                Err(reason) => {
                    out.push(Parsed::Ignored(ignored(
                        &body,
                        Some(r),
                        i,
                        resources.len(),
                        repo_name,
                        reason,
                    )));
                    continue;
                }
            },
        };
        let id = event_id(&body, r, i, resources.len(), repository);
        out.push(Parsed::Image(
            ImageEvent::new(id, P, action, image, occurred_at.clone())
                .with_scan(scan)
                .with_reason(reason),
        ));
    }
    Ok(out)
}

fn occurred_at(body: &Body, ctx: &ParseContext<'_>) -> Result<Timestamp, ParseError> {
    if let Some(t) = non_empty(&body.time) {
        return timestamp(P, t);
    }
    match body.occur_at {
        Some(secs) => Timestamp::from_unix(secs)
            .ok_or_else(|| ParseError::malformed(P, format!("`occur_at` {secs} is out of range"))),
        None => Ok(ctx.received_at.clone()),
    }
}

/// `host/project/repo:tag` or `host/project/repo@sha256:..` into the host and the repository.
fn split_resource_url(url: &str) -> (&str, Option<&str>) {
    let url = url.split_once("://").map_or(url, |(_, rest)| rest);
    let Some((host, path)) = url.split_once('/') else {
        return (url, None);
    };
    let path = path.split_once('@').map_or(path, |(p, _)| p);
    let last_slash = path.rfind('/').map_or(0, |i| i + 1);
    let path = match path[last_slash..].find(':') {
        Some(i) => &path[..last_slash + i],
        None => path,
    };
    (host, (!path.is_empty()).then_some(path))
}

/// The tag, unless Harbor repeated the digest in it (a push or pull by digest).
fn real_tag(r: &Resource) -> Option<&str> {
    non_empty(&r.tag).filter(|t| !t.starts_with("sha256:") && Some(*t) != r.digest.as_deref())
}

/// The vulnerability report of a scan, as counts, or why there is nothing to act on.
fn scan_result(r: &Resource) -> Result<(ScanSummary, String), &'static str> {
    let report = r
        .scan_overview
        .iter()
        .flatten()
        .filter(|(mime, _)| mime.contains("vulnerability.report") || mime.contains("vuln.report"))
        .find_map(|(_, v)| Report::deserialize(v).ok())
        .ok_or(
            "scan without a vulnerability report (an SBOM or other report): nothing to act on",
        )?;
    if !report
        .scan_status
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("success"))
    {
        return Err("scan completed without a successful vulnerability report");
    }
    let counts = report
        .summary
        .and_then(|s| s.summary)
        .ok_or("vulnerability report without a summary: nothing to act on")?;
    let mut scan = ScanSummary {
        scanner: "harbor-scan".into(),
        complete: true,
        ..ScanSummary::default()
    };
    for (severity, n) in &counts {
        scan.add(severity, *n);
    }
    let by = report
        .scanner
        .map(|s| {
            let name = s.name.unwrap_or_else(|| "unknown scanner".into());
            match s.version {
                Some(v) => format!("{name} {v}"),
                None => name,
            }
        })
        .unwrap_or_else(|| "Harbor's scanner".into());
    let severity = report
        .severity
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "None".into());
    Ok((
        scan,
        format!("Harbor scan by {by}: overall severity {severity}"),
    ))
}

/// The CloudEvents id (one per delivery, repeated on retries); Default deliveries have none, so
/// the fields that identify the event stand in.
fn event_id(body: &Body, r: &Resource, i: usize, n: usize, repository: &str) -> String {
    match non_empty(&body.id) {
        Some(id) if n == 1 => id.to_owned(),
        Some(id) => format!("{id}#{i}"),
        None => content_id(&[
            &body.kind,
            repository,
            r.digest.as_deref().unwrap_or_default(),
            r.tag.as_deref().unwrap_or_default(),
            &body.occur_at.map(|t| t.to_string()).unwrap_or_default(),
            body.time.as_deref().unwrap_or_default(),
        ]),
    }
}

fn ignored(
    body: &Body,
    r: Option<&Resource>,
    i: usize,
    n: usize,
    repo_name: Option<&str>,
    reason: &str,
) -> IgnoredEvent {
    let url = r.and_then(|r| non_empty(&r.resource_url));
    let (host, url_repo) = url.map_or((None, None), |u| {
        let (h, p) = split_resource_url(u);
        (Some(h), p)
    });
    let repository = repo_name.or(url_repo);
    let empty = Resource::default();
    let id = event_id(
        body,
        r.unwrap_or(&empty),
        i,
        n,
        repository.unwrap_or_default(),
    );
    IgnoredEvent {
        id: Some(id),
        provider: P,
        action: body.kind.clone(),
        reason: reason.to_owned(),
        registry: host.map(str::to_owned),
        repository: repository.map(str::to_owned),
        tag: r.and_then(real_tag).map(str::to_owned),
        digest: r.and_then(|r| non_empty(&r.digest)).map(str::to_owned),
    }
}

#[cfg(test)]
mod tests;
