//! Several quarantines of one digest, against moto: each source (a person's explicit
//! quarantine, ACR, the ECR basic scan, Inspector, Harbor's scanner) holds the digest on its
//! own; a clean scan lifts only its own source's hold, a manual hold only an explicit release,
//! and the deployments held meanwhile go out once the last hold is lifted.

use aws_config::SdkConfig;
use imagehook_core::app::App;
use imagehook_core::model::function::Function;
use imagehook_tests::proxy::Proxy;
use imagehook_tests::*;
use serde_json::{Value, json};

const ECR: &str = "210987654321.dkr.ecr.eu-central-1.amazonaws.com/shop/api";
const ACR: &str = "contoso.azurecr.io/shop/api";

struct World {
    /// moto directly, for fixtures and checks.
    sdk: SdkConfig,
    /// The app's way to moto: DynamoDB writes one at a time, as DynamoDB applies each
    /// atomically (moto does not; see `imagehook_tests::proxy`).
    _proxy: Proxy,
    table: String,
    fx: EcsFixture,
    app: App,
    repo: &'static str,
}

async fn world(repo: &'static str) -> World {
    let sdk = sdk().await;
    let proxy = Proxy::atomic_writes();
    let through = proxy.sdk().await;
    let table = create_table(&sdk).await;
    let fx = create_service(&sdk, &format!("{repo}:v1.4.1")).await;
    let rules = json!([{"repository": repo, "tags": "v*", "cluster": fx.cluster,
                        "service": fx.service, "container": "api"}])
    .to_string();
    let app = open_app(&through, &table, &rules);
    World {
        sdk,
        _proxy: proxy,
        table,
        fx,
        app,
        repo,
    }
}

