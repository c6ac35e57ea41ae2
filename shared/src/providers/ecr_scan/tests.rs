//! Scan and finding payloads through the ECR parser, which routes them here by detail-type.

use super::super::ecr::parse;
use super::*;

const D: &str = "sha256:5e2f8a1c0b9d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

fn run(v: Value) -> Result<Vec<Parsed>, ParseError> {
    super::super::common::run_parser(parse, &v)
}

#[test]
fn ecr_basic_scan_carries_its_counts() {
    let v = serde_json::json!({"version": "0", "id": "s1", "detail-type": "ECR Image Scan",
        "source": "aws.ecr", "account": "210987654321", "time": "2026-11-20T10:20:00Z",
        "region": "eu-central-1", "resources": [],
        "detail": {"scan-status": "COMPLETE", "repository-name": "shop/api",
            "finding-severity-counts": {"CRITICAL": 2, "HIGH": 3, "LOW": 9, "INFORMATIONAL": 4},
            "image-digest": D, "image-tags": ["1.4.2"]}});
    let out = run(v).unwrap();
    let [Parsed::Image(e)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(e.action, Action::Quarantine);
    assert_eq!(
        e.image.to_string(),
        format!("210987654321.dkr.ecr.eu-central-1.amazonaws.com/shop/api@{D}")
    );
    let s = e.scan.as_ref().unwrap();
    assert_eq!(
        (s.critical, s.high, s.medium, s.low, s.complete),
        (2, 3, 0, 9, true)
    );
    assert_eq!(s.scanner, "ecr-basic-scan");
}

#[test]
fn inspector_scan_names_the_repository_by_arn() {
    let v = serde_json::json!({"version": "0", "id": "s2", "detail-type": "Inspector2 Scan",
        "source": "aws.inspector2", "account": "210987654321", "time": "2026-11-20T10:20:00Z",
        "region": "eu-central-1", "resources": [],
        "detail": {"scan-status": "INITIAL_SCAN_COMPLETE",
            "repository-name": "arn:aws:ecr:eu-west-1:111122223333:repository/team/app",
            "finding-severity-counts": {"HIGH": 1, "TOTAL": 1}, "image-digest": D, "image-tags": []}});
    let out = run(v).unwrap();
    let [Parsed::Image(e)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(
        e.image.registry.as_str(),
        "111122223333.dkr.ecr.eu-west-1.amazonaws.com"
    );
    assert_eq!(e.image.repository.as_str(), "team/app");
    assert_eq!(e.scan.as_ref().unwrap().high, 1);
}

#[test]
fn failed_scans_and_closed_findings_are_ignored() {
    let v = serde_json::json!({"version": "0", "id": "s3", "detail-type": "ECR Image Scan",
        "source": "aws.ecr", "account": "1", "region": "r", "detail": {"scan-status": "FAILED"}});
    let out = run(v).unwrap();
    assert!(matches!(out.as_slice(), [Parsed::Ignored(_)]));
    let v = serde_json::json!({"version": "0", "id": "f1", "detail-type": "Inspector2 Finding",
        "source": "aws.inspector2", "account": "210987654321", "region": "eu-central-1",
        "detail": {"severity": "CRITICAL", "status": "CLOSED", "resources": []}});
    let out = run(v).unwrap();
    assert!(matches!(out.as_slice(), [Parsed::Ignored(_)]));
}

#[test]
fn an_active_finding_counts_one_of_its_severity() {
    let v = serde_json::json!({"version": "0", "id": "f2", "detail-type": "Inspector2 Finding",
        "source": "aws.inspector2", "account": "210987654321", "region": "eu-central-1",
        "time": "2026-11-20T10:21:00Z",
        "detail": {"severity": "CRITICAL", "status": "ACTIVE", "title": "CVE-2026-0001 - openssl",
            "resources": [{"type": "AWS_ECR_CONTAINER_IMAGE", "details": {"awsEcrContainerImage":
                {"imageHash": D, "repositoryName": "shop/api", "registry": "210987654321"}}}]}});
    let out = run(v).unwrap();
    let [Parsed::Image(e)] = out.as_slice() else {
        panic!("{out:?}")
    };
    let s = e.scan.as_ref().unwrap();
    assert_eq!((s.critical, s.complete), (1, false));
    assert_eq!(e.reason.as_deref(), Some("CVE-2026-0001 - openssl"));
}
