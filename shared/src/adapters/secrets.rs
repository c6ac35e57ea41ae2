//! Secrets Manager: the webhook secret, read once when a function starts (WEBHOOK_SECRETS_ARN).
//! A new execution environment reads the version current then, so a rotation reaches the
//! functions without a deploy.

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;

/// Why the secret could not be read. Only the secret's id and AWS's error code are ever in it:
/// never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretReadError {
    #[error("cannot read secret {id}: {code}: {message}")]
    Service {
        id: String,
        code: String,
        message: String,
    },
    #[error("secret {id} holds no SecretString (a binary secret is not supported)")]
    NotText { id: String },
}

pub struct SecretsManager {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManager {
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        Self { client }
    }

    /// The SecretString of `id` at `version` (a VersionId), or at AWSCURRENT when none is given.
    pub async fn read(&self, id: &str, version: Option<&str>) -> Result<String, SecretReadError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(id)
            .set_version_id(version.map(str::to_owned))
            .send()
            .await
            .map_err(|e| SecretReadError::Service {
                id: id.to_owned(),
                code: e.code().unwrap_or("unreachable").to_owned(),
                message: e.message().map_or_else(
                    || "no answer from Secrets Manager".to_owned(),
                    str::to_owned,
                ),
            })?;
        out.secret_string
            .ok_or_else(|| SecretReadError::NotText { id: id.to_owned() })
    }
}