/// The digest the ECR scan samples name.
fn scanned() -> String {
    body_of(&event_file("ecr-scan.json"))["detail"]["image-digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn acr_digest() -> String {
    body_of(&event_file("acr-quarantine.json"))["target"]["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// An ECR basic scan (`inspector: false`) or an Inspector scan of `digest`, with `critical`
/// findings, at `at`.
fn scan(inspector: bool, digest: &str, critical: u32, at: &str, id: &str) -> String {
    let event = event_file("ecr-scan.json");
    let mut body = body_of(&event);
    body["id"] = json!(id);
    body["time"] = json!(at);
    body["detail"]["image-digest"] = json!(digest);
    body["detail"]["finding-severity-counts"] = json!({"CRITICAL": critical, "LOW": 3});
    if inspector {
        body["source"] = json!("aws.inspector2");
        body["detail-type"] = json!("Inspector2 Scan");
        body["detail"]["scan-status"] = json!("INITIAL_SCAN_COMPLETE");
        body["detail"]["repository-name"] =
            json!("arn:aws:ecr:eu-central-1:210987654321:repository/shop/api");
    }
    with_body(&event, &body)
}

impl World {
    async fn send(&self, function: Function, event: &str) -> Value {
        let reply = invoke(&self.app, function, event).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body["events"][0].clone()
    }

    async fn generic(&self, function: Function, body: Value) -> Value {
        self.send(
            function,
            &with_body(&event_file("generic-quarantine.json"), &body),
        )
        .await
    }

    async fn manual(&self, digest: &str, at: &str) -> Value {
        let body = json!({"image": format!("{}@{digest}", self.repo), "quarantine": true,
                          "reason": "held for the security review", "timestamp": at});
        self.generic(Function::Quarantine, body).await
    }

    async fn release(&self, digest: &str, source: Option<&str>, at: &str) -> Value {
        let mut body = json!({"image": format!("{}@{digest}", self.repo), "quarantine": false,
                              "reason": "reviewed", "timestamp": at});
        if let Some(s) = source {
            body["source"] = json!(s);
        }
        self.generic(Function::Quarantine, body).await
    }

    async fn push(&self, digest: &str, at: &str) -> Value {
        let body = json!({"image": format!("{}:v1.4.2", self.repo), "digest": digest,
                          "id": format!("push-{at}"), "timestamp": at});
        self.generic(Function::Push, body).await
    }

    async fn image(&self, digest: &str) -> Value {
        get_item(
            &self.sdk,
            &self.table,
            &format!("IMG#{}", self.repo),
            &format!("D#{digest}"),
        )
        .await
        .expect("image item")
    }

    /// The sources holding `digest`, in order.
    async fn holders(&self, digest: &str) -> Vec<String> {
        let image = self.image(digest).await;
        let mut sources: Vec<String> = image["holds"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        sources.sort();
        sources
    }

    async fn runs(&self) -> String {
        container_image(&running(&self.sdk, &self.fx).await.task_definition, "api")
    }
}

#[tokio::test]
async fn a_clean_scan_lifts_only_its_own_hold() {
    let w = world(ECR).await;
    let d = scanned();
    assert_eq!(
        w.manual(&d, "2026-11-20T10:00:00Z").await["outcome"],
        "applied"
    );
    let dirty = scan(true, &d, 2, "2026-11-20T10:05:00Z", "s-1");
    assert_eq!(
        w.send(Function::Quarantine, &dirty).await["outcome"],
        "applied"
    );
    assert_eq!(w.holders(&d).await, ["inspector2", "manual"]);
    let pushed = w.push(&d, "2026-11-20T10:10:00Z").await;
    assert_eq!(pushed["outcome"], "blocked", "{pushed}");

    let clean = scan(true, &d, 0, "2026-11-20T10:20:00Z", "s-2");
    let lifted = w.send(Function::Quarantine, &clean).await;
    assert_eq!(lifted["outcome"], "applied", "{lifted}");
    assert!(
        lifted["reason"]
            .as_str()
            .unwrap()
            .contains("stays quarantined by manual"),
        "{lifted}"
    );
    assert!(lifted["deployments"].as_array().is_none_or(Vec::is_empty));
    let image = w.image(&d).await;
    assert_eq!(image["status"], "quarantined");
    assert_eq!(image["quarantine_source"], "manual");
    assert_eq!(w.holders(&d).await, ["manual"]);
    assert_eq!(w.runs().await, format!("{ECR}:v1.4.1"));

    // Only the explicit release of the manual hold lets the held push out.
    let released = w.release(&d, Some("manual"), "2026-11-20T10:30:00Z").await;
    assert_eq!(released["outcome"], "applied", "{released}");
    assert_eq!(
        released["deployments"][0]["outcome"], "updated",
        "{released}"
    );
    assert_eq!(w.image(&d).await["status"], "active");
    assert_eq!(w.runs().await, format!("{ECR}@{d}"));
}

#[tokio::test]
async fn a_manual_hold_survives_every_rescan_until_released() {
    let w = world(ECR).await;
    let d = scanned();
    w.manual(&d, "2026-11-20T10:00:00Z").await;
    w.push(&d, "2026-11-20T10:10:00Z").await;
    // ECR enhanced scanning rescans continuously: clean rescans from both scanners.
    let basic = w
        .send(Function::Quarantine, &event_file("ecr-scan-clean.json"))
        .await;
    assert_eq!(basic["action"], "release");
    assert!(
        basic["reason"]
            .as_str()
            .unwrap()
            .contains("holds nothing on the digest, which stays quarantined by manual"),
        "{basic}"
    );
    for (i, at) in ["2026-11-21T09:00:00Z", "2026-11-22T09:00:00Z"]
        .into_iter()
        .enumerate()
    {
        let clean = scan(true, &d, 0, at, &format!("rescan-{i}"));
        w.send(Function::Quarantine, &clean).await;
    }
    assert_eq!(w.image(&d).await["status"], "quarantined");
    assert_eq!(w.runs().await, format!("{ECR}:v1.4.1"));

    // A release for another source's hold leaves the manual one in place.
    let other = w
        .release(&d, Some("inspector2"), "2026-11-22T10:00:00Z")
        .await;
    assert!(other["reason"].as_str().unwrap().contains("holds nothing"));
    assert_eq!(w.image(&d).await["status"], "quarantined");

    // An explicit release without a source lifts every hold.
    let released = w.release(&d, None, "2026-11-22T11:00:00Z").await;
    assert_eq!(
        released["deployments"][0]["outcome"], "updated",
        "{released}"
    );
    assert_eq!(w.image(&d).await["status"], "active");
    assert!(w.holders(&d).await.is_empty());
}

#[tokio::test]
async fn a_late_dirty_scan_older_than_its_sources_clean_one_is_stale() {
    let w = world(ECR).await;
    let d = scanned();
    w.push(&d, "2026-11-20T10:00:00Z").await;
    let clean = scan(true, &d, 0, "2026-11-20T10:20:00Z", "s-clean");
    w.send(Function::Quarantine, &clean).await;
    let late = scan(true, &d, 3, "2026-11-20T10:05:00Z", "s-dirty");
    assert_eq!(
        w.send(Function::Quarantine, &late).await["outcome"],
        "stale"
    );
    // Another source's older word is its own: the basic scan's hold stands.
    let basic = scan(false, &d, 3, "2026-11-20T10:06:00Z", "b-dirty");
    assert_eq!(
        w.send(Function::Quarantine, &basic).await["outcome"],
        "applied"
    );
    assert_eq!(w.holders(&d).await, ["ecr-basic-scan"]);
}

#[tokio::test]
async fn concurrent_holds_and_releases_keep_every_hold() {
    let w = world(ECR).await;
    // Each digest's sources answer at once: their requests interleave in moto, and every
    // read-then-write of the holds meets a concurrent one.
    let digests: Vec<String> = (0..6).map(|i| format!("sha256:{i:0>64}")).collect();
    for d in &digests {
        let inspector = scan(true, d, 1, "2026-11-20T10:01:00Z", &format!("i-{d}"));
        let basic = scan(false, d, 1, "2026-11-20T10:02:00Z", &format!("b-{d}"));
        let (a, b, c) = tokio::join!(
            w.manual(d, "2026-11-20T10:00:00Z"),
            w.send(Function::Quarantine, &inspector),
            w.send(Function::Quarantine, &basic),
        );
        for q in [a, b, c] {
            assert_eq!(q["outcome"], "applied", "{q}");
        }
        let inspector = scan(true, d, 0, "2026-11-20T11:00:00Z", &format!("ic-{d}"));
        let basic = scan(false, d, 0, "2026-11-20T11:01:00Z", &format!("bc-{d}"));
        let (x, y) = tokio::join!(
            w.send(Function::Quarantine, &inspector),
            w.send(Function::Quarantine, &basic),
        );
        for r in [x, y] {
            assert_eq!(r["outcome"], "applied", "{r}");
        }
    }
    for d in &digests {
        assert_eq!(w.holders(d).await, ["manual"], "{d}");
        let image = w.image(d).await;
        assert_eq!(image["status"], "quarantined");
        assert_eq!(image["holds_version"], 5, "{image}");
    }
}

#[tokio::test]
async fn acr_passing_an_image_lifts_only_acrs_hold() {
    let w = world(ACR).await;
    let d = acr_digest();
    w.send(Function::Quarantine, &event_file("acr-quarantine.json"))
        .await;
    w.manual(&d, "2026-11-20T10:20:00Z").await;
    assert_eq!(w.holders(&d).await, ["acr", "manual"]);
    // ACR sends the push of a quarantined image once it is marked Passed.
    let event = event_file("acr-push.json");
    let mut body = body_of(&event);
    body["timestamp"] = json!("2026-11-20T10:40:00Z");
    let passed = w.send(Function::Push, &with_body(&event, &body)).await;
    assert_eq!(passed["outcome"], "blocked", "{passed}");
    assert!(
        passed["reason"]
            .as_str()
            .unwrap()
            .contains("Passed, but the digest is still quarantined"),
        "{passed}"
    );
    assert_eq!(w.holders(&d).await, ["manual"]);
    assert_eq!(w.runs().await, format!("{ACR}:v1.4.1"));
    let released = w.release(&d, Some("manual"), "2026-11-20T11:00:00Z").await;
    assert_eq!(
        released["deployments"][0]["outcome"], "updated",
        "{released}"
    );
}

#[tokio::test]
async fn a_release_names_a_known_source_or_none() {
    let w = world(ECR).await;
    let body = json!({"image": format!("{ECR}@{}", scanned()), "quarantine": false,
                      "source": "trivy"});
    let reply = invoke(
        &w.app,
        Function::Quarantine,
        &with_body(&event_file("generic-quarantine.json"), &body),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.body["error"], "invalid_event");
    assert!(
        reply.body.to_string().contains("unknown `source`"),
        "{}",
        reply.body
    );
}

/// ACR's Passed push lifts the last hold while another push's deployment still waits: a later
/// release (which lifts nothing) applies it, once.
#[tokio::test]
async fn a_deployment_left_waiting_after_the_last_hold_is_applied_by_a_release() {
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let first = create_service(&sdk, &format!("{ACR}:v1.4.1")).await;
    let second = create_service(&sdk, &format!("{ACR}:v1.4.1")).await;
    let rules = json!([
        {"repository": ACR, "tags": "stable", "cluster": first.cluster, "service": first.service,
         "container": "api"},
        {"repository": ACR, "tags": "v*", "cluster": second.cluster, "service": second.service,
         "container": "api"}
    ])
    .to_string();
    let app = open_app(&sdk, &table, &rules);
    let send = |function, event: String| {
        let app = &app;
        async move {
            let reply = invoke(app, function, &event).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            reply.body["events"][0].clone()
        }
    };
    let d = acr_digest();
    send(Function::Quarantine, event_file("acr-quarantine.json")).await;
    // Another tag of the digest, from CI, waits behind ACR's hold.
    let stable = json!({"image": format!("{ACR}:stable"), "digest": d, "id": "ci-1",
                        "timestamp": "2026-11-20T10:20:00Z"});
    let held = send(
        Function::Push,
        with_body(&event_file("generic-quarantine.json"), &stable),
    )
    .await;
    assert_eq!(held["outcome"], "blocked", "{held}");
    // ACR marks it Passed: its own push deploys, the other waits on.
    let acr = event_file("acr-push.json");
    let mut body = body_of(&acr);
    body["timestamp"] = json!("2026-11-20T10:40:00Z");
    let passed = send(Function::Push, with_body(&acr, &body)).await;
    assert_eq!(passed["outcome"], "applied", "{passed}");
    assert_eq!(
        container_image(&running(&sdk, &first).await.task_definition, "api"),
        format!("{ACR}:v1.4.1")
    );
    // A release, though nothing holds the digest now, applies what waited.
    let release = json!({"image": format!("{ACR}@{d}"), "quarantine": false,
                         "timestamp": "2026-11-20T11:00:00Z"});
    let released = send(
        Function::Quarantine,
        with_body(&event_file("generic-quarantine.json"), &release),
    )
    .await;
    assert_eq!(
        released["deployments"][0]["outcome"], "updated",
        "{released}"
    );
    assert_eq!(
        container_image(&running(&sdk, &first).await.task_definition, "api"),
        format!("{ACR}@{d}")
    );
}
