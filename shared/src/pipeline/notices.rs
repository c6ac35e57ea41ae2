//! The notices of a delivery, taken from the results it already produced, so a notice never
//! claims more than the response does.

use serde_json::Value;

use crate::model::deployment::DeployOutcome;
use crate::model::event::Action;
use crate::model::notice::{Notice, NoticeKind};
use crate::model::result::{EventAction, EventResult};
use crate::ports::notifier::Notifier;

/// The notices of a webhook delivery's results.
pub fn from_results(results: &[EventResult]) -> Vec<Notice> {
    let mut out = Vec::new();
    for r in results {
        for d in &r.deployments {
            let (kind, detail) = match d.outcome {
                DeployOutcome::Updated => (
                    NoticeKind::DeploymentStarted,
                    d.task_definition
                        .as_ref()
                        .map(|t| format!("task definition {t}")),
                ),
                DeployOutcome::Blocked => (NoticeKind::DeploymentBlocked, d.reason.clone()),
                DeployOutcome::Failed => (NoticeKind::DeploymentFailed, d.reason.clone()),
                // The reason names the id and what to run to approve or deny it.
                DeployOutcome::AwaitingApproval => (NoticeKind::ApprovalRequired, d.reason.clone()),
                // Expected: the earlier stage's outcome moves it; only a stop is news.
                DeployOutcome::WaitingForStage
                | DeployOutcome::Unchanged
                | DeployOutcome::Skipped
                | DeployOutcome::Planned
                | DeployOutcome::Superseded
                | DeployOutcome::Queued => {
                    continue;
                }
            };
            out.push(Notice {
                kind,
                service: format!("{}/{}", d.cluster, d.service),
                image: d.image.clone(),
                stage: d.stage.clone(),
                detail,
                event_id: r.id.clone(),
            });
        }
        let kind = match r.action {
            EventAction::Known(Action::Delete) => NoticeKind::DeletedDigestRunning,
            EventAction::Known(Action::Quarantine) => NoticeKind::QuarantinedDigestRunning,
            _ => continue,
        };
        for service in &r.running_services {
            out.push(Notice {
                kind,
                service: service.clone(),
                image: image_of(r),
                stage: None,
                detail: r.reason.clone(),
                event_id: r.id.clone(),
            });
        }
    }
    out
}

/// `registry/repository@digest` (or `:tag`) of an event's result.
fn image_of(r: &EventResult) -> String {
    let mut s = format!(
        "{}/{}",
        r.registry.as_deref().unwrap_or_default(),
        r.repository.as_deref().unwrap_or_default()
    );
    match (&r.digest, &r.tag) {
        (Some(d), _) => s.push_str(&format!("@{d}")),
        (None, Some(t)) => s.push_str(&format!(":{t}")),
        (None, None) => {}
    }
    s
}

/// The notice of an ECS deployment state change, as the outcomes path answered it: only a
/// failure of a deployment imagehook started is news (a completion is what was expected).
pub fn from_rollout(answer: &Value) -> Option<Notice> {
    let s = |k: &str| answer.get(k).and_then(Value::as_str);
    if s("outcome") != Some("recorded") || s("state") != Some("failed") {
        return None;
    }
    let mut detail = s("reason")
        .unwrap_or("ECS reported the deployment failed")
        .to_owned();
    if answer.get("circuit_breaker").and_then(Value::as_bool) == Some(true) {
        detail.push_str(" (circuit breaker: rolled back)");
    }
    Some(Notice {
        kind: NoticeKind::DeploymentFailed,
        service: format!("{}/{}", s("cluster")?, s("service")?),
        // The reference names the repository; pointers of earlier versions may hold only the
        // digest.
        image: s("image")
            .or(s("digest"))
            .unwrap_or("(image unknown)")
            .to_owned(),
        stage: None,
        detail: Some(detail),
        event_id: s("deployment_id").map(str::to_owned),
    })
}

