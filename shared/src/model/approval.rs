//! Decisions on held deployments, and why one is refused: what the pipeline's `approve`
//! answers and the edge maps to a status once.

use serde::Serialize;

use crate::model::records::GateStatus;

/// What a person decides on a held deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
        }
    }

    /// `approve` or `deny`, as the API route's path names it.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Approve, Self::Deny]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// Why a decision was refused. Nothing was changed, except that a held deployment found
/// expired, superseded or cancelled on the way is recorded as such.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    #[error("no held deployment has id {0:?}: `imagehook waiting` lists them")]
    UnknownId(String),
    #[error("{id} is {}: {reason}", status.as_str())]
    Closed {
        id: String,
        status: GateStatus,
        reason: String,
    },
    #[error(
        "{id} waits for stage {stage} to run the digest first: it can be approved or denied once it awaits approval"
    )]
    NotAwaitingApproval { id: String, stage: String },
    #[error("a decision needs the name of who makes it")]
    NoPrincipal,
}
