//! The image lifecycle across the three functions, against moto: quarantine blocks deploys and
//! release applies them, deletes leave tombstones and warn about running services, pushes
//! revive, and every redelivery changes nothing.

use aws_config::SdkConfig;
use imagehook_core::app::App;
use imagehook_core::app::config::{DeployMode, QuarantinePolicy};
use imagehook_core::auth::AuthMode;
use imagehook_core::model::function::Function;
use imagehook_tests::*;
use serde_json::{Value, json};

const REPO: &str = "contoso.azurecr.io/shop/api";

struct World {
    sdk: SdkConfig,
    table: String,
    fx: EcsFixture,
    app: App,
}

async fn world_with(policy: QuarantinePolicy) -> World {
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let fx = create_service(&sdk, &format!("{REPO}:v1.4.1")).await;
    let rules = json!([{"repository": REPO, "tags": "v*", "cluster": fx.cluster,
                        "service": fx.service, "container": "api"}])
    .to_string();
    let app = app_with_policy(
        AppSpec {
            table: &table,
            rules: &rules,
            auth: AuthMode::None,
            secrets: &[],
            deploy_mode: DeployMode::Apply,
            dynamo_sdk: &sdk,
            ecs_sdk: &sdk,
        },
        policy,
    );
    World {
        sdk,
        table,
        fx,
        app,
    }
}

async fn world() -> World {
    world_with(QuarantinePolicy::default()).await
}

