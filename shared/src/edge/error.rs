//! The one map from errors to HTTP statuses, for every HTTP function: each failure has one
//! status, one code and a body that says what to fix.

use http::{Method, StatusCode, header};
use lambda_http::{Body, Response};
use serde_json::json;

use super::response::json_response;
use crate::app::config::{MAX_BODY_BYTES, MAX_EVENTS_PER_REQUEST};
use crate::auth::AuthError;
use crate::auth::oidc::OidcError;
use crate::model::approval::DecisionError;
use crate::pipeline::PipelineError;
use crate::pipeline::manual::ManualError;
use crate::ports::store::StoreError;
use crate::providers::ParseError;

/// Every way a request can fail, each with one status and a body that says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no such route")]
    NotFound,
    /// A wrong or missing path token (`AUTH_MODE=path-token`): answered exactly as `NotFound`,
    /// logged and counted as a failed authentication.
    #[error("no such route")]
    PathToken,
    #[error("method {0} is not allowed: use {1}")]
    MethodNotAllowed(Method, &'static str),
    #[error("the body is {0} bytes; the limit is {MAX_BODY_BYTES}")]
    PayloadTooLarge(usize),
    #[error(
        "the request carries {0} events; the limit is {MAX_EVENTS_PER_REQUEST} per request and none was recorded: have the sender batch fewer"
    )]
    TooManyEvents(usize),
    /// `imagehook serve`: the body did not arrive in time.
    #[error("the body did not arrive within {0:?}: send it with the headers")]
    RequestTimeout(std::time::Duration),
    /// `imagehook serve`: every one of its connections is in use. Answered without reading the
    /// request, so nothing about it is known yet.
    #[error("the server has its limit of {0} connections open: retry in a moment")]
    TooManyConnections(usize),
    #[error("content type {0:?} is not supported: send application/json")]
    UnsupportedMediaType(String),
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    /// `AUTH_MODE=oidc`: the token was refused, for the reason named (a token is signed public
    /// data, so naming why helps its holder and no prober), or its issuer's keys could not be
    /// fetched (503: the sender's retry may succeed).
    #[error(transparent)]
    Oidc(#[from] OidcError),
    /// The token is genuine, but a deploy rule of the image requires a claim it lacks: this
    /// sender may not act on that service. Only the claim's name is told.
    #[error(
        "the token's {0} claim is not the one a deploy rule of this image requires; nothing was recorded"
    )]
    ClaimRefused(String),
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// An event carries more than imagehook keeps, or a time in the future.
    #[error(transparent)]
    OutOfBounds(#[from] crate::model::event::OutOfBounds),
    /// A sender that retries every refusal sent an event dated up to an hour past the accepted
    /// skew: a clock a little fast, which the sender's retry outlives (its event keeps its
    /// time while ours catches up). Rejecting it would lose the event for good.
    #[error("{0}; retry: it is accepted once it is no longer ahead of this clock")]
    AheadForNow(crate::model::event::OutOfBounds),
    /// The images API's path names no repository.
    #[error("{0}")]
    BadRepository(String),
    /// A deploy, rollback or status by hand refused: the message names the problem.
    #[error(transparent)]
    Manual(ManualError),
    /// A decision on a held deployment (`POST /approvals/{id}/approve|deny`) was refused: an
    /// unknown id is 404, one already decided (or expired, superseded, cancelled, or still
    /// waiting for its stage) 409, a request naming no principal 400.
    #[error(transparent)]
    Decision(#[from] DecisionError),
    /// The control API was reached without an IAM identity (its routes are IAM-authorized, so
    /// only a caller that bypassed them has none): nobody could be recorded as asking.
    #[error("the request carries no IAM identity: sign it (SigV4, service execute-api)")]
    Unsigned,
    /// A control API body over its bound.
    #[error("the body is {0} bytes; the limit is {1}")]
    BodyTooLarge(usize, usize),
    /// A control API body that is not the route's JSON: the message names the field.
    #[error("{0}")]
    BadRequest(String),
    #[error("a dependency is unavailable, retry later")]
    Unavailable(#[source] PipelineError),
    #[error("internal error")]
    Internal(#[source] PipelineError),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound | Self::PathToken => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(..) => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge(_) | Self::TooManyEvents(_) | Self::BodyTooLarge(..) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::Unsigned => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Oidc(e) if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthorized(_) | Self::Oidc(_) => StatusCode::UNAUTHORIZED,
            Self::ClaimRefused(_) => StatusCode::FORBIDDEN,
            Self::Parse(ParseError::Reference { .. }) | Self::OutOfBounds(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::Parse(_) | Self::BadRepository(_) => StatusCode::BAD_REQUEST,
            Self::Decision(DecisionError::UnknownId(_)) => StatusCode::NOT_FOUND,
            Self::Decision(
                DecisionError::Closed { .. } | DecisionError::NotAwaitingApproval { .. },
            ) => StatusCode::CONFLICT,
            Self::Decision(DecisionError::NoPrincipal) => StatusCode::BAD_REQUEST,
            Self::Unavailable(_) | Self::TooManyConnections(_) | Self::AheadForNow(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Manual(e) => match e {
                ManualError::Invalid(_) => StatusCode::BAD_REQUEST,
                ManualError::UnknownService { .. } => StatusCode::NOT_FOUND,
                ManualError::Reference(_) | ManualError::Unresolved { .. } => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                ManualError::Quarantined { .. }
                | ManualError::Deleted { .. }
                | ManualError::NothingToRollBack { .. }
                | ManualError::RequestReused { .. } => StatusCode::CONFLICT,
                // Never built: `From<ManualError>` maps these as every pipeline error.
                ManualError::Pipeline(p) if p.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
                ManualError::Pipeline(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::NotFound | Self::PathToken => "not_found",
            Self::MethodNotAllowed(..) => "method_not_allowed",
            Self::RequestTimeout(_) => "request_timeout",
            Self::TooManyConnections(_) => "too_many_connections",
            Self::PayloadTooLarge(_) | Self::BodyTooLarge(..) => "payload_too_large",
            Self::Unsigned => "unsigned",
            Self::BadRequest(_) => "invalid_request",
            Self::TooManyEvents(_) => "too_many_events",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Oidc(e) if e.is_retryable() => "unavailable",
            Self::Unauthorized(_) | Self::Oidc(_) => "unauthorized",
            Self::ClaimRefused(_) => "forbidden",
            Self::Parse(ParseError::Json(_)) => "invalid_json",
            Self::Parse(ParseError::UnknownShape { .. }) => "unknown_format",
            Self::Parse(ParseError::Reference { .. }) => "invalid_reference",
            Self::Parse(_) => "invalid_event",
            Self::BadRepository(_) => "bad_repository",
            Self::Decision(DecisionError::UnknownId(_)) => "unknown_hold",
            Self::Decision(DecisionError::Closed { .. }) => "already_decided",
            Self::Decision(DecisionError::NotAwaitingApproval { .. }) => "not_awaiting_approval",
            Self::Decision(DecisionError::NoPrincipal) => "no_principal",
            Self::OutOfBounds(crate::model::event::OutOfBounds::TooLong { .. }) => "field_too_long",
            Self::OutOfBounds(crate::model::event::OutOfBounds::Future { .. })
            | Self::AheadForNow(_) => "time_in_future",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
            Self::Manual(e) => match e {
                ManualError::Invalid(_) => "invalid_request",
                ManualError::Reference(_) => "invalid_reference",
                ManualError::UnknownService { .. } => "unknown_service",
                ManualError::Unresolved { .. } => "unresolved_tag",
                ManualError::Quarantined { .. } => "quarantined",
                ManualError::Deleted { .. } => "deleted",
                ManualError::NothingToRollBack { .. } => "nothing_to_roll_back",
                ManualError::RequestReused { .. } => "request_id_reused",
                ManualError::Pipeline(p) if p.is_retryable() => "unavailable",
                ManualError::Pipeline(_) => "internal",
            },
        }
    }

    pub fn into_response(self) -> Response<Body> {
        self.log();
        self.render()
    }

    fn log(&self) {
        match self {
            Self::Unavailable(e) => {
                tracing::error!(error = %e, "dependency unavailable: asking the sender to retry")
            }
            Self::Internal(e) => tracing::error!(error = ?e, "internal error"),
            Self::Unauthorized(_) | Self::PathToken => {
                tracing::warn!("request failed authentication")
            }
            Self::Oidc(e) if e.is_retryable() => {
                tracing::error!(error = %e, "issuer keys unavailable: asking the sender to retry")
            }
            Self::Oidc(e) => tracing::warn!(reason = %e, "request failed authentication"),
            other => {
                tracing::info!(status = other.status().as_u16(), error = %other, "request refused")
            }
        }
    }

    /// The response, not logged: for an answer whose writer logs it otherwise (`imagehook
    /// serve` refuses connections at its limit with one log line per episode, not one each).
    pub fn render(self) -> Response<Body> {
        let body = match self {
            // API Gateway's own answer to a path no route matches: a wrong path token must look
            // exactly like one, in AWS as in `imagehook serve`.
            Self::NotFound | Self::PathToken => json!({"message": "Not Found"}),
            _ => json!({"error": self.code(), "message": self.to_string()}),
        };
        let mut resp = json_response(self.status(), &body);
        if let Self::MethodNotAllowed(_, allowed) = self {
            let allow = if allowed == "POST" {
                "POST, OPTIONS"
            } else {
                allowed
            };
            resp.headers_mut()
                .insert(header::ALLOW, http::HeaderValue::from_static(allow));
        }
        let retry_after = match self {
            Self::Unavailable(_) => Some("5"),
            Self::Oidc(e) if e.is_retryable() => Some("5"),
            // A connection frees up as soon as any request finishes.
            Self::TooManyConnections(_) => Some("1"),
            Self::AheadForNow(_) => Some("60"),
            _ => None,
        };
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from_static(secs));
        }
        resp
    }
}

/// A failure of ours or of a dependency: 503 with Retry-After when a retry may succeed (the
/// receipts make it safe), else 500. Decided by the error itself, here and only here.
impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        if let PipelineError::Decision(d) = e {
            return Self::Decision(d);
        }
        if e.is_retryable() {
            Self::Unavailable(e)
        } else {
            Self::Internal(e)
        }
    }
}

/// A refusal keeps its own status; a failure of the store or ECS is mapped as every pipeline
/// error is.
impl From<ManualError> for ApiError {
    fn from(e: ManualError) -> Self {
        match e {
            ManualError::Pipeline(p) => Self::from(p),
            refused => Self::Manual(refused),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::from(PipelineError::Store(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(e: ManualError) -> (u16, serde_json::Value) {
        let resp = ApiError::from(e).render();
        let body = serde_json::from_slice(resp.body().as_ref()).unwrap_or_default();
        (resp.status().as_u16(), body)
    }

    #[test]
    fn refusals_by_hand_answer_their_own_status_and_name_the_problem() {
        let cases = [
            (
                ManualError::Invalid("force needs a reason".into()),
                400,
                "invalid_request",
            ),
            (
                ManualError::UnknownService {
                    cluster: "prod".into(),
                    service: "api".into(),
                },
                404,
                "unknown_service",
            ),
            (ManualError::Reference("x".into()), 422, "invalid_reference"),
            (
                ManualError::Unresolved {
                    image: "r.io/a:v1".into(),
                    why: "not found".into(),
                },
                422,
                "unresolved_tag",
            ),
            (
                ManualError::Quarantined {
                    digest: "sha256:a".into(),
                    reason: "CVE-1".into(),
                },
                409,
                "quarantined",
            ),
            (
                ManualError::Deleted {
                    digest: "sha256:a".into(),
                    at: "t".into(),
                },
                409,
                "deleted",
            ),
            (
                ManualError::NothingToRollBack {
                    cluster: "prod".into(),
                    service: "api".into(),
                    why: "none".into(),
                },
                409,
                "nothing_to_roll_back",
            ),
            (
                ManualError::RequestReused {
                    request_id: "r1".into(),
                    was: "deploy".into(),
                },
                409,
                "request_id_reused",
            ),
        ];
        for (e, status, code) in cases {
            let message = e.to_string();
            let (got, body) = answered(e);
            assert_eq!(
                (got, body["error"].as_str()),
                (status, Some(code)),
                "{body}"
            );
            assert_eq!(body["message"], message);
        }
        let down = ManualError::from(StoreError::Unavailable {
            operation: "GetItem",
            message: "throttled".into(),
            source: None,
        });
        let (status, body) = answered(down);
        assert_eq!((status, body["error"].as_str()), (503, Some("unavailable")));
    }
    use crate::model::records::GateStatus;

    #[test]
    fn refused_decisions_are_the_callers_to_correct_with_their_own_status() {
        let status = |e: DecisionError| {
            let api = ApiError::from(PipelineError::Decision(e));
            (api.status(), api.code())
        };
        assert_eq!(
            status(DecisionError::UnknownId("abc".into())),
            (StatusCode::NOT_FOUND, "unknown_hold")
        );
        assert_eq!(
            status(DecisionError::Closed {
                id: "abc".into(),
                status: GateStatus::Expired,
                reason: "expired at 2026-11-21T10:00:00Z".into()
            }),
            (StatusCode::CONFLICT, "already_decided")
        );
        assert_eq!(
            status(DecisionError::NotAwaitingApproval {
                id: "abc".into(),
                stage: "staging".into()
            }),
            (StatusCode::CONFLICT, "not_awaiting_approval")
        );
        assert_eq!(
            status(DecisionError::NoPrincipal),
            (StatusCode::BAD_REQUEST, "no_principal")
        );
        let closed = ApiError::from(PipelineError::Decision(DecisionError::Closed {
            id: "abc".into(),
            status: GateStatus::Superseded,
            reason: "superseded by a newer push (generic#p2), held as def".into(),
        }));
        assert_eq!(
            closed.to_string(),
            "abc is superseded: superseded by a newer push (generic#p2), held as def"
        );
    }
}
