//! Deploy rules: which ECS services follow which images.
//!
//! `DEPLOY_RULES` is a JSON array; each rule maps a repository glob and a tag pattern to one ECS
//! service (and optionally the container in it), with a rollout policy. Patterns are compiled once
//! at init, so a bad rule stops the function from starting instead of failing on the first push.

use std::sync::Arc;

use regex_lite::Regex;
use serde::Deserialize;

use crate::model::glob::Glob;
use crate::model::policy::{OnDrift, Policy, Scheme, lenient_semver};
use crate::model::reference::{ImageRef, artifact_tag, ecr_account_region};

/// A rule as written in `DEPLOY_RULES`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Glob on `registry/repository` or on `repository` alone (e.g. `shop/*`).
    pub repository: String,
    /// `glob` (the default form), `semver:<range>`, `regex:<re>` (a named group `version`
    /// orders tags) or `force` (follow the tag the service runs). Absent: every tag.
    #[serde(default)]
    pub tags: Option<String>,
    /// Never move the service to a lower version than the one it runs.
    #[serde(default, alias = "newer-only")]
    pub newer_only: bool,
    /// Deploy only once the digest has arrived in this region (registry replica), or, with
    /// `service-region`, in the region the service runs in.
    #[serde(default, alias = "require-region")]
    pub require_region: Option<String>,
    pub cluster: String,
    pub service: String,
    /// The ARN of an Amazon ECS Express Mode service: the service is moved with
    /// UpdateExpressGatewayService (its primary container's image) instead of a new task
    /// definition revision. `cluster` and `service` still name it in imagehook's records and
    /// must be the cluster and name ECS describes it with.
    #[serde(default)]
    pub express: Option<String>,
    /// The container to update. Absent: every container whose image is that repository.
    #[serde(default)]
    pub container: Option<String>,
    /// A free label (dev, staging, prod...) recorded on the deployment.
    #[serde(default)]
    pub stage: Option<String>,
    /// Also deploy tags of signatures, attestations and SBOMs (`sha256-<hex>.sig`, `.att`,
    /// `.sbom`), which no rule deploys otherwise.
    #[serde(default)]
    pub artifacts: bool,
    /// `report` (the default) or `restore`: what the scheduled reconcile does when the service
    /// runs an image imagehook did not deploy.
    #[serde(default, alias = "on-drift")]
    pub on_drift: OnDrift,
    /// `AUTH_MODE=oidc`: claims the sender's token must carry, with these values, for an event
    /// of an image this service follows (e.g. `{"repository": "org/app"}`: no job of another
    /// repository moves the service). Checked at the edge, before anything is written.
    #[serde(default, alias = "require-claims")]
    pub require_claims: std::collections::BTreeMap<String, String>,
    /// Hold each deployment until this many people approve it (`imagehook approve <id>`, or
    /// the approvals API), before its deadline.
    #[serde(default)]
    pub approval: Option<ApprovalSpec>,
    /// Deploy a digest only after its deployment to a service of this stage completed (the
    /// ECS deployment-outcome event) and `soak` passed without a failure there.
    #[serde(default)]
    pub after: Option<String>,
    /// How long the `after` stage must run the digest without failing first (`30m`, `2h`);
    /// absent: promoted as soon as that deployment completed.
    #[serde(default)]
    pub soak: Option<String>,
}

/// A rule's `approval`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSpec {
    /// Distinct approvers needed.
    #[serde(default = "one")]
    pub required: u32,
    /// How long a deployment waits for its approvals (default 24h).
    #[serde(default)]
    pub expires: Option<String>,
}

fn one() -> u32 {
    1
}

/// The most approvers a rule may require.
pub const MAX_APPROVERS: u32 = 10;
/// How long an approval waits when the rule does not say.
pub const DEFAULT_APPROVAL_EXPIRY_SECS: u64 = 24 * 3600;
/// The longest an approval may wait, and the longest soak: a held deployment is not a queue.
pub const MAX_WAIT_SECS: u64 = 30 * 24 * 3600;

/// Approvals a rule's deployments wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Approval {
    pub required: u32,
    pub expires_secs: u64,
}

/// The stage a rule's deployments wait for, and how long it must run the digest healthily.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct After {
    pub stage: String,
    pub soak_secs: u64,
}

/// What a rule's deployments wait for before they go through the service's door.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gate {
    pub approval: Option<Approval>,
    pub after: Option<After>,
}

impl Gate {
    pub fn is_open(&self) -> bool {
        self.approval.is_none() && self.after.is_none()
    }
}

