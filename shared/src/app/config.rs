//! Configuration, read from the environment once at init and validated there: a bad value stops
//! the function from starting, with the variable's name in the message, instead of failing the
//! first delivery.
//!
//! Over 500 lines because over a third of it is its tests: each variable's valid and refused
//! values.

#[cfg(feature = "aws")]
use crate::adapters::slack::WebhookUrl;
use crate::auth::oidc::{Issuer, OidcConfigError};
use crate::auth::{AuthConfigError, AuthMode, Secret, Verifier};
#[cfg(test)]
use crate::model::event::ScanSummary;
use crate::model::rules::{RuleError, Rules};
pub use crate::pipeline::guard::{GuardMode, GuardSettings, OnStoreError};
#[cfg(feature = "aws")]
use crate::ports::notifier::NoticeKind;

pub const DEFAULT_RECEIPT_TTL_DAYS: u32 = 7;
/// API Gateway's payload limit is larger; registries never send more than a few KiB per event.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The most events one request may carry (a Distribution envelope, an Event Grid batch, a Quay
/// push of many tags). Events are handled one after another, one or two DynamoDB transactions
/// each plus ECS calls for a push that deploys: the limit bounds what one request can ask for
/// within the functions' 15 s timeout, and a request over it is refused whole, before anything
/// is written, instead of timing out partway and being redelivered just as large.
pub const MAX_EVENTS_PER_REQUEST: usize = 100;

pub use crate::model::quarantine::QuarantinePolicy;
pub use crate::model::reference::RegistryAliases;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployMode {
    Apply,
    DryRun,
}

impl DeployMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apply => "apply",
            Self::DryRun => "dry-run",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not set: {hint}")]
    Missing {
        name: &'static str,
        hint: &'static str,
    },
    #[error("{name}={value:?} is not valid: {hint}")]
    Invalid {
        name: &'static str,
        value: String,
        hint: &'static str,
    },
    /// The secret WEBHOOK_SECRETS_ARN names was read but is not what the functions take. Its
    /// value is never in the message.
    #[error("the secret WEBHOOK_SECRETS_ARN names ({id}) {hint}")]
    SecretDocument { id: String, hint: &'static str },
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    #[error(transparent)]
    Oidc(#[from] OidcConfigError),
    #[error(transparent)]
    Rules(#[from] RuleError),
}

/// Defaults that differ between the Lambda functions and the local binary.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    /// `None`: AUTH_MODE must be set (the functions). The local binary defaults to `none`.
    pub auth_mode: Option<AuthMode>,
    pub deploy_mode: DeployMode,
    /// Whether a store must be named (the functions: TABLE_NAME or STATE_DIR) or is optional
    /// (local: the embedded store under --state-dir).
    pub require_table: bool,
    /// Whether the function answers webhooks (and so must authenticate them).
    pub webhooks: bool,
}

impl Defaults {
    pub const LAMBDA: Self = Self {
        auth_mode: None,
        deploy_mode: DeployMode::Apply,
        require_table: true,
        webhooks: true,
    };
    pub const LOCAL: Self = Self {
        auth_mode: Some(AuthMode::None),
        deploy_mode: DeployMode::DryRun,
        require_table: false,
        webhooks: true,
    };
    /// The control API: API Gateway authenticates the caller (IAM), and deploys by hand are
    /// applied unless DEPLOY_MODE says dry-run, as the webhook functions' are.
    pub const CONTROL: Self = Self {
        auth_mode: Some(AuthMode::None),
        deploy_mode: DeployMode::Apply,
        require_table: true,
        webhooks: false,
    };
    /// Functions invoked by EventBridge: AWS authenticates the caller, nothing deploys.
    pub const EVENTS: Self = Self {
        auth_mode: Some(AuthMode::None),
        deploy_mode: DeployMode::DryRun,
        require_table: true,
        webhooks: false,
    };
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Whether this function answers webhooks (false for the outcomes function).
    pub webhooks: bool,
    pub table_name: Option<String>,
    /// STATE_DIR: the embedded store's directory, for a function run without DynamoDB
    /// (`cargo lambda watch`, the cold-start benchmark). TABLE_NAME and STATE_DIR exclude each other.
    pub state_dir: Option<std::path::PathBuf>,
    pub verifier: Verifier,
    /// OIDC_ISSUERS: the issuers whose tokens `AUTH_MODE=oidc` accepts. Empty in other modes.
    pub oidc_issuers: Vec<Issuer>,
    pub rules: Rules,
    pub deploy_mode: DeployMode,
    pub receipt_ttl_days: u32,
    /// LEASE_SECONDS: how long one writer holds a service while it deploys to it.
    pub lease: std::time::Duration,
    pub quarantine: QuarantinePolicy,
    /// FOLLOW_CLUSTERS: clusters whose services tagged `imagehook:follow` follow their images
    /// without a rule. Empty: no discovery.
    pub follow_clusters: Vec<String>,
    /// The region this function (and the ECS services it deploys) runs in: AWS_REGION, which
    /// Lambda sets. A rule's `require_region: service-region` means this one.
    pub service_region: Option<String>,
    /// `REGISTRY_ALIASES`: other names of registries, mapped to one before anything is recorded.
    pub registry_aliases: RegistryAliases,
    /// How pushes without a digest are pinned (the push function and the local binary).
    pub registry: RegistryConfig,
    #[cfg(feature = "aws")]
    pub notify: NotifyConfig,
}

/// Resolving a pushed tag to its digest at the registry: RESOLVE_DIGESTS, REGISTRY_TIMEOUT_MS,
/// REGISTRY_INSECURE_HOSTS and REGISTRY_CREDENTIALS_ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// `on` unless RESOLVE_DIGESTS=off.
    pub resolve: bool,
    /// The time all of one request's resolutions may take together.
    pub timeout: std::time::Duration,
    /// Registry hosts (`host:port` as references write them) asked over plain HTTP: loopback
    /// only, so no login or token ever crosses a network in the clear.
    pub insecure_hosts: Vec<String>,
    /// The Secrets Manager secret of registry logins, read once at init.
    pub credentials_arn: Option<String>,
}

