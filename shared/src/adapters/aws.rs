//! The AWS SDK configuration every client is built from.
//!
//! The Lambda functions build it from the environment Lambda gives them: `AWS_REGION`, the
//! execution role's credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`) and the endpoint, retry and FIPS variables the SDK documents. They do
//! not link the SDK's configuration loader (aws-config): its chain of profiles, SSO, web
//! identity and instance roles, with an STS client for them, is code a function whose
//! credentials are always in its environment never runs, and it made a quarter of a megabyte
//! of each artefact. The local binary, run by a person with profiles and SSO, installs that
//! chain (`use_chain`).

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_async::rt::sleep::{SharedAsyncSleep, TokioSleep};
use aws_smithy_async::time::{SharedTimeSource, SystemTimeSource};
use aws_smithy_runtime_api::client::behavior_version::BehaviorVersion;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use aws_types::region::Region;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};

pub use aws_types::SdkConfig;

/// Another way to build the SDK configuration, given imagehook's HTTP client.
pub type Chain = fn(SharedHttpClient) -> Pin<Box<dyn Future<Output = SdkConfig> + Send>>;

static CHAIN: OnceLock<Chain> = OnceLock::new();

/// Makes `chain` build every SDK configuration of this process from now on (the local binary:
/// the SDK's whole chain). The first one installed stays.
pub fn use_chain(chain: Chain) {
    let _ = CHAIN.set(chain);
}

/// The SDK configuration: from the installed chain if there is one, else from the environment.
/// Callers may override more (tests point it at moto) through `to_builder()`.
///
/// The HTTP client is imagehook's (`sdk_http.rs`): plain HTTP for an `http://` endpoint (a
/// local stand-in, moto) without reading any trust store; rustls on ring with the platform's
/// roots, loaded once for every client of the process, on the first HTTPS connection.
pub async fn sdk_config() -> SdkConfig {
    let http = super::sdk_http::shared();
    match CHAIN.get() {
        Some(chain) => chain(http).await,
        None => {
            let config = from_lookup(|k| std::env::var(k).ok(), http);
            if config.credentials_provider().is_none() {
                tracing::warn!(
                    "no AWS credentials in the environment (AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY): every AWS call will be refused"
                );
            }
            config
        }
    }
}

/// The configuration the variables `get` reads describe. Absent credentials or Region are left
/// absent: the first call then fails naming what is missing.
fn from_lookup(get: impl Fn(&str) -> Option<String>, http: SharedHttpClient) -> SdkConfig {
    let get = |k: &str| {
        get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let on = |k: &str| get(k).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let ignore_endpoints = on("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
    let mut b = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http)
        .sleep_impl(SharedAsyncSleep::new(TokioSleep::new()))
        .time_source(SharedTimeSource::new(SystemTimeSource::new()))
        // The SDK's default for a connection; a call's own time is bounded by its retries.
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(3100))
                .build(),
        )
        .retry_config(retry_config(get("AWS_RETRY_MODE"), get("AWS_MAX_ATTEMPTS")))
        .service_config(EnvServiceConfig { ignore_endpoints })
        .use_fips(on("AWS_USE_FIPS_ENDPOINT"))
        .use_dual_stack(on("AWS_USE_DUALSTACK_ENDPOINT"));
    b.set_region(
        get("AWS_REGION")
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .map(Region::new),
    );
    if let (Some(id), Some(secret)) = (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
        let credentials =
            Credentials::new(id, secret, get("AWS_SESSION_TOKEN"), None, "Environment");
        b.set_credentials_provider(Some(SharedCredentialsProvider::new(credentials)));
    }
    if !ignore_endpoints {
        b.set_endpoint_url(get("AWS_ENDPOINT_URL"));
    }
    b.build()
}

/// Standard retries (3 attempts), or what `AWS_RETRY_MODE` and `AWS_MAX_ATTEMPTS` ask for; a
/// value the SDK would refuse is reported and the default kept.
fn retry_config(mode: Option<String>, attempts: Option<String>) -> RetryConfig {
    let mut config = match mode.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("standard") | Some("legacy") => RetryConfig::standard(),
        Some("adaptive") => RetryConfig::adaptive(),
        Some(other) => {
            tracing::warn!(
                "AWS_RETRY_MODE={other:?} is not standard or adaptive: standard retries"
            );
            RetryConfig::standard()
        }
    };
    if let Some(n) = attempts {
        match n.parse::<u32>() {
            Ok(n) if n > 0 => config = config.with_max_attempts(n),
            _ => tracing::warn!("AWS_MAX_ATTEMPTS={n:?} is not a positive number: 3 attempts"),
        }
    }
    config
}