/// A duration as rules write it: one or more `<number><unit>` with units `s`, `m`, `h`, `d`
/// (`90s`, `30m`, `1h30m`, `7d`). Answers the seconds, or why the text is not one.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("is empty: write a number and a unit (s, m, h, d), e.g. 24h".into());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => {
                return Err(format!(
                    "{text:?} is not a duration: write a number and a unit (s, m, h, d), e.g. 24h"
                ));
            }
        };
        let n: u64 = digits.parse().map_err(|_| {
            format!("{text:?} is not a duration: each unit needs a number before it, e.g. 1h30m")
        })?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("{text:?} is too long"))?;
    }
    if !digits.is_empty() {
        return Err(format!(
            "{text:?} has no unit after {digits}: write s, m, h or d, e.g. {digits}m"
        ));
    }
    Ok(total)
}

/// Seconds as rules write them, in the largest unit that divides them.
pub fn format_duration(secs: u64) -> String {
    for (unit, n) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs > 0 && secs.is_multiple_of(n) {
            return format!("{}{unit}", secs / n);
        }
    }
    format!("{secs}s")
}

/// How a rule chooses tags.
#[derive(Debug, Clone)]
pub enum TagPattern {
    Glob(Glob),
    Semver(semver::VersionReq),
    Regex(Arc<Regex>),
    /// Any tag may match; the deployer keeps only the one the service runs.
    Force,
}

impl TagPattern {
    pub fn parse(s: &str) -> Result<Self, RuleError> {
        if s.trim() == "force" {
            return Ok(Self::Force);
        }
        if let Some(range) = s.strip_prefix("semver:") {
            let req = semver::VersionReq::parse(range.trim())
                .map_err(|e| RuleError::Pattern(s.to_owned(), e.to_string()))?;
            return Ok(Self::Semver(req));
        }
        if let Some(re) = s.strip_prefix("regex:") {
            let re = Regex::new(re).map_err(|e| RuleError::Pattern(s.to_owned(), e.to_string()))?;
            return Ok(Self::Regex(Arc::new(re)));
        }
        let glob = s.strip_prefix("glob:").unwrap_or(s);
        Ok(Self::Glob(compile_glob(glob)?))
    }

    pub fn matches(&self, tag: &str) -> bool {
        match self {
            Self::Glob(g) => g.is_match(tag),
            // Read as the ordering reads it: `v1.4.2` is 1.4.2, `1.7` is 1.7.0, `7` is 7.0.0.
            Self::Semver(req) => lenient_semver(tag).is_some_and(|v| req.matches(&v)),
            Self::Regex(re) => re.is_match(tag),
            Self::Force => true,
        }
    }

    /// How this pattern orders the tags it matches.
    pub(crate) fn scheme(&self) -> Scheme {
        match self {
            Self::Regex(re) if re.capture_names().any(|n| n == Some("version")) => {
                Scheme::Regex(re.clone())
            }
            _ => Scheme::Semver,
        }
    }
}

fn compile_glob(s: &str) -> Result<Glob, RuleError> {
    Glob::new(s).map_err(|e| RuleError::Pattern(s.to_owned(), e.to_string()))
}

/// A rule with its patterns compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    pub spec: RuleSpec,
    repository: Glob,
    /// The Amazon ECR registry the rule names, when its repository starts with one: the rule
    /// also follows pushes to the same repository in other Regions, as that registry's replica.
    ecr_registry: Option<String>,
    tags: Option<TagPattern>,
    policy: Policy,
    gate: Gate,
}

impl Rule {
    /// For a push to Amazon ECR in another Region (or account) than the registry the rule names,
    /// of the repository the rule names there: the same digest, once ECR has replicated it. The
    /// deployment waits for it to arrive in the rule's registry (its Region; `<account>:<Region>`
    /// for another account, as replication events name it), unless the rule says where.
    fn replica_target(&self, image: &ImageRef) -> Option<Target> {
        let host = self.ecr_registry.as_deref()?;
        let (source_account, _) = ecr_account_region(image.registry.as_str())?;
        let (account, region) = ecr_account_region(host)?;
        if host == image.registry.as_str()
            || !self
                .repository
                .is_match(&format!("{host}/{}", image.repository))
        {
            return None;
        }
        let mut t = self.target();
        if t.require_region.is_none() {
            t.require_region = Some(if account == source_account {
                region.to_owned()
            } else {
                format!("{account}:{region}")
            });
        }
        Some(t)
    }