pub const DEFAULT_REGISTRY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1000);

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            resolve: true,
            timeout: DEFAULT_REGISTRY_TIMEOUT,
            insecure_hosts: Vec::new(),
            credentials_arn: None,
        }
    }
}

/// The deployment guard's settings: GUARD_MODE (`standard`, the default, or `strict`: an image
/// imagehook has no record of fails the deployment too) and GUARD_ON_STORE_ERROR (`open` or
/// `closed`: whether an image whose record could not be read lets the deployment through;
/// closed in strict mode and open otherwise).
pub fn guard_settings(get: impl Fn(&str) -> Option<String>) -> Result<GuardSettings, ConfigError> {
    let mode = match trimmed(&get, "GUARD_MODE").as_deref() {
        None | Some("standard") => GuardMode::Standard,
        Some("strict") => GuardMode::Strict,
        Some(v) => {
            return Err(ConfigError::Invalid {
                name: "GUARD_MODE",
                value: v.to_owned(),
                hint: "standard or strict",
            });
        }
    };
    let on_store_error = match trimmed(&get, "GUARD_ON_STORE_ERROR").as_deref() {
        None => OnStoreError::default_for(mode),
        Some("open") => OnStoreError::Open,
        Some("closed") => OnStoreError::Closed,
        Some(v) => {
            return Err(ConfigError::Invalid {
                name: "GUARD_ON_STORE_ERROR",
                value: v.to_owned(),
                hint: "open or closed (default: closed with GUARD_MODE=strict, else open)",
            });
        }
    };
    Ok(GuardSettings {
        mode,
        on_store_error,
    })
}

impl RegistryConfig {
    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let resolve = match var("RESOLVE_DIGESTS").as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(v) => {
                return Err(ConfigError::Invalid {
                    name: "RESOLVE_DIGESTS",
                    value: v.to_owned(),
                    hint: "on or off",
                });
            }
        };
        let timeout = whole(
            "REGISTRY_TIMEOUT_MS",
            var("REGISTRY_TIMEOUT_MS"),
            100..=5_000,
            "milliseconds from 100 to 5000 (the sender waits for the answer)",
        )?
        .map_or(DEFAULT_REGISTRY_TIMEOUT, std::time::Duration::from_millis);
        let insecure_hosts = comma_list(var("REGISTRY_INSECURE_HOSTS"))
            .into_iter()
            .map(|h| {
                let h = h.to_ascii_lowercase();
                let host = h.rsplit_once(':').map_or(h.as_str(), |(host, port)| {
                    if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
                        host
                    } else {
                        ""
                    }
                });
                let loopback = host == "localhost"
                    || host
                        .parse::<std::net::Ipv4Addr>()
                        .is_ok_and(|ip| ip.is_loopback())
                    || host
                        .strip_prefix('[')
                        .and_then(|h| h.strip_suffix(']'))
                        .and_then(|h| h.parse::<std::net::Ipv6Addr>().ok())
                        .is_some_and(|ip| ip.is_loopback());
                if loopback {
                    Ok(h)
                } else {
                    Err(ConfigError::Invalid {
                        name: "REGISTRY_INSECURE_HOSTS",
                        value: h,
                        hint: "loopback registries only (127.0.0.1:<port>, localhost:<port>): any other registry is asked over https://",
                    })
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let credentials_arn = match var("REGISTRY_CREDENTIALS_ARN") {
            None => None,
            Some(v) if v.starts_with("arn:") && v.split(':').nth(2) == Some("secretsmanager") => {
                Some(v)
            }
            Some(v) => {
                return Err(ConfigError::Invalid {
                    name: "REGISTRY_CREDENTIALS_ARN",
                    value: v,
                    hint: "a Secrets Manager secret ARN, arn:aws:secretsmanager:<region>:<account>:secret:<name>",
                });
            }
        };
        Ok(Self {
            resolve,
            timeout,
            insecure_hosts,
            credentials_arn,
        })
    }
}

