//! The operators' API: deploy and roll back by hand, a service's status, and the approvals
//! that wait. API Gateway authorizes every route with IAM before this runs; the caller's
//! principal ARN, from the request context, is who asked, and is what the history records.
//!
//! Routes (paths as the caller sends them; IAM-signed):
//! - `GET  /services/{cluster}/{service}`: what it runs, what it should run, what waits
//! - `POST /services/{cluster}/{service}/deploy`: `{"image", "force", "reason", "request_id"}`
//! - `POST /services/{cluster}/{service}/rollback`: `{"force", "reason", "request_id"}`
//! - `GET  /approvals`: the deployments that wait, and why
//! - `POST /approvals/{id}/approve`, `POST /approvals/{id}/deny`

use http::{Method, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::app::App;
use crate::edge::error::ApiError;
use crate::edge::response::json_response;
use crate::model::approval::Decision;
use crate::pipeline::manual;

/// A request by hand is a few hundred bytes; anything near this is not one.
pub const MAX_CONTROL_BODY: usize = 16 * 1024;

pub async fn handle(app: &App, req: Request) -> Response<Body> {
    match answer(app, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn answer(app: &App, req: Request) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_owned();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    let deps = app.deps(None);
    match parts.as_slice() {
        ["services", cluster, service] => {
            allow(&method, Method::GET)?;
            let status = manual::status(&deps, cluster, service)
                .await
                .map_err(ApiError::from)?;
            Ok(json_response(StatusCode::OK, &status))
        }
        ["services", cluster, service, "deploy"] => {
            allow(&method, Method::POST)?;
            let by = principal(&req)?;
            let asked = request_of(&req, false, cluster, service)?;
            answered(Box::pin(manual::deploy(&deps, asked, &by)).await)
        }
        ["services", cluster, service, "rollback"] => {
            allow(&method, Method::POST)?;
            let by = principal(&req)?;
            let asked = request_of(&req, true, cluster, service)?;
            answered(Box::pin(manual::rollback(&deps, asked, &by)).await)
        }
        ["approvals"] => {
            allow(&method, Method::GET)?;
            let waiting = app.waiting().await.map_err(ApiError::from)?;
            Ok(json_response(
                StatusCode::OK,
                &serde_json::json!({ "waiting": waiting }),
            ))
        }
        ["approvals", id, verb @ ("approve" | "deny")] => {
            allow(&method, Method::POST)?;
            let by = principal(&req)?;
            let decision = if *verb == "approve" {
                Decision::Approve
            } else {
                Decision::Deny
            };
            let result = Box::pin(app.decide(id, decision, &by))
                .await
                .map_err(ApiError::from)?;
            Ok(json_response(StatusCode::OK, &result))
        }
        _ => Err(ApiError::NotFound),
    }
}

/// The request by hand the body asks for, on the service the path names. The body's fields are
/// the request's own (`image`, `force`, `reason`, `request_id`), each unknown one refused by
/// name; `empty_ok`: no body asks for the defaults (a rollback).
fn request_of<T: DeserializeOwned>(
    req: &Request,
    empty_ok: bool,
    cluster: &str,
    service: &str,
) -> Result<T, ApiError> {
    let mut fields: Map<String, Value> = json_body(req, empty_ok)?;
    for named in ["cluster", "service"] {
        if fields.contains_key(named) {
            return Err(ApiError::BadRequest(format!(
                "{named}: the path names the service, not the body"
            )));
        }
    }
    fields.insert("cluster".into(), Value::from(cluster));
    fields.insert("service".into(), Value::from(service));
    serde_path_to_error::deserialize(Value::Object(fields))
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn answered(
    result: Result<manual::ManualResult, manual::ManualError>,
) -> Result<Response<Body>, ApiError> {
    Ok(json_response(
        StatusCode::OK,
        &result.map_err(ApiError::from)?,
    ))
}

fn allow(method: &Method, allowed: Method) -> Result<(), ApiError> {
    if *method == allowed {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed(
            method.clone(),
            if allowed == Method::GET {
                "GET"
            } else {
                "POST"
            },
        ))
    }
}

/// The caller's IAM principal ARN, as API Gateway's IAM authorizer verified it. A request
/// without one reached the function by another way than the signed route: nobody is recorded
/// as having asked, so it is refused.
fn principal(req: &Request) -> Result<String, ApiError> {
    let arn = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx
            .authorizer
            .as_ref()
            .and_then(|a| a.iam.as_ref())
            .and_then(|iam| iam.user_arn.clone()),
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.identity.user_arn.clone(),
        _ => None,
    };
    match arn {
        Some(arn) if !arn.is_empty() && arn.len() <= manual::MAX_BY => Ok(arn),
        _ => Err(ApiError::Unsigned),
    }
}

/// The body as `T`: JSON only, bounded, every unknown field refused by name. `empty_ok`: an
/// empty body reads as `T::default()` (the routes whose fields are all optional).
fn json_body<T: DeserializeOwned + Default>(req: &Request, empty_ok: bool) -> Result<T, ApiError> {
    let body = req.body().as_ref();
    if body.len() > MAX_CONTROL_BODY {
        return Err(ApiError::BodyTooLarge(body.len(), MAX_CONTROL_BODY));
    }
    if body.iter().all(u8::is_ascii_whitespace) && empty_ok {
        return Ok(T::default());
    }
    if let Some((essence, refused)) = super::http::content_type(req.headers())
        && essence != "application/json"
    {
        return Err(refused);
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| ApiError::BadRequest(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(content_type: Option<&str>, body: &str) -> Request {
        let mut b = http::Request::builder()
            .method("POST")
            .uri("/approvals/x/approve");
        if let Some(ct) = content_type {
            b = b.header(http::header::CONTENT_TYPE, ct);
        }
        b.body(Body::from(body.to_owned())).unwrap()
    }

    #[test]
    fn bodies_are_json_bounded_and_named_when_wrong() {
        let ok: manual::RollbackRequest =
            request_of(&request(None, ""), true, "prod", "api").unwrap();
        assert!(!ok.force && ok.reason.is_none() && ok.cluster == "prod");
        let parsed: manual::RollbackRequest = request_of(
            &request(
                Some("application/json; charset=utf-8"),
                r#"{"force": true, "reason": "hotfix"}"#,
            ),
            true,
            "prod",
            "api",
        )
        .unwrap();
        assert_eq!(
            (parsed.force, parsed.reason.as_deref()),
            (true, Some("hotfix"))
        );
        let rollback = |r: Request| request_of::<manual::RollbackRequest>(&r, true, "prod", "api");
        let e = rollback(request(Some("text/plain"), "{}")).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let e = rollback(request(None, r#"{"forse": true}"#)).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.to_string().contains("forse"), "{e}");
        let e = request_of::<manual::DeployRequest>(&request(None, ""), false, "prod", "api")
            .unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e = rollback(request(None, r#"{"service": "other"}"#)).unwrap_err();
        assert!(e.to_string().contains("the path names the service"), "{e}");
        let big = format!(r#"{{"reason": "{}"}}"#, "x".repeat(MAX_CONTROL_BODY));
        let e = rollback(request(None, &big)).unwrap_err();
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn a_request_without_an_iam_identity_names_nobody() {
        let e = principal(&request(None, "")).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
    }
}