    /// The service this rule sends images to.
    fn target(&self) -> Target {
        Target {
            cluster: self.spec.cluster.clone(),
            service: self.spec.service.clone(),
            container: self.spec.container.clone(),
            stage: self.spec.stage.clone(),
            policy: self.policy.clone(),
            last_deployed: None,
            require_region: self.spec.require_region.clone(),
            replicas: Vec::new(),
            gate: self.gate.clone(),
            express: self.spec.express.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("DEPLOY_RULES is not a JSON array of rules: {0}")]
    Json(String),
    #[error("DEPLOY_RULES: invalid pattern {0:?}: {1}")]
    Pattern(String, String),
    #[error("DEPLOY_RULES: rule {0} has an empty {1}")]
    Empty(usize, &'static str),
    #[error("DEPLOY_RULES: rule {0}: {1}")]
    Conflict(usize, &'static str),
    #[error("DEPLOY_RULES: rule {rule}: {field} {message}")]
    Gate {
        rule: usize,
        field: &'static str,
        message: String,
    },
    #[error(
        "DEPLOY_RULES: rule {rule}: after names stage {stage:?}, which no rule gives its services (stages: {known})"
    )]
    UnknownStage {
        rule: usize,
        stage: String,
        known: String,
    },
    #[error("DEPLOY_RULES: stages wait for each other in a cycle ({0}): none could ever deploy")]
    StageCycle(String),
    #[error(
        "DEPLOY_RULES: rule {0}: express {1:?} is not an Amazon ECS ARN (arn:<partition>:ecs:<region>:<account>:<resource>)"
    )]
    ExpressArn(usize, String),
    #[error(
        "DEPLOY_RULES: rule {rule}: {cluster}/{service} is named by another rule as {other}: one service, one kind"
    )]
    ExpressConflict {
        rule: usize,
        cluster: String,
        service: String,
        other: String,
    },
    #[error(
        "DEPLOY_RULES: rule {rule}: after names stage {stage:?}, whose services are all Express Mode services: no deployment outcome is matched to their updates, so this rule would wait forever; order them with approval instead"
    )]
    ExpressStage { rule: usize, stage: String },
}

/// Where a matched rule sends an image.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub cluster: String,
    pub service: String,
    pub container: Option<String>,
    pub stage: Option<String>,
    pub policy: Policy,
    /// What imagehook last deployed to the service (digest, tag), read from its records for
    /// policies that compare: a service pinned to `repo@digest` shows no tag in ECS.
    pub last_deployed: Option<(String, Option<String>)>,
    /// The rule's `require_region`, as written (`service-region` is resolved when deploying).
    pub require_region: Option<String>,
    /// Other registries the digest has arrived in (replicas): a service that pulls the
    /// repository from one of them is deployed that replica's reference.
    pub replicas: Vec<String>,
    /// What the rule's deployments wait for (approvals, an earlier stage).
    pub gate: Gate,
    /// The ARN of the Express Mode service this target is, when it is one: deployed with
    /// UpdateExpressGatewayService rather than a task definition revision.
    pub express: Option<String>,
}

impl Target {
    /// The service alone, as no rule describes it: no container, stage or policy, nothing
    /// deployed on record, no region to wait for, no replicas, no gate, not an Express service.
    /// Callers set what they know (`Target { stage, ..Target::service(c, s) }`).
    pub fn service(cluster: impl Into<String>, service: impl Into<String>) -> Self {
        Self {
            cluster: cluster.into(),
            service: service.into(),
            container: None,
            stage: None,
            policy: Policy::default(),
            last_deployed: None,
            require_region: None,
            replicas: Vec::new(),
            gate: Gate::default(),
            express: None,
        }
    }
}

/// A rule's gate, with its numbers in bounds.
fn gate_of(i: usize, spec: &RuleSpec) -> Result<Gate, RuleError> {
    let bad = |field, message: String| RuleError::Gate {
        rule: i,
        field,
        message,
    };
    let bounded = |field, text: &str, min: u64| -> Result<u64, RuleError> {
        let secs = parse_duration(text).map_err(|m| bad(field, m))?;
        if secs < min {
            return Err(bad(
                field,
                format!("{text:?} is too short: at least {min}s"),
            ));
        }
        if secs > MAX_WAIT_SECS {
            return Err(bad(
                field,
                format!(
                    "{text:?} is too long: at most {}",
                    format_duration(MAX_WAIT_SECS)
                ),
            ));
        }
        Ok(secs)
    };
    let approval = match &spec.approval {
        None => None,
        Some(a) => {
            if !(1..=MAX_APPROVERS).contains(&a.required) {
                return Err(bad(
                    "approval.required",
                    format!("must be between 1 and {MAX_APPROVERS}, not {}", a.required),
                ));
            }
            let expires_secs = match &a.expires {
                Some(e) => bounded("approval.expires", e, 1)?,
                None => DEFAULT_APPROVAL_EXPIRY_SECS,
            };
            Some(Approval {
                required: a.required,
                expires_secs,
            })
        }
    };
    let after = match (&spec.after, &spec.soak) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(bad(
                "soak",
                "needs after: the soak is how long the earlier stage runs the digest".into(),
            ));
        }
        (Some(stage), soak) => {
            if stage.trim().is_empty() {
                return Err(RuleError::Empty(i, "after"));
            }
            let soak_secs = match soak {
                Some(s) => bounded("soak", s, 0)?,
                None => 0,
            };
            Some(After {
                stage: stage.clone(),
                soak_secs,
            })
        }
    };
    Ok(Gate { approval, after })
}

