//! Tests of the Harbor parser: each payload variant of both formats, scans, and refusals.

use super::*;

const D: &str = "sha256:c0ffee0123456789abcdef0123456789abcdef0123456789abcdef0123456789";
const D2: &str = "sha256:5a5a5a5a6b6b6b6b7c7c7c7c8d8d8d8d9e9e9e9e0f0f0f0f1a1a1a1a2b2b2b2b";
const VULN: &str = "application/vnd.security.vulnerability.report; version=1.1";

fn run(v: Value) -> Result<Vec<Parsed>, ParseError> {
    super::super::common::run_parser(parse, &v)
}

fn default(ty: &str, resources: Value) -> Value {
    serde_json::json!({
        "type": ty,
        "occur_at": 1_770_000_000,
        "operator": "robot$ci+builder",
        "event_data": {
            "resources": resources,
            "repository": {"date_created": 1_769_990_000, "name": "checkout",
                "namespace": "webshop", "repo_full_name": "webshop/checkout", "repo_type": "private"}
        }
    })
}

fn cloudevent(ty: &str, resources: Value) -> Value {
    serde_json::json!({
        "specversion": "1.0",
        "id": "9b0c7e52-5d7e-4b7f-a7a8-c2f1f0e1d2c3",
        "requestid": "1f2e3d4c-0000-4000-8000-000000000001",
        "source": "/projects/7/webhook/policies/3",
        "type": ty,
        "datacontenttype": "application/json",
        "time": "2026-02-02T02:40:00Z",
        "data": {
            "resources": resources,
            "repository": {"name": "checkout", "namespace": "webshop",
                "repo_full_name": "webshop/checkout", "repo_type": "private"}
        },
        "operator": "admin"
    })
}

fn res(tag: &str, digest: &str, url: &str) -> Value {
    serde_json::json!([{"digest": digest, "tag": tag, "resource_url": url}])
}

#[test]
fn default_tagged_push_maps_every_field() {
    let v = default(
        "PUSH_ARTIFACT",
        res("3.2.1", D, "harbor.corp.example/webshop/checkout:3.2.1"),
    );
    let out = run(v.clone()).unwrap();
    let e = super::super::common::only_image(&out);
    assert_eq!(e.provider, Provider::Harbor);
    assert_eq!(e.action, Action::Push);
    assert_eq!(e.image.registry.as_str(), "harbor.corp.example");
    assert_eq!(e.image.repository.as_str(), "webshop/checkout");
    assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("3.2.1"));
    assert_eq!(e.image.digest.as_ref().map(Digest::as_str), Some(D));
    assert_eq!(e.occurred_at.as_str(), "2026-02-02T02:40:00.000000000Z");
    assert_eq!(
        (e.media_type.as_deref(), e.size, e.scan.as_ref()),
        (None, None, None)
    );
    // No delivery id: a content id, the same on a retry.
    assert!(e.id.starts_with("sha256:"), "{}", e.id);
    assert_eq!(run(v).unwrap(), out);
}

#[test]
fn digest_in_the_tag_field_is_an_untagged_push() {
    let out = run(default(
        "PUSH_ARTIFACT",
        res(D, D, &format!("harbor.corp.example/webshop/checkout@{D}")),
    ))
    .unwrap();
    let e = super::super::common::only_image(&out);
    assert_eq!(e.image.tag, None);
    assert_eq!(e.image.digest.as_ref().map(Digest::as_str), Some(D));
}

#[test]
fn cloudevents_push_uses_its_id_and_time() {
    let out = run(cloudevent(
        "harbor.artifact.pushed",
        res(
            "3.2.1",
            D,
            "harbor.corp.example:8443/webshop/checkout:3.2.1",
        ),
    ))
    .unwrap();
    let e = super::super::common::only_image(&out);
    assert_eq!(e.id, "9b0c7e52-5d7e-4b7f-a7a8-c2f1f0e1d2c3");
    assert_eq!(e.image.registry.as_str(), "harbor.corp.example:8443");
    assert_eq!(e.occurred_at.as_str(), "2026-02-02T02:40:00.000000000Z");
    assert_eq!(e.action, Action::Push);
}

