//! The AWS SDK configuration every client is built from.

use std::sync::OnceLock;

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::{BehaviorVersion, ConfigLoader};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// The loader with imagehook's HTTP client; the region, credentials and endpoints come from the
/// SDK's usual variables and files. Callers may override more (tests point it at moto) before
/// `load()`.
///
/// Two choices keep the cold start short (docs/performance.md):
/// - Lambda hands the role's credentials over in the environment. When they are there they are
///   read from there, and the SDK's default chain is not built: its web-identity step builds an
///   STS client whose configuration check builds a TLS client, which loads and parses the whole
///   system trust store before the first request (three quarters of a cold start's
///   instructions). Elsewhere (profiles, SSO, IMDS) the default chain runs as usual.
/// - With an `http://` endpoint for every service (`AWS_ENDPOINT_URL`: a local stand-in or
///   moto), the client speaks plain HTTP and no trust store is read at all. Otherwise rustls on
///   ring with the platform's roots, loaded on the first HTTPS connection.
pub fn sdk_loader() -> ConfigLoader {
    let plain = std::env::var("AWS_ENDPOINT_URL").is_ok_and(|u| {
        u.get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
    });
    let builder = aws_smithy_http_client::Builder::new();
    let http = if plain {
        builder.build_http()
    } else {
        builder
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https()
    };
    let loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    let from_env = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
        .iter()
        .all(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()));
    if from_env {
        loader.credentials_provider(EnvironmentVariableCredentialsProvider::new())
    } else {
        loader
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
