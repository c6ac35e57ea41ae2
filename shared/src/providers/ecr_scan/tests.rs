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

/// The ignored event's action and reason, or a panic naming what came instead.
fn ignored_reason(v: Value) -> (String, String) {
    let out = run(v).unwrap();
    let [Parsed::Ignored(i)] = out.as_slice() else {
        panic!("{out:?}")
    };
    (i.action.clone(), i.reason.clone())
}

// Inspector also scans EC2 instances, machine images and Lambda functions, and sends those
// scans and findings to the same rule. The samples are AWS's ("Amazon EventBridge event schema
// for Amazon Inspector events"), findings trimmed of their vulnerability details.

#[test]
fn inspector_scans_of_instances_images_and_functions_are_ignored_by_name() {
    let ec2 = serde_json::json!({"version": "0", "id": "28a46762-6ac8-6cc4-4f55-bc9ab99af928",
        "detail-type": "Inspector2 Scan", "source": "aws.inspector2", "account": "111122223333",
        "time": "2023-01-20T22:52:35Z", "region": "us-east-1",
        "resources": ["i-087d63509b8c97098"],
        "detail": {"scan-status": "INITIAL_SCAN_COMPLETE",
            "finding-severity-counts": {"CRITICAL": 0, "HIGH": 0, "MEDIUM": 0, "TOTAL": 0},
            "instance-id": "i-087d63509b8c97098", "version": "1.0"}});
    let lambda = serde_json::json!({"version": "0", "id": "4f290a7c-361b-c442-03c8-a629f6f20d6c",
        "detail-type": "Inspector2 Scan", "source": "aws.inspector2", "account": "111122223333",
        "time": "2023-02-23T18:06:03Z", "region": "us-west-2",
        "resources": ["arn:aws:lambda:us-west-2:111122223333:function:lambda-example:$LATEST"],
        "detail": {"scan-status": "INITIAL_SCAN_COMPLETE",
            "finding-severity-counts": {"CRITICAL": 0, "HIGH": 0, "MEDIUM": 0, "TOTAL": 0},
            "version": "1.0"}});
    let ami = serde_json::json!({"version": "0", "id": "6b1f9d0e-2c47-4a52-9f10-7a1b8c3d5e2f",
        "detail-type": "Inspector2 Scan", "source": "aws.inspector2", "account": "111122223333",
        "time": "2026-08-13T13:42:52Z", "region": "us-east-1",
        "resources": ["ami-0abcdef1234567890"],
        "detail": {"scan-status": "INITIAL_SCAN_COMPLETE",
            "finding-severity-counts": {"CRITICAL": 0, "HIGH": 2, "MEDIUM": 5, "TOTAL": 7},
            "machine-image-id": "ami-0abcdef1234567890", "version": "1.0"}});
    for (event, named) in [
        (ec2, "EC2 instance i-087d63509b8c97098"),
        (
            lambda,
            "Lambda function arn:aws:lambda:us-west-2:111122223333:function:lambda-example:$LATEST",
        ),
        (ami, "machine image ami-0abcdef1234567890"),
    ] {
        let (action, reason) = ignored_reason(event);
        assert_eq!(action, "Inspector2 Scan");
        assert!(reason.contains(named), "{reason}");
        assert!(reason.contains("not an ECR image"), "{reason}");
    }
}

#[test]
fn a_scan_that_names_no_resource_is_still_refused() {
    // An ECR scan without its repository, or an Inspector scan naming nothing it scanned, is a
    // broken event, not another resource's: refused, so it is seen.
    for source in [
        ("aws.ecr", "ECR Image Scan"),
        ("aws.inspector2", "Inspector2 Scan"),
    ] {
        let v = serde_json::json!({"version": "0", "id": "s4", "detail-type": source.1,
            "source": source.0, "account": "111122223333", "region": "us-east-1",
            "resources": [], "detail": {"scan-status": "COMPLETE", "image-digest": D}});
        let err = run(v).unwrap_err();
        assert!(err.to_string().contains("repository-name"), "{err}");
    }
}

#[test]
fn active_inspector_findings_on_instances_and_functions_are_ignored_by_type() {
    let ec2 = serde_json::json!({"version": "0", "id": "9eb1603b-4263-19ec-8be2-33184694cb92",
        "detail-type": "Inspector2 Finding", "source": "aws.inspector2",
        "account": "123456789012", "time": "2024-09-05T13:06:56Z", "region": "eu-central-1",
        "resources": ["i-12345678901234567"],
        "detail": {"awsAccountId": "123456789012",
            "findingArn": "arn:aws:inspector2:eu-central-1:123456789012:finding/0a1b2c3d",
            "resources": [{"details": {"awsEc2Instance": {"imageId": "ami-02ff980600c693b38",
                    "platform": "UBUNTU_22_04", "type": "t2.small", "vpcId": "vpc-12345678"}},
                "id": "i-12345678901234567", "partition": "aws", "provider": "AWS",
                "region": "eu-central-1", "type": "AWS_EC2_INSTANCE"}],
            "severity": "MEDIUM", "status": "ACTIVE",
            "title": "Port 22 is reachable from an Internet Gateway - TCP",
            "type": "NETWORK_REACHABILITY"}});
    let lambda = serde_json::json!({"version": "0", "id": "0b3c5f2a-7d8e-4c1f-9a2b-6e5d4c3b2a19",
        "detail-type": "Inspector2 Finding", "source": "aws.inspector2",
        "account": "123456789012", "time": "2024-09-04T16:51:01Z", "region": "eu-central-1",
        "resources": ["arn:aws:lambda:eu-central-1:123456789012:function:VulnerableFunction:$LATEST"],
        "detail": {"awsAccountId": "123456789012",
            "resources": [{"details": {"awsLambdaFunction": {
                    "functionName": "VulnerableFunction", "packageType": "ZIP",
                    "runtime": "PYTHON_3_11", "version": "$LATEST"}},
                "id": "arn:aws:lambda:eu-central-1:123456789012:function:VulnerableFunction:$LATEST",
                "partition": "aws", "provider": "AWS", "region": "eu-central-1",
                "type": "AWS_LAMBDA_FUNCTION"}],
            "severity": "CRITICAL", "status": "ACTIVE",
            "title": "CWE-798 - Hardcoded credentials", "type": "CODE_VULNERABILITY"}});
    for (event, kind) in [(ec2, "AWS_EC2_INSTANCE"), (lambda, "AWS_LAMBDA_FUNCTION")] {
        let (action, reason) = ignored_reason(event);
        assert_eq!(action, "Inspector2 Finding");
        assert!(reason.contains(kind), "{reason}");
        assert!(reason.contains("not an ECR image"), "{reason}");
    }
}
