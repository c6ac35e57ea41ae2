//! Vulnerability scan results for ECR images, as EventBridge delivers them: ECR basic scanning
//! ("ECR Image Scan") and Amazon Inspector ("Inspector2 Scan" for a whole image, "Inspector2
//! Finding" for one vulnerability). Each becomes a `Quarantine` event carrying the counts; the
//! quarantine function compares them with `QUARANTINE_SEVERITY`.

use serde::Deserialize;
use serde_json::Value;

use super::common::{ParseContext, ParseError, non_empty, reference, timestamp, typed};
use super::eventbridge::{Envelope, ignored, registry_host};
use crate::model::event::{Action, ImageEvent, Parsed, Provider, ScanSummary};
use crate::model::reference::{Digest, ImageRef, Registry, Repository};

const P: Provider = Provider::EcrEventbridge;

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ScanDetail {
    #[serde(default)]
    scan_status: Option<String>,
    #[serde(default)]
    repository_name: Option<String>,
    #[serde(default)]
    image_digest: Option<String>,
    #[serde(default)]
    finding_severity_counts: std::collections::BTreeMap<String, u32>,
    /// Inspector's scans of other resources name them instead of a repository.
    #[serde(default)]
    instance_id: Option<String>,
    #[serde(default)]
    machine_image_id: Option<String>,
}

impl ScanDetail {
    /// What an Inspector scan covered when it was no ECR image: an EC2 instance, a machine image
    /// (AMI) or a Lambda function, which name no repository and which imagehook has no use for.
    fn other_resource(&self, env: &Envelope) -> Option<String> {
        if non_empty(&self.repository_name).is_some() || env.source != "aws.inspector2" {
            return None;
        }
        if let Some(id) = non_empty(&self.instance_id) {
            return Some(format!("EC2 instance {id}"));
        }
        if let Some(id) = non_empty(&self.machine_image_id) {
            return Some(format!("machine image {id}"));
        }
        env.resources
            .iter()
            .find(|r| arn_service(r) == Some("lambda"))
            .map(|arn| format!("Lambda function {arn}"))
    }
}

/// The whole answer to an event acknowledged without acting, with why.
fn ignore(env: &Envelope, reason: String) -> Result<Vec<Parsed>, ParseError> {
    Ok(vec![Parsed::Ignored(ignored(
        env,
        None,
        &env.detail_type,
        reason,
    ))])
}

/// The service of an ARN (`arn:<partition>:<service>:...`).
fn arn_service(arn: &str) -> Option<&str> {
    let mut parts = arn.strip_prefix("arn:")?.split(':');
    parts.next()?;
    parts.next()
}

