//! The ECS adapter: describe the services (batched), read each current task definition, register a
//! copy with only the image changed, and move the service to it. The SDK's types stay in here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ecs::Client;
use aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionFluentBuilder;
use aws_sdk_ecs::types::{ContainerDefinition, Tag, TaskDefinition, TaskDefinitionField};

use super::aws::Lazy;
use super::ecs_errors::{DESCRIBE_BATCH, Failure, classify};
use super::express;
use super::follow::Discovery;
use crate::model::policy::Decision;
use crate::model::reference::{ImageRef, RegistryAliases, image_name_of};
use crate::model::rules::Target;
use crate::ports::deployer::{DeployError, DeployOutcome, Deployer, Deployment, Guard, Running};

/// Every revision imagehook registers carries this tag, so it can be told from revisions that
/// infrastructure-as-code registered.
pub const MANAGED_BY: (&str, &str) = ("managed-by", "imagehook");

#[derive(Debug, Clone)]
pub struct EcsDeployer {
    client: Arc<Lazy<Client>>,
    discovery: Option<Arc<Discovery>>,
    /// REGISTRY_ALIASES: a task definition may name a registry by any of its names.
    aliases: Arc<RegistryAliases>,
}

impl EcsDeployer {
    pub fn new(client: Client) -> Self {
        Self::with_client(Lazy::ready(client))
    }

    /// The deployer of the functions: the ECS client is built on the first ECS call.
    pub fn from_sdk(sdk: &aws_types::SdkConfig) -> Self {
        let sdk = sdk.clone();
        Self::with_client(Lazy::new(move || Client::new(&sdk)))
    }

    fn with_client(client: Lazy<Client>) -> Self {
        Self {
            client: Arc::new(client),
            discovery: None,
            aliases: Arc::default(),
        }
    }

    /// Task definitions may name a registry by an alias; the container keeps the name it uses.
    pub fn with_aliases(mut self, aliases: RegistryAliases) -> Self {
        self.aliases = Arc::new(aliases);
        self
    }

    /// Also deploy to services in `clusters` that carry an `imagehook:follow` tag.
    pub fn with_discovery(mut self, clusters: Vec<String>, ttl: Duration) -> Self {
        if !clusters.is_empty() {
            self.discovery = Some(Arc::new(Discovery::new(self.client.clone(), clusters, ttl)));
        }
        self
    }
}

impl EcsDeployer {
    /// An ECS service: its task definition copied with the new image, and the service moved to
    /// the copy.
    async fn apply_ecs(
        &self,
        image: &ImageRef,
        target: &Target,
        resume: bool,
        guard: &dyn Guard,
    ) -> Result<Deployment, DeployError> {
        let current = self.describe(std::slice::from_ref(target)).await?;
        Ok(
            match current.get(&(target.cluster.clone(), target.service.clone())) {
                Some(Ok(td_arn)) => {
                    match self.deploy_one(target, image, td_arn, resume, guard).await {
                        Ok(d) => d,
                        Err(Failure::Permanent(reason)) => {
                            Deployment::new(target, image, DeployOutcome::Failed)
                                .with_reason(reason)
                        }
                        Err(Failure::Transient(e)) => return Err(e),
                    }
                }
                Some(Err(reason)) => Deployment::new(target, image, DeployOutcome::Failed)
                    .with_reason(reason.clone()),
                None => Deployment::new(target, image, DeployOutcome::Failed)
                    .with_reason("service was not described by ECS"),
            },
        )
    }
}

#[async_trait]
impl Deployer for EcsDeployer {
    async fn apply(
        &self,
        image: &ImageRef,
        target: &Target,
        resume: bool,
        guard: &dyn Guard,
    ) -> Result<Deployment, DeployError> {
        let d = match &target.express {
            Some(arn) => match express::apply(self.client.get(), target, arn, image, guard).await {
                Ok(d) => d,
                Err(Failure::Permanent(reason)) => {
                    Deployment::new(target, image, DeployOutcome::Failed).with_reason(reason)
                }
                Err(Failure::Transient(e)) => return Err(e),
            },
            None => self.apply_ecs(image, target, resume, guard).await?,
        };
        if d.outcome == DeployOutcome::Failed {
            tracing::error!(
                cluster = %d.cluster,
                service = %d.service,
                reason = d.reason.as_deref().unwrap_or(""),
                "deployment failed"
            );
        }
        Ok(d)
    }

