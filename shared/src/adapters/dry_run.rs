use async_trait::async_trait;

use crate::model::reference::ImageRef;
use crate::model::rules::Target;
use crate::ports::deployer::{DeployError, DeployOutcome, Deployer, Deployment, Guard};

/// `DEPLOY_MODE=dry-run`: plans every deployment and calls nothing, so rules can be tried on a
/// live registry before imagehook is allowed to touch a service.
#[derive(Debug, Default, Clone, Copy)]
pub struct DryRunDeployer;

#[async_trait]
impl Deployer for DryRunDeployer {
    fn dry_run(&self) -> bool {
        true
    }

    async fn apply(
        &self,
        image: &ImageRef,
        t: &Target,
        _resume: bool,
        _guard: &dyn Guard,
    ) -> Result<Deployment, DeployError> {
        let d = Deployment::new(t, image, DeployOutcome::Planned);
        Ok(match t.container.as_deref() {
            Some(c) => d.with_reason(format!(
                "dry-run: container {c} would run {}",
                image.deployable()
            )),
            None => d.with_reason(format!(
                "dry-run: containers running {} would run {}",
                image.name(),
                image.deployable()
            )),
        })
    }
}