#[cfg(feature = "aws")]
/// Where notices go (NOTIFY_WEBHOOK_URL, NOTIFY_TOPIC_ARN), which kinds (NOTIFY_ON) and how
/// long a sink may take (NOTIFY_TIMEOUT_MS). Neither destination: no notifications.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub webhook_url: Option<WebhookUrl>,
    pub topic_arn: Option<String>,
    pub kinds: Vec<NoticeKind>,
    pub timeout: std::time::Duration,
}

#[cfg(feature = "aws")]
impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            topic_arn: None,
            kinds: NoticeKind::ALL.to_vec(),
            timeout: crate::ports::notifier::DEFAULT_TIMEOUT,
        }
    }
}

#[cfg(feature = "aws")]
impl NotifyConfig {
    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let webhook_url = match var("NOTIFY_WEBHOOK_URL") {
            None => None,
            Some(v) => Some(WebhookUrl::parse(&v).ok_or(ConfigError::Invalid {
                name: "NOTIFY_WEBHOOK_URL",
                // The URL is the webhook's credential: not repeated in a log line.
                value: "(not shown)".to_owned(),
                hint: "an https:// incoming-webhook URL (http:// only to 127.0.0.1 or localhost)",
            })?),
        };
        let topic_arn = match var("NOTIFY_TOPIC_ARN") {
            None => None,
            Some(v) if v.starts_with("arn:") && v.split(':').nth(2) == Some("sns") => Some(v),
            Some(v) => {
                return Err(ConfigError::Invalid {
                    name: "NOTIFY_TOPIC_ARN",
                    value: v,
                    hint: "an SNS topic ARN, arn:aws:sns:<region>:<account>:<topic>",
                });
            }
        };
        const KINDS_HINT: &str = "all, or a comma-separated list of deployment-started, deployment-blocked, deployment-failed, deleted-digest-running, quarantined-digest-running";
        let kinds = match var("NOTIFY_ON") {
            None => NoticeKind::ALL.to_vec(),
            Some(v) if v == "all" => NoticeKind::ALL.to_vec(),
            Some(v) => {
                let kinds: Option<Vec<_>> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(NoticeKind::parse)
                    .collect();
                kinds
                    .filter(|k| !k.is_empty())
                    .ok_or(ConfigError::Invalid {
                        name: "NOTIFY_ON",
                        value: v,
                        hint: KINDS_HINT,
                    })?
            }
        };
        let timeout = whole(
            "NOTIFY_TIMEOUT_MS",
            var("NOTIFY_TIMEOUT_MS"),
            100..=10_000,
            "milliseconds from 100 to 10000",
        )?
        .map_or(crate::ports::notifier::DEFAULT_TIMEOUT, |ms| {
            std::time::Duration::from_millis(ms)
        });
        Ok(Self {
            webhook_url,
            topic_arn,
            kinds,
            timeout,
        })
    }
}

/// Where a webhook function's secret is kept, when it is in Secrets Manager
/// (WEBHOOK_SECRETS_ARN, and WEBHOOK_SECRETS_VERSION to pin a version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub id: String,
    /// A VersionId; `None` reads AWSCURRENT.
    pub version: Option<String>,
}