/// Every `after` names a stage some rule has, and no stage waits, through others, for itself.
fn check_stages(rules: &[Rule]) -> Result<(), RuleError> {
    let mut known: Vec<&str> = rules
        .iter()
        .filter_map(|r| r.spec.stage.as_deref())
        .collect();
    known.sort_unstable();
    known.dedup();
    // stage -> the stages its rules wait for
    let mut edges: Vec<(&str, &str)> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let Some(after) = r.gate.after.as_ref().map(|a| a.stage.as_str()) else {
            continue;
        };
        if !known.contains(&after) {
            return Err(RuleError::UnknownStage {
                rule: i,
                stage: after.to_owned(),
                known: if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                },
            });
        }
        if let Some(stage) = r.spec.stage.as_deref() {
            edges.push((stage, after));
        }
    }
    for &start in &known {
        // Depth-first along the waits, keeping the path: a stage met again on it is a cycle.
        let mut path = vec![start];
        if let Some(cycle) = walk(&edges, &mut path) {
            return Err(RuleError::StageCycle(cycle));
        }
    }
    Ok(())
}

fn walk<'a>(edges: &[(&'a str, &'a str)], path: &mut Vec<&'a str>) -> Option<String> {
    let here = *path.last()?;
    for &(from, to) in edges {
        if from != here {
            continue;
        }
        if let Some(at) = path.iter().position(|s| *s == to) {
            let mut cycle: Vec<&str> = path[at..].to_vec();
            cycle.push(to);
            return Some(cycle.join(" -> "));
        }
        path.push(to);
        if let Some(c) = walk(edges, path) {
            return Some(c);
        }
        path.pop();
    }
    None
}

/// An `after` waits for the ECS deployment outcome of the earlier stage's deployment, which an
/// Express service's update does not have: a stage served only by Express services would hold
/// every later deployment forever.
fn check_express_stages(rules: &[Rule]) -> Result<(), RuleError> {
    for (i, r) in rules.iter().enumerate() {
        let Some(after) = &r.gate.after else {
            continue;
        };
        let mut serving = rules
            .iter()
            .filter(|o| o.spec.stage.as_deref() == Some(after.stage.as_str()))
            .peekable();
        if serving.peek().is_some() && serving.all(|o| o.spec.express.is_some()) {
            return Err(RuleError::ExpressStage {
                rule: i,
                stage: after.stage.clone(),
            });
        }
    }
    Ok(())
}

/// Whether `arn` has the shape of an Amazon ECS ARN: `arn:<partition>:ecs:<region>:<account>:`
/// and a resource. The resource's layout is ECS's to choose; the API takes the ARN as it is.
fn is_ecs_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(
        parts.as_slice(),
        ["arn", partition, "ecs", region, account, resource]
            if !partition.is_empty()
                && !region.is_empty()
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && !resource.is_empty()
                && !resource.contains(char::is_whitespace)
    )
}

/// All rules of a deployment.
#[derive(Debug, Clone, Default)]
pub struct Rules(Vec<Rule>);

