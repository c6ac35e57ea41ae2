//! The read-only API: GET /images/{repository} answers a repository's rollout history per stage
//! and its digests with the regions each has reached.
//! API Gateway authorizes callers with IAM before this runs; the function's role can only query.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;

use crate::app::App;
use crate::edge::http::json_response;
use crate::model::reference::ImageRef;
use crate::pipeline::history;

fn error(status: StatusCode, code: &str, message: String) -> Response<Body> {
    json_response(status, &json!({"error": code, "message": message}))
}

/// `repository` is the full name, registry included (`contoso.azurecr.io/shop/api`); `?stage=`
/// narrows to one stage.
pub async fn handle(app: &App, req: Request) -> Response<Body> {
    if req.method() != Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("method {} is not allowed: use GET", req.method()),
        );
    }
    let Some(name) = req
        .path_parameters_ref()
        .and_then(|p| p.first("repository"))
        .map(str::to_owned)
    else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such route".into());
    };
    let stage = req
        .query_string_parameters_ref()
        .and_then(|q| q.first("stage"))
        .map(str::to_owned);
    let image = match ImageRef::parse(&name) {
        Ok(i) if i.tag.is_none() && i.digest.is_none() => i,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_repository",
                format!("{name:?} names an image; give the repository only, without tag or digest"),
            );
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_repository",
                format!("{name:?} is not a repository name: {e}"),
            );
        }
    };
    let (registry, repository) = (image.registry.as_str(), image.repository.as_str());
    let found = async {
        let items = history::history(app.store(), registry, repository, stage.as_deref()).await?;
        let images = history::images(app.store(), registry, repository).await?;
        Ok::<_, crate::ports::store::StoreError>((items, images))
    };
    let (items, images) = match found.await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "history query failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the record store is unavailable, retry later".into(),
            );
        }
    };
    let body = json!({
        "registry": image.registry.as_str(),
        "repository": image.repository.as_str(),
        "stages": history::by_stage(items),
        "images": images,
    });
    json_response(StatusCode::OK, &body)
}