/// A whole-image scan: ECR basic scanning (`COMPLETE`) or Inspector (`INITIAL_SCAN_COMPLETE`,
/// and later rescans).
pub(super) fn parse_scan(
    env: &Envelope,
    ctx: &ParseContext<'_>,
) -> Result<Vec<Parsed>, ParseError> {
    let detail: ScanDetail = typed(P, &env.detail)?;
    let status = detail.scan_status.as_deref().unwrap_or_default();
    let done = matches!(
        status,
        "COMPLETE" | "INITIAL_SCAN_COMPLETE" | "SCAN_COMPLETE"
    );
    if !done {
        let reason = format!("scan status {status:?}: no result to act on");
        return ignore(env, reason);
    }
    if let Some(resource) = detail.other_resource(env) {
        let reason =
            format!("Inspector scanned {resource}, not an ECR image: nothing to quarantine");
        return ignore(env, reason);
    }
    let scanner = if env.source == "aws.inspector2" {
        "inspector2"
    } else {
        "ecr-basic-scan"
    };
    let mut scan = ScanSummary {
        scanner: scanner.to_owned(),
        complete: true,
        ..ScanSummary::default()
    };
    for (severity, n) in &detail.finding_severity_counts {
        scan.add(severity, *n);
    }
    // Inspector names the repository by ARN, ECR by name.
    let (account, region, repository) = locate(
        env,
        non_empty(&detail.repository_name)
            .ok_or_else(|| ParseError::malformed(P, "scan without `detail.repository-name`"))?,
    )?;
    let digest = non_empty(&detail.image_digest)
        .ok_or_else(|| ParseError::malformed(P, "scan without `detail.image-digest`"))?;
    Ok(vec![Parsed::Image(event(
        env,
        ctx,
        &account,
        &region,
        &repository,
        digest,
        scan,
    )?)])
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FindingDetail {
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    resources: Vec<FindingResource>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FindingResource {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    details: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EcrImage {
    #[serde(default)]
    image_hash: Option<String>,
    #[serde(default)]
    repository_name: Option<String>,
    #[serde(default)]
    registry: Option<String>,
}

/// Inspector's resource type of an ECR image; its findings also cover `AWS_EC2_INSTANCE`,
/// `AWS_LAMBDA_FUNCTION` and others, which are not images imagehook records.
const ECR_IMAGE: &str = "AWS_ECR_CONTAINER_IMAGE";

/// One Inspector finding on an ECR image. An active finding counts one vulnerability of its
/// severity; a closed or suppressed one releases nothing (other findings may remain).
pub(super) fn parse_finding(
    env: &Envelope,
    ctx: &ParseContext<'_>,
) -> Result<Vec<Parsed>, ParseError> {
    let detail: FindingDetail = typed(P, &env.detail)?;
    let image = detail
        .resources
        .iter()
        .filter(|r| r.kind.as_deref() == Some(ECR_IMAGE))
        .find_map(|r| r.details.as_ref()?.get("awsEcrContainerImage"))
        .map(|v| typed::<EcrImage>(P, v))
        .transpose()?;
    let status = detail.status.as_deref().unwrap_or("ACTIVE");
    let image = match (image, status) {
        (Some(image), "ACTIVE") => image,
        (Some(_), _) => {
            return ignore(
                env,
                format!("Inspector finding with status {status:?}: nothing to act on"),
            );
        }
        (None, _) => {
            let kinds: Vec<&str> = detail
                .resources
                .iter()
                .filter_map(|r| r.kind.as_deref())
                .collect();
            return ignore(
                env,
                format!(
                    "Inspector finding on {}, not an ECR image: nothing to quarantine",
                    if kinds.is_empty() {
                        "no named resource".to_owned()
                    } else {
                        kinds.join(", ")
                    }
                ),
            );
        }
    };
    let mut scan = ScanSummary {
        scanner: "inspector2-finding".to_owned(),
        complete: false,
        ..ScanSummary::default()
    };
    scan.add(detail.severity.as_deref().unwrap_or_default(), 1);
    let repository = non_empty(&image.repository_name)
        .ok_or_else(|| ParseError::malformed(P, "finding without `repositoryName`"))?;
    let digest = non_empty(&image.image_hash)
        .ok_or_else(|| ParseError::malformed(P, "finding without `imageHash`"))?;
    let account = non_empty(&image.registry)
        .or(non_empty(&env.account))
        .ok_or_else(|| ParseError::malformed(P, "finding without a registry account"))?;
    let region =
        non_empty(&env.region).ok_or_else(|| ParseError::malformed(P, "event without `region`"))?;
    let mut e = event(env, ctx, account, region, repository, digest, scan)?;
    e.reason = detail.title.clone();
    Ok(vec![Parsed::Image(e)])
}

/// Account, region and repository name from a repository name or a repository ARN
/// (`arn:aws:ecr:<region>:<account>:repository/<name>`).
fn locate(env: &Envelope, name: &str) -> Result<(String, String, String), ParseError> {
    if let Some(rest) = name.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        if let [_partition, "ecr", region, account, resource] = parts.as_slice()
            && let Some(repo) = resource.strip_prefix("repository/")
        {
            return Ok(((*account).to_owned(), (*region).to_owned(), repo.to_owned()));
        }
        return Err(ParseError::malformed(
            P,
            format!("unrecognised repository ARN {name:?}"),
        ));
    }
    match (non_empty(&env.account), non_empty(&env.region)) {
        (Some(a), Some(r)) => Ok((a.to_owned(), r.to_owned(), name.to_owned())),
        _ => Err(ParseError::malformed(
            P,
            "event without `account` and `region`: the registry is unknown",
        )),
    }
}

fn event(
    env: &Envelope,
    ctx: &ParseContext<'_>,
    account: &str,
    region: &str,
    repository: &str,
    digest: &str,
    scan: ScanSummary,
) -> Result<ImageEvent, ParseError> {
    let image = ImageRef {
        registry: reference(P, Registry::parse(&registry_host(account, region)))?,
        repository: reference(P, Repository::parse(repository))?,
        tag: None,
        digest: Some(reference(P, Digest::parse(digest))?),
    };
    let occurred_at = match non_empty(&env.time) {
        Some(t) => timestamp(P, t)?,
        None => ctx.received_at.clone(),
    };
    Ok(
        ImageEvent::new(env.id.clone(), P, Action::Quarantine, image, occurred_at)
            .with_scan(Some(scan)),
    )
}

// Driven through the ECR envelope parser, which routes scans here: in a file of its own so
// that this parser does not import the one that imports it.
#[cfg(test)]
mod tests;