fn digest() -> String {
    body_of(&event_file("acr-push.json"))["target"]["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

impl World {
    async fn send(&self, function: Function, event: &str) -> Value {
        let reply = invoke(&self.app, function, event).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body["events"][0].clone()
    }

    /// The ACR push sample with another id, tag and time.
    async fn push(&self, id: &str, tag: &str, at: &str) -> Value {
        let event = event_file("acr-push.json");
        let mut body = body_of(&event);
        body["id"] = json!(id);
        body["target"]["tag"] = json!(tag);
        body["timestamp"] = json!(at);
        self.send(Function::Push, &with_body(&event, &body)).await
    }

    async fn generic(&self, function: Function, body: Value) -> Value {
        self.send(
            function,
            &with_body(&event_file("generic-quarantine.json"), &body),
        )
        .await
    }

    /// A scanner's quarantine of the sample digest (not ACR's own, which a later ACR push lifts).
    async fn quarantine(&self) -> Value {
        let body = json!({"image": format!("{REPO}@{}", digest()), "quarantine": true,
                          "reason": "CVE-2026-0001", "timestamp": "2026-11-20T10:16:00Z"});
        self.generic(Function::Quarantine, body).await
    }

    async fn image(&self) -> Value {
        get_image(&self.sdk, &self.table, &format!("IMG#{REPO}"), &digest())
            .await
            .expect("image item")
    }

    async fn runs(&self) -> String {
        container_image(&running(&self.sdk, &self.fx).await.task_definition, "api")
    }

    async fn items(&self) -> Vec<serde_json::Map<String, Value>> {
        all_items(&self.sdk, &self.table).await
    }
}

#[tokio::test]
async fn quarantine_blocks_the_push_and_release_deploys_it_once() {
    let w = world().await;
    // Recorded under a tag no rule follows, then quarantined.
    assert_eq!(
        w.push("a-1", "rc-1", "2026-11-20T10:00:00Z").await["outcome"],
        "applied"
    );
    let q = w.quarantine().await;
    assert_eq!(q["outcome"], "applied");
    assert_eq!(w.image().await["status"], "quarantined");

    let blocked = w.push("a-2", "v1.4.2", "2026-11-20T10:20:00Z").await;
    assert_eq!(blocked["outcome"], "blocked");
    assert!(
        blocked["reason"].as_str().unwrap().contains("quarantined"),
        "{blocked}"
    );
    assert_eq!(blocked["deployments"][0]["outcome"], "blocked");
    assert_eq!(w.runs().await, format!("{REPO}:v1.4.1"));
    let tag = get_item(&w.sdk, &w.table, &format!("IMG#{REPO}"), "T#v1.4.2")
        .await
        .unwrap();
    assert_eq!(
        tag["digest"],
        digest().as_str(),
        "the tag moves even while the digest is blocked"
    );
    let held = w
        .items()
        .await
        .into_iter()
        .filter(|i| i["type"] == "blocked")
        .count();
    assert_eq!(held, 1);
    // A second tag for the same digest holds the same service once.
    assert_eq!(
        w.push("a-3", "v1.4", "2026-11-20T10:21:00Z").await["outcome"],
        "blocked"
    );
    assert_eq!(
        w.items()
            .await
            .into_iter()
            .filter(|i| i["type"] == "blocked")
            .count(),
        1
    );

    let release = json!({"image": format!("{REPO}@{}", digest()), "quarantine": false, "reason": "false positive"});
    let r = w.generic(Function::Quarantine, release.clone()).await;
    assert_eq!(r["outcome"], "applied");
    assert_eq!(r["action"], "release");
    assert_eq!(r["deployments"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["deployments"][0]["outcome"], "updated");
    assert_eq!(w.runs().await, format!("{REPO}@{}", digest()));
    let image = w.image().await;
    assert_eq!(image["status"], "active");
    assert!(image.get("quarantine_reason").is_none());
    let changes: Vec<_> = image["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["change"].clone())
        .collect();
    assert_eq!(changes, vec![json!("quarantined"), json!("released")]);
    assert!(!w.items().await.iter().any(|i| i["type"] == "blocked"));

    // Redelivered release: nothing changes, no second deployment.
    let before = w.items().await;
    let again = w.generic(Function::Quarantine, release).await;
    assert_eq!(again["outcome"], "duplicate");
    assert_eq!(again["deployments"], json!([]));
    assert_eq!(w.items().await, before);
}

#[tokio::test]
async fn a_released_digest_is_not_deployed_where_its_tag_moved_on() {
    let w = world().await;
    w.quarantine().await;
    assert_eq!(
        w.push("b-1", "v1.4.2", "2026-11-20T10:20:00Z").await["outcome"],
        "blocked"
    );
    // The tag moves to another digest (deployed), then the old digest is released.
    let event = event_file("acr-push.json");
    let mut newer = body_of(&event);
    newer["id"] = json!("b-2");
    newer["timestamp"] = json!("2026-11-20T10:30:00Z");
    let other = format!("sha256:{}", "cd".repeat(32));
    newer["target"]["digest"] = json!(other);
    let pushed = w.send(Function::Push, &with_body(&event, &newer)).await;
    assert_eq!(pushed["deployments"][0]["outcome"], "updated");
    let release = json!({"image": format!("{REPO}@{}", digest()), "quarantine": false});
    let r = w.generic(Function::Quarantine, release).await;
    assert_eq!(r["deployments"], json!([]), "{r}");
    assert_eq!(w.runs().await, format!("{REPO}@{other}"));
    assert!(!w.items().await.iter().any(|i| i["type"] == "blocked"));
}

#[tokio::test]
async fn deleting_a_running_digest_warns_and_names_the_service() {
    let w = world().await;
    let pushed = w.send(Function::Push, &event_file("acr-push.json")).await;
    assert_eq!(pushed["deployments"][0]["outcome"], "updated");
    let svc = format!("{}/{}", w.fx.cluster, w.fx.service);

    let d = w
        .send(Function::Delete, &event_file("acr-delete.json"))
        .await;

    assert_eq!(d["outcome"], "applied");
    let warning = d["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains(&svc) && warning.contains("fail to pull"),
        "{warning}"
    );
    let image = w.image().await;
    assert_eq!(image["status"], "deleted");
    assert_eq!(image["services_at_delete"], json!([svc]));
    assert_eq!(
        image["tags"],
        json!(["v1.4.2"]),
        "the tombstone keeps the tags it had"
    );
    assert!(image["deleted_by"].as_str().unwrap().starts_with("acr#"));
    assert!(
        get_item(&w.sdk, &w.table, &format!("IMG#{REPO}"), "T#v1.4.2")
            .await
            .is_none()
    );
    // Nothing is rolled back.
    assert_eq!(w.runs().await, format!("{REPO}@{}", digest()));
    let before = w.items().await;
    assert_eq!(
        w.send(Function::Delete, &event_file("acr-delete.json"))
            .await["outcome"],
        "duplicate"
    );
    assert_eq!(w.items().await, before);
}

#[tokio::test]
async fn deleting_an_unknown_digest_leaves_a_tombstone_and_a_later_push_revives_it() {
    let w = world().await;
    let d = w
        .send(Function::Delete, &event_file("acr-delete.json"))
        .await;
    assert_eq!(d["outcome"], "applied");
    assert_eq!(d["warnings"], json!([]));
    let tomb = w.image().await;
    assert_eq!(tomb["status"], "deleted");
    let deleted_at = tomb["deleted_at"].as_str().unwrap().to_owned();

    // A push made before the delete arrives late: recorded, blocked.
    let old = w.push("c-1", "v1.4.2", "2026-11-20T10:00:00Z").await;
    assert_eq!(old["outcome"], "blocked");
    assert!(old["reason"].as_str().unwrap().contains("deleted"));
    assert_eq!(w.runs().await, format!("{REPO}:v1.4.1"));

    // A push after the delete revives the digest and deploys it.
    let new = w.push("c-2", "v1.4.3", "2026-11-21T09:00:00Z").await;
    assert_eq!(new["outcome"], "applied");
    assert_eq!(new["deployments"][0]["outcome"], "updated");
    let image = w.image().await;
    assert_eq!(image["status"], "active");
    assert_eq!(image["deleted_at"], deleted_at.as_str(), "history kept");
    assert_eq!(image["first_seen"], tomb["first_seen"]);
}

#[tokio::test]
async fn delete_by_tag_removes_only_that_tag() {
    let w = world().await;
    w.push("t-1", "v1.4.2", "2026-11-20T10:00:00Z").await;
    w.push("t-2", "stable", "2026-11-20T10:01:00Z").await;
    let d = w
        .generic(
            Function::Delete,
            json!({"image": format!("{REPO}:stable"), "action": "delete"}),
        )
        .await;
    assert_eq!(d["outcome"], "applied", "{d}");
    assert!(
        get_item(&w.sdk, &w.table, &format!("IMG#{REPO}"), "T#stable")
            .await
            .is_none()
    );
    assert!(
        get_item(&w.sdk, &w.table, &format!("IMG#{REPO}"), "T#v1.4.2")
            .await
            .is_some()
    );
    let image = w.image().await;
    assert_eq!(image["status"], "active");
    assert_eq!(image["tags"], json!(["v1.4.2"]));
}

#[tokio::test]
async fn scans_quarantine_over_the_threshold_and_a_clean_scan_releases() {
    let w = world().await;
    let event = event_file("ecr-scan.json");
    let repo = "210987654321.dkr.ecr.eu-central-1.amazonaws.com/shop/api";
    let d = body_of(&event)["detail"]["image-digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let q = w.send(Function::Quarantine, &event).await;
    assert_eq!(q["outcome"], "applied");
    assert!(q["reason"].as_str().unwrap().contains("2 critical"), "{q}");
    let image = get_item(&w.sdk, &w.table, &format!("IMG#{repo}"), &format!("D#{d}"))
        .await
        .unwrap();
    assert_eq!(image["status"], "quarantined");
    assert_eq!(image["quarantine_source"], "ecr-basic-scan");

    let clean = w
        .send(Function::Quarantine, &event_file("ecr-scan-clean.json"))
        .await;
    assert_eq!(
        (clean["outcome"].as_str(), clean["action"].as_str()),
        (Some("applied"), Some("release"))
    );
    let image = get_item(&w.sdk, &w.table, &format!("IMG#{repo}"), &format!("D#{d}"))
        .await
        .unwrap();
    assert_eq!(image["status"], "active");
    // The older, dirty scan redelivered is a duplicate and quarantines nothing again.
    assert_eq!(
        w.send(Function::Quarantine, &event).await["outcome"],
        "duplicate"
    );
}

#[tokio::test]
async fn a_scan_under_the_threshold_quarantines_nothing() {
    let w = world_with(QuarantinePolicy::parse("critical:5,high:10").unwrap()).await;
    let r = w
        .send(Function::Quarantine, &event_file("ecr-scan.json"))
        .await;
    assert_eq!(r["action"], "release");
    assert!(
        r["reason"].as_str().unwrap().contains("not quarantined"),
        "{r}"
    );
    assert!(
        !w.items()
            .await
            .iter()
            .any(|i| i.get("status").is_some_and(|s| s == "quarantined"))
    );
}

/// `high:6` is reached by 2 CRITICAL and 4 HIGH: a threshold counts its severity and every
/// severity above it, so a scan worse than the threshold never passes for clean.
#[tokio::test]
async fn a_threshold_counts_the_findings_above_its_severity_too() {
    let w = world_with(QuarantinePolicy::parse("high:6").unwrap()).await;
    let r = w
        .send(Function::Quarantine, &event_file("ecr-scan.json"))
        .await;
    assert_eq!(
        (r["outcome"].as_str(), r["action"].as_str()),
        (Some("applied"), Some("quarantine")),
        "{r}"
    );
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("6 high or above (threshold 6)"),
        "{r}"
    );
    assert!(
        w.items()
            .await
            .iter()
            .any(|i| i.get("status") == Some(&json!("quarantined")))
    );
}

/// A push older than the tag's last one is `stale` for the tag, yet its digest was pushed then:
/// the image records when.
#[tokio::test]
async fn a_stale_push_still_records_when_its_digest_was_pushed() {
    let w = world().await;
    let generic = |d: &str, at: &str| {
        json!({"image": format!("{REPO}:latest"), "digest": d, "timestamp": at,
               "id": format!("{d}-{at}")})
    };
    let newer = "sha256:".to_owned() + &"b".repeat(64);
    let older = "sha256:".to_owned() + &"c".repeat(64);
    let first = w
        .send(
            Function::Push,
            &with_body(
                &event_file("generic-push.json"),
                &generic(&newer, "2026-11-20T10:05:00Z"),
            ),
        )
        .await;
    assert_eq!(first["outcome"], "applied", "{first}");
    let stale = w
        .send(
            Function::Push,
            &with_body(
                &event_file("generic-push.json"),
                &generic(&older, "2026-11-20T10:00:00Z"),
            ),
        )
        .await;
    assert_eq!(stale["outcome"], "stale", "{stale}");
    let pk = format!("IMG#{REPO}");
    let image = get_item(&w.sdk, &w.table, &pk, &format!("D#{older}"))
        .await
        .expect("the stale push's image");
    assert_eq!(image["last_pushed_at"], "2026-11-20T10:00:00.000000000Z");
}

#[tokio::test]
async fn quarantining_a_running_digest_warns() {
    let w = world().await;
    w.send(Function::Push, &event_file("acr-push.json")).await;
    let q = w
        .send(Function::Quarantine, &event_file("acr-quarantine.json"))
        .await;
    let warning = q["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains(&w.fx.service) && warning.contains("quarantined"),
        "{warning}"
    );
}

#[tokio::test]
async fn each_function_acknowledges_the_others_events_as_ignored() {
    let w = world().await;
    for (function, file) in [
        (Function::Delete, "acr-push.json"),
        (Function::Quarantine, "acr-delete.json"),
        (Function::Push, "acr-quarantine.json"),
        (Function::Delete, "ecr-scan.json"),
    ] {
        let e = w.send(function, &event_file(file)).await;
        assert_eq!(e["outcome"], "ignored", "{file}");
        assert!(e["reason"].as_str().unwrap().contains("function"), "{e}");
    }
    assert!(w.items().await.is_empty());
}

/// Inspector sends its scans of EC2 instances and Lambda functions to the same rule as its
/// image scans: acknowledged (a refusal would only fill the dead-letter queue), named, not
/// stored.
#[tokio::test]
async fn inspector_events_about_other_resources_are_acknowledged_as_ignored() {
    let w = world().await;
    let scan = json!({"version": "0", "id": "28a46762-6ac8-6cc4-4f55-bc9ab99af928",
        "detail-type": "Inspector2 Scan", "source": "aws.inspector2", "account": "111122223333",
        "time": "2023-01-20T22:52:35Z", "region": "us-east-1", "resources": ["i-087d63509b8c97098"],
        "detail": {"scan-status": "INITIAL_SCAN_COMPLETE", "instance-id": "i-087d63509b8c97098",
            "finding-severity-counts": {"CRITICAL": 0, "HIGH": 0, "MEDIUM": 0, "TOTAL": 0},
            "version": "1.0"}});
    let finding = json!({"version": "0", "id": "0b3c5f2a-7d8e-4c1f-9a2b-6e5d4c3b2a19",
        "detail-type": "Inspector2 Finding", "source": "aws.inspector2",
        "account": "123456789012", "time": "2024-09-04T16:51:01Z", "region": "eu-central-1",
        "resources": ["arn:aws:lambda:eu-central-1:123456789012:function:VulnerableFunction:$LATEST"],
        "detail": {"severity": "CRITICAL", "status": "ACTIVE", "type": "CODE_VULNERABILITY",
            "resources": [{"type": "AWS_LAMBDA_FUNCTION",
                "id": "arn:aws:lambda:eu-central-1:123456789012:function:VulnerableFunction:$LATEST",
                "details": {"awsLambdaFunction": {"functionName": "VulnerableFunction"}}}]}});
    let template = event_file("ecr-scan.json");
    for (body, named) in [(scan, "EC2 instance"), (finding, "AWS_LAMBDA_FUNCTION")] {
        let e = w
            .send(Function::Quarantine, &with_body(&template, &body))
            .await;
        assert_eq!(e["outcome"], "ignored", "{e}");
        assert!(e["reason"].as_str().unwrap().contains(named), "{e}");
    }
    assert!(w.items().await.is_empty());
}

#[tokio::test]
async fn an_acr_push_after_an_acr_quarantine_means_passed_and_deploys() {
    let w = world().await;
    w.send(Function::Quarantine, &event_file("acr-quarantine.json"))
        .await;
    // Another sender's push does not lift ACR's quarantine.
    let generic = json!({"image": format!("{REPO}:v1.4.2"), "digest": digest(),
                         "timestamp": "2026-11-20T10:30:00Z"});
    let blocked = w.generic(Function::Push, generic).await;
    assert_eq!(blocked["outcome"], "blocked", "{blocked}");

    let passed = w.push("p-1", "v1.4.2", "2026-11-20T10:40:00Z").await;

    assert_eq!(passed["outcome"], "applied", "{passed}");
    assert!(passed["reason"].as_str().unwrap().contains("Passed"));
    assert_eq!(passed["deployments"][0]["outcome"], "updated");
    assert_eq!(w.runs().await, format!("{REPO}@{}", digest()));
    let image = w.image().await;
    assert_eq!(image["status"], "active");
    let last = image["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["change"], "released");
}
