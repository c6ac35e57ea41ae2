//! ECS deployment state changes, as EventBridge delivers them ("ECS Deployment State Change"):
//! whether a rollout imagehook started completed, failed, or was rolled back by the circuit
//! breaker.

use serde::Deserialize;

use crate::model::event::Timestamp;

/// The state a change reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcsOutcomeState {
    InProgress,
    Completed,
    Failed,
}

impl EcsOutcomeState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    /// A later state never goes back to an earlier one: EventBridge may deliver out of order.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::InProgress)
    }
}

/// One deployment state change of one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsOutcome {
    /// The EventBridge event id: a redelivery carries the same one.
    pub event_id: String,
    pub cluster: String,
    pub service: String,
    /// ECS's deployment id (`ecs-svc/...`), as UpdateService returned it.
    pub deployment_id: String,
    pub state: EcsOutcomeState,
    /// The circuit breaker stopped the deployment (and, with rollback on, started a rollback).
    pub circuit_breaker: bool,
    pub reason: String,
    pub at: Timestamp,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EcsOutcomeError {
    #[error("not an EventBridge event: {0}")]
    Malformed(String),
    #[error("not an ECS Deployment State Change (source {sender:?}, detail-type {detail_type:?})")]
    NotADeploymentChange { sender: String, detail_type: String },
    #[error("the event names no service ARN in resources")]
    NoService,
    #[error("unknown eventName {0:?}")]
    UnknownState(String),
}

#[derive(Deserialize)]
struct Envelope {
    id: String,
    source: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    time: String,
    #[serde(default)]
    resources: Vec<String>,
    detail: Detail,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Detail {
    event_name: String,
    deployment_id: String,
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(default)]
    reason: String,
}

impl EcsOutcome {
    pub fn parse(body: &[u8]) -> Result<Self, EcsOutcomeError> {
        let e: Envelope =
            serde_json::from_slice(body).map_err(|e| EcsOutcomeError::Malformed(e.to_string()))?;
        if e.source != "aws.ecs" || e.detail_type != "ECS Deployment State Change" {
            return Err(EcsOutcomeError::NotADeploymentChange {
                sender: e.source,
                detail_type: e.detail_type,
            });
        }
        // arn:aws:ecs:<region>:<account>:service/<cluster>/<service>
        let (cluster, service) = e
            .resources
            .iter()
            .find_map(|r| {
                let path = r.split_once(":service/")?.1;
                let (c, s) = path.split_once('/')?;
                Some((c.to_owned(), s.to_owned()))
            })
            .ok_or(EcsOutcomeError::NoService)?;
        let state = match e.detail.event_name.as_str() {
            "SERVICE_DEPLOYMENT_IN_PROGRESS" => EcsOutcomeState::InProgress,
            "SERVICE_DEPLOYMENT_COMPLETED" => EcsOutcomeState::Completed,
            "SERVICE_DEPLOYMENT_FAILED" => EcsOutcomeState::Failed,
            other => return Err(EcsOutcomeError::UnknownState(other.to_owned())),
        };
        let at = e
            .detail
            .updated_at
            .as_deref()
            .and_then(|t| Timestamp::parse(t).ok())
            .or_else(|| Timestamp::parse(&e.time).ok())
            .unwrap_or_else(Timestamp::now);
        Ok(Self {
            event_id: e.id,
            cluster,
            service,
            deployment_id: e.detail.deployment_id,
            state,
            circuit_breaker: e.detail.reason.contains("circuit breaker"),
            reason: e.detail.reason,
            at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, reason: &str) -> String {
        format!(
            r#"{{"version": "0", "id": "e-1", "detail-type": "ECS Deployment State Change",
                "source": "aws.ecs", "account": "111122223333", "time": "2026-11-20T10:00:00Z",
                "region": "eu-west-1",
                "resources": ["arn:aws:ecs:eu-west-1:111122223333:service/prod/api"],
                "detail": {{"eventType": "INFO", "eventName": "{name}",
                            "deploymentId": "ecs-svc/42", "updatedAt": "2026-11-20T09:59:58Z",
                            "reason": "{reason}"}}}}"#
        )
    }

    #[test]
    fn parses_the_three_states() {
        let c = EcsOutcome::parse(
            event(
                "SERVICE_DEPLOYMENT_FAILED",
                "ECS deployment circuit breaker: task failed to start.",
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!((c.cluster.as_str(), c.service.as_str()), ("prod", "api"));
        assert_eq!(c.deployment_id, "ecs-svc/42");
        assert_eq!(c.state, EcsOutcomeState::Failed);
        assert!(c.circuit_breaker);
        assert_eq!(c.at.as_str(), "2026-11-20T09:59:58.000000000Z");
        let c = EcsOutcome::parse(
            event(
                "SERVICE_DEPLOYMENT_COMPLETED",
                "ECS deployment ecs-svc/42 completed.",
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(c.state, EcsOutcomeState::Completed);
        assert!(!c.circuit_breaker);
        assert_eq!(
            EcsOutcome::parse(event("SERVICE_DEPLOYMENT_IN_PROGRESS", "").as_bytes())
                .unwrap()
                .state,
            EcsOutcomeState::InProgress
        );
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        assert!(matches!(
            EcsOutcome::parse(b"{"),
            Err(EcsOutcomeError::Malformed(_))
        ));
        assert!(matches!(
            EcsOutcome::parse(
                event("SERVICE_DEPLOYMENT_FAILED", "")
                    .replace("ECS Deployment State Change", "ECS Task State Change")
                    .as_bytes()
            ),
            Err(EcsOutcomeError::NotADeploymentChange { .. })
        ));
        assert_eq!(
            EcsOutcome::parse(event("SERVICE_STEADY_STATE", "").as_bytes()),
            Err(EcsOutcomeError::UnknownState("SERVICE_STEADY_STATE".into()))
        );
        assert_eq!(
            EcsOutcome::parse(
                event("SERVICE_DEPLOYMENT_FAILED", "")
                    .replace(":service/prod/api", ":cluster/prod")
                    .as_bytes()
            ),
            Err(EcsOutcomeError::NoService)
        );
    }
}
