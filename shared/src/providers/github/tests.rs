//! Tests of the GitHub Packages parser: both webhook events, every era of their type fields,
//! pings, and refusals.

use super::*;
use crate::model::reference::{Digest, Tag};

const D: &str = "sha256:5e8f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7";
const D2: &str = "sha256:a0b1c2d3e4f5061728394a5b6c7d8e9f00112233445566778899aabbccddeeff";

fn run(v: Value) -> Result<Vec<Parsed>, ParseError> {
    super::super::common::run_parser(parse, &v)
}

fn run_with(v: Value, headers: &[(&'static str, &str)]) -> Result<Vec<Parsed>, ParseError> {
    super::super::common::run_parser_with(parse, &v, headers)
}

fn body(key: &str, action: &str, tag: &str) -> Value {
    let url = format!("ghcr.io/Northwind-Labs/Billing-API:{tag}");
    serde_json::json!({
        "action": action,
        key: {
            "id": 4711,
            "name": "billing-api",
            "namespace": "Northwind-Labs/billing",
            "ecosystem": "CONTAINER",
            "package_type": "CONTAINER",
            "created_at": "2025-10-01T08:00:00Z",
            "updated_at": "2026-04-05T06:07:08Z",
            "owner": {"login": "Northwind-Labs", "type": "Organization"},
            "package_version": {
                "id": 998877,
                "name": D,
                "version": D,
                "created_at": "2026-04-05T06:07:00Z",
                "updated_at": "2026-04-05T06:07:01Z",
                "container_metadata": {
                    "tag": {"name": tag, "digest": D},
                    "manifest": {"digest": D, "size": 1904,
                                 "media_type": "application/vnd.oci.image.manifest.v1+json"}
                },
                "package_url": url
            },
            "registry": {"type": "CONTAINER", "url": "https://CONTAINER.pkg.github.com/Northwind-Labs"}
        },
        "sender": {"login": "ci-bot"}
    })
}

#[test]
fn published_maps_every_field() {
    let out = run(body("package", "published", "2.3.0")).unwrap();
    let e = super::super::common::only_image(&out);
    assert_eq!(e.provider, Provider::GitHubPackages);
    assert_eq!(e.action, Action::Push);
    assert_eq!(e.image.registry.as_str(), "ghcr.io");
    assert_eq!(e.image.repository.as_str(), "northwind-labs/billing-api");
    assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("2.3.0"));
    assert_eq!(e.image.digest.as_ref().map(Digest::as_str), Some(D));
    assert_eq!(e.occurred_at.as_str(), "2026-04-05T06:07:01.000000000Z");
    assert_eq!(
        e.media_type.as_deref(),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    assert_eq!(e.size, Some(1904));
    assert!(e.id.starts_with("sha256:"), "{}", e.id);
    assert_eq!(e.scan, None);
}

#[test]
fn delivery_header_is_the_id() {
    let out = run_with(
        body("registry_package", "published", "2.3.0"),
        &[
            ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("x-github-event", "registry_package"),
        ],
    )
    .unwrap();
    assert_eq!(
        super::super::common::only_image(&out).id,
        "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    );
}

#[test]
fn content_id_is_stable_and_distinguishes_versions() {
    let a = run(body("package", "published", "1")).unwrap();
    let b = run(body("package", "published", "1")).unwrap();
    assert_eq!(
        super::super::common::only_image(&a).id,
        super::super::common::only_image(&b).id
    );
    let c = run(body("package", "published", "2")).unwrap();
    assert_ne!(
        super::super::common::only_image(&a).id,
        super::super::common::only_image(&c).id
    );
}

#[test]
fn untagged_push_has_no_tag_and_trailing_colon_is_harmless() {
    let out = run(body("package", "published", "")).unwrap();
    let e = super::super::common::only_image(&out);
    assert_eq!(e.image.tag, None);
    assert_eq!(e.image.digest.as_ref().map(Digest::as_str), Some(D));
    assert_eq!(e.image.repository.as_str(), "northwind-labs/billing-api");
}

#[test]
fn digest_falls_back_to_the_tag_metadata() {
    let mut v = body("package", "published", "edge");
    v["package"]["package_version"]["name"] = "edge".into();
    v["package"]["package_version"]["version"] = "edge".into();
    v["package"]["package_version"]["container_metadata"]["tag"]["digest"] = D2.into();
    let out = run(v).unwrap();
    let e = super::super::common::only_image(&out);
    assert_eq!(e.image.digest.as_ref().map(Digest::as_str), Some(D2));
    // The manifest metadata describes another digest: not attached.
    assert_eq!(e.media_type, None);
    assert_eq!(e.size, None);
}

#[test]
fn a_tag_that_is_a_digest_means_untagged() {
    let mut v = body("package", "published", "x");
    v["package"]["package_version"]["container_metadata"]["tag"]["name"] = D.into();
    v["package"]["package_version"]["package_url"] = "ghcr.io/northwind-labs/billing-api:".into();
    assert_eq!(
        super::super::common::only_image(&run(v).unwrap()).image.tag,
        None
    );
}

#[test]
fn without_package_url_the_owner_and_name_on_ghcr_are_used() {
    let mut v = body("package", "published", "1.0");
    v["package"]["package_version"]
        .as_object_mut()
        .unwrap()
        .remove("package_url");
    let out = run(v).unwrap();
    let e = super::super::common::only_image(&out);
    assert_eq!(
        e.image.to_string(),
        format!("ghcr.io/northwind-labs/billing-api:1.0@{D}")
    );
}

#[test]
fn nested_names_and_other_hosts_come_from_the_package_url() {
    let mut v = body("package", "published", "3");
    v["package"]["package_version"]["package_url"] =
        "containers.GHE.example.com/Team/tools/Builder:3".into();
    let e = run(v).unwrap();
    let e = super::super::common::only_image(&e);
    assert_eq!(e.image.registry.as_str(), "containers.ghe.example.com");
    assert_eq!(e.image.repository.as_str(), "team/tools/builder");
    assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("3"));
}

#[test]
fn updated_with_a_tag_is_a_push_without_one_is_ignored() {
    let out = run(body("package", "updated", "latest")).unwrap();
    assert_eq!(super::super::common::only_image(&out).action, Action::Push);
    let out = run(body("package", "updated", "")).unwrap();
    let i = super::super::common::only_ignored(&out);
    assert_eq!(i.action, "updated");
    assert!(i.reason.contains("without a tag"), "{}", i.reason);
    assert_eq!(i.digest.as_deref(), Some(D));
    assert_eq!(i.repository.as_deref(), Some("northwind-labs/billing-api"));
}

#[test]
fn deleted_is_a_delete_at_arrival_time() {
    let out = run(body("package", "deleted", "old")).unwrap();
    let e = super::super::common::only_image(&out);
    assert_eq!(e.action, Action::Delete);
    assert_eq!(e.occurred_at.as_str(), "2026-01-01T00:00:00.000000000Z");
}

#[test]
fn unset_version_times_fall_back_to_the_package_time() {
    let mut v = body("package", "published", "1");
    v["package"]["package_version"]["created_at"] = "0001-01-01T00:00:00Z".into();
    v["package"]["package_version"]["updated_at"] = "0001-01-01T00:00:00Z".into();
    let out = run(v).unwrap();
    assert_eq!(
        super::super::common::only_image(&out).occurred_at.as_str(),
        "2026-04-05T06:07:08.000000000Z"
    );
    let mut v = body("package", "published", "1");
    v["package"]["package_version"]["updated_at"] = "last tuesday".into();
    assert!(matches!(run(v), Err(ParseError::Timestamp { .. })));
}

#[test]
fn the_package_type_decides_and_the_ecosystem_only_without_it() {
    // An npm package whose ecosystem says docker is an npm package.
    let mut v = body("package", "published", "1");
    v["package"]["package_type"] = "npm".into();
    v["package"]["ecosystem"] = "docker".into();
    v["package"]["registry"] = Value::Null;
    let out = run(v).unwrap();
    let i = super::super::common::only_ignored(&out);
    assert!(i.reason.contains("npm"), "{}", i.reason);
    // Without a package type, the ecosystem tells.
    let mut v = body("package", "published", "1");
    v["package"].as_object_mut().unwrap().remove("package_type");
    v["package"]["ecosystem"] = "docker".into();
    assert_eq!(
        super::super::common::only_image(&run(v).unwrap()).action,
        Action::Push
    );
    let mut v = body("package", "published", "1");
    for k in ["package_type", "ecosystem"] {
        v["package"][k] = "npm".into();
    }
    v["package"]["registry"]["type"] = "npm".into();
    let out = run(v).unwrap();
    let i = super::super::common::only_ignored(&out);
    assert_eq!(i.action, "published");
    assert!(i.reason.contains("npm"), "{}", i.reason);
}

#[test]
fn other_actions_are_ignored() {
    let out = run(body("registry_package", "archived", "1")).unwrap();
    let i = super::super::common::only_ignored(&out);
    assert_eq!(i.action, "archived");
    assert!(i.reason.contains("registry_package"), "{}", i.reason);
}

#[test]
fn ping_is_acknowledged() {
    let v = serde_json::json!({"zen": "Keep it logically awesome.", "hook_id": 4242,
        "hook": {"type": "Organization", "events": ["package"]}});
    let out = run(v.clone()).unwrap();
    let i = super::super::common::only_ignored(&out);
    assert_eq!(i.action, "ping");
    assert_eq!(i.reason, "ping acknowledged");
    assert_eq!(i.id.as_deref(), Some("ping:4242"));
    let out = run_with(
        v,
        &[("x-github-delivery", "d-1"), ("x-github-event", "ping")],
    )
    .unwrap();
    assert_eq!(
        super::super::common::only_ignored(&out).id.as_deref(),
        Some("d-1")
    );
}

#[test]
fn other_github_events_named_by_the_header_are_ignored() {
    let out = run_with(
        serde_json::json!({"ref": "refs/heads/main", "commits": []}),
        &[("x-github-event", "push")],
    )
    .unwrap();
    let i = super::super::common::only_ignored(&out);
    assert_eq!(i.action, "push");
}

#[test]
fn invalid_references_are_refused() {
    let mut v = body("package", "published", "1");
    v["package"]["package_version"]["name"] = "sha256:6c62fb45".into();
    assert!(matches!(run(v), Err(ParseError::Reference { .. })));
    let v = body("package", "published", "bad:tag");
    assert!(matches!(run(v), Err(ParseError::Reference { .. })));
}

#[test]
fn missing_fields_are_malformed() {
    let mut v = body("package", "published", "");
    let pv = v["package"]["package_version"].as_object_mut().unwrap();
    pv.remove("package_url");
    pv.remove("name");
    pv.remove("version");
    pv.remove("container_metadata");
    let err = run(v).unwrap_err();
    assert!(
        err.to_string().contains("container_metadata.tag.name"),
        "{err}"
    );
    let mut v = body("package", "published", "1");
    v["package"]["package_version"]
        .as_object_mut()
        .unwrap()
        .remove("package_url");
    v["package"].as_object_mut().unwrap().remove("owner");
    let err = run(v).unwrap_err();
    assert!(err.to_string().contains("owner.login"), "{err}");
    let v = serde_json::json!({"package": {"package_type": "CONTAINER"}});
    assert!(run(v).unwrap_err().to_string().contains("action"));
}

#[test]
fn header_hint_and_body_shape() {
    let mut h = HeaderMap::new();
    assert!(!header_hint(&h));
    h.insert("x-github-event", "registry_package".parse().unwrap());
    assert!(header_hint(&h));
    h.insert("x-github-event", "push".parse().unwrap());
    assert!(!header_hint(&h));
    h.insert("x-github-event", "package".parse().unwrap());
    h.insert("x-gitea-event", "package".parse().unwrap());
    assert!(!header_hint(&h));

    assert!(body_shape(&body("package", "published", "1")));
    assert!(body_shape(&body("registry_package", "published", "1")));
    assert!(body_shape(&serde_json::json!({"zen": "z", "hook_id": 1})));
    let gitea = serde_json::json!({"action": "created",
        "package": {"type": "container", "name": "app", "version": "1"}});
    assert!(!body_shape(&gitea));
    assert!(!body_shape(&serde_json::json!({"image": "a/b:1"})));
}

#[test]
fn package_urls_split_into_parts() {
    assert_eq!(
        split_package_url("ghcr.io/Codertocat/hello-world:"),
        Some(("ghcr.io", "Codertocat/hello-world", None))
    );
    assert_eq!(
        split_package_url("localhost:5000/a/b:1"),
        Some(("localhost:5000", "a/b", Some("1")))
    );
    assert_eq!(
        split_package_url(&format!("https://ghcr.io/a/b@{D}")),
        Some(("ghcr.io", "a/b", None))
    );
    assert_eq!(split_package_url("ghcr.io"), None);
    assert_eq!(split_package_url("ghcr.io/"), None);
}
