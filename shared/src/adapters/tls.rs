//! The TLS client configuration of every HTTPS client of the process (the AWS SDK's, the
//! registry resolver, the Slack notifier, the OIDC key-set fetch): one, built on the first
//! connection one of them makes.
//!
//! The platform's trust store is read and parsed once here, not once per client: on Debian
//! that is the bundle plus every certificate again as a file (about 19 M instructions, a few
//! milliseconds), on Lambda the one bundle. It stays the platform's store rather than a
//! compiled-in list because private registries are often signed by a company CA, which a user
//! adds with `SSL_CERT_FILE` (a bundle in a layer) without rebuilding anything.

use std::sync::{Arc, OnceLock};

use hyper_rustls::ConfigBuilderExt;
use rustls::ClientConfig;

static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();

/// The shared configuration: rustls on ring, TLS 1.2 and 1.3, the platform's roots. The error
/// names why no trust store could be read; it is kept, so a broken store is not re-read on
/// every request.
pub fn client_config() -> Result<Arc<ClientConfig>, String> {
    CONFIG.get_or_init(build).clone()
}

fn build() -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_native_roots()
        .map_err(|e| format!("no trust store: {e}"))?
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A connector for HTTPS (and plain HTTP where the caller allows it) over `tcp`, with the
/// shared configuration.
pub fn connector<C>(tcp: C) -> Result<hyper_rustls::HttpsConnector<C>, String> {
    let config = client_config()?;
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(ClientConfig::clone(&config))
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_configuration_is_shared_by_every_client() {
        let a = client_config().expect("this machine has a trust store");
        let b = client_config().unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(a.crypto_provider().cipher_suites.len() > 1);
    }
}
