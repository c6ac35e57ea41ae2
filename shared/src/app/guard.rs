//! The guard function's long-lived state: what it reads (the image records, the service
//! revision's images at ECS, a tag's digest at its registry), where its notices go, and how it
//! decides (GUARD_MODE, GUARD_ON_STORE_ERROR). It writes nothing and deploys nothing, so it is
//! given the store's read port and no deployer.

use std::sync::Arc;

use super::{InitError, notifier, resolver_from_env};
use crate::adapters::revisions::EcsRevisions;
use crate::adapters::{DynamoStore, EmbeddedStore};
use crate::app::config::{Config, Defaults, GuardSettings, guard_settings};
use crate::model::reference::RegistryAliases;
use crate::pipeline::guard::{self, GuardDeps, HookEvent, Verdict};
use crate::ports::notifier::Notifier;
use crate::ports::resolver::Resolver;
use crate::ports::revisions::Revisions;
use crate::ports::store::StoreRead;

pub struct GuardApp {
    store: Arc<dyn StoreRead>,
    revisions: Arc<dyn Revisions>,
    resolver: Option<Arc<dyn Resolver>>,
    notifier: Notifier,
    aliases: RegistryAliases,
    settings: GuardSettings,
}

impl GuardApp {
    /// A guard over `store` and `revisions`, sending no notices and asking no registry;
    /// `with_notifier`, `with_resolver` and `with_aliases` add them.
    pub fn new(
        store: Arc<dyn StoreRead>,
        revisions: Arc<dyn Revisions>,
        settings: GuardSettings,
    ) -> Self {
        Self {
            store,
            revisions,
            resolver: None,
            notifier: Notifier::disabled(),
            aliases: RegistryAliases::default(),
            settings,
        }
    }

    pub fn with_notifier(mut self, notifier: Notifier) -> Self {
        self.notifier = notifier;
        self
    }

    /// Tags ECS reported no digest for, and imagehook has no record of, are asked of their
    /// registry.
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolver>) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// REGISTRY_ALIASES: a task definition may name a registry by another of its names.
    pub fn with_aliases(mut self, aliases: RegistryAliases) -> Self {
        self.aliases = aliases;
        self
    }

    /// The Lambda wiring: the configuration from the environment, DynamoDB (or the embedded
    /// store under STATE_DIR, read-only), ECS, the registry resolver (RESOLVE_DIGESTS) and the
    /// notifier. The SDK configuration is always loaded: every invocation asks ECS.
    pub async fn from_env() -> Result<Self, InitError> {
        let config = Config::from_env(Defaults::EVENTS)?;
        let settings = guard_settings(|k| std::env::var(k).ok())?;
        let mut sdk = None;
        let resolver = resolver_from_env(&config.registry, &mut sdk).await?;
        let sdk = match sdk {
            Some(sdk) => sdk,
            None => crate::adapters::aws::sdk_config().await,
        };
        let store: Arc<dyn StoreRead> = match &config.table_name {
            Some(table) => Arc::new(DynamoStore::new(
                aws_sdk_dynamodb::Client::new(&sdk),
                table.clone(),
            )),
            // Read-only: it runs beside the functions that write the same directory.
            None => Arc::new(EmbeddedStore::open_read_only(
                &config.state_dir.clone().unwrap_or_default(),
            )?),
        };
        let app = Self::new(store, Arc::new(EcsRevisions::from_sdk(&sdk)), settings)
            .with_notifier(notifier(&config.notify, Some(&sdk)))
            .with_aliases(config.registry_aliases.clone());
        let app = match resolver {
            Some(r) => app.with_resolver(r),
            None => app,
        };
        tracing::info!(
            mode = settings.mode.as_str(),
            on_store_error = settings.on_store_error.as_str(),
            notifications = app.notifier.is_enabled(),
            "imagehook guard initialised"
        );
        Ok(app)
    }

    pub fn settings(&self) -> GuardSettings {
        self.settings
    }

    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    pub fn deps(&self) -> GuardDeps<'_> {
        GuardDeps {
            store: self.store.as_ref(),
            revisions: self.revisions.as_ref(),
            resolver: self.resolver.as_deref(),
            registry_aliases: &self.aliases,
            settings: self.settings,
        }
    }

    /// One invocation's event, read and decided: the event as read (none when it could not
    /// be), and the verdict. An unreadable event fails the deployment, naming what is wrong:
    /// a deployment the guard cannot see is not one it can let through.
    pub async fn decide(&self, body: &[u8]) -> (Option<HookEvent>, Verdict) {
        match guard::parse(body) {
            Ok(event) => {
                let verdict = guard::decide(&self.deps(), &event).await;
                (Some(event), verdict)
            }
            Err(e) => (
                None,
                Verdict::failed(format!(
                    "the hook event could not be read, so nothing was checked: {e}"
                )),
            ),
        }
    }
}