impl Rules {
    pub fn parse(json: &str) -> Result<Self, RuleError> {
        if json.trim().is_empty() {
            return Ok(Self::default());
        }
        let specs: Vec<RuleSpec> =
            serde_json::from_str(json).map_err(|e| RuleError::Json(e.to_string()))?;
        let mut rules = Vec::with_capacity(specs.len());
        for (i, spec) in specs.into_iter().enumerate() {
            for (name, value) in [
                ("repository", &spec.repository),
                ("cluster", &spec.cluster),
                ("service", &spec.service),
                (
                    "require_region",
                    spec.require_region.as_ref().unwrap_or(&"-".to_owned()),
                ),
            ] {
                if value.trim().is_empty() {
                    return Err(RuleError::Empty(i, name));
                }
            }
            let tags = spec.tags.as_deref().map(TagPattern::parse).transpose()?;
            let follow_tag = matches!(tags, Some(TagPattern::Force));
            if follow_tag && spec.newer_only {
                return Err(RuleError::Conflict(
                    i,
                    "force follows one tag, so newer_only has nothing to compare; use one or the other",
                ));
            }
            let policy = Policy {
                scheme: tags.as_ref().map_or(Scheme::Semver, TagPattern::scheme),
                newer_only: spec.newer_only,
                follow_tag,
                on_drift: spec.on_drift,
            };
            let ecr_registry = spec
                .repository
                .split_once('/')
                .map(|(host, _)| host)
                .filter(|host| ecr_account_region(host).is_some())
                .map(str::to_owned);
            let gate = gate_of(i, &spec)?;
            if let Some(arn) = &spec.express {
                if !is_ecs_arn(arn) {
                    return Err(RuleError::ExpressArn(i, arn.clone()));
                }
                if spec.container.is_some() {
                    return Err(RuleError::Conflict(
                        i,
                        "an Express Mode service has one primary container, so container does not apply to it",
                    ));
                }
            }
            if let Some(other) = rules.iter().find(|r: &&Rule| {
                r.spec.cluster == spec.cluster
                    && r.spec.service == spec.service
                    && r.spec.express != spec.express
            }) {
                return Err(RuleError::ExpressConflict {
                    rule: i,
                    cluster: spec.cluster.clone(),
                    service: spec.service.clone(),
                    other: other.spec.express.as_deref().map_or_else(
                        || "an ECS service".to_owned(),
                        |a| format!("Express service {a}"),
                    ),
                });
            }
            rules.push(Rule {
                ecr_registry,
                repository: compile_glob(&spec.repository)?,
                tags,
                policy,
                gate,
                spec,
            });
        }
        check_stages(&rules)?;
        check_express_stages(&rules)?;
        Ok(Self(rules))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The rules as written.
    pub fn specs(&self) -> impl Iterator<Item = &RuleSpec> {
        self.0.iter().map(|r| &r.spec)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every service some rule names, each once (the first rule naming it gives its policy):
    /// what the scheduled reconcile looks at.
    pub fn all_targets(&self) -> Vec<Target> {
        let mut out: Vec<Target> = Vec::new();
        for r in &self.0 {
            if out
                .iter()
                .any(|t| t.cluster == r.spec.cluster && t.service == r.spec.service)
            {
                continue;
            }
            out.push(r.target());
        }
        out
    }

    /// The stage a rule gives the service, if any rule names it with one.
    pub fn stage_of(&self, cluster: &str, service: &str) -> Option<&str> {
        self.0
            .iter()
            .filter(|r| r.spec.cluster == cluster && r.spec.service == service)
            .find_map(|r| r.spec.stage.as_deref())
    }

    /// The services that follow this image, each once even when several rules name it.
    /// An image without a tag matches no rule: a digest-only push (a platform manifest of a
    /// multi-arch index, say) is recorded but not deployed.
    pub fn targets(&self, image: &ImageRef) -> Vec<Target> {
        let Some(tag) = &image.tag else {
            return Vec::new();
        };
        let full = image.name();
        let mut out: Vec<Target> = self
            .0
            .iter()
            .filter(|r| r.tags.as_ref().is_none_or(|p| p.matches(tag.as_str())))
            .filter(|r| r.spec.artifacts || artifact_tag(tag.as_str()).is_none())
            .filter_map(|r| {
                if r.repository.is_match(&full) || r.repository.is_match(image.repository.as_str())
                {
                    Some(r.target())
                } else {
                    r.replica_target(image)
                }
            })
            .collect();
        out.sort();
        out.dedup_by(|a, b| a.cluster == b.cluster && a.service == b.service);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap()
    }

    #[test]
    fn repository_glob_matches_full_name_or_path() {
        let rules = Rules::parse(
            r#"[{"repository": "shop/*", "cluster": "prod", "service": "api"},
                {"repository": "*.azurecr.io/billing", "cluster": "prod", "service": "billing"}]"#,
        )
        .unwrap();
        assert_eq!(
            rules.targets(&img("contoso.azurecr.io/shop/api:1")).len(),
            1
        );
        assert_eq!(
            rules.targets(&img("contoso.azurecr.io/billing:1"))[0].service,
            "billing"
        );
        assert!(rules.targets(&img("contoso.azurecr.io/other:1")).is_empty());
    }

    #[test]
    fn tag_patterns_glob_semver_regex() {
        let g = TagPattern::parse("v*").unwrap();
        assert!(g.matches("v1.2.3") && !g.matches("latest"));
        let s = TagPattern::parse("semver:^1.4").unwrap();
        assert!(s.matches("1.4.2") && s.matches("v1.9.0"));
        assert!(!s.matches("2.0.0") && !s.matches("latest") && !s.matches("1.5.0-rc.1"));
        // Versions are read leniently, as the rules' ordering reads them.
        let major = TagPattern::parse("semver:^1").unwrap();
        assert!(major.matches("1.7") && major.matches("v1") && major.matches("1.7.0"));
        assert!(!major.matches("2.0") && !major.matches("1.7-beta") && !major.matches("1.x"));
        let r = TagPattern::parse("regex:^main-[0-9a-f]{7}$").unwrap();
        assert!(r.matches("main-abc1234") && !r.matches("main-abc12345"));
        assert!(
            TagPattern::parse("glob:release-*")
                .unwrap()
                .matches("release-7")
        );
    }

    #[test]
    fn untagged_images_match_no_rule() {
        let rules =
            Rules::parse(r#"[{"repository": "**", "cluster": "c", "service": "s"}]"#).unwrap();
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert!(
            rules
                .targets(&img(&format!("r.example.com/a@{d}")))
                .is_empty()
        );
        assert_eq!(rules.targets(&img("r.example.com/a:1")).len(), 1);
    }

    #[test]
    fn a_service_named_by_two_rules_is_deployed_once() {
        let rules = Rules::parse(
            r#"[{"repository": "shop/api", "cluster": "c", "service": "s"},
                {"repository": "shop/*", "tags": "v*", "cluster": "c", "service": "s"}]"#,
        )
        .unwrap();
        assert_eq!(rules.targets(&img("r.example.com/shop/api:v1")).len(), 1);
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        assert!(matches!(Rules::parse("{"), Err(RuleError::Json(_))));
        assert!(matches!(
            Rules::parse(
                r#"[{"repository": "a", "tags": "semver:not a range", "cluster": "c", "service": "s"}]"#
            ),
            Err(RuleError::Pattern(..))
        ));
        assert!(matches!(
            Rules::parse(
                r#"[{"repository": "a", "tags": "regex:(", "cluster": "c", "service": "s"}]"#
            ),
            Err(RuleError::Pattern(..))
        ));
        assert_eq!(
            Rules::parse(r#"[{"repository": "a", "cluster": "", "service": "s"}]"#).unwrap_err(),
            RuleError::Empty(0, "cluster")
        );
        assert!(matches!(
            Rules::parse(r#"[{"repository": "a", "cluster": "c", "service": "s", "typo": 1}]"#),
            Err(RuleError::Json(_))
        ));
        assert!(Rules::parse("").unwrap().is_empty());
        assert!(matches!(
            Rules::parse(
                r#"[{"repository": "a", "tags": "force", "newer_only": true, "cluster": "c", "service": "s"}]"#
            ),
            Err(RuleError::Conflict(0, _))
        ));
    }

    #[test]
    fn rules_carry_their_policy_to_the_targets() {
        let rules = Rules::parse(
            r#"[{"repository": "shop/api", "tags": "regex:^main-(?P<version>[0-9]+)$", "newer-only": true, "cluster": "c", "service": "a"},
                {"repository": "shop/api", "tags": "force", "cluster": "c", "service": "b"},
                {"repository": "shop/api", "tags": "semver:>=1", "newer_only": true, "cluster": "c", "service": "c"}]"#,
        )
        .unwrap();
        let t = rules.targets(&img("r.example.com/shop/api:main-42"));
        assert_eq!(t.len(), 2, "main-42 is no semver: service c does not match");
        let a = t.iter().find(|t| t.service == "a").unwrap();
        assert!(a.policy.newer_only && matches!(a.policy.scheme, Scheme::Regex(_)));
        assert_eq!(a.policy.scheme.version("main-42").unwrap().major, 42);
        let b = t.iter().find(|t| t.service == "b").unwrap();
        assert!(b.policy.follow_tag && !b.policy.newer_only);
        let c = rules.targets(&img("r.example.com/shop/api:v1.2.0"));
        assert!(c.iter().any(|t| t.service == "c" && t.policy.newer_only));
    }

    #[test]
    fn a_rule_naming_an_ecr_registry_follows_the_repository_pushed_elsewhere_as_its_replica() {
        let rules = Rules::parse(
            r#"[{"repository": "210987654321.dkr.ecr.us-east-1.amazonaws.com/shop/api",
                 "cluster": "c", "service": "east"},
                {"repository": "123456789012.dkr.ecr.us-west-2.amazonaws.com/shop/*",
                 "cluster": "c", "service": "other"},
                {"repository": "210987654321.dkr.ecr.us-east-1.amazonaws.com/shop/api",
                 "cluster": "c", "service": "pinned", "require_region": "us-east-2"}]"#,
        )
        .unwrap();
        let pushed = img("210987654321.dkr.ecr.eu-central-1.amazonaws.com/shop/api:1.0.0");
        let regions: Vec<(String, Option<String>)> = rules
            .targets(&pushed)
            .into_iter()
            .map(|t| (t.service, t.require_region))
            .collect();
        assert_eq!(
            regions,
            [
                ("east".to_owned(), Some("us-east-1".to_owned())),
                (
                    "other".to_owned(),
                    Some("123456789012:us-west-2".to_owned())
                ),
                ("pinned".to_owned(), Some("us-east-2".to_owned())),
            ]
        );
        // Pushed to the registry the rule names: no wait. Another repository, or a registry
        // that is not ECR: no match.
        let own = rules.targets(&img(
            "210987654321.dkr.ecr.us-east-1.amazonaws.com/shop/api:1",
        ));
        assert_eq!(own[0].require_region, None);
        assert!(
            rules
                .targets(&img(
                    "210987654321.dkr.ecr.eu-central-1.amazonaws.com/shop/web:1"
                ))
                .iter()
                .all(|t| t.service == "other")
        );
        assert!(rules.targets(&img("ghcr.io/shop/api:1")).is_empty());
    }

