//! Alibaba Cloud Container Registry (ACR) webhooks, sent on an image push:
//! `{"push_data": {"digest", "pushed_at", "tag"}, "repository": {"date_created", "name",
//! "namespace", "region", "repo_authentication_type", "repo_full_name", "repo_origin_type",
//! "repo_type"}}`.
//!
//! One tagged push per delivery, with its digest when the registry gives one. The registry host
//! is not in the body: the Personal Edition's is `registry.<region>.aliyuncs.com`; an Enterprise
//! Edition instance (`<instance>-registry.<region>.cr.aliyuncs.com`), a VPC endpoint or a custom
//! domain is named by the webhook URL's `?registry=<host>`, which wins. `pushed_at` is a local
//! time without a zone, so the arrival time is the event's. No delivery id: the id is a hash of
//! the body. ACR signs nothing and sets no headers: a secret in the URL (`path-token`).

use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::common::typed;
use super::common::{ParseContext, ParseError, REGISTRY_HINT_HEADER, header, non_empty, reference};
use crate::model::event::{Action, ImageEvent, Parsed, Provider, content_id};
use crate::model::reference::{Digest, ImageRef, Registry, Repository, Tag};

const P: Provider = Provider::AlibabaAcr;
/// Alibaba's longest region ids (`cn-wulanchabu`, `ap-southeast-5`) are far below this.
const MAX_REGION: usize = 32;

/// ACR sends `Content-Type` and a generic client User-Agent: nothing decisive.
pub(super) fn header_hint(_h: &HeaderMap) -> bool {
    false
}

pub(super) fn body_shape(v: &Value) -> bool {
    let repo = v.get("repository");
    v.get("push_data").is_some_and(Value::is_object)
        && repo
            .and_then(|r| r.get("repo_full_name"))
            .is_some_and(Value::is_string)
        && repo
            .and_then(|r| r.get("region"))
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
    digest: Option<String>,
    #[serde(default)]
    tag: Option<String>,
}

#[derive(Deserialize)]
struct RepositoryInfo {
    repo_full_name: String,
    region: String,
}

pub(super) fn parse(v: &Value, ctx: &ParseContext<'_>) -> Result<Vec<Parsed>, ParseError> {
    let body: Body = typed(P, v)?;
    let tag = non_empty(&body.push_data.tag)
        .ok_or_else(|| ParseError::malformed(P, "`push_data.tag` is required"))?;
    let repository = reference(P, Repository::parse(&body.repository.repo_full_name))?;
    let tag = reference(P, Tag::parse(tag))?;
    let digest = non_empty(&body.push_data.digest)
        .map(|d| reference(P, Digest::parse(d)))
        .transpose()?;
    let host = match header(ctx.headers, REGISTRY_HINT_HEADER) {
        Some(h) => h.to_owned(),
        None => format!("registry.{}.aliyuncs.com", region(&body.repository.region)?),
    };
    let image = ImageRef {
        registry: reference(P, Registry::parse(&host))?,
        repository,
        tag: Some(tag),
        digest,
    };
    let canonical = v.to_string();
    let id = content_id(&[
        "alibaba-acr",
        image.registry.as_str(),
        image.repository.as_str(),
        image.tag.as_ref().map_or("", Tag::as_str),
        &canonical,
    ]);
    let event = ImageEvent::new(id, P, Action::Push, image, ctx.received_at.clone())
        .identified_by_content(true);
    Ok(vec![Parsed::Image(event)])
}

/// A region id (`cn-hangzhou`): what goes into the default host must be a DNS label.
fn region(r: &str) -> Result<&str, ParseError> {
    let ok = !r.is_empty()
        && r.len() <= MAX_REGION
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !r.starts_with('-')
        && !r.ends_with('-');
    if ok {
        Ok(r)
    } else {
        Err(ParseError::malformed(
            P,
            format!(
                "`repository.region` {:?} is not a region id; name the registry with `?registry=`",
                r.chars().take(MAX_REGION).collect::<String>()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::common::{only_image, run_parser_with};
    use super::*;
    use serde_json::json;

    const D: &str = "sha256:457f4aa83fc9a6663ab9d1b0a6e2dce25a12a943ed5bf2c1747c58d48bbb4917";

    fn push() -> Value {
        json!({
            "push_data": {"digest": D, "pushed_at": "2026-11-29 12:25:46", "tag": "v3.2.0"},
            "repository": {
                "date_created": "2026-10-28 21:31:42",
                "name": "billing-api",
                "namespace": "acme",
                "region": "cn-hangzhou",
                "repo_authentication_type": "NO_CERTIFIED",
                "repo_full_name": "acme/billing-api",
                "repo_origin_type": "NO_CERTIFIED",
                "repo_type": "PRIVATE"
            }
        })
    }

    fn run(v: &Value) -> Result<Vec<Parsed>, ParseError> {
        run_parser_with(parse, v, &[])
    }

    #[test]
    fn push_maps_to_the_regional_registry_with_its_digest() {
        let v = push();
        assert!(body_shape(&v));
        let out = run(&v).unwrap();
        let e = only_image(&out);
        assert_eq!((e.provider, e.action), (P, Action::Push));
        assert_eq!(
            e.image.registry.as_str(),
            "registry.cn-hangzhou.aliyuncs.com"
        );
        assert_eq!(e.image.repository.as_str(), "acme/billing-api");
        assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("v3.2.0"));
        assert_eq!(e.image.digest.as_ref().map(|d| d.as_str()), Some(D));
        assert!(e.identified_by_content);
        assert_eq!(run(&v).unwrap(), out, "a redelivery gets the same id");
    }

    #[test]
    fn the_webhook_url_names_an_enterprise_instance() {
        let host = "acme-registry.cn-hangzhou.cr.aliyuncs.com";
        let out = run_parser_with(parse, &push(), &[(REGISTRY_HINT_HEADER, host)]).unwrap();
        assert_eq!(only_image(&out).image.registry.as_str(), host);
    }

    #[test]
    fn a_push_without_digest_is_unpinned() {
        let mut v = push();
        v["push_data"].as_object_mut().unwrap().remove("digest");
        let out = run(&v).unwrap();
        assert_eq!(only_image(&out).image.digest, None);
    }

    #[test]
    fn malformed_fields_are_refused_by_name() {
        let mut v = push();
        v["push_data"]["tag"] = "".into();
        let err = run(&v).unwrap_err();
        assert!(err.to_string().contains("push_data.tag"), "{err}");
        let mut v = push();
        v["repository"]["region"] = "cn-hangzhou.evil.example/x".into();
        let err = run(&v).unwrap_err();
        assert!(err.to_string().contains("repository.region"), "{err}");
        let mut v = push();
        v["repository"]["repo_full_name"] = json!(7);
        assert!(!body_shape(&v));
        let err = run(&v).unwrap_err();
        assert!(err.to_string().contains("repo_full_name"), "{err}");
        let mut v = push();
        v["push_data"]["digest"] = "sha256:short".into();
        assert!(matches!(run(&v), Err(ParseError::Reference { .. })));
    }

    #[test]
    fn shape_is_not_docker_hub() {
        let hub = json!({
            "callback_url": "https://registry.hub.docker.com/u/a/b/hook/1/",
            "push_data": {"tag": "latest"},
            "repository": {"repo_name": "a/b", "name": "b", "namespace": "a"}
        });
        assert!(!body_shape(&hub));
        assert!(!header_hint(&HeaderMap::new()));
    }
}
