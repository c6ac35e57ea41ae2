//! Deploy rules: which ECS services follow which images.
//!
//! `DEPLOY_RULES` is a JSON array; each rule maps a repository glob and a tag pattern to one ECS
//! service (and optionally the container in it), with a rollout policy. Patterns are compiled once
//! at init, so a bad rule stops the function from starting instead of failing on the first push.

use std::sync::Arc;

use globset::{Glob, GlobMatcher};
use regex::Regex;
use serde::Deserialize;

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
}

/// How a rule chooses tags.
#[derive(Debug, Clone)]
pub enum TagPattern {
    Glob(GlobMatcher),
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

fn compile_glob(s: &str) -> Result<GlobMatcher, RuleError> {
    Glob::new(s)
        .map(|g| g.compile_matcher())
        .map_err(|e| RuleError::Pattern(s.to_owned(), e.to_string()))
}

/// A rule with its patterns compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    pub spec: RuleSpec,
    repository: GlobMatcher,
    /// The Amazon ECR registry the rule names, when its repository starts with one: the rule
    /// also follows pushes to the same repository in other Regions, as that registry's replica.
    ecr_registry: Option<String>,
    tags: Option<TagPattern>,
    policy: Policy,
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
                .is_match(format!("{host}/{}", image.repository))
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
            rules.push(Rule {
                ecr_registry,
                repository: compile_glob(&spec.repository)?,
                tags,
                policy,
                spec,
            });
        }
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
}
