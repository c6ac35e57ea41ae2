//! Long-lived state of a function: configuration and clients, built once at init and shared by
//! every request the execution environment handles.

pub mod config;
pub mod guard;
pub mod oidc;

use std::path::Path;
use std::sync::Arc;

use crate::adapters::registry::{Credentials, CredentialsError, RegistryResolver};
use crate::adapters::secrets::{SecretReadError, SecretsManager};
use crate::adapters::slack::SlackWebhook;
use crate::adapters::sns::SnsTopic;
use crate::adapters::{DryRunDeployer, EcsDeployer, follow};
use crate::adapters::{DynamoStore, EmbeddedStore};
use crate::app::config::{
    Config, ConfigError, Defaults, DeployMode, NotifyConfig, RegistryConfig, SecretRef,
};
pub use crate::model::function::Function;
use crate::pipeline::PipelineError;
use crate::ports::deployer::Deployer;
use crate::ports::notifier::{Notifier, Sink};
use crate::ports::resolver::Resolver;
use crate::ports::store::{Item, Store, StoreDump, StoreError, StoreRead};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("WEBHOOK_SECRETS_ARN: {0}")]
    Secret(#[from] SecretReadError),
    #[error("REGISTRY_CREDENTIALS_ARN: {0}")]
    RegistrySecret(#[source] SecretReadError),
    #[error("the secret REGISTRY_CREDENTIALS_ARN names ({id}) {source}")]
    RegistryCredentials {
        id: String,
        #[source]
        source: CredentialsError,
    },
}

/// A function's long-lived state. What it may do follows from the ports it holds: the
/// webhook and outcomes functions read and write the store, only the local binary (and the
/// tests) can dump it, and only the functions that deploy get an ECS client.
pub struct App {
    config: Config,
    store: Arc<dyn Store>,
    dump: Option<Arc<dyn StoreDump>>,
    deployer: Arc<dyn Deployer>,
    notifier: Notifier,
    resolver: Option<Arc<dyn Resolver>>,
    /// `AUTH_MODE=oidc`: the issuers' keys, held for the life of the environment.
    oidc: Option<oidc::OidcVerifier>,
}

impl App {
    /// An app over a store it may also dump (the local binary, the tests), sending no
    /// notifications; `with_notifier` adds them.
    pub fn new<S: Store + StoreDump + 'static>(
        config: Config,
        store: Arc<S>,
        deployer: Arc<dyn Deployer>,
    ) -> Self {
        let dump: Arc<dyn StoreDump> = store.clone();
        Self::with_ports(config, store, Some(dump), deployer)
    }

    fn with_ports(
        config: Config,
        store: Arc<dyn Store>,
        dump: Option<Arc<dyn StoreDump>>,
        deployer: Arc<dyn Deployer>,
    ) -> Self {
        let oidc = (config.verifier.mode() == crate::auth::AuthMode::Oidc)
            .then(|| oidc::OidcVerifier::new(&config.oidc_issuers));
        Self {
            config,
            store,
            dump,
            deployer,
            notifier: Notifier::disabled(),
            resolver: None,
            oidc,
        }
    }

    pub fn with_notifier(mut self, notifier: Notifier) -> Self {
        self.notifier = notifier;
        self
    }

    /// Pushes without a digest are resolved with `resolver` and deployed pinned.
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolver>) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// The Lambda wiring: configuration from the environment, DynamoDB (or the embedded store
    /// under STATE_DIR), and ECS (or dry-run).
    pub async fn from_env(function: Function) -> Result<Self, InitError> {
        let mut steps = InitSteps::start();
        let (config, mut sdk) = load(Defaults::LAMBDA).await?;
        steps.done("configuration");
        let state_dir = config.state_dir.clone().unwrap_or_default();
        // Only the push function records pushes: the others never ask a registry.
        let resolver = match function {
            Function::Push => resolver_from_env(&config.registry, &mut sdk).await?,
            _ => None,
        };
        steps.done("registry resolver");
        // The delete function never deploys (its role cannot), so it gets no ECS client.
        let app = Self::wire(
            config,
            sdk,
            function != Function::Delete,
            false,
            &state_dir,
            false,
        )
        .await?;
        Ok(match resolver {
            Some(r) => app.with_resolver(r),
            None => app,
        })
    }

    /// The outcomes function's wiring (EventBridge authenticates for us): no webhook secret, no
    /// deploys, the store and the notifier.
    pub async fn for_outcomes() -> Result<Self, InitError> {
        let config = Config::from_env(Defaults::EVENTS)?;
        let state_dir = config.state_dir.clone().unwrap_or_default();
        // The reconcile deploys what a dead holder left undone, and restores drifted services.
        Self::wire(config, None, true, false, &state_dir, false).await
    }

    /// The control function's wiring (IAM on its routes authenticates for us): no webhook
    /// secret; the store, ECS (or dry-run), the registry resolver for tags deployed by hand,
    /// and the notifier.
    pub async fn for_control() -> Result<Self, InitError> {
        let config = Config::from_env(Defaults::CONTROL)?;
        let state_dir = config.state_dir.clone().unwrap_or_default();
        let mut sdk = None;
        let resolver = resolver_from_env(&config.registry, &mut sdk).await?;
        let app = Self::wire(config, sdk, true, false, &state_dir, false).await?;
        Ok(match resolver {
            Some(r) => app.with_resolver(r),
            None => app,
        })
    }

    /// The images function's wiring (IAM on the route authenticates for us): the store's read
    /// port and nothing else.
    pub async fn reader_from_env() -> Result<Arc<dyn StoreRead>, InitError> {
        let config = Config::from_env(Defaults::EVENTS)?;
        let state_dir = config.state_dir.clone().unwrap_or_default();
        let sdk = match config.table_name {
            Some(_) => Some(crate::adapters::aws::sdk_config().await),
            None => None,
        };
        Ok(match (&config.table_name, &sdk) {
            (Some(table), Some(sdk)) => Arc::new(DynamoStore::new(
                aws_sdk_dynamodb::Client::new(sdk),
                table.clone(),
            )),
            // It only reads, so it takes no writer's lock: it runs beside the functions that
            // write the same directory.
            _ => Arc::new(EmbeddedStore::open_read_only(&state_dir)?),
        })
    }

    /// The local binary's wiring: the embedded store under `state_dir` unless TABLE_NAME names a
    /// DynamoDB table (reached through the SDK's usual variables, e.g. AWS_ENDPOINT_URL), and
    /// dry-run unless DEPLOY_MODE=apply.
    pub async fn local(state_dir: &Path) -> Result<Self, InitError> {
        let (config, mut sdk) = load(Defaults::LOCAL).await?;
        let resolver = resolver_from_env(&config.registry, &mut sdk).await?;
        let app = Self::wire(config, sdk, true, true, state_dir, false).await?;
        Ok(match resolver {
            Some(r) => app.with_resolver(r),
            None => app,
        })
    }

    /// `local` for a command that only reads (`imagehook state`, `history`, `simulate`): the
    /// embedded store is opened read-only, without the writer's lock, so that the command runs
    /// beside an `imagehook serve` on the same directory; every write is refused.
    pub async fn local_read_only(state_dir: &Path) -> Result<Self, InitError> {
        let (config, sdk) = load(Defaults::LOCAL).await?;
        Self::wire(config, sdk, true, true, state_dir, true).await
    }

    /// The SDK configuration is loaded only when DynamoDB or ECS is used, and once; clients are
    /// built only for what the function calls. Loading it reads the trust store, a few
    /// milliseconds of cold start that the embedded store in dry-run does without.
    async fn wire(
        config: Config,
        sdk: Option<aws_types::SdkConfig>,
        may_deploy: bool,
        may_dump: bool,
        state_dir: &Path,
        read_only: bool,
    ) -> Result<Self, InitError> {
        let mut steps = InitSteps::start();
        let deploys = may_deploy && config.deploy_mode == DeployMode::Apply;
        let sdk = match sdk {
            Some(sdk) => Some(sdk),
            None if config.table_name.is_some() || deploys || config.notify.topic_arn.is_some() => {
                Some(crate::adapters::aws::sdk_config().await)
            }
            None => None,
        };
        steps.done("AWS SDK configuration");
        let (store, dump): (Arc<dyn Store>, Arc<dyn StoreDump>) = match (&config.table_name, &sdk) {
            (Some(table), Some(sdk)) => {
                let s = Arc::new(DynamoStore::new(
                    aws_sdk_dynamodb::Client::new(sdk),
                    table.clone(),
                ));
                (s.clone(), s)
            }
            _ => {
                let s = Arc::new(if read_only {
                    EmbeddedStore::open_read_only(state_dir)?
                } else {
                    EmbeddedStore::open(state_dir)?
                });
                (s.clone(), s)
            }
        };
        steps.done("store");
        let dump = may_dump.then_some(dump);
        let deployer: Arc<dyn Deployer> = match &sdk {
            Some(sdk) if deploys => Arc::new(
                EcsDeployer::from_sdk(sdk)
                    .with_discovery(config.follow_clusters.clone(), follow::DEFAULT_TTL)
                    .with_aliases(config.registry_aliases.clone()),
            ),
            _ => Arc::new(DryRunDeployer),
        };
        steps.done("deployer");
        let notifier = notifier(&config.notify, sdk.as_ref());
        steps.done("notifier");
        Ok(Self::log_init(
            Self::with_ports(config, store, dump, deployer).with_notifier(notifier),
        ))
    }

    fn log_init(self) -> Self {
        let mode = self.config.verifier.mode();
        if mode == crate::auth::AuthMode::None && self.config.webhooks {
            tracing::warn!(
                "AUTH_MODE=none: requests are NOT authenticated; put an authorizer in front or set AUTH_MODE"
            );
        }
        tracing::info!(
            auth_mode = mode.as_str(),
            deploy_mode = self.config.deploy_mode.as_str(),
            rules = self.config.rules.len(),
            notifications = self.notifier.is_enabled(),
            "imagehook initialised"
        );
        self
    }

    /// What the pipeline needs for one request, borrowed from this app.
    pub fn deps<'a>(
        &'a self,
        payload: Option<&'a crate::model::payload::Payload>,
    ) -> crate::pipeline::Deps<'a> {
        crate::pipeline::Deps {
            store: self.store(),
            deployer: self.deployer(),
            rules: &self.config.rules,
            quarantine: &self.config.quarantine,
            receipt_ttl_days: self.config.receipt_ttl_days,
            service_region: self.config.service_region.as_deref(),
            registry_aliases: &self.config.registry_aliases,
            payload,
            lease: self.config.lease,
            resolver: self.resolver.as_deref(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The store's read port alone, as the images API is given it.
    pub fn reader(&self) -> &dyn StoreRead {
        self.store.as_ref()
    }

    /// Every stored item (`imagehook state`, the tests). Refused where the wiring gave no
    /// full-table read, as in every deployed function.
    pub async fn dump(&self) -> Result<Vec<Item>, StoreError> {
        match &self.dump {
            Some(d) => d.dump().await,
            None => Err(StoreError::Rejected {
                operation: "Scan",
                message: "this function is not given a full-table read".into(),
            }),
        }
    }

    pub fn deployer(&self) -> &dyn Deployer {
        self.deployer.as_ref()
    }

    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// The OIDC verifier, in `AUTH_MODE=oidc`.
    pub fn oidc(&self) -> Option<&oidc::OidcVerifier> {
        self.oidc.as_ref()
    }

    /// Re-drives the request behind receipt `<provider>#<event id>` (`imagehook replay`).
    pub async fn replay(
        &self,
        receipt_id: &str,
    ) -> Result<Vec<crate::model::result::EventResult>, crate::pipeline::replay::ReplayError> {
        crate::pipeline::replay::replay(&self.deps(None), &self.notifier, receipt_id).await
    }

    /// The outcomes path for one ECS deployment state change, with its notification.
    /// The outcomes function's one event: the scheduled reconcile's trigger, or an ECS
    /// deployment state change.
    pub async fn outcome(&self, body: &[u8]) -> Result<serde_json::Value, PipelineError> {
        if crate::pipeline::reconcile::is_trigger(body) {
            return self.reconcile().await;
        }
        let mut answer =
            crate::pipeline::outcomes::handle(self.store(), body, self.config.receipt_ttl_days)
                .await?;
        let mut notices: Vec<_> = crate::pipeline::notices::from_rollout(&answer)
            .into_iter()
            .collect();
        // The stages that wait for this one move on (or stop) with its outcome.
        let (moved, stage_notices) =
            crate::pipeline::approve::after_outcome(&self.deps(None), &answer).await?;
        notices.extend(stage_notices);
        if !moved.is_empty() {
            answer["promotions"] = serde_json::to_value(&moved).unwrap_or_default();
        }
        if !notices.is_empty() {
            self.notifier.notify(notices).await;
        }
        Ok(answer)
    }

    /// Approves or denies held deployment `id` as `by` (`imagehook approve|deny`, and the
    /// approvals API route with the caller's IAM principal ARN), and sends what it notifies.
    pub async fn decide(
        &self,
        id: &str,
        decision: crate::pipeline::approve::Decision,
        by: &str,
    ) -> Result<crate::pipeline::approve::DecisionResult, PipelineError> {
        let result = crate::pipeline::approve::decide(&self.deps(None), id, decision, by).await?;
        if !result.notices.is_empty() {
            self.notifier.notify(result.notices.clone()).await;
        }
        Ok(result)
    }

    /// What waits for approvals or an earlier stage, and why (`imagehook waiting`).
    pub async fn waiting(&self) -> Result<Vec<crate::pipeline::approve::Waiting>, PipelineError> {
        crate::pipeline::approve::waiting(&self.deps(None)).await
    }

    /// Converges every managed service and reports drift (`imagehook reconcile`, and the
    /// outcomes function on its schedule); the drift notices go out as any other.
    pub async fn reconcile(&self) -> Result<serde_json::Value, PipelineError> {
        let deps = self.deps(None);
        let (reports, mut notices) = crate::pipeline::reconcile::reconcile(&deps).await?;
        // After the services converged: a hold whose stage soaked, or that expired, moves.
        let (moved, held_notices) = crate::pipeline::approve::sweep(&deps).await?;
        notices.extend(held_notices);
        if !notices.is_empty() {
            self.notifier.notify(notices).await;
        }
        let mut answer = serde_json::json!({"reconciled": reports});
        if !moved.is_empty() {
            answer["held"] = serde_json::to_value(&moved).unwrap_or_default();
        }
        Ok(answer)
    }
}

/// The configuration from the environment, and the SDK configuration if reading the webhook
/// secret from Secrets Manager needed it loaded (`wire` then uses the same one).
async fn load(defaults: Defaults) -> Result<(Config, Option<aws_types::SdkConfig>), InitError> {
    let env = |k: &str| std::env::var(k).ok();
    if SecretRef::from_lookup(defaults, env)?.is_none() {
        return Ok((Config::from_lookup(defaults, env)?, None));
    }
    let sdk = crate::adapters::aws::sdk_config().await;
    let secrets = SecretsManager::new(aws_sdk_secretsmanager::Client::new(&sdk));
    Ok((
        config_with_secrets(defaults, env, &secrets).await?,
        Some(sdk),
    ))
}

/// The configuration through `get`, with the webhook secrets read from Secrets Manager when
/// WEBHOOK_SECRETS_ARN names them: once, here, for the life of the execution environment. A
/// secret that cannot be read or is not `{"current": ..., "previous": ...}` stops the start.
pub async fn config_with_secrets(
    defaults: Defaults,
    get: impl Fn(&str) -> Option<String>,
    secrets: &SecretsManager,
) -> Result<Config, InitError> {
    let kept = match SecretRef::from_lookup(defaults, &get)? {
        None => None,
        Some(at) => {
            let text = secrets.read(&at.id, at.version.as_deref()).await?;
            Some(config::parse_secret_document(&at.id, &text)?)
        }
    };
    Ok(Config::from_parts(defaults, get, kept)?)
}

/// The resolver for `config`, unless RESOLVE_DIGESTS=off, with the logins REGISTRY_CREDENTIALS_ARN
/// names read once (loading the SDK configuration for it, which `wire` then reuses).
async fn resolver_from_env(
    config: &RegistryConfig,
    sdk: &mut Option<aws_types::SdkConfig>,
) -> Result<Option<Arc<dyn Resolver>>, InitError> {
    if !config.resolve {
        return Ok(None);
    }
    let secrets = match (&config.credentials_arn, &*sdk) {
        (None, _) => None,
        (Some(_), Some(sdk)) => Some(SecretsManager::new(aws_sdk_secretsmanager::Client::new(
            sdk,
        ))),
        (Some(_), None) => {
            let loaded = crate::adapters::aws::sdk_config().await;
            let secrets = SecretsManager::new(aws_sdk_secretsmanager::Client::new(&loaded));
            *sdk = Some(loaded);
            Some(secrets)
        }
    };
    registry_resolver(config, secrets.as_ref()).await
}

/// The registry resolver `config` describes (none with RESOLVE_DIGESTS=off), its logins read from
/// the secret REGISTRY_CREDENTIALS_ARN names through `secrets`. A secret that cannot be read or
/// is not a map of logins stops the start, naming the secret and never a value.
pub async fn registry_resolver(
    config: &RegistryConfig,
    secrets: Option<&SecretsManager>,
) -> Result<Option<Arc<dyn Resolver>>, InitError> {
    if !config.resolve {
        return Ok(None);
    }
    let credentials = match (&config.credentials_arn, secrets) {
        (Some(id), Some(secrets)) => {
            let text = secrets
                .read(id, None)
                .await
                .map_err(InitError::RegistrySecret)?;
            Credentials::parse(&text).map_err(|source| InitError::RegistryCredentials {
                id: id.clone(),
                source,
            })?
        }
        (Some(_), None) => {
            return Err(ConfigError::Missing {
                name: "REGISTRY_CREDENTIALS_ARN",
                hint: "names a secret that was not read",
            }
            .into());
        }
        (None, _) => Credentials::default(),
    };
    tracing::info!(
        timeout_ms = u64::try_from(config.timeout.as_millis()).unwrap_or(u64::MAX),
        logins = credentials.len(),
        "pushes without a digest are resolved at their registry"
    );
    Ok(Some(Arc::new(RegistryResolver::new(
        config.timeout,
        config.insecure_hosts.clone(),
        credentials,
    ))))
}

/// The sinks NOTIFY_* name. The SNS client shares the SDK configuration `wire` loaded (it is
/// loaded whenever a topic is set).
fn notifier(config: &NotifyConfig, sdk: Option<&aws_types::SdkConfig>) -> Notifier {
    let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
    if let Some(url) = &config.webhook_url {
        sinks.push(Arc::new(SlackWebhook::new(url.clone())));
    }
    if let (Some(topic), Some(sdk)) = (&config.topic_arn, sdk) {
        sinks.push(Arc::new(SnsTopic::from_sdk(sdk, topic)));
    }
    Notifier::new(sinks, config.kinds.clone(), config.timeout)
}

/// What each init step took, logged at debug level (`LOG_LEVEL=debug`; in Lambda the
/// template's log level): the cold start, measured where it is spent.
struct InitSteps {
    last: std::time::Instant,
}

impl InitSteps {
    fn start() -> Self {
        Self {
            last: std::time::Instant::now(),
        }
    }

    fn done(&mut self, step: &'static str) {
        let now = std::time::Instant::now();
        tracing::debug!(
            step,
            micros = u64::try_from(now.duration_since(self.last).as_micros()).unwrap_or(u64::MAX),
            "init step"
        );
        self.last = now;
    }
}
