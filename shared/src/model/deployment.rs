//! What a deployment did to one service: the outcome the response reports and the store
//! records.

use serde::{Deserialize, Serialize};

use crate::model::reference::ImageRef;
use crate::model::rules::Target;

/// What happened to one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeployOutcome {
    /// A new task-definition revision was registered and the service moved to it.
    Updated,
    /// The service already runs this image: nothing to do.
    Unchanged,
    /// The rule's policy keeps the service where it is (newer-only, force); the reason says why.
    Skipped,
    /// Dry-run: this is what would be done.
    Planned,
    /// The image may not be deployed (quarantined or deleted); applied on release.
    Blocked,
    /// The service or container could not be found or the update was refused. Logged; the
    /// delivery still succeeds because a retry could not fix it.
    Failed,
    /// A newer proposal for the service won: this image is never applied there. The reason
    /// names the winner.
    Superseded,
    /// Another delivery holds the service's lease and applies the newest desired state, this
    /// one included; the reason names the deployment that carries it.
    Queued,
    /// The rule requires approvals: held until enough people approve it (the reason names the
    /// id to approve).
    #[serde(rename = "awaiting_approval")]
    AwaitingApproval,
    /// The rule deploys only what an earlier stage ran healthily: held until that stage's
    /// deployment of the digest completes and its soak passes.
    #[serde(rename = "waiting_for_stage")]
    WaitingForStage,
}

impl DeployOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::Skipped => "skipped",
            Self::Planned => "planned",
            Self::Blocked => "blocked",
            Self::Failed => "failed",
            Self::Superseded => "superseded",
            Self::Queued => "queued",
            Self::AwaitingApproval => "awaiting_approval",
            Self::WaitingForStage => "waiting_for_stage",
        }
    }
}

/// The result for one target service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub cluster: String,
    pub service: String,
    pub outcome: DeployOutcome,
    /// The image the service is moved to (`registry/repo@sha256:...`, or `:tag` when unpinned).
    pub image: String,
    /// The task definition the service runs after this deployment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
    /// The task definition it ran before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_task_definition: Option<String>,
    /// The image the changed container ran before (`registry/repo@digest` when pinned), so
    /// that a rollback can be recorded as a return to it.
    #[serde(skip)]
    pub previous_image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// ECS's id of the rollout UpdateService started (`ecs-svc/...`): deployment state changes
    /// name it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ecs_deployment_id: Option<String>,
    /// The id of the held deployment (`awaiting_approval`, `waiting_for_stage`): what
    /// `imagehook approve`, `deny` and `waiting` name it by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_id: Option<String>,
}

impl Deployment {
    pub fn new(target: &Target, image: &ImageRef, outcome: DeployOutcome) -> Self {
        Self {
            cluster: target.cluster.clone(),
            service: target.service.clone(),
            outcome,
            image: image.deployable(),
            task_definition: None,
            previous_task_definition: None,
            previous_image: None,
            stage: target.stage.clone(),
            reason: None,
            ecs_deployment_id: None,
            hold_id: None,
        }
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}