    async fn running(&self, target: &Target) -> Result<Option<Running>, DeployError> {
        if let Some(arn) = &target.express {
            return express::running(self.client.get(), target, arn).await;
        }
        let resp = match self
            .client
            .get()
            .describe_services()
            .cluster(&target.cluster)
            .services(&target.service)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => match classify("DescribeServices", e) {
                Failure::Transient(e) => return Err(e),
                Failure::Permanent(_) => return Ok(None),
            },
        };
        let Some(svc) = resp
            .services()
            .iter()
            .find(|s| s.status() == Some("ACTIVE"))
        else {
            return Ok(None);
        };
        let Some(td_arn) = svc.task_definition() else {
            return Ok(None);
        };
        let described = match self
            .client
            .get()
            .describe_task_definition()
            .task_definition(td_arn)
            .send()
            .await
        {
            Ok(d) => d,
            Err(e) => match classify("DescribeTaskDefinition", e) {
                Failure::Transient(e) => return Err(e),
                Failure::Permanent(_) => return Ok(None),
            },
        };
        let containers = described
            .task_definition()
            .map(|td| {
                td.container_definitions()
                    .iter()
                    .filter_map(|c| Some((c.name()?.to_owned(), c.image()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(Running {
            task_definition: td_arn.to_owned(),
            containers,
            settled: svc.deployments().len() <= 1,
        }))
    }

    async fn all_followers(&self) -> Result<Vec<Target>, DeployError> {
        match &self.discovery {
            Some(d) => d.all().await,
            None => Ok(Vec::new()),
        }
    }

    async fn followers(&self, image: &ImageRef) -> Result<Vec<Target>, DeployError> {
        match &self.discovery {
            Some(d) => d.targets(image).await,
            None => Ok(Vec::new()),
        }
    }
}

type Described = BTreeMap<(String, String), Result<String, String>>;

impl EcsDeployer {
    /// One DescribeServices call per cluster and batch of ten: each service's current task
    /// definition, or why it cannot be deployed to.
    async fn describe(&self, targets: &[Target]) -> Result<Described, DeployError> {
        let mut by_cluster: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for t in targets {
            let services = by_cluster.entry(&t.cluster).or_default();
            if !services.contains(&t.service.as_str()) {
                services.push(&t.service);
            }
        }
        let mut out = Described::new();
        for (cluster, services) in by_cluster {
            for batch in services.chunks(DESCRIBE_BATCH) {
                let resp = self
                    .client
                    .get()
                    .describe_services()
                    .cluster(cluster)
                    .set_services(Some(batch.iter().map(|s| (*s).to_owned()).collect()))
                    .send()
                    .await;
                let resp = match resp {
                    Ok(r) => r,
                    Err(e) => match classify("DescribeServices", e) {
                        Failure::Transient(e) => return Err(e),
                        Failure::Permanent(reason) => {
                            for s in batch {
                                out.insert(
                                    (cluster.to_owned(), (*s).to_owned()),
                                    Err(reason.clone()),
                                );
                            }
                            continue;
                        }
                    },
                };
                for svc in resp.services() {
                    let name = svc.service_name().unwrap_or_default().to_owned();
                    let entry = match (svc.status(), svc.task_definition()) {
                        (Some("ACTIVE"), Some(td)) => Ok(td.to_owned()),
                        (status, _) => Err(format!(
                            "service is {} in cluster {cluster}",
                            status.unwrap_or("unknown")
                        )),
                    };
                    out.insert((cluster.to_owned(), name), entry);
                }
                for f in resp.failures() {
                    let name = f
                        .arn()
                        .and_then(|a| a.rsplit('/').next())
                        .unwrap_or_default();
                    let reason = f.reason().unwrap_or("unknown");
                    out.insert(
                        (cluster.to_owned(), name.to_owned()),
                        Err(format!("service not found in cluster {cluster} ({reason})")),
                    );
                }
            }
        }
        Ok(out)
    }

    async fn deploy_one(
        &self,
        target: &Target,
        image: &ImageRef,
        current_td: &str,
        resume: bool,
        guard: &dyn Guard,
    ) -> Result<Deployment, Failure> {
        let described = self
            .client
            .get()
            .describe_task_definition()
            .task_definition(current_td)
            .include(TaskDefinitionField::Tags)
            .send()
            .await
            .map_err(|e| classify("DescribeTaskDefinition", e))?;
        let td = described
            .task_definition()
            .ok_or_else(|| Failure::Permanent("DescribeTaskDefinition returned nothing".into()))?;
        let pulled = pulled_from(td, target, image, &self.aliases);
        let image = &pulled;
        let wanted = image.deployable();
        let containers = select_containers(td, target, image).map_err(Failure::Permanent)?;

        let mut d = Deployment::new(target, image, DeployOutcome::Unchanged);
        d.previous_task_definition = Some(current_td.to_owned());
        d.previous_image = td
            .container_definitions()
            .iter()
            .find(|c| c.name().is_some_and(|n| containers.iter().any(|x| x == n)))
            .and_then(|c| c.image())
            .map(str::to_owned);
        let already = td
            .container_definitions()
            .iter()
            .filter(|c| c.name().is_some_and(|n| containers.iter().any(|x| x == n)))
            .all(|c| runs_image(c.image(), image));
        if already && image.digest.is_some() {
            d.task_definition = Some(current_td.to_owned());
            return Ok(d.with_reason(format!("already runs {wanted}")));
        }
        if let Some(pushed) = &image.tag {
            let running = running_tag(td, &containers, image, target.last_deployed.as_ref());
            if let Decision::Skip(why) = target.policy.decide(running.as_deref(), pushed.as_str()) {
                d.outcome = DeployOutcome::Skipped;
                d.task_definition = Some(current_td.to_owned());
                return Ok(d.with_reason(why));
            }
        }

        // The last moment to stop: the service is described, nothing is changed yet.
        if let Some(why) = guard.check().await.map_err(Failure::Transient)? {
            d.outcome = DeployOutcome::Superseded;
            d.task_definition = Some(current_td.to_owned());
            return Ok(d.with_reason(why));
        }
        let orphan = match (resume, already) {
            (true, false) => {
                self.registered(td, current_td, &containers, &wanted)
                    .await?
            }
            _ => None,
        };
        let new_td = if already {
            // Same tag, no digest: the definition is right, the tasks need to pull the tag again.
            current_td.to_owned()
        } else if let Some(arn) = orphan {
            tracing::info!(task_definition = %arn, "resuming: the revision an interrupted deployment registered is used");
            arn
        } else {
            let registered = copy_with_image(
                self.client.get().register_task_definition(),
                td,
                &containers,
                &wanted,
            )
            .set_tags(Some(with_managed_by(described.tags())))
            .send()
            .await
            .map_err(|e| classify("RegisterTaskDefinition", e))?;
            registered
                .task_definition()
                .and_then(TaskDefinition::task_definition_arn)
                .ok_or_else(|| Failure::Permanent("RegisterTaskDefinition returned no ARN".into()))?
                .to_owned()
        };
        let updated = self
            .client
            .get()
            .update_service()
            .cluster(&target.cluster)
            .service(&target.service)
            .task_definition(&new_td)
            .force_new_deployment(already)
            .send()
            .await
            .map_err(|e| classify("UpdateService", e))?;
        d.ecs_deployment_id = updated
            .service()
            .map(|s| s.deployments())
            .unwrap_or_default()
            .iter()
            .find(|dep| dep.status() == Some("PRIMARY"))
            .and_then(|dep| dep.id())
            .map(str::to_owned);
        d.outcome = DeployOutcome::Updated;
        d.task_definition = Some(new_td);
        if image.digest.is_none() {
            d.reason = Some(format!(
                "deployed by tag: the event carried no digest, so {wanted} is not pinned"
            ));
        }
        tracing::info!(
            cluster = %target.cluster,
            service = %target.service,
            image = %wanted,
            task_definition = d.task_definition.as_deref().unwrap_or(""),
            "service updated"
        );
        Ok(d)
    }
}

impl EcsDeployer {
    /// The family's latest revision, when it is newer than what the service runs and its
    /// selected containers already run `wanted`: what a holder registered before it died.
    async fn registered(
        &self,
        td: &TaskDefinition,
        current_td: &str,
        containers: &[String],
        wanted: &str,
    ) -> Result<Option<String>, Failure> {
        let Some(family) = td.family() else {
            return Ok(None);
        };
        let latest = self
            .client
            .get()
            .describe_task_definition()
            .task_definition(family)
            .send()
            .await
            .map_err(|e| classify("DescribeTaskDefinition", e))?;
        let Some(latest) = latest.task_definition() else {
            return Ok(None);
        };
        let newer = latest.revision() > td.revision();
        let runs = latest
            .container_definitions()
            .iter()
            .filter(|c| c.name().is_some_and(|n| containers.iter().any(|x| x == n)))
            .all(|c| c.image() == Some(wanted));
        Ok(match latest.task_definition_arn() {
            Some(arn) if newer && runs && arn != current_td => Some(arn.to_owned()),
            _ => None,
        })
    }
}

/// The image as the service pulls it: when no container runs the repository from the image's
/// own registry but one runs it from a replica the digest has arrived in (`target.replicas`),
/// or from another name of the same registry (`aliases`), that name's reference, so a service
/// keeps pulling from its own Region and by the name it uses.
fn pulled_from(
    td: &TaskDefinition,
    target: &Target,
    image: &ImageRef,
    aliases: &RegistryAliases,
) -> ImageRef {
    if target.replicas.is_empty() && aliases.is_empty() {
        return image.clone();
    }
    let running: Vec<ImageRef> = td
        .container_definitions()
        .iter()
        .filter(|c| {
            target
                .container
                .as_deref()
                .is_none_or(|name| c.name() == Some(name))
        })
        .filter_map(|c| ImageRef::parse(c.image()?).ok())
        .filter(|r| r.repository == image.repository)
        .collect();
    if running.iter().any(|r| r.registry == image.registry) {
        return image.clone();
    }
    match running.into_iter().find(|r| {
        target.replicas.iter().any(|h| h == r.registry.as_str())
            || aliases.canonical(&r.registry) == image.registry
    }) {
        Some(r) => ImageRef {
            registry: r.registry,
            ..image.clone()
        },
        None => image.clone(),
    }
}

/// The containers to change: the one the rule names, or every container running the repository.
fn select_containers(
    td: &TaskDefinition,
    target: &Target,
    image: &ImageRef,
) -> Result<Vec<String>, String> {
    let defs = td.container_definitions();
    let names: Vec<String> = match &target.container {
        Some(name) => defs
            .iter()
            .filter(|c| c.name() == Some(name.as_str()))
            .filter_map(|c| c.name().map(str::to_owned))
            .collect(),
        None => defs
            .iter()
            .filter(|c| c.image().is_some_and(|i| image_name_of(i) == image.name()))
            .filter_map(|c| c.name().map(str::to_owned))
            .collect(),
    };
    if names.is_empty() {
        return Err(match &target.container {
            Some(name) => format!("task definition has no container named {name}"),
            None => {
                let elsewhere = defs
                    .iter()
                    .filter_map(|c| ImageRef::parse(c.image()?).ok())
                    .find(|r| r.repository == image.repository);
                match elsewhere {
                    Some(r) => format!(
                        "no container in the task definition runs {}; one runs it from {}, where this digest has not arrived: if that is a replica, the rule needs require_region so the deployment waits for the replication",
                        image.name(),
                        r.registry
                    ),
                    None => format!("no container in the task definition runs {}", image.name()),
                }
            }
        });
    }
    Ok(names
        .into_iter()
        .filter(|n| defs.iter().any(|c| c.name() == Some(n.as_str())))
        .collect())
}

/// The tag the selected containers run: the one in the image reference, or, for a service
/// pinned by digest, the tag imagehook deployed that digest as.
fn running_tag(
    td: &TaskDefinition,
    containers: &[String],
    image: &ImageRef,
    last_deployed: Option<&(String, Option<String>)>,
) -> Option<String> {
    td.container_definitions()
        .iter()
        .filter(|c| c.name().is_some_and(|n| containers.iter().any(|x| x == n)))
        .filter_map(|c| c.image())
        .filter(|i| image_name_of(i) == image.name())
        .filter_map(|i| ImageRef::parse(i).ok())
        .find_map(|r| match (r.tag, r.digest, last_deployed) {
            (Some(tag), _, _) => Some(tag.to_string()),
            (None, Some(d), Some((digest, tag))) if d.as_str() == digest => tag.clone(),
            _ => None,
        })
}

/// The original definition's tags, and ours (replacing an earlier value of the same key).
/// Tags under the reserved `aws:` prefix (CloudFormation's `aws:cloudformation:stack-name`, say)
/// are AWS's to set: RegisterTaskDefinition refuses them, in any case, so they stay behind.
fn with_managed_by(tags: &[Tag]) -> Vec<Tag> {
    let (key, value) = MANAGED_BY;
    let mut out: Vec<Tag> = tags
        .iter()
        .filter(|t| t.key() != Some(key) && !t.key().is_some_and(is_reserved_tag))
        .cloned()
        .collect();
    out.push(Tag::builder().key(key).value(value).build());
    out
}

fn is_reserved_tag(key: &str) -> bool {
    key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:"))
}

/// Whether a container already runs the image: the same digest when there is one, else the same
/// `name:tag`.
fn runs_image(container_image: Option<&str>, image: &ImageRef) -> bool {
    let Some(current) = container_image else {
        return false;
    };
    if image_name_of(current) != image.name() {
        return false;
    }
    match (&image.digest, &image.tag) {
        (Some(d), _) => current
            .split_once('@')
            .is_some_and(|(_, cd)| cd == d.as_str()),
        (None, Some(t)) => {
            !current.contains('@')
                && current
                    .rsplit_once(':')
                    .is_some_and(|(_, ct)| ct == t.as_str())
        }
        (None, None) => false,
    }
}

/// A RegisterTaskDefinition request that repeats every writable field of `td` and changes only
/// the image of the named containers. Read-only fields (ARN, revision, status, compatibilities,
/// requiresAttributes, registeredAt/By, deregisteredAt) are left out because ECS refuses them.
fn copy_with_image(
    req: RegisterTaskDefinitionFluentBuilder,
    td: &TaskDefinition,
    containers: &[String],
    image: &str,
) -> RegisterTaskDefinitionFluentBuilder {
    let defs: Vec<ContainerDefinition> = td
        .container_definitions()
        .iter()
        .map(|c| {
            if c.name().is_some_and(|n| containers.iter().any(|x| x == n)) {
                let mut c = c.clone();
                c.image = Some(image.to_owned());
                c
            } else {
                c.clone()
            }
        })
        .collect();
    req.set_family(td.family().map(str::to_owned))
        .set_task_role_arn(td.task_role_arn().map(str::to_owned))
        .set_execution_role_arn(td.execution_role_arn().map(str::to_owned))
        .set_network_mode(td.network_mode().cloned())
        .set_container_definitions(Some(defs))
        .set_volumes(non_empty(td.volumes()))
        .set_placement_constraints(non_empty(td.placement_constraints()))
        .set_requires_compatibilities(non_empty(td.requires_compatibilities()))
        .set_cpu(td.cpu().map(str::to_owned))
        .set_memory(td.memory().map(str::to_owned))
        .set_pid_mode(td.pid_mode().cloned())
        .set_ipc_mode(td.ipc_mode().cloned())
        .set_proxy_configuration(td.proxy_configuration().cloned())
        .set_ephemeral_storage(td.ephemeral_storage().cloned())
        .set_runtime_platform(td.runtime_platform().cloned())
        .set_enable_fault_injection(td.enable_fault_injection())
}

/// ECS answers absent lists as empty ones; sending an empty list back is not always the same.
fn non_empty<T: Clone>(v: &[T]) -> Option<Vec<T>> {
    if v.is_empty() { None } else { Some(v.to_vec()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(k: &str, v: &str) -> Tag {
        Tag::builder().key(k).value(v).build()
    }

    #[test]
    fn copied_tags_leave_out_the_reserved_aws_prefix_in_any_case() {
        let described = [
            tag("aws:cloudformation:stack-name", "shop"),
            tag("AWS:CloudFormation:logical-id", "TaskDef"),
            tag("Aws:custom", "x"),
            tag("awsome", "kept"),
            tag("team", "shop"),
            tag("managed-by", "terraform"),
        ];
        let copied = with_managed_by(&described);
        let keys: Vec<(&str, &str)> = copied
            .iter()
            .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
            .collect();
        assert_eq!(keys, [("awsome", "kept"), ("team", "shop"), MANAGED_BY]);
    }
}