/// Sends the notices of a delivery's results; answers how many sinks failed. Without a sink
/// they are not even built: this runs on every request.
pub async fn send(notifier: &Notifier, results: &[EventResult]) -> u32 {
    if !notifier.is_enabled() {
        return 0;
    }
    notifier.notify(from_results(results)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::deployment::Deployment;
    use crate::model::result::EventOutcome;
    use serde_json::json;

    fn result(action: &str) -> EventResult {
        let known = [
            Action::Push,
            Action::Delete,
            Action::Quarantine,
            Action::Release,
        ]
        .into_iter()
        .find(|a| a.as_str() == action);
        EventResult {
            id: Some("e-1".into()),
            provider: "generic",
            action: known.map_or_else(|| EventAction::Sender(action.into()), EventAction::Known),
            registry: Some("registry.example.com".into()),
            repository: Some("shop/api".into()),
            tag: Some("1.2.0".into()),
            digest: Some("sha256:ab".into()),
            outcome: EventOutcome::Applied,
            reason: Some("digest marked deleted (tombstone kept)".into()),
            deployments: Vec::new(),
            running_services: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn deployment(service: &str, outcome: DeployOutcome) -> Deployment {
        let mut d: Deployment = serde_json::from_value(json!({
            "cluster": "prod", "service": service, "outcome": outcome.as_str(),
            "image": "registry.example.com/shop/api@sha256:ab"
        }))
        .unwrap();
        d.stage = Some("stable".into());
        d
    }

    #[test]
    fn deployments_that_moved_held_or_failed_become_notices() {
        let mut r = result("push");
        r.deployments = vec![
            deployment("a", DeployOutcome::Updated),
            deployment("b", DeployOutcome::Unchanged),
            deployment("c", DeployOutcome::Skipped),
            deployment("d", DeployOutcome::Planned),
            deployment("e", DeployOutcome::Blocked),
            deployment("f", DeployOutcome::Failed),
        ];
        r.deployments[0].task_definition = Some("api:7".into());
        r.deployments[4].reason = Some("the digest is quarantined".into());
        let notices = from_results(&[r]);
        let got: Vec<_> = notices
            .iter()
            .map(|n| (n.kind, n.service.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (NoticeKind::DeploymentStarted, "prod/a"),
                (NoticeKind::DeploymentBlocked, "prod/e"),
                (NoticeKind::DeploymentFailed, "prod/f"),
            ]
        );
        assert_eq!(
            notices[0].text(),
            "Deployment started: prod/a -> registry.example.com/shop/api@sha256:ab (stage stable): task definition api:7"
        );
        assert_eq!(
            notices[1].text(),
            "Deployment blocked: prod/e -> registry.example.com/shop/api@sha256:ab (stage stable): the digest is quarantined"
        );
    }

    #[test]
    fn a_deployment_awaiting_approval_is_notified_with_what_to_run() {
        let mut r = result("push");
        r.deployments = vec![
            deployment("a", DeployOutcome::AwaitingApproval),
            deployment("b", DeployOutcome::WaitingForStage),
        ];
        r.deployments[0].reason =
            Some("awaiting approval (0 of 1) until 2026-11-21T10:00:00Z: approve with `imagehook approve 3f9a1c0b7d2e`".into());
        let notices = from_results(&[r]);
        assert_eq!(notices.len(), 1, "a stage wait is no news: {notices:?}");
        assert_eq!(notices[0].kind, NoticeKind::ApprovalRequired);
        assert!(
            notices[0]
                .text()
                .starts_with("Approval required: prod/a -> ")
                && notices[0].text().contains("imagehook approve 3f9a1c0b7d2e"),
            "{}",
            notices[0].text()
        );
    }

    #[test]
    fn running_services_of_a_delete_or_quarantine_become_notices() {
        let mut deleted = result("delete");
        deleted.running_services = vec!["prod/a".into(), "prod/b".into()];
        let mut pushed = result("push");
        pushed.running_services = vec!["prod/ignored".into()];
        let notices = from_results(&[deleted, pushed]);
        assert_eq!(notices.len(), 2);
        assert_eq!(
            notices[1].text(),
            "Deleted digest still running: prod/b runs registry.example.com/shop/api@sha256:ab: digest marked deleted (tombstone kept)"
        );
        let doc: serde_json::Value = serde_json::from_str(&notices[1].to_json()).unwrap();
        assert_eq!(
            doc,
            json!({"kind": "deleted-digest-running", "service": "prod/b",
                   "image": "registry.example.com/shop/api@sha256:ab",
                   "detail": "digest marked deleted (tombstone kept)",
                   "event_id": "e-1", "source": "imagehook"})
        );
    }

    #[test]
    fn only_a_recorded_failure_of_a_rollout_is_news() {
        let answer = |outcome: &str, state: &str| {
            json!({"outcome": outcome, "state": state, "cluster": "prod", "service": "api",
                   "deployment_id": "ecs-svc/1", "digest": "sha256:ab",
                   "image": "registry.example.com/shop/api@sha256:ab",
                   "circuit_breaker": true, "reason": "tasks failed to start"})
        };
        let n = from_rollout(&answer("recorded", "failed")).unwrap();
        assert_eq!(
            n.text(),
            "Deployment failed: prod/api -> registry.example.com/shop/api@sha256:ab: tasks failed to start (circuit breaker: rolled back)"
        );
        assert_eq!(n.event_id.as_deref(), Some("ecs-svc/1"));
        assert_eq!(from_rollout(&answer("recorded", "completed")), None);
        assert_eq!(from_rollout(&answer("duplicate", "failed")), None);
        assert_eq!(from_rollout(&answer("not-ours", "failed")), None);
        assert_eq!(from_rollout(&json!({"outcome": "rejected"})), None);
    }

    #[test]
    fn kinds_parse_from_their_names() {
        for k in NoticeKind::ALL {
            assert_eq!(NoticeKind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(NoticeKind::parse("started"), None);
    }
}