impl SecretRef {
    /// The secret the wiring must read before `Config::from_parts`, if the variables name one.
    /// Functions that answer no webhook never read it, whatever their environment holds.
    pub fn from_lookup(
        defaults: Defaults,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ConfigError> {
        let var = |k: &str| trimmed(&get, k);
        if !defaults.webhooks {
            return Ok(None);
        }
        match (var("WEBHOOK_SECRETS_ARN"), var("WEBHOOK_SECRETS")) {
            (Some(_), Some(_)) => Err(ConfigError::Invalid {
                name: "WEBHOOK_SECRETS_ARN",
                value: "(set together with WEBHOOK_SECRETS)".to_owned(),
                hint: "set WEBHOOK_SECRETS (the secrets) or WEBHOOK_SECRETS_ARN (where they are kept), not both",
            }),
            (Some(id), None) => Ok(Some(Self {
                id,
                version: var("WEBHOOK_SECRETS_VERSION"),
            })),
            (None, _) => Ok(None),
        }
    }
}

/// A Secrets Manager secret's value as the functions take it: a JSON object whose `current` is
/// the secret senders present (and the one the EventBridge connection resolves on its own), and
/// whose optional `previous` is still accepted while senders move to `current`.
///
/// JSON keys rather than a comma-separated list: a CloudFormation dynamic reference can resolve
/// one key alone, and nothing in a template can split a value it resolves.
pub fn parse_secret_document(id: &str, text: &str) -> Result<Vec<Secret>, ConfigError> {
    let refused = |hint| ConfigError::SecretDocument {
        id: id.to_owned(),
        hint,
    };
    // serde_json's error names a line and column, never the text; it is dropped all the same.
    let mut doc: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|_| {
            refused(
                r#"is not a JSON object: store {"current": "<secret>", "previous": "<secret>"}"#,
            )
        })?;
    let as_secret = |v: Option<serde_json::Value>, hint| match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(Secret::new(s.trim()))),
        Some(_) => Err(refused(hint)),
    };
    let current = as_secret(
        doc.remove("current"),
        r#"has a "current" that is not a string"#,
    )?
    .ok_or_else(|| refused(r#"has no "current" secret"#))?;
    let previous = as_secret(
        doc.remove("previous"),
        r#"has a "previous" that is not a string"#,
    )?;
    Ok(std::iter::once(current).chain(previous).collect())
}

/// A variable's value, trimmed; unset when empty (CloudFormation passes empty parameters).
fn trimmed(get: &impl Fn(&str) -> Option<String>, k: &str) -> Option<String> {
    get(k)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

impl Config {
    pub fn from_env(defaults: Defaults) -> Result<Self, ConfigError> {
        Self::from_lookup(defaults, |k| std::env::var(k).ok())
    }

    /// Reads configuration through `get` (the environment in production, a map in tests).
    pub fn from_lookup(
        defaults: Defaults,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Self::from_parts(defaults, get, None)
    }

    /// `from_lookup`, with the secrets read from where WEBHOOK_SECRETS_ARN points (the wiring
    /// reads them: see [`SecretRef`]). A webhook function whose variables name a secret refuses
    /// to start without them.
    pub fn from_parts(
        defaults: Defaults,
        get: impl Fn(&str) -> Option<String>,
        kept: Option<Vec<Secret>>,
    ) -> Result<Self, ConfigError> {
        let var = |k: &str| trimmed(&get, k);

        let table_name = var("TABLE_NAME");
        let state_dir = var("STATE_DIR").map(std::path::PathBuf::from);
        match (&table_name, &state_dir) {
            (None, None) if defaults.require_table => {
                return Err(ConfigError::Missing {
                    name: "TABLE_NAME",
                    hint: "the DynamoDB table that holds image records (or STATE_DIR for the embedded store)",
                });
            }
            (Some(_), Some(dir)) => {
                return Err(ConfigError::Invalid {
                    name: "STATE_DIR",
                    value: dir.display().to_string(),
                    hint: "set TABLE_NAME (DynamoDB) or STATE_DIR (embedded store), not both",
                });
            }
            _ => {}
        }

        const AUTH_HINT: &str = "one of token, basic, hmac-sha256, hmac-sha1, standard-webhooks, path-token, oidc, none";
        // A function that answers no webhook ignores AUTH_MODE and never reads a secret, so
        // none needs to be in its environment.
        let auth_mode = match (var("AUTH_MODE"), defaults.auth_mode) {
            _ if !defaults.webhooks => AuthMode::None,
            (Some(v), _) => AuthMode::parse(&v).ok_or(ConfigError::Invalid {
                name: "AUTH_MODE",
                value: v,
                hint: AUTH_HINT,
            })?,
            (None, Some(d)) => d,
            (None, None) => {
                return Err(ConfigError::Missing {
                    name: "AUTH_MODE",
                    hint: AUTH_HINT,
                });
            }
        };
        let secrets = match SecretRef::from_lookup(defaults, &get)? {
            Some(_) => kept.ok_or(ConfigError::Missing {
                name: "WEBHOOK_SECRETS",
                hint: "WEBHOOK_SECRETS_ARN names a secret that was not read",
            })?,
            None if !defaults.webhooks => Vec::new(),
            None => comma_list(var("WEBHOOK_SECRETS"))
                .into_iter()
                .map(Secret::new)
                .collect(),
        };
        let header = var("SIGNATURE_HEADER").filter(|_| defaults.webhooks);
        let verifier = Verifier::new(auth_mode, header.as_deref(), secrets)?;
        let oidc_issuers = match (auth_mode, var("OIDC_ISSUERS")) {
            (AuthMode::Oidc, Some(json)) => crate::auth::oidc::parse_issuers(&json)?,
            (AuthMode::Oidc, None) => {
                return Err(ConfigError::Missing {
                    name: "OIDC_ISSUERS",
                    hint: "AUTH_MODE=oidc needs the issuers to trust, e.g. [{\"preset\": \"github-actions\", \"audience\": \"imagehook\", \"claims\": {\"repository\": \"org/app\"}}]",
                });
            }
            // Issuers set beside another mode would look trusted and never be asked.
            (_, Some(_)) if defaults.webhooks => {
                return Err(ConfigError::Invalid {
                    name: "OIDC_ISSUERS",
                    value: format!("(set with AUTH_MODE={})", auth_mode.as_str()),
                    hint: "OIDC_ISSUERS is read only with AUTH_MODE=oidc",
                });
            }
            _ => Vec::new(),
        };

        let rules = match (var("DEPLOY_RULES"), var("DEPLOY_RULES_FILE")) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid {
                    name: "DEPLOY_RULES_FILE",
                    value: "(set together with DEPLOY_RULES)".to_owned(),
                    hint: "set DEPLOY_RULES or DEPLOY_RULES_FILE, not both",
                });
            }
            (Some(json), None) => Rules::parse(&json)?,
            (None, Some(path)) => {
                let json = std::fs::read_to_string(&path).map_err(|_| ConfigError::Invalid {
                    name: "DEPLOY_RULES_FILE",
                    value: path,
                    hint: "a readable JSON file of deploy rules",
                })?;
                Rules::parse(&json)?
            }
            (None, None) => Rules::default(),
        };

        // Only a token carries claims: in another mode such a rule could never be met.
        if defaults.webhooks
            && auth_mode != AuthMode::Oidc
            && rules.specs().any(|r| !r.require_claims.is_empty())
        {
            return Err(ConfigError::Invalid {
                name: "DEPLOY_RULES",
                value: "(a rule with require_claims)".to_owned(),
                hint: "require_claims needs AUTH_MODE=oidc: no other mode carries claims",
            });
        }

        let deploy_mode = match var("DEPLOY_MODE").as_deref() {
            None => defaults.deploy_mode,
            Some("apply") => DeployMode::Apply,
            Some("dry-run") => DeployMode::DryRun,
            Some(v) => {
                return Err(ConfigError::Invalid {
                    name: "DEPLOY_MODE",
                    value: v.to_owned(),
                    hint: "apply or dry-run",
                });
            }
        };

        let receipt_ttl_days = whole(
            "RECEIPT_TTL_DAYS",
            var("RECEIPT_TTL_DAYS"),
            1..=3650,
            "a whole number of days from 1 to 3650",
        )?
        .unwrap_or(DEFAULT_RECEIPT_TTL_DAYS);

        // Longer than the functions' 15 s timeout: a live holder must never lose it.
        let lease = whole(
            "LEASE_SECONDS",
            var("LEASE_SECONDS"),
            1..=3600,
            "a whole number of seconds from 1 to 3600 (default 60; keep it above the functions' timeout)",
        )?
        .map_or(crate::pipeline::converge::DEFAULT_LEASE, |n| {
            std::time::Duration::from_secs(n)
        });

        let quarantine = match var("QUARANTINE_SEVERITY") {
            None => QuarantinePolicy::default(),
            Some(v) => QuarantinePolicy::parse(&v).ok_or(ConfigError::Invalid {
                name: "QUARANTINE_SEVERITY",
                value: v,
                hint: "severity:count pairs, e.g. critical:1,high:5 (severities critical, high, medium, low; counts from 1)",
            })?,
        };

        let follow_clusters = comma_list(var("FOLLOW_CLUSTERS"));
        let registry = RegistryConfig::from_vars(var)?;

        let registry_aliases = match var("REGISTRY_ALIASES") {
            None => RegistryAliases::default(),
            Some(v) => RegistryAliases::parse(&v).map_err(|why| ConfigError::Invalid {
                name: "REGISTRY_ALIASES",
                value: why,
                hint: "alias=canonical pairs, comma-separated, e.g. localhost:5000=registry.example.com",
            })?,
        };

        #[cfg(feature = "aws")]
        let notify = NotifyConfig::from_vars(var)?;

        Ok(Self {
            #[cfg(feature = "aws")]
            notify,
            service_region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            registry_aliases,
            follow_clusters,
            registry,
            webhooks: defaults.webhooks,
            table_name,
            state_dir,
            verifier,
            oidc_issuers,
            rules,
            deploy_mode,
            receipt_ttl_days,
            lease,
            quarantine,
        })
    }
}

