//! Docker Hub repository webhooks: one push per request, `push_data` (tag, pusher, `pushed_at`
//! in Unix seconds) and `repository` (`repo_name` = `namespace/name`). No digest, no delivery
//! id, no event header, no signature and no secret: the URL's path token is the only auth.

use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::common::{ParseContext, ParseError, non_empty, reference, typed};
use crate::model::event::{
    Action, IgnoredEvent, ImageEvent, Parsed, Provider, Timestamp, content_id,
};
use crate::model::reference::{ImageRef, Registry, Repository, Tag};

const P: Provider = Provider::DockerHub;

/// Docker Hub documents no headers beyond `Content-Type`: nothing decisive.
pub(super) fn header_hint(_h: &HeaderMap) -> bool {
    false
}

pub(super) fn body_shape(v: &Value) -> bool {
    v.get("push_data").is_some_and(Value::is_object)
        && v.get("repository")
            .and_then(|r| r.get("repo_name"))
            .is_some_and(Value::is_string)
}

#[derive(Deserialize)]
struct Body {
    push_data: PushData,
    repository: RepositoryInfo,
}

#[derive(Deserialize)]
struct PushData {
    #[serde(default)]
    tag: Option<String>,
    /// Unix seconds; very old deliveries sent a float (`1.417566161e+09`).
    #[serde(default)]
    pushed_at: Option<serde_json::Number>,
    #[serde(default)]
    media_type: Option<String>,
}

#[derive(Deserialize)]
struct RepositoryInfo {
    #[serde(default)]
    repo_name: Option<String>,
}

pub(super) fn parse(v: &Value, ctx: &ParseContext<'_>) -> Result<Vec<Parsed>, ParseError> {
    let body: Body = typed(P, v)?;
    let repo_name = non_empty(&body.repository.repo_name)
        .ok_or_else(|| ParseError::malformed(P, "push without `repository.repo_name`"))?;
    // Official images are `library/<name>`; a bare name means the same.
    let path = if repo_name.contains('/') {
        repo_name.to_owned()
    } else {
        format!("library/{repo_name}")
    };
    let media_type = non_empty(&body.push_data.media_type);
    if let Some(mt) = media_type.filter(|mt| mt.starts_with("application/vnd.cncf.helm")) {
        return Ok(vec![Parsed::Ignored(IgnoredEvent {
            id: None,
            provider: P,
            action: "push".to_owned(),
            reason: format!("Helm chart push ({mt}) is not a container image"),
            registry: Some(Registry::docker_hub().as_str().to_owned()),
            repository: Some(path),
            tag: body.push_data.tag.clone(),
            digest: None,
        })]);
    }
    let tag = non_empty(&body.push_data.tag)
        .ok_or_else(|| ParseError::malformed(P, "push without `push_data.tag`"))?;
    let image = ImageRef {
        registry: Registry::docker_hub(),
        repository: reference(P, Repository::parse(&path))?,
        tag: Some(reference(P, Tag::parse(tag))?),
        digest: None,
    };
    let pushed_at = body.push_data.pushed_at.as_ref();
    let occurred_at = match pushed_at {
        Some(n) => unix_seconds(n)?,
        None => ctx.received_at.clone(),
    };
    let pushed_at_text = pushed_at.map(ToString::to_string).unwrap_or_default();
    let id = content_id(&["push", image.repository.as_str(), tag, &pushed_at_text]);
    Ok(vec![Parsed::Image(
        ImageEvent::new(id, P, Action::Push, image, occurred_at)
            .with_media_type(media_type.map(str::to_owned)),
    )])
}

