//! The images of an ECS service revision through DescribeServiceRevisions (the deployment
//! guard's port). The SDK's types stay in here.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_ecs::Client;
use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata};

use super::aws::Lazy;
use crate::ports::revisions::{RevisionError, RevisionImage, Revisions};

/// Error codes that asking again cannot change: the request or the role is wrong.
const REFUSED_CODES: &[&str] = &[
    "AccessDeniedException",
    "ClientException",
    "InvalidParameterException",
    "ClusterNotFoundException",
    "ServiceNotFoundException",
    "UnsupportedFeatureException",
];

#[derive(Debug, Clone)]
pub struct EcsRevisions {
    client: Arc<Lazy<Client>>,
}

impl EcsRevisions {
    pub fn new(client: Client) -> Self {
        Self {
            client: Arc::new(Lazy::ready(client)),
        }
    }

    /// The guard function's: the ECS client is built on the first call.
    pub fn from_sdk(sdk: &aws_types::SdkConfig) -> Self {
        let sdk = sdk.clone();
        Self {
            client: Arc::new(Lazy::new(move || Client::new(&sdk))),
        }
    }
}

#[async_trait]
impl Revisions for EcsRevisions {
    async fn images(&self, arn: &str) -> Result<Vec<RevisionImage>, RevisionError> {
        let out = match self
            .client
            .get()
            .describe_service_revisions()
            .service_revision_arns(arn)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                return Err(match e.code() {
                    Some(code) if REFUSED_CODES.contains(&code) => RevisionError::Refused(format!(
                        "{code}: {}",
                        e.message().unwrap_or("refused")
                    )),
                    _ => RevisionError::Unavailable {
                        message: DisplayErrorContext(&e).to_string(),
                        source: Some(Box::new(e)),
                    },
                });
            }
        };
        let Some(revision) = out
            .service_revisions()
            .iter()
            .find(|r| r.service_revision_arn() == Some(arn))
        else {
            let reason = out
                .failures()
                .iter()
                .find(|f| f.arn() == Some(arn))
                .or_else(|| out.failures().first())
                .map(|f| {
                    let reason = f.reason().unwrap_or("no reason given");
                    match f.detail() {
                        Some(d) => format!("{reason} ({d})"),
                        None => reason.to_owned(),
                    }
                })
                .unwrap_or_else(|| "neither the revision nor a failure was returned".into());
            return Err(RevisionError::NotFound {
                arn: arn.to_owned(),
                reason,
            });
        };
        revision
            .container_images()
            .iter()
            .map(|c| match c.image() {
                Some(image) => Ok(RevisionImage {
                    container: c.container_name().map(str::to_owned),
                    image: image.to_owned(),
                    digest: c.image_digest().map(str::to_owned),
                }),
                None => Err(RevisionError::BadAnswer {
                    arn: arn.to_owned(),
                    why: format!(
                        "container {:?} has no image",
                        c.container_name().unwrap_or("?")
                    ),
                }),
            })
            .collect()
    }
}