/// The non-empty entries of a comma-separated variable, trimmed; none when it is unset.
fn comma_list(value: Option<String>) -> Vec<String> {
    value
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A whole number within `range`, if the variable is set; refused with its name otherwise.
fn whole<T: std::str::FromStr + PartialOrd>(
    name: &'static str,
    value: Option<String>,
    range: std::ops::RangeInclusive<T>,
    hint: &'static str,
) -> Result<Option<T>, ConfigError> {
    match value {
        None => Ok(None),
        Some(v) => match v.parse::<T>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(ConfigError::Invalid {
                name,
                value: v,
                hint,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(defaults: Defaults, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(defaults, |k| m.get(k).cloned())
    }

    #[test]
    fn lambda_requires_table_and_auth_mode() {
        let e = cfg(Defaults::LAMBDA, &[]).unwrap_err();
        assert!(e.to_string().starts_with("TABLE_NAME is not set"), "{e}");
        let e = cfg(Defaults::LAMBDA, &[("TABLE_NAME", "t")]).unwrap_err();
        assert!(e.to_string().starts_with("AUTH_MODE is not set"), "{e}");
        let c = cfg(
            Defaults::LAMBDA,
            &[
                ("TABLE_NAME", "t"),
                ("AUTH_MODE", "token"),
                ("WEBHOOK_SECRETS", "a, b"),
            ],
        )
        .unwrap();
        assert_eq!(c.deploy_mode, DeployMode::Apply);
        assert_eq!(c.receipt_ttl_days, 7);
    }

    #[test]
    fn state_dir_stands_in_for_the_table_but_not_beside_it() {
        let auth = [("AUTH_MODE", "token"), ("WEBHOOK_SECRETS", "s")];
        let c = cfg(
            Defaults::LAMBDA,
            &[auth[0], auth[1], ("STATE_DIR", "/tmp/ih")],
        )
        .unwrap();
        assert!(c.table_name.is_none());
        assert_eq!(
            c.state_dir.as_deref(),
            Some(std::path::Path::new("/tmp/ih"))
        );
        let e = cfg(
            Defaults::LAMBDA,
            &[
                auth[0],
                auth[1],
                ("STATE_DIR", "/tmp/ih"),
                ("TABLE_NAME", "t"),
            ],
        )
        .unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
    }

    #[test]
    fn oidc_needs_issuers_and_no_secret_and_issuers_need_oidc() {
        let issuers = r#"[{"preset": "github-actions", "audience": "imagehook", "claims": {"repository": "org/app"}}]"#;
        let c = cfg(
            Defaults::LAMBDA,
            &[
                ("TABLE_NAME", "t"),
                ("AUTH_MODE", "oidc"),
                ("OIDC_ISSUERS", issuers),
            ],
        )
        .unwrap();
        assert_eq!(c.verifier.mode(), AuthMode::Oidc);
        assert_eq!(c.oidc_issuers.len(), 1);
        let e = cfg(
            Defaults::LAMBDA,
            &[("TABLE_NAME", "t"), ("AUTH_MODE", "oidc")],
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("OIDC_ISSUERS is not set"), "{e}");
        let e = cfg(
            Defaults::LAMBDA,
            &[
                ("TABLE_NAME", "t"),
                ("AUTH_MODE", "oidc"),
                ("OIDC_ISSUERS", r#"[{"preset": "google", "audience": "a"}]"#),
            ],
        )
        .unwrap_err();
        assert!(e.to_string().contains("service account"), "{e}");
        let e = cfg(
            Defaults::LAMBDA,
            &[
                ("TABLE_NAME", "t"),
                ("AUTH_MODE", "token"),
                ("WEBHOOK_SECRETS", "s"),
                ("OIDC_ISSUERS", issuers),
            ],
        )
        .unwrap_err();
        assert!(e.to_string().contains("only with AUTH_MODE=oidc"), "{e}");
        let rules = r#"[{"repository": "shop/*", "cluster": "c", "service": "s", "require_claims": {"repository": "org/app"}}]"#;
        let e = cfg(
            Defaults::LAMBDA,
            &[
                ("TABLE_NAME", "t"),
                ("AUTH_MODE", "token"),
                ("WEBHOOK_SECRETS", "s"),
                ("DEPLOY_RULES", rules),
            ],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("require_claims needs AUTH_MODE=oidc"),
            "{e}"
        );
        let c = cfg(
            Defaults::LAMBDA,
            &[
                ("TABLE_NAME", "t"),
                ("AUTH_MODE", "oidc"),
                ("OIDC_ISSUERS", issuers),
                ("DEPLOY_RULES", rules),
            ],
        )
        .unwrap();
        assert_eq!(c.rules.specs().next().unwrap().require_claims.len(), 1);
        // The functions that answer no webhook ignore it, as they ignore AUTH_MODE.
        let c = cfg(
            Defaults::EVENTS,
            &[("TABLE_NAME", "t"), ("OIDC_ISSUERS", issuers)],
        )
        .unwrap();
        assert!(c.oidc_issuers.is_empty());
    }

    #[test]
    fn local_defaults_to_no_auth_and_dry_run() {
        let c = cfg(Defaults::LOCAL, &[]).unwrap();
        assert_eq!(c.verifier.mode(), AuthMode::None);
        assert_eq!(c.deploy_mode, DeployMode::DryRun);
        assert!(c.table_name.is_none());
    }

    #[test]
    fn quarantine_severity_thresholds() {
        let p = QuarantinePolicy::parse("critical:1, high:5").unwrap();
        let mut scan = ScanSummary {
            scanner: "ecr-basic-scan".into(),
            complete: true,
            ..Default::default()
        };
        scan.high = 4;
        assert_eq!(p.breach(&scan), None);
        scan.high = 5;
        assert_eq!(
            p.breach(&scan).unwrap(),
            "ecr-basic-scan scan found 5 high or above (threshold 5)"
        );
        scan.critical = 1;
        assert!(p.breach(&scan).unwrap().contains("1 critical"));
        // A threshold counts its severity and every one above it.
        let high = QuarantinePolicy::parse("high:1").unwrap();
        let two_critical = ScanSummary {
            scanner: "inspector2".into(),
            complete: true,
            critical: 2,
            ..Default::default()
        };
        assert_eq!(
            high.breach(&two_critical).unwrap(),
            "inspector2 scan found 2 high or above (threshold 1)"
        );
        let medium = QuarantinePolicy::parse("medium:4").unwrap();
        let mixed = ScanSummary {
            critical: 1,
            high: 1,
            medium: 1,
            low: 9,
            ..two_critical.clone()
        };
        assert_eq!(
            medium.breach(&mixed),
            None,
            "3 at medium or above, lows do not count"
        );
        for bad in ["", "critical", "critical:0", "severe:1", "high:x"] {
            assert!(QuarantinePolicy::parse(bad).is_none(), "{bad}");
        }
        let e = cfg(Defaults::LOCAL, &[("QUARANTINE_SEVERITY", "nope")]).unwrap_err();
        assert!(e.to_string().contains("QUARANTINE_SEVERITY"), "{e}");
        assert_eq!(
            cfg(Defaults::LOCAL, &[]).unwrap().quarantine,
            QuarantinePolicy::default()
        );
    }

    #[test]
    fn rules_come_from_the_variable_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.json");
        std::fs::write(
            &path,
            r#"[{"repository": "a/*", "cluster": "c", "service": "s"}]"#,
        )
        .unwrap();
        let path = path.to_str().unwrap();
        let c = cfg(Defaults::LOCAL, &[("DEPLOY_RULES_FILE", path)]).unwrap();
        assert_eq!(c.rules.len(), 1);
        let e = cfg(
            Defaults::LOCAL,
            &[("DEPLOY_RULES_FILE", "/nonexistent/rules.json")],
        )
        .unwrap_err();
        assert!(e.to_string().contains("DEPLOY_RULES_FILE"), "{e}");
        let e = cfg(
            Defaults::LOCAL,
            &[("DEPLOY_RULES_FILE", path), ("DEPLOY_RULES", "[]")],
        )
        .unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
    }

    #[test]
    fn bad_values_name_the_variable_and_never_echo_secrets() {
        let e = cfg(Defaults::LOCAL, &[("AUTH_MODE", "magic")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("AUTH_MODE") && e.contains("hmac-sha256"), "{e}");
        let e = cfg(Defaults::LOCAL, &[("DEPLOY_MODE", "yolo")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("DEPLOY_MODE"), "{e}");
        let e = cfg(Defaults::LOCAL, &[("RECEIPT_TTL_DAYS", "0")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("RECEIPT_TTL_DAYS"), "{e}");
        let e = cfg(Defaults::LOCAL, &[("DEPLOY_RULES", "[{]")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("DEPLOY_RULES"), "{e}");
        let e = cfg(Defaults::LOCAL, &[("AUTH_MODE", "token")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("WEBHOOK_SECRETS"), "{e}");
        let e = cfg(
            Defaults::LOCAL,
            &[
                ("AUTH_MODE", "basic"),
                ("WEBHOOK_SECRETS", "hunter2-no-colon"),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn a_kept_secret_is_current_and_previous_and_never_shown() {
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:imagehook/webhook-AbCdEf";
        let s = parse_secret_document(arn, r#"{"current": " new ", "previous": "old"}"#).unwrap();
        let s: Vec<&str> = s.iter().map(Secret::expose).collect();
        assert_eq!(s, ["new", "old"]);
        let s = parse_secret_document(arn, r#"{"current": "only", "previous": ""}"#).unwrap();
        assert_eq!(s.len(), 1);
        for bad in [
            "hunter2,hunter3",
            r#"{"previous": "hunter2"}"#,
            r#"{"current": ""}"#,
            r#"{"current": ["hunter2"]}"#,
            r#"{"current": "hunter2", "previous": 7}"#,
            r#"["hunter2"]"#,
        ] {
            let e = parse_secret_document(arn, bad).unwrap_err().to_string();
            assert!(e.contains("WEBHOOK_SECRETS_ARN") && e.contains(arn), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn a_secret_arn_is_read_only_by_webhook_functions() {
        let arn = [
            ("WEBHOOK_SECRETS_ARN", "arn:x"),
            ("WEBHOOK_SECRETS_VERSION", "v2"),
        ];
        let m: HashMap<&str, &str> = arn.into_iter().collect();
        let get = |k: &str| m.get(k).map(|v| (*v).to_owned());
        assert_eq!(
            SecretRef::from_lookup(Defaults::LAMBDA, get).unwrap(),
            Some(SecretRef {
                id: "arn:x".into(),
                version: Some("v2".into())
            })
        );
        assert_eq!(SecretRef::from_lookup(Defaults::EVENTS, get).unwrap(), None);
        // Not read: the function refuses to start rather than authenticate against nothing.
        let e = cfg(
            Defaults::LAMBDA,
            &[("TABLE_NAME", "t"), ("AUTH_MODE", "token"), arn[0]],
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("WEBHOOK_SECRETS is not set"),
            "{e}"
        );
        let e = cfg(Defaults::LOCAL, &[arn[0], ("WEBHOOK_SECRETS", "hunter2")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not both") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn functions_without_webhooks_ignore_auth_settings() {
        // The outcomes and images functions: a stack-wide AUTH_MODE needs no secret there.
        let c = cfg(
            Defaults::EVENTS,
            &[
                ("TABLE_NAME", "t"),
                ("AUTH_MODE", "token"),
                ("SIGNATURE_HEADER", "bad header"),
            ],
        )
        .unwrap();
        assert_eq!(c.verifier.mode(), AuthMode::None);
    }

    #[test]
    fn digests_are_resolved_unless_turned_off_and_http_is_for_loopback_only() {
        let c = cfg(Defaults::LOCAL, &[]).unwrap();
        assert_eq!(c.registry, RegistryConfig::default());
        assert!(c.registry.resolve);
        let c = cfg(
            Defaults::LOCAL,
            &[
                ("RESOLVE_DIGESTS", "off"),
                ("REGISTRY_TIMEOUT_MS", "750"),
                (
                    "REGISTRY_INSECURE_HOSTS",
                    "127.0.0.1:5000, LOCALHOST:5001, [::1]:5002",
                ),
                (
                    "REGISTRY_CREDENTIALS_ARN",
                    "arn:aws:secretsmanager:us-east-1:123456789012:secret:logins-AbCdEf",
                ),
            ],
        )
        .unwrap();
        assert!(!c.registry.resolve);
        assert_eq!(c.registry.timeout, std::time::Duration::from_millis(750));
        assert_eq!(
            c.registry.insecure_hosts,
            ["127.0.0.1:5000", "localhost:5001", "[::1]:5002"]
        );
        assert!(c.registry.credentials_arn.is_some());
        for (name, value) in [
            ("RESOLVE_DIGESTS", "yes"),
            ("REGISTRY_TIMEOUT_MS", "50"),
            ("REGISTRY_TIMEOUT_MS", "60000"),
            ("REGISTRY_INSECURE_HOSTS", "registry.internal:5000"),
            ("REGISTRY_INSECURE_HOSTS", "10.0.0.1:5000"),
            ("REGISTRY_INSECURE_HOSTS", "127.0.0.1:"),
            ("REGISTRY_CREDENTIALS_ARN", "logins"),
        ] {
            let e = cfg(Defaults::LOCAL, &[(name, value)])
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(name), "{name}={value}: {e}");
        }
    }

    #[cfg(feature = "aws")]
    #[test]
    fn notifications_are_off_unless_a_destination_is_named() {
        let c = cfg(Defaults::LOCAL, &[]).unwrap();
        assert!(c.notify.webhook_url.is_none() && c.notify.topic_arn.is_none());
        assert_eq!(c.notify.kinds, NoticeKind::ALL);
        let c = cfg(
            Defaults::LOCAL,
            &[
                (
                    "NOTIFY_WEBHOOK_URL",
                    "https://hooks.slack.com/services/T0/B0/s3cr3t",
                ),
                (
                    "NOTIFY_TOPIC_ARN",
                    "arn:aws:sns:eu-west-1:123456789012:deploys",
                ),
                ("NOTIFY_ON", "deployment-failed, deleted-digest-running"),
                ("NOTIFY_TIMEOUT_MS", "1500"),
            ],
        )
        .unwrap();
        assert!(c.notify.webhook_url.is_some());
        assert_eq!(
            c.notify.kinds,
            [
                NoticeKind::DeploymentFailed,
                NoticeKind::DeletedDigestRunning
            ]
        );
        assert_eq!(c.notify.timeout, std::time::Duration::from_millis(1500));
        // The configuration is logged at times: the webhook's secret path must not be in it.
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[cfg(feature = "aws")]
    #[test]
    fn bad_notification_settings_are_named_without_the_secret() {
        let e = cfg(
            Defaults::LOCAL,
            &[("NOTIFY_WEBHOOK_URL", "http://hooks.example.com/s3cr3t")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("NOTIFY_WEBHOOK_URL") && e.contains("https://"),
            "{e}"
        );
        assert!(!e.contains("s3cr3t"), "{e}");
        for (name, value) in [
            ("NOTIFY_TOPIC_ARN", "deploys"),
            (
                "NOTIFY_TOPIC_ARN",
                "arn:aws:sqs:eu-west-1:123456789012:deploys",
            ),
            ("NOTIFY_ON", "deployment-started,everything"),
            ("NOTIFY_ON", ","),
            ("NOTIFY_TIMEOUT_MS", "50"),
            ("NOTIFY_TIMEOUT_MS", "soon"),
        ] {
            let e = cfg(Defaults::LOCAL, &[(name, value)])
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(name), "{name}={value}: {e}");
        }
    }

    #[test]
    fn the_guard_fails_closed_in_strict_mode_and_open_otherwise_unless_told() {
        let with = |pairs: &[(&str, &str)]| {
            let map: std::collections::HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            guard_settings(|k| map.get(k).cloned())
        };
        let standard = with(&[]).unwrap();
        assert_eq!(
            (standard.mode, standard.on_store_error),
            (GuardMode::Standard, OnStoreError::Open)
        );
        let strict = with(&[("GUARD_MODE", " strict ")]).unwrap();
        assert_eq!(
            (strict.mode, strict.on_store_error),
            (GuardMode::Strict, OnStoreError::Closed)
        );
        let open = with(&[("GUARD_MODE", "strict"), ("GUARD_ON_STORE_ERROR", "open")]).unwrap();
        assert_eq!(open.on_store_error, OnStoreError::Open);
        let closed = with(&[("GUARD_ON_STORE_ERROR", "closed")]).unwrap();
        assert_eq!(
            (closed.mode, closed.on_store_error),
            (GuardMode::Standard, OnStoreError::Closed)
        );
        for (name, value) in [("GUARD_MODE", "paranoid"), ("GUARD_ON_STORE_ERROR", "ajar")] {
            let e = with(&[(name, value)]).unwrap_err().to_string();
            assert!(e.starts_with(name), "{name}={value}: {e}");
        }
    }
}
