//! Amazon ECS Express Mode services as deploy targets. An Express service has no task
//! definition of ours to copy: ECS keeps its configuration in service revisions and moves it
//! with UpdateExpressGatewayService. So a deployment is one DescribeExpressGatewayService (what
//! the primary container runs now) and, unless it already runs the digest, one
//! UpdateExpressGatewayService that repeats the primary container as described with only its
//! image changed. Nothing else is sent: every other part of the service stays as ECS has it.

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{ExpressGatewayContainer, ExpressGatewayServiceConfiguration};

use super::ecs_errors::{Failure, classify};
use crate::model::policy::Decision;
use crate::model::reference::{ImageRef, image_name_of};
use crate::model::rules::Target;
use crate::ports::deployer::{DeployError, DeployOutcome, Deployment, Guard, Running};

/// What `running` names the primary container: an Express service has exactly one the API
/// lets us change, and drift checks compare it by its image, not its name.
pub const PRIMARY_CONTAINER: &str = "primaryContainer";

/// The Express service as DescribeExpressGatewayService answers it.
struct Described {
    /// The configuration the service was last asked to run (the newest active one).
    latest: ExpressGatewayServiceConfiguration,
    /// More than one active configuration: a deployment is still rolling out.
    settled: bool,
}

/// Describes the service: its newest active configuration, or why it cannot be deployed to.
async fn describe(client: &Client, target: &Target, arn: &str) -> Result<Described, Failure> {
    let resp = client
        .describe_express_gateway_service()
        .service_arn(arn)
        .send()
        .await
        .map_err(|e| classify("DescribeExpressGatewayService", e))?;
    let svc = resp.service().ok_or_else(|| {
        Failure::Permanent(format!(
            "DescribeExpressGatewayService returned no service for {arn}"
        ))
    })?;
    let status = svc
        .status()
        .and_then(|s| s.status_code())
        .map(|c| c.as_str().to_owned());
    if status.as_deref() != Some("ACTIVE") {
        return Err(Failure::Permanent(format!(
            "Express service {arn} is {}",
            status.as_deref().unwrap_or("of unknown status")
        )));
    }
    // The rule's cluster and service key imagehook's records: they must be this service's, or
    // two rules could share one service's door under different names.
    let cluster_matches = svc.cluster().is_some_and(|c| {
        c == target.cluster || c.rsplit_once('/').is_some_and(|(_, n)| n == target.cluster)
    });
    if !cluster_matches || svc.service_name() != Some(target.service.as_str()) {
        return Err(Failure::Permanent(format!(
            "Express service {arn} is {}/{}, not {}/{} as the rule names it",
            svc.cluster().unwrap_or("?"),
            svc.service_name().unwrap_or("?"),
            target.cluster,
            target.service
        )));
    }
    let configs = svc.active_configurations();
    // Newest by creation time; ECS lists them without a documented order.
    let latest = configs
        .iter()
        .max_by_key(|c| c.created_at().map(|t| (t.secs(), t.subsec_nanos())))
        .cloned()
        .ok_or_else(|| {
            Failure::Permanent(format!("Express service {arn} has no active configuration"))
        })?;
    Ok(Described {
        latest,
        settled: configs.len() <= 1,
    })
}

