//! The read-only API: GET /images/{repository} answers a repository's history (every entry, and
//! per stage) and its digests with the regions each has reached.
//! API Gateway authorizes callers with IAM before this runs; the function's role can only query.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;

use crate::edge::error::ApiError;
use crate::edge::response::json_response;
use crate::model::reference::ImageRef;
use crate::pipeline::history;
use crate::ports::store::StoreRead;

/// `repository` is the full name, registry included (`contoso.azurecr.io/shop/api`); `?stage=`
/// narrows to one stage. Reads only: the function is given the store's read port.
pub async fn handle(store: &dyn StoreRead, req: Request) -> Response<Body> {
    match answer(store, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn answer(store: &dyn StoreRead, req: Request) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::GET {
        return Err(ApiError::MethodNotAllowed(req.method().clone(), "GET"));
    }
    let name = req
        .path_parameters_ref()
        .and_then(|p| p.first("repository"))
        .map(str::to_owned)
        .ok_or(ApiError::NotFound)?;
    let stage = req
        .query_string_parameters_ref()
        .and_then(|q| q.first("stage"))
        .map(str::to_owned);
    let image = match ImageRef::parse(&name) {
        Ok(i) if i.tag.is_none() && i.digest.is_none() => i,
        Ok(_) => {
            return Err(ApiError::BadRepository(format!(
                "{name:?} names an image; give the repository only, without tag or digest"
            )));
        }
        Err(e) => {
            return Err(ApiError::BadRepository(format!(
                "{name:?} is not a repository name: {e}"
            )));
        }
    };
    let (registry, repository) = (image.registry.as_str(), image.repository.as_str());
    let records = history::history(store, registry, repository, stage.as_deref()).await?;
    let images = history::images(store, registry, repository).await?;
    let body = json!({
        "registry": image.registry.as_str(),
        "repository": image.repository.as_str(),
        "stages": history::by_stage(&records),
        "history": history::listed(&records),
        "images": images,
    });
    Ok(json_response(StatusCode::OK, &body))
}