/// A service's own variables, as the SDK names them: `AWS_ENDPOINT_URL_DYNAMODB`,
/// `AWS_ENDPOINT_URL_SECRETS_MANAGER` (the variable, `_`, the service id in capitals with
/// spaces as `_`).
#[derive(Debug)]
struct EnvServiceConfig {
    ignore_endpoints: bool,
}

impl LoadServiceConfig for EnvServiceConfig {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        if self.ignore_endpoints && key.env() == "AWS_ENDPOINT_URL" {
            return None;
        }
        let service = key.service_id().to_ascii_uppercase().replace(' ', "_");
        std::env::var(format!("{}_{service}", key.env()))
            .ok()
            .filter(|v| !v.trim().is_empty())
    }
}

/// An SDK client built on its first call rather than at init: building one (its configuration,
/// its runtime plugins) costs about 0.2 ms that a cold start whose request needs no call to that
/// service should not pay.
pub struct Lazy<C> {
    cell: OnceLock<C>,
    build: Box<dyn Fn() -> C + Send + Sync>,
}

impl<C> Lazy<C> {
    /// A client `build` makes on first use.
    pub fn new(build: impl Fn() -> C + Send + Sync + 'static) -> Self {
        Self {
            cell: OnceLock::new(),
            build: Box::new(build),
        }
    }

    pub fn get(&self) -> &C {
        self.cell.get_or_init(&self.build)
    }
}

impl<C: Clone + Send + Sync + 'static> Lazy<C> {
    /// A client built already (tests hand theirs over).
    pub fn ready(client: C) -> Self {
        let lazy = Self::new({
            let client = client.clone();
            move || client.clone()
        });
        let _ = lazy.cell.set(client);
        lazy
    }
}

impl<C> std::fmt::Debug for Lazy<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lazy")
            .field("built", &self.cell.get().is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_credential_types::provider::ProvideCredentials;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> SdkConfig {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        from_lookup(
            |k| vars.get(k).cloned(),
            crate::adapters::sdk_http::shared(),
        )
    }

    #[tokio::test]
    async fn lambdas_environment_gives_region_credentials_and_endpoint() {
        let c = config(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
            ("AWS_MAX_ATTEMPTS", "5"),
            ("AWS_USE_FIPS_ENDPOINT", "true"),
        ]);
        assert_eq!(c.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(c.endpoint_url(), Some("http://127.0.0.1:4566"));
        assert_eq!(c.retry_config().map(|r| r.max_attempts()), Some(5));
        assert_eq!(c.use_fips(), Some(true));
        assert_eq!(
            c.timeout_config().and_then(|t| t.connect_timeout()),
            Some(Duration::from_millis(3100))
        );
        let creds = c
            .credentials_provider()
            .expect("credentials")
            .provide_credentials()
            .await
            .expect("credentials");
        assert_eq!(creds.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(creds.secret_access_key(), "secret");
        assert_eq!(creds.session_token(), Some("token"));
    }

    #[test]
    fn what_is_absent_stays_absent_and_bad_values_keep_the_defaults() {
        let c = config(&[
            ("AWS_DEFAULT_REGION", "us-west-2"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
            ("AWS_MAX_ATTEMPTS", "many"),
            ("AWS_RETRY_MODE", "adaptive"),
        ]);
        assert_eq!(c.region().map(|r| r.as_ref()), Some("us-west-2"));
        // Half a key pair is no credentials.
        assert!(c.credentials_provider().is_none());
        assert_eq!(c.endpoint_url(), None);
        let retry = c.retry_config().expect("retry");
        assert_eq!(retry.max_attempts(), 3);
        assert_eq!(retry.mode(), aws_smithy_types::retry::RetryMode::Adaptive);
        assert!(config(&[]).region().is_none());
    }
}
