//! Notifications: deployments started, blocked or failed, and deleted or quarantined digests
//! that services still run, sent to a Slack-compatible incoming webhook and/or an SNS topic.
//!
//! A notification is a side effect of a delivery, never part of it: a sink that fails or is slow
//! is logged and counted (`NotificationFailures`), and the sender gets the same answer. Sinks
//! are called at once and each gets at most `timeout`, so a delivery waits for the slowest one,
//! never for their sum. They are sent before the response because Lambda may freeze the
//! environment as soon as the response is out.

use std::sync::Arc;
use std::time::Duration;

pub use crate::model::notice::{Notice, NoticeKind};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{0}")]
    Transport(String),
    #[error("answered HTTP {status}: {said}")]
    Refused { status: u16, said: String },
    #[error("{0}")]
    Sns(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Somewhere notices go.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// What the logs call it (never its address: a webhook URL is a secret).
    fn name(&self) -> &'static str;
    async fn send(&self, notices: &[Notice]) -> Result<(), NotifyError>;
}

/// Where notices go, which kinds are wanted, and how long a sink may take.
#[derive(Clone)]
pub struct Notifier {
    sinks: Vec<Arc<dyn Sink>>,
    kinds: Vec<NoticeKind>,
    timeout: Duration,
}

impl Default for Notifier {
    fn default() -> Self {
        Self::disabled()
    }
}

impl Notifier {
    pub fn disabled() -> Self {
        Self::new(Vec::new(), NoticeKind::ALL.to_vec(), DEFAULT_TIMEOUT)
    }

    pub fn new(sinks: Vec<Arc<dyn Sink>>, kinds: Vec<NoticeKind>, timeout: Duration) -> Self {
        Self {
            sinks,
            kinds,
            timeout,
        }
    }

    pub fn is_enabled(&self) -> bool {
        !self.sinks.is_empty()
    }

    /// Sends the wanted notices to every sink; answers how many sinks failed. Never an error:
    /// the delivery they describe has already succeeded.
    pub async fn notify(&self, notices: Vec<Notice>) -> u32 {
        if self.sinks.is_empty() {
            return 0;
        }
        let notices: Arc<[Notice]> = notices
            .into_iter()
            .filter(|n| self.kinds.contains(&n.kind))
            .collect();
        if notices.is_empty() {
            return 0;
        }
        let mut running = tokio::task::JoinSet::new();
        for sink in &self.sinks {
            let (sink, notices, timeout) = (Arc::clone(sink), Arc::clone(&notices), self.timeout);
            running.spawn(async move {
                let result = tokio::time::timeout(timeout, sink.send(&notices))
                    .await
                    .unwrap_or(Err(NotifyError::Timeout(timeout)));
                (sink.name(), result)
            });
        }
        let mut failed = 0;
        while let Some(done) = running.join_next().await {
            match done {
                Ok((sink, Ok(()))) => {
                    tracing::info!(sink, notices = notices.len(), "notifications sent")
                }
                Ok((sink, Err(e))) => {
                    failed += 1;
                    tracing::warn!(sink, error = %e, notices = notices.len(), "notification failed; the delivery is unaffected");
                }
                Err(e) => {
                    failed += 1;
                    tracing::warn!(error = %e, "notification task failed; the delivery is unaffected");
                }
            }
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A sink that records what it was given, then answers as told.
    struct Recording {
        seen: Mutex<Vec<NoticeKind>>,
        answer: fn() -> Result<(), NotifyError>,
        delay: Duration,
    }

    #[async_trait::async_trait]
    impl Sink for Recording {
        fn name(&self) -> &'static str {
            "recording"
        }
        async fn send(&self, notices: &[Notice]) -> Result<(), NotifyError> {
            tokio::time::sleep(self.delay).await;
            self.seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(notices.iter().map(|n| n.kind));
            (self.answer)()
        }
    }

    fn recording(answer: fn() -> Result<(), NotifyError>, delay: Duration) -> Arc<Recording> {
        Arc::new(Recording {
            seen: Mutex::new(Vec::new()),
            answer,
            delay,
        })
    }

    fn notice(kind: NoticeKind) -> Notice {
        Notice {
            kind,
            service: "prod/api".into(),
            image: "r.example.com/a@sha256:ab".into(),
            stage: None,
            detail: None,
            event_id: None,
        }
    }

    #[tokio::test]
    async fn only_wanted_kinds_are_sent_and_failures_are_counted() {
        let ok = recording(|| Ok(()), Duration::ZERO);
        let refused = recording(
            || {
                Err(NotifyError::Refused {
                    status: 404,
                    said: "no_service".into(),
                })
            },
            Duration::ZERO,
        );
        let n = Notifier::new(
            vec![ok.clone(), refused.clone()],
            vec![NoticeKind::DeploymentFailed],
            DEFAULT_TIMEOUT,
        );
        let sent = vec![
            notice(NoticeKind::DeploymentStarted),
            notice(NoticeKind::DeploymentFailed),
        ];
        assert_eq!(n.notify(sent).await, 1);
        assert_eq!(
            *ok.seen.lock().unwrap_or_else(|e| e.into_inner()),
            vec![NoticeKind::DeploymentFailed]
        );
        // Nothing wanted: no sink is called, nothing fails.
        assert_eq!(
            n.notify(vec![notice(NoticeKind::DeploymentStarted)]).await,
            0
        );
        assert_eq!(ok.seen.lock().unwrap_or_else(|e| e.into_inner()).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_sink_costs_the_timeout_not_more() {
        let slow = recording(|| Ok(()), Duration::from_secs(60));
        let quick = recording(|| Ok(()), Duration::from_millis(10));
        let n = Notifier::new(
            vec![slow, quick.clone()],
            NoticeKind::ALL.to_vec(),
            Duration::from_secs(2),
        );
        let started = tokio::time::Instant::now();
        assert_eq!(
            n.notify(vec![notice(NoticeKind::DeploymentBlocked)]).await,
            1
        );
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(
            quick.seen.lock().unwrap_or_else(|e| e.into_inner()).len(),
            1
        );
    }

    #[tokio::test]
    async fn a_disabled_notifier_does_nothing() {
        let n = Notifier::disabled();
        assert!(!n.is_enabled());
        assert_eq!(
            n.notify(vec![notice(NoticeKind::DeploymentFailed)]).await,
            0
        );
    }
}