fn unix_seconds(n: &serde_json::Number) -> Result<Timestamp, ParseError> {
    let secs = match n.as_i64() {
        Some(s) => Some(s),
        // Whole seconds of a float such as 1.417566161e+09; the range check keeps the cast exact.
        None => n
            .as_f64()
            .filter(|f| f.is_finite() && f.abs() < 1e15)
            .map(|f| f.trunc() as i64),
    };
    secs.and_then(Timestamp::from_unix).ok_or_else(|| {
        ParseError::malformed(
            P,
            format!("`push_data.pushed_at` {n} is not a time in Unix seconds"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::common::only_image as one;
    use super::*;
    use serde_json::json;

    fn run(v: Value) -> Result<Vec<Parsed>, ParseError> {
        super::super::common::run_parser(parse, &v)
    }

    fn push(repo_name: &str, tag: &str, pushed_at: Value) -> Value {
        json!({
            "callback_url": "https://registry.hub.docker.com/u/northwind/orders/hook/abc123/",
            "push_data": {
                "images": [],
                "media_type": "application/vnd.oci.image.index.v1+json",
                "pushed_at": pushed_at,
                "pusher": "ci-bot",
                "tag": tag
            },
            "repository": {
                "name": "orders",
                "namespace": "northwind",
                "owner": "northwind",
                "repo_name": repo_name,
                "repo_url": "https://hub.docker.com/r/northwind/orders",
                "full_description": null,
                "is_private": true,
                "status": "Active"
            }
        })
    }

    #[test]
    fn push_maps_every_field() {
        let v = push("northwind/orders", "2026.05.1", json!(1_778_000_000));
        assert!(body_shape(&v));
        let out = run(v).unwrap();
        let e = one(&out);
        assert_eq!(e.provider, Provider::DockerHub);
        assert_eq!(e.action, Action::Push);
        assert_eq!(e.image.registry.as_str(), "docker.io");
        assert_eq!(e.image.repository.as_str(), "northwind/orders");
        assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("2026.05.1"));
        assert_eq!(e.image.digest, None);
        assert_eq!(e.occurred_at, Timestamp::from_unix(1_778_000_000).unwrap());
        assert_eq!(
            e.media_type.as_deref(),
            Some("application/vnd.oci.image.index.v1+json")
        );
        assert_eq!(e.size, None);
        assert!(e.id.starts_with("sha256:"));
    }

    #[test]
    fn ids_are_stable_and_distinguish_pushes() {
        let a = run(push("northwind/orders", "latest", json!(1_778_000_000))).unwrap();
        let b = run(push("northwind/orders", "latest", json!(1_778_000_000))).unwrap();
        let c = run(push("northwind/orders", "latest", json!(1_778_000_060))).unwrap();
        assert_eq!(one(&a).id, one(&b).id);
        assert_ne!(one(&a).id, one(&c).id);
    }

    #[test]
    fn single_name_repo_lives_under_library_and_float_time_is_read() {
        let out = run(push("redis", "7", json!(1.417566161e9))).unwrap();
        let e = one(&out);
        assert_eq!(e.image.repository.as_str(), "library/redis");
        assert_eq!(e.occurred_at.as_str(), "2014-12-03T00:22:41.000000000Z");
    }

    #[test]
    fn missing_time_falls_back_to_arrival() {
        let mut v = push("northwind/orders", "1", json!(0));
        v["push_data"].as_object_mut().unwrap().remove("pushed_at");
        let out = run(v).unwrap();
        assert_eq!(
            one(&out).occurred_at,
            Timestamp::from_unix(1_767_225_600).unwrap()
        );
    }

    #[test]
    fn helm_chart_pushes_are_ignored() {
        let mut v = push("northwind/charts", "0.4.0", json!(1_778_000_000));
        v["push_data"]["media_type"] = "application/vnd.cncf.helm.config.v1+json".into();
        let out = run(v).unwrap();
        let [Parsed::Ignored(i)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(i.action, "push");
        assert!(i.reason.contains("Helm"));
        assert_eq!(i.repository.as_deref(), Some("northwind/charts"));
        assert_eq!(i.tag.as_deref(), Some("0.4.0"));
    }

    #[test]
    fn invalid_or_missing_parts_are_refused() {
        assert!(matches!(
            run(push("Northwind/Orders", "1", json!(1))),
            Err(ParseError::Reference { .. })
        ));
        assert!(matches!(
            run(push("northwind/orders", ".bad", json!(1))),
            Err(ParseError::Reference { .. })
        ));
        let err = run(push("northwind/orders", "", json!(1))).unwrap_err();
        assert!(err.to_string().contains("push_data.tag"), "{err}");
        let err = run(push("", "1", json!(1))).unwrap_err();
        assert!(err.to_string().contains("repository.repo_name"), "{err}");
        let err = run(push("northwind/orders", "1", json!(1e300))).unwrap_err();
        assert!(err.to_string().contains("pushed_at"), "{err}");
        let err = run(push("northwind/orders", "1", json!("soon"))).unwrap_err();
        assert!(matches!(err, ParseError::Malformed { .. }), "{err}");
    }

    #[test]
    fn shape_and_headers() {
        assert!(!body_shape(&json!({"push_data": {}})));
        assert!(!body_shape(&json!({"push_data": {}, "repository": "a/b"})));
        assert!(!header_hint(&HeaderMap::new()));
    }
}
