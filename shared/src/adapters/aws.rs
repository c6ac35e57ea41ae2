//! The AWS SDK configuration every client is built from.

use aws_config::{BehaviorVersion, ConfigLoader};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// The loader with imagehook's HTTPS client (rustls on ring, the platform's trust store); the
/// region, credentials and endpoints come from the SDK's usual variables and files. Callers may
/// override more (tests point it at moto) before `load()`.
pub fn sdk_loader() -> ConfigLoader {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest()).http_client(http)
}
