//! Writing JSON responses.

use http::{StatusCode, header};
use lambda_http::{Body, Response};

/// Serialises `body` straight to text: through a `Value` first, a receipt cost twice as much.
pub fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response<Body> {
    // Only a map with non-string keys fails to serialise, and no response holds one.
    let text = serde_json::to_string(body).unwrap_or_else(|e| {
        tracing::error!(error = %e, "response body not serialisable");
        "{}".to_owned()
    });
    let mut resp = Response::new(Body::Text(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}
