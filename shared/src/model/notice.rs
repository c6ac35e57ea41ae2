//! What a notification says: one notice per service and happening. The pipeline builds them
//! (`pipeline::notices`); the notifier port sends them.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoticeKind {
    /// A new task-definition revision was registered and the service moved to it.
    DeploymentStarted,
    /// A deployment is held back: the digest is quarantined, deleted or not yet replicated.
    DeploymentBlocked,
    /// The update was refused, or ECS rolled the deployment back.
    DeploymentFailed,
    /// A service still runs a digest that was just deleted.
    DeletedDigestRunning,
    /// A service still runs a digest that was just quarantined.
    QuarantinedDigestRunning,
    /// A service runs an image imagehook did not deploy (changed by hand or by
    /// infrastructure as code), found by the scheduled reconcile.
    ServiceDrifted,
    /// A deployment waits for approvals; the detail says what to run.
    ApprovalRequired,
    /// A held deployment will not go: denied, expired, superseded, cancelled by a quarantine
    /// or delete, or its earlier stage failed.
    PromotionStopped,
    /// The deployment guard failed an ECS deployment (started by anyone) because an image of
    /// the revision is quarantined, deleted, unknown in strict mode, or could not be checked.
    DeploymentRefused,
}

impl NoticeKind {
    pub const ALL: &'static [NoticeKind] = &[
        Self::DeploymentStarted,
        Self::DeploymentBlocked,
        Self::DeploymentFailed,
        Self::DeletedDigestRunning,
        Self::QuarantinedDigestRunning,
        Self::ServiceDrifted,
        Self::ApprovalRequired,
        Self::PromotionStopped,
        Self::DeploymentRefused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeploymentStarted => "deployment-started",
            Self::DeploymentBlocked => "deployment-blocked",
            Self::DeploymentFailed => "deployment-failed",
            Self::DeletedDigestRunning => "deleted-digest-running",
            Self::QuarantinedDigestRunning => "quarantined-digest-running",
            Self::ServiceDrifted => "service-drifted",
            Self::ApprovalRequired => "approval-required",
            Self::PromotionStopped => "promotion-stopped",
            Self::DeploymentRefused => "deployment-refused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    fn title(self) -> &'static str {
        match self {
            Self::DeploymentStarted => "Deployment started",
            Self::DeploymentBlocked => "Deployment blocked",
            Self::DeploymentFailed => "Deployment failed",
            Self::DeletedDigestRunning => "Deleted digest still running",
            Self::QuarantinedDigestRunning => "Quarantined digest still running",
            Self::ServiceDrifted => "Service drifted",
            Self::ApprovalRequired => "Approval required",
            Self::PromotionStopped => "Promotion stopped",
            Self::DeploymentRefused => "Deployment refused",
        }
    }
}

/// One happening at one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    pub kind: NoticeKind,
    /// `cluster/service`.
    pub service: String,
    /// The image concerned, pinned by digest where one is known.
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Why (a block or failure reason), or the task definition a started deployment moved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The registry event (or ECS deployment) behind the notice, for finding it in the logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

impl Notice {
    /// One line a person reads: what happened, where, to which image, and why.
    pub fn text(&self) -> String {
        let mut line = format!("{}: {}", self.kind.title(), self.service);
        match self.kind {
            NoticeKind::DeletedDigestRunning
            | NoticeKind::QuarantinedDigestRunning
            | NoticeKind::ServiceDrifted => {
                line.push_str(" runs ");
            }
            _ => line.push_str(" -> "),
        }
        line.push_str(&self.image);
        if let Some(stage) = &self.stage {
            line.push_str(&format!(" (stage {stage})"));
        }
        if let Some(detail) = &self.detail {
            line.push_str(": ");
            line.push_str(detail);
        }
        line
    }

    /// The notice as a JSON document, the body of an SNS message.
    pub fn to_json(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("source".into(), Value::from("imagehook"));
        }
        v.to_string()
    }
}