/// Moves the Express service `arn` to `image`, or says why not.
pub(super) async fn apply(
    client: &Client,
    target: &Target,
    arn: &str,
    image: &ImageRef,
    guard: &dyn Guard,
) -> Result<Deployment, Failure> {
    let described = describe(client, target, arn).await?;
    let revision = described.latest.service_revision_arn().map(str::to_owned);
    let current = described
        .latest
        .primary_container()
        .cloned()
        .ok_or_else(|| {
            Failure::Permanent(format!(
                "Express service {arn} describes no primary container"
            ))
        })?;
    let wanted = image.deployable();
    let mut d = Deployment::new(target, image, DeployOutcome::Unchanged);
    d.previous_task_definition = revision.clone();
    d.previous_image = Some(current.image().to_owned());
    if image_name_of(current.image()) != image.name() {
        d.outcome = DeployOutcome::Failed;
        return Ok(d.with_reason(format!(
            "the primary container of Express service {arn} runs {}, not {}",
            current.image(),
            image.name()
        )));
    }
    if runs_digest(current.image(), image) {
        d.task_definition = revision;
        return Ok(d.with_reason(format!("already runs {wanted}")));
    }
    if let Some(pushed) = &image.tag {
        let running = running_tag(current.image(), target.last_deployed.as_ref());
        if let Decision::Skip(why) = target.policy.decide(running.as_deref(), pushed.as_str()) {
            d.outcome = DeployOutcome::Skipped;
            d.task_definition = revision;
            return Ok(d.with_reason(why));
        }
    }
    if image.digest.is_none() {
        // UpdateExpressGatewayService with the image it already names is no new revision:
        // a tag without a digest cannot be rolled out again here, so it is never sent.
        d.outcome = DeployOutcome::Failed;
        return Ok(d.with_reason(format!(
            "Express services are deployed pinned by digest, and the event for {wanted} carried none"
        )));
    }

    // The last moment to stop: the service is described, nothing is changed yet.
    if let Some(why) = guard.check().await.map_err(Failure::Transient)? {
        d.outcome = DeployOutcome::Superseded;
        d.task_definition = revision;
        return Ok(d.with_reason(why));
    }
    let updated = client
        .update_express_gateway_service()
        .service_arn(arn)
        .primary_container(with_image(current, &wanted))
        .send()
        .await
        .map_err(|e| classify("UpdateExpressGatewayService", e))?;
    d.outcome = DeployOutcome::Updated;
    d.task_definition = updated
        .service()
        .and_then(|s| s.target_configuration())
        .and_then(|c| c.service_revision_arn())
        .map(str::to_owned);
    tracing::info!(
        express = %arn,
        cluster = %target.cluster,
        service = %target.service,
        image = %wanted,
        revision = d.task_definition.as_deref().unwrap_or(""),
        "Express service updated"
    );
    Ok(d)
}

/// What the Express service runs: its newest configuration's revision and primary image.
pub(super) async fn running(
    client: &Client,
    target: &Target,
    arn: &str,
) -> Result<Option<Running>, DeployError> {
    let described = match describe(client, target, arn).await {
        Ok(d) => d,
        Err(Failure::Transient(e)) => return Err(e),
        Err(Failure::Permanent(_)) => return Ok(None),
    };
    let Some(container) = described.latest.primary_container() else {
        return Ok(None);
    };
    Ok(Some(Running {
        task_definition: described
            .latest
            .service_revision_arn()
            .unwrap_or(arn)
            .to_owned(),
        containers: vec![(PRIMARY_CONTAINER.to_owned(), container.image().to_owned())],
        settled: described.settled,
    }))
}

/// The primary container as described, with only its image changed: UpdateExpressGatewayService
/// takes the container as a whole, so every field ECS described is sent back as it was.
fn with_image(mut container: ExpressGatewayContainer, image: &str) -> ExpressGatewayContainer {
    image.clone_into(&mut container.image);
    container
}

/// Whether `current` already names the image by its digest.
fn runs_digest(current: &str, image: &ImageRef) -> bool {
    match &image.digest {
        Some(d) => current
            .split_once('@')
            .is_some_and(|(name, cd)| cd == d.as_str() && image_name_of(name) == image.name()),
        None => false,
    }
}

/// The tag the primary container runs: the one in its image, or, when it is pinned by digest,
/// the tag imagehook deployed that digest as.
fn running_tag(current: &str, last_deployed: Option<&(String, Option<String>)>) -> Option<String> {
    let r = ImageRef::parse(current).ok()?;
    match (r.tag, r.digest, last_deployed) {
        (Some(tag), _, _) => Some(tag.to_string()),
        (None, Some(d), Some((digest, tag))) if d.as_str() == digest => tag.clone(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn a_primary_container_runs_an_image_only_by_the_same_name_and_digest() {
        let pushed = ImageRef::parse(&format!("r.example.com/shop/web:v2@{D1}")).unwrap();
        assert!(runs_digest(
            &format!("r.example.com/shop/web@{D1}"),
            &pushed
        ));
        assert!(runs_digest(
            &format!("r.example.com/shop/web:v1@{D1}"),
            &pushed
        ));
        assert!(!runs_digest(
            &format!("r.example.com/shop/web@{D2}"),
            &pushed
        ));
        assert!(!runs_digest(
            &format!("r.example.com/shop/api@{D1}"),
            &pushed
        ));
        assert!(!runs_digest("r.example.com/shop/web:v2", &pushed));
    }

    #[test]
    fn only_the_image_of_the_primary_container_changes() {
        let before = ExpressGatewayContainer::builder()
            .image(format!("r.example.com/shop/web@{D1}"))
            .container_port(8080)
            .command("serve")
            .build()
            .unwrap();
        let after = with_image(before.clone(), &format!("r.example.com/shop/web@{D2}"));
        assert_eq!(after.image(), format!("r.example.com/shop/web@{D2}"));
        assert_eq!(after.container_port(), Some(8080));
        assert_eq!(after.command(), before.command());
    }
}