    fn gated(extra: &str) -> Result<Rules, RuleError> {
        Rules::parse(&format!(
            r#"[{{"repository": "a", "cluster": "c", "service": "staging", "stage": "staging"}},
                {{"repository": "a", "cluster": "c", "service": "prod", "stage": "prod" {extra}}}]"#
        ))
    }

    #[test]
    fn approval_and_after_reach_the_targets_with_their_defaults() {
        let rules = gated(
            r#", "approval": {"required": 2, "expires": "90m"}, "after": "staging", "soak": "30m""#,
        )
        .unwrap();
        let prod = rules
            .targets(&img("r.example.com/a:1"))
            .into_iter()
            .find(|t| t.service == "prod")
            .unwrap();
        assert_eq!(
            prod.gate,
            Gate {
                approval: Some(Approval {
                    required: 2,
                    expires_secs: 5400
                }),
                after: Some(After {
                    stage: "staging".into(),
                    soak_secs: 1800
                }),
            }
        );
        let plain = gated(r#", "approval": {}"#).unwrap();
        let t = plain.targets(&img("r.example.com/a:1"));
        let prod = t.iter().find(|t| t.service == "prod").unwrap();
        assert_eq!(
            prod.gate.approval,
            Some(Approval {
                required: 1,
                expires_secs: DEFAULT_APPROVAL_EXPIRY_SECS
            })
        );
        assert!(
            t.iter()
                .find(|t| t.service == "staging")
                .unwrap()
                .gate
                .is_open()
        );
        assert_eq!(plain.stage_of("c", "prod"), Some("prod"));
    }

    #[test]
    fn approvals_out_of_bounds_are_refused_with_what_is_allowed() {
        let err = |extra: &str| gated(extra).unwrap_err().to_string();
        assert_eq!(
            err(r#", "approval": {"required": 0}"#),
            "DEPLOY_RULES: rule 1: approval.required must be between 1 and 10, not 0"
        );
        assert_eq!(
            err(r#", "approval": {"required": 11}"#),
            "DEPLOY_RULES: rule 1: approval.required must be between 1 and 10, not 11"
        );
        assert_eq!(
            err(r#", "approval": {"expires": "31d"}"#),
            "DEPLOY_RULES: rule 1: approval.expires \"31d\" is too long: at most 30d"
        );
        assert_eq!(
            err(r#", "approval": {"expires": "0s"}"#),
            "DEPLOY_RULES: rule 1: approval.expires \"0s\" is too short: at least 1s"
        );
        assert_eq!(
            err(r#", "approval": {"expires": "tomorrow"}"#),
            "DEPLOY_RULES: rule 1: approval.expires \"tomorrow\" is not a duration: write a number and a unit (s, m, h, d), e.g. 24h"
        );
        assert!(matches!(
            gated(r#", "approval": {"required": 1, "quorum": 2}"#),
            Err(RuleError::Json(_))
        ));
        assert!(matches!(
            gated(r#", "approval": {"required": -1}"#),
            Err(RuleError::Json(_))
        ));
    }

    #[test]
    fn after_must_name_a_known_stage_and_stages_must_not_wait_in_a_cycle() {
        assert_eq!(
            gated(r#", "after": "stagin""#).unwrap_err(),
            RuleError::UnknownStage {
                rule: 1,
                stage: "stagin".into(),
                known: "prod, staging".into()
            }
        );
        assert_eq!(
            gated(r#", "soak": "5m""#).unwrap_err().to_string(),
            "DEPLOY_RULES: rule 1: soak needs after: the soak is how long the earlier stage runs the digest"
        );
        assert_eq!(
            gated(r#", "after": "staging", "soak": "5 minutes""#)
                .unwrap_err()
                .to_string(),
            "DEPLOY_RULES: rule 1: soak \"5 minutes\" is not a duration: write a number and a unit (s, m, h, d), e.g. 24h"
        );
        let cycle = Rules::parse(
            r#"[{"repository": "a", "cluster": "c", "service": "dev", "stage": "dev", "after": "prod"},
                {"repository": "a", "cluster": "c", "service": "staging", "stage": "staging", "after": "dev"},
                {"repository": "a", "cluster": "c", "service": "prod", "stage": "prod", "after": "staging"}]"#,
        )
        .unwrap_err();
        assert!(
            matches!(&cycle, RuleError::StageCycle(c) if c.contains("->")),
            "{cycle}"
        );
        assert!(matches!(
            Rules::parse(
                r#"[{"repository": "a", "cluster": "c", "service": "s", "stage": "prod", "after": "prod"}]"#
            ),
            Err(RuleError::StageCycle(c)) if c == "prod -> prod"
        ));
        let chain = Rules::parse(
            r#"[{"repository": "a", "cluster": "c", "service": "dev", "stage": "dev"},
                {"repository": "a", "cluster": "c", "service": "staging", "stage": "staging", "after": "dev"},
                {"repository": "a", "cluster": "c", "service": "prod", "stage": "prod", "after": "staging", "soak": "1h30m"}]"#,
        );
        assert!(chain.is_ok(), "{chain:?}");
    }

    const EXPRESS: &str = "arn:aws:ecs:us-east-1:123456789012:service/apps/web";

    #[test]
    fn a_rule_naming_an_express_service_carries_its_arn_to_the_target() {
        let rules = Rules::parse(&format!(
            r#"[{{"repository": "shop/web", "cluster": "apps", "service": "web", "express": "{EXPRESS}"}},
                {{"repository": "shop/api", "cluster": "prod", "service": "api"}}]"#
        ))
        .unwrap();
        let web = rules.targets(&img("r.example.com/shop/web:1"));
        assert_eq!(web.len(), 1);
        assert_eq!(web[0].express.as_deref(), Some(EXPRESS));
        assert_eq!(
            (web[0].cluster.as_str(), web[0].service.as_str()),
            ("apps", "web")
        );
        let api = rules.targets(&img("r.example.com/shop/api:1"));
        assert_eq!(api[0].express, None);
        assert!(
            rules
                .all_targets()
                .iter()
                .any(|t| t.express.as_deref() == Some(EXPRESS))
        );
    }

    #[test]
    fn an_express_rule_needs_an_ecs_arn_and_no_container() {
        for bad in [
            "web",
            "arn:aws:lambda:us-east-1:123456789012:function:web",
            "arn:aws:ecs:us-east-1:1234:service/apps/web",
            "arn:aws:ecs:us-east-1:123456789012:",
            "arn:aws:ecs::123456789012:service/apps/web",
        ] {
            let err = Rules::parse(&format!(
                r#"[{{"repository": "a", "cluster": "c", "service": "s", "express": "{bad}"}}]"#
            ))
            .unwrap_err();
            assert_eq!(err, RuleError::ExpressArn(0, bad.to_owned()), "{bad}");
        }
        assert!(matches!(
            Rules::parse(&format!(
                r#"[{{"repository": "a", "cluster": "c", "service": "s", "container": "app", "express": "{EXPRESS}"}}]"#
            )),
            Err(RuleError::Conflict(0, m)) if m.contains("primary container")
        ));
        assert!(
            Rules::parse(
                r#"[{"repository": "a", "cluster": "c", "service": "s", "express": "arn:aws-cn:ecs:cn-north-1:123456789012:service/c/s"}]"#
            )
            .is_ok()
        );
    }

    #[test]
    fn one_service_cannot_be_both_an_ecs_and_an_express_target() {
        let err = Rules::parse(&format!(
            r#"[{{"repository": "a", "cluster": "apps", "service": "web"}},
                {{"repository": "b", "cluster": "apps", "service": "web", "express": "{EXPRESS}"}}]"#
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "DEPLOY_RULES: rule 1: apps/web is named by another rule as an ECS service: one service, one kind"
        );
        let two_arns = Rules::parse(&format!(
            r#"[{{"repository": "a", "cluster": "apps", "service": "web", "express": "{EXPRESS}"}},
                {{"repository": "b", "cluster": "apps", "service": "web", "express": "{EXPRESS}x"}}]"#
        ));
        assert!(matches!(
            two_arns,
            Err(RuleError::ExpressConflict { rule: 1, .. })
        ));
        let same = Rules::parse(&format!(
            r#"[{{"repository": "a", "cluster": "apps", "service": "web", "express": "{EXPRESS}"}},
                {{"repository": "b", "cluster": "apps", "service": "web", "express": "{EXPRESS}"}}]"#
        ));
        assert!(same.is_ok(), "{same:?}");
    }

    #[test]
    fn a_stage_served_only_by_express_services_cannot_be_waited_for() {
        let rules = |staging_express: &str| {
            Rules::parse(&format!(
                r#"[{{"repository": "a", "cluster": "c", "service": "staging", "stage": "staging" {staging_express}}},
                    {{"repository": "a", "cluster": "c", "service": "prod", "stage": "prod", "after": "staging"}}]"#
            ))
        };
        let express = format!(r#", "express": "{EXPRESS}""#);
        assert_eq!(
            rules(&express).unwrap_err(),
            RuleError::ExpressStage {
                rule: 1,
                stage: "staging".into()
            }
        );
        assert!(rules("").is_ok());
        // An ECS service of the stage gives the wait an outcome to end on.
        let mixed = Rules::parse(&format!(
            r#"[{{"repository": "a", "cluster": "c", "service": "staging", "stage": "staging", "express": "{EXPRESS}"}},
                {{"repository": "a", "cluster": "c", "service": "staging-ecs", "stage": "staging"}},
                {{"repository": "a", "cluster": "c", "service": "prod", "stage": "prod", "after": "staging"}}]"#
        ));
        assert!(mixed.is_ok(), "{mixed:?}");
    }

    #[test]
    fn durations_read_as_rules_write_them() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert!(
            parse_duration("15")
                .unwrap_err()
                .contains("no unit after 15")
        );
        assert!(parse_duration("").is_err() && parse_duration("h").is_err());
        assert_eq!(format_duration(86_400), "1d");
        assert_eq!(format_duration(5400), "90m");
        assert_eq!(format_duration(0), "0s");
    }
}
