//! The success response (DESIGN §6): one entry per event in the request, in order.

use serde::Serialize;

use crate::model::deployment::Deployment;
use crate::model::event::{Action, IgnoredEvent, ImageEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventOutcome {
    Applied,
    Duplicate,
    Ignored,
    Stale,
    Blocked,
    /// Not accepted (the reason says why), answered 200 because the sender would retry a
    /// refusal for ever; nothing recorded.
    Rejected,
}

impl EventOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
            Self::Stale => "stale",
            Self::Blocked => "blocked",
            Self::Rejected => "rejected",
        }
    }
}

/// What an event asked for: one of imagehook's actions, or, for an event it ignores, the
/// sender's own word for it (`pull`, `ping`, `chart_push`...), reported back as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventAction {
    Known(Action),
    Sender(String),
}

impl EventAction {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Known(a) => a.as_str(),
            Self::Sender(s) => s,
        }
    }
}

impl From<Action> for EventAction {
    fn from(a: Action) -> Self {
        Self::Known(a)
    }
}

impl Serialize for EventAction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for EventAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EventResult {
    pub id: Option<String>,
    pub provider: &'static str,
    pub action: EventAction,
    pub registry: Option<String>,
    pub repository: Option<String>,
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub outcome: EventOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub deployments: Vec<Deployment>,
    /// Services that still run the digest this delete or quarantine concerns (`cluster/service`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub running_services: Vec<String>,
    pub warnings: Vec<String>,
}

impl EventResult {
    pub fn of(e: &ImageEvent, outcome: EventOutcome) -> Self {
        Self {
            id: Some(e.id.clone()),
            provider: e.provider.as_str(),
            action: EventAction::Known(e.action),
            registry: Some(e.image.registry.to_string()),
            repository: Some(e.image.repository.to_string()),
            tag: e.image.tag.as_ref().map(ToString::to_string),
            digest: e.image.digest.as_ref().map(ToString::to_string),
            outcome,
            reason: None,
            deployments: Vec::new(),
            running_services: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub fn rejected(i: IgnoredEvent) -> Self {
        Self {
            outcome: EventOutcome::Rejected,
            ..Self::ignored(i)
        }
    }

    pub fn ignored(i: IgnoredEvent) -> Self {
        Self {
            id: i.id,
            provider: i.provider.as_str(),
            action: EventAction::Sender(i.action),
            registry: i.registry,
            repository: i.repository,
            tag: i.tag,
            digest: i.digest,
            outcome: EventOutcome::Ignored,
            reason: Some(i.reason),
            deployments: Vec::new(),
            running_services: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// One structured line per event: what it was, what happened, which services it touched.
    pub fn log(&self) {
        let services: Vec<String> = self
            .deployments
            .iter()
            .map(|d| format!("{}/{}:{}", d.cluster, d.service, d.outcome.as_str()))
            .collect();
        tracing::info!(
            event_id = self.id.as_deref().unwrap_or(""),
            provider = self.provider,
            action = %self.action,
            registry = self.registry.as_deref().unwrap_or(""),
            repository = self.repository.as_deref().unwrap_or(""),
            tag = self.tag.as_deref().unwrap_or(""),
            digest = self.digest.as_deref().unwrap_or(""),
            outcome = self.outcome.as_str(),
            services = %services.join(","),
            reason = self.reason.as_deref().unwrap_or(""),
            "event handled"
        );
        if self.outcome == EventOutcome::Rejected {
            tracing::warn!(
                event_id = self.id.as_deref().unwrap_or(""),
                provider = self.provider,
                action = %self.action,
                reason = self.reason.as_deref().unwrap_or(""),
                "event rejected: answered 200 so the sender does not retry it for ever"
            );
        }
        for w in &self.warnings {
            tracing::warn!(event_id = self.id.as_deref().unwrap_or(""), warning = %w, "event warning");
        }
    }
}

/// The whole 200 body: every event the request carried, in order, with what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    pub received: usize,
    pub events: Vec<EventResult>,
}