#[test]
fn several_resources_give_several_events_with_distinct_ids() {
    let resources = serde_json::json!([
        {"digest": D, "tag": "3.2.1", "resource_url": "harbor.corp.example/webshop/checkout:3.2.1"},
        {"digest": D, "tag": "stable", "resource_url": "harbor.corp.example/webshop/checkout:stable"}
    ]);
    for v in [
        default("PUSH_ARTIFACT", resources.clone()),
        cloudevent("harbor.artifact.pushed", resources.clone()),
    ] {
        let out = run(v).unwrap();
        let [Parsed::Image(a), Parsed::Image(b)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(a.image.tag.as_ref().map(Tag::as_str), Some("3.2.1"));
        assert_eq!(b.image.tag.as_ref().map(Tag::as_str), Some("stable"));
        assert_ne!(a.id, b.id);
    }
}

#[test]
fn delete_is_by_digest_even_when_a_tag_is_named() {
    let out = run(default(
        "DELETE_ARTIFACT",
        res("3.2.1", D, "harbor.corp.example/webshop/checkout:3.2.1"),
    ))
    .unwrap();
    let e = super::super::common::only_image(&out);
    assert_eq!(e.action, Action::Delete);
    assert_eq!(e.image.tag, None);
    assert_eq!(e.image.digest.as_ref().map(Digest::as_str), Some(D));
}

fn scanned(status: &str, summary: Value) -> Value {
    serde_json::json!([{
        "digest": D2,
        "resource_url": format!("harbor.corp.example/webshop/checkout@{D2}"),
        "scan_overview": {
            "application/vnd.security.sbom.report+json; version=1.0": {"scan_status": "Success"},
            VULN: {
                "report_id": "r-1", "scan_status": status, "severity": "Critical",
                "duration": 12, "summary": summary,
                "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "v0.58.1"},
                "complete_percent": 100
            }
        }
    }])
}

#[test]
fn completed_scan_is_a_quarantine_candidate_with_its_counts() {
    let summary = serde_json::json!({"total": 17, "fixable": 9,
        "summary": {"Critical": 2, "High": 4, "Medium": 6, "Low": 3, "Negligible": 1, "Unknown": 1}});
    for v in [
        default("SCANNING_COMPLETED", scanned("Success", summary.clone())),
        cloudevent("harbor.scan.completed", scanned("Success", summary.clone())),
    ] {
        let out = run(v).unwrap();
        let e = super::super::common::only_image(&out);
        assert_eq!(e.action, Action::Quarantine);
        assert_eq!(e.image.tag, None);
        assert_eq!(e.image.digest.as_ref().map(Digest::as_str), Some(D2));
        assert_eq!(
            e.scan,
            Some(ScanSummary {
                scanner: "harbor-scan".into(),
                complete: true,
                critical: 2,
                high: 4,
                medium: 6,
                low: 3
            })
        );
        assert_eq!(
            e.reason.as_deref(),
            Some("Harbor scan by Trivy v0.58.1: overall severity Critical")
        );
    }
}

#[test]
fn clean_scan_carries_zero_counts() {
    let summary = serde_json::json!({"total": 0, "fixable": 0, "summary": {}});
    let out = run(default("SCANNING_COMPLETED", scanned("Success", summary))).unwrap();
    let s = super::super::common::only_image(&out).scan.clone().unwrap();
    assert_eq!(
        (s.critical, s.high, s.medium, s.low, s.complete),
        (0, 0, 0, 0, true)
    );
}

#[test]
fn scans_without_a_usable_report_are_ignored() {
    let out = run(default("SCANNING_COMPLETED", scanned("Error", Value::Null))).unwrap();
    let [Parsed::Ignored(i)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert!(i.reason.contains("successful"), "{}", i.reason);
    assert_eq!(i.digest.as_deref(), Some(D2));
    let mut only_sbom = scanned("Success", Value::Null);
    only_sbom[0]["scan_overview"]
        .as_object_mut()
        .unwrap()
        .remove(VULN);
    let out = run(default("SCANNING_COMPLETED", only_sbom)).unwrap();
    let [Parsed::Ignored(i)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert!(i.reason.contains("SBOM"), "{}", i.reason);
    for ty in ["SCANNING_FAILED", "harbor.scan.stopped"] {
        let out = run(default(ty, scanned("Error", Value::Null))).unwrap();
        let [Parsed::Ignored(i)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(i.action, ty);
        assert!(i.reason.starts_with("scan "), "{}", i.reason);
    }
}

#[test]
fn other_types_are_ignored_with_what_they_name() {
    let out = run(cloudevent(
        "harbor.artifact.pulled",
        res(D, D, &format!("harbor.corp.example/webshop/checkout@{D}")),
    ))
    .unwrap();
    let [Parsed::Ignored(i)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(i.action, "harbor.artifact.pulled");
    assert_eq!(i.reason, "pulls are not tracked");
    assert_eq!(i.registry.as_deref(), Some("harbor.corp.example"));
    assert_eq!(i.repository.as_deref(), Some("webshop/checkout"));
    assert_eq!((i.tag.as_deref(), i.digest.as_deref()), (None, Some(D)));
    assert_eq!(
        i.id.as_deref(),
        Some("9b0c7e52-5d7e-4b7f-a7a8-c2f1f0e1d2c3")
    );

    let replication = serde_json::json!({"type": "REPLICATION", "occur_at": 1_770_000_000,
        "operator": "MANUAL", "event_data": {"replication": {"job_status": "Success"}}});
    let out = run(replication).unwrap();
    let [Parsed::Ignored(i)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(i.action, "REPLICATION");
    assert!(i.reason.contains("replication"));
    let out = run(default("QUOTA_WARNING", serde_json::json!([{"digest": D}]))).unwrap();
    let [Parsed::Ignored(i)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert!(i.reason.contains("quota"));
    let out = run(default("SOMETHING_NEW", serde_json::json!([]))).unwrap();
    assert!(matches!(out.as_slice(), [Parsed::Ignored(_)]));
}

#[test]
fn invalid_or_missing_fields_are_refused() {
    let bad_digest = default(
        "PUSH_ARTIFACT",
        res("1", "sha256:abc", "harbor.corp.example/webshop/checkout:1"),
    );
    assert!(matches!(run(bad_digest), Err(ParseError::Reference { .. })));
    let mut upper = default(
        "PUSH_ARTIFACT",
        res("1", D, "harbor.corp.example/webshop/checkout:1"),
    );
    upper["event_data"]["repository"]["repo_full_name"] = "WebShop/Checkout".into();
    assert!(matches!(run(upper), Err(ParseError::Reference { .. })));
    let no_url = default(
        "PUSH_ARTIFACT",
        serde_json::json!([{"digest": D, "tag": "1"}]),
    );
    let err = run(no_url).unwrap_err();
    assert!(
        err.to_string().contains("resources[0].resource_url"),
        "{err}"
    );
    let none = default("PUSH_ARTIFACT", serde_json::json!([]));
    let err = run(none).unwrap_err();
    assert!(err.to_string().contains("event_data.resources"), "{err}");
    let mut bad_time = cloudevent("harbor.artifact.pushed", res("1", D, "h.example/a/b:1"));
    bad_time["time"] = "soon".into();
    assert!(matches!(run(bad_time), Err(ParseError::Timestamp { .. })));
}

#[test]
fn repository_falls_back_to_the_resource_url() {
    let mut v = default(
        "PUSH_ARTIFACT",
        res("1.0", D, "localhost:8080/library/app/api:1.0"),
    );
    v["event_data"]
        .as_object_mut()
        .unwrap()
        .remove("repository");
    let out = run(v).unwrap();
    let e = super::super::common::only_image(&out);
    assert_eq!(e.image.registry.as_str(), "localhost:8080");
    assert_eq!(e.image.repository.as_str(), "library/app/api");
}

#[test]
fn resource_urls_split_into_host_and_repository() {
    assert_eq!(
        split_resource_url("h.example:5000/p/r:1"),
        ("h.example:5000", Some("p/r"))
    );
    assert_eq!(
        split_resource_url(&format!("h.example/p/r@{D}")),
        ("h.example", Some("p/r"))
    );
    assert_eq!(split_resource_url("h.example"), ("h.example", None));
}

#[test]
fn header_hint_and_body_shape() {
    let mut h = HeaderMap::new();
    assert!(!header_hint(&h));
    h.insert("ce-type", "harbor.artifact.pushed".parse().unwrap());
    assert!(header_hint(&h));
    h.insert(
        "ce-type",
        "Microsoft.ContainerRegistry.ImagePushed".parse().unwrap(),
    );
    assert!(!header_hint(&h));

    assert!(body_shape(&default("PUSH_ARTIFACT", serde_json::json!([]))));
    assert!(body_shape(&cloudevent(
        "harbor.scan.completed",
        serde_json::json!([])
    )));
    // Event Grid's CloudEvents and the ACR webhook are someone else's.
    assert!(!body_shape(
        &serde_json::json!({"specversion": "1.0", "id": "1",
        "type": "Microsoft.ContainerRegistry.ImagePushed", "data": {}})
    ));
    assert!(!body_shape(
        &serde_json::json!({"id": "1", "timestamp": "t",
        "action": "push", "target": {}})
    ));
    assert!(!body_shape(&serde_json::json!({"type": "PUSH_ARTIFACT"})));
}

#[test]
fn a_resource_url_naming_another_repository_is_refused() {
    let v = default(
        "PUSH_ARTIFACT",
        res("3.2.1", D, "harbor.corp.example/webshop/cart:3.2.1"),
    );
    let err = run(v).unwrap_err();
    assert!(matches!(err, ParseError::Malformed { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("webshop/checkout") && text.contains("webshop/cart"),
        "{text}"
    );
}
