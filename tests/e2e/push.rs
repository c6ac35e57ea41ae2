use imagehook_core::app::config::DeployMode;
use imagehook_core::auth::AuthMode;
use imagehook_core::model::function::Function;
use imagehook_tests::*;
use serde_json::{Value, json};

/// The push tests' view of a world: an app with one rule for its service.
trait PushWorld {
    fn app(&self, rules: &Value, mode: DeployMode) -> imagehook_core::app::App;
    fn rule(&self, repository: &str, tags: &str) -> Value;
    async fn revisions(&self) -> usize;
}

impl PushWorld for World {
    fn app(&self, rules: &Value, mode: DeployMode) -> imagehook_core::app::App {
        app(AppSpec {
            table: &self.table,
            rules: &rules.to_string(),
            auth: AuthMode::Token,
            secrets: &["sample-webhook-token"],
            deploy_mode: mode,
            dynamo_sdk: &self.sdk,
            ecs_sdk: &self.sdk,
        })
    }

    fn rule(&self, repository: &str, tags: &str) -> Value {
        json!([{"repository": repository, "tags": tags, "cluster": self.fx.cluster,
                "service": self.fx.service, "container": "api", "stage": "prod"}])
    }

    async fn revisions(&self) -> usize {
        aws_sdk_ecs::Client::new(&self.sdk)
            .list_task_definitions()
            .family_prefix(&self.fx.family)
            .send()
            .await
            .unwrap()
            .task_definition_arns()
            .len()
    }
}

const ACR_REPO: &str = "contoso.azurecr.io/shop/api";

fn acr_digest() -> String {
    body_of(&event_file("acr-push.json"))["target"]["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn acr_push_records_the_image_and_pins_the_service_to_its_digest() {
    let w = world(&format!("{ACR_REPO}:v1.4.1")).await;
    let app = w.app(&w.rule(ACR_REPO, "v*"), DeployMode::Apply);
    let before = running(&w.sdk, &w.fx).await;
    let event = event_file("acr-push.json");
    let body = body_of(&event);
    let digest = acr_digest();

    let reply = invoke(&app, Function::Push, &event).await;

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["received"], 1);
    let e = &reply.body["events"][0];
    assert_eq!(e["outcome"], "applied");
    assert_eq!(e["provider"], "acr");
    assert_eq!(e["registry"], "contoso.azurecr.io");
    assert_eq!(e["repository"], "shop/api");
    assert_eq!(e["tag"], "v1.4.2");
    assert_eq!(e["digest"], digest.as_str());
    assert_eq!(e["deployments"][0]["outcome"], "updated");

    // ECS: a new revision, only the app container's image changed, pinned by digest.
    let after = running(&w.sdk, &w.fx).await;
    assert_ne!(after.task_definition_arn, before.task_definition_arn);
    assert_eq!(
        after.task_definition.revision(),
        before.task_definition.revision() + 1
    );
    assert_eq!(
        e["deployments"][0]["task_definition"],
        after.task_definition_arn.as_str()
    );
    assert_eq!(
        container_image(&after.task_definition, "api"),
        format!("{ACR_REPO}@{digest}")
    );
    let mut expected = before.task_definition.container_definitions().to_vec();
    for c in &mut expected {
        if c.name() == Some("api") {
            c.image = Some(format!("{ACR_REPO}@{digest}"));
        }
    }
    assert_eq!(
        after.task_definition.container_definitions(),
        expected.as_slice()
    );
    assert_eq!(
        after.task_definition.family(),
        before.task_definition.family()
    );
    assert_eq!(after.task_definition.cpu(), before.task_definition.cpu());
    assert_eq!(
        after.task_definition.memory(),
        before.task_definition.memory()
    );
    assert_eq!(
        after.task_definition.execution_role_arn(),
        before.task_definition.execution_role_arn()
    );
    assert_eq!(
        after.task_definition.network_mode(),
        before.task_definition.network_mode()
    );
    // The definition's own tags are kept, and imagehook's is added.
    let mut expected_tags = before.tags.clone();
    expected_tags.push(("managed-by".to_owned(), "imagehook".to_owned()));
    expected_tags.sort();
    assert_eq!(after.tags, expected_tags);
    assert_eq!(before.tags.len(), TD_TAGS.len());

    // DynamoDB: image, tag, receipt, service and deployment items.
    let pk = format!("IMG#{ACR_REPO}");
    let image = get_image(&w.sdk, &w.table, &pk, &digest)
        .await
        .expect("image item");
    assert_eq!(image["status"], "active");
    assert_eq!(image["tags"], json!(["v1.4.2"]));
    assert_eq!(image["push_count"], 1);
    assert_eq!(image["size"], body["target"]["size"]);
    assert_eq!(image["media_type"], body["target"]["mediaType"]);
    let ts = imagehook_core::model::event::Timestamp::parse(body["timestamp"].as_str().unwrap())
        .unwrap();
    assert_eq!(image["first_seen"], ts.as_str());
    let tag = w.item(&pk, "T#v1.4.2").await.expect("tag item");
    assert_eq!(tag["digest"], digest.as_str());
    assert_eq!(tag["updated_at"], ts.as_str());
    assert_eq!(tag["previous_digest"], "");
    let receipt = w
        .item(&format!("EVT#acr#{}", body["id"].as_str().unwrap()), "EVT")
        .await
        .expect("receipt");
    assert_eq!(receipt["status"], "done");
    assert_eq!(receipt["outcome"], "applied");
    let now = time_now();
    let ttl = receipt["expires_at"].as_i64().unwrap();
    assert!(
        (now + 7 * 86_400 - 60..=now + 7 * 86_400 + 60).contains(&ttl),
        "{ttl}"
    );
    let svc_pk = format!("SVC#{}/{}", w.fx.cluster, w.fx.service);
    let current = w.item(&svc_pk, "CURRENT").await.expect("service item");
    assert_eq!(current["digest"], digest.as_str());
    assert_eq!(
        current["task_definition_arn"],
        after.task_definition_arn.as_str()
    );
    let deps: Vec<_> = all_items(&w.sdk, &w.table)
        .await
        .into_iter()
        .filter(|i| i["type"] == "deployment")
        .collect();
    assert_eq!(deps.len(), 1);
    assert_eq!(deps[0]["outcome"], "updated");
    assert_eq!(deps[0]["stage"], "prod");
    assert_eq!(
        deps[0]["from_task_definition"],
        before.task_definition_arn.as_str()
    );
}

#[tokio::test]
async fn rest_v1_event_is_handled_like_http_api_v2() {
    let w = world(&format!("{ACR_REPO}:v1.4.1")).await;
    let app = w.app(&w.rule(ACR_REPO, "v*"), DeployMode::Apply);
    let reply = invoke(&app, Function::Push, &event_file("acr-push.rest.json")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.body["events"][0]["deployments"][0]["outcome"],
        "updated"
    );
    let after = running(&w.sdk, &w.fx).await;
    assert_eq!(
        container_image(&after.task_definition, "api"),
        format!("{ACR_REPO}@{}", acr_digest())
    );
}

#[tokio::test]
async fn ecr_push_from_an_api_destination_deploys_by_semver() {
    let event = event_file("ecr-push.json");
    let detail = &body_of(&event)["detail"];
    let repo = "210987654321.dkr.ecr.eu-central-1.amazonaws.com/shop/api";
    let w = world(&format!("{repo}:1.3.9")).await;
    let app = w.app(&w.rule("shop/api", "semver:^1.4"), DeployMode::Apply);
    let reply = invoke(&app, Function::Push, &event).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let e = &reply.body["events"][0];
    assert_eq!(e["provider"], "ecr-eventbridge");
    assert_eq!(
        e["registry"],
        "210987654321.dkr.ecr.eu-central-1.amazonaws.com"
    );
    assert_eq!(e["deployments"][0]["outcome"], "updated");
    let after = running(&w.sdk, &w.fx).await;
    assert_eq!(
        container_image(&after.task_definition, "api"),
        format!("{repo}@{}", detail["image-digest"].as_str().unwrap())
    );
}

#[tokio::test]
async fn generic_push_in_both_event_versions() {
    for file in ["generic-push.json", "generic-push.rest.json"] {
        let w = world("registry.example.com/shop/api:1.0.0").await;
        let app = w.app(
            &w.rule("registry.example.com/shop/*", "semver:>=1.4"),
            DeployMode::Apply,
        );
        let event = event_file(file);
        let reply = invoke(&app, Function::Push, &event).await;
        assert_eq!(reply.status, 200, "{file}: {}", reply.body);
        let e = &reply.body["events"][0];
        assert_eq!(e["provider"], "generic");
        assert_eq!(e["deployments"][0]["outcome"], "updated", "{file}");
        let after = running(&w.sdk, &w.fx).await;
        let digest = body_of(&event)["digest"].as_str().unwrap().to_owned();
        assert_eq!(
            container_image(&after.task_definition, "api"),
            format!("registry.example.com/shop/api@{digest}")
        );
    }
}

#[tokio::test]
async fn redelivery_is_acknowledged_as_duplicate_and_changes_nothing() {
    let w = world(&format!("{ACR_REPO}:v1.4.1")).await;
    let app = w.app(&w.rule(ACR_REPO, "v*"), DeployMode::Apply);
    let event = event_file("acr-push.json");
    let first = invoke(&app, Function::Push, &event).await;
    assert_eq!(first.body["events"][0]["outcome"], "applied");
    let items = all_items(&w.sdk, &w.table).await;
    let td = running(&w.sdk, &w.fx).await.task_definition_arn;
    let revisions = w.revisions().await;

    let again = invoke(&app, Function::Push, &event).await;

    assert_eq!(again.status, 200);
    assert_eq!(again.body["events"][0]["outcome"], "duplicate");
    assert_eq!(again.body["events"][0]["deployments"], json!([]));
    assert_eq!(all_items(&w.sdk, &w.table).await, items);
    assert_eq!(running(&w.sdk, &w.fx).await.task_definition_arn, td);
    assert_eq!(w.revisions().await, revisions);
}

#[tokio::test]
async fn an_older_push_is_recorded_but_neither_moves_the_tag_nor_deploys() {
    let w = world(&format!("{ACR_REPO}:v1.4.1")).await;
    let app = w.app(&w.rule(ACR_REPO, "v*"), DeployMode::Apply);
    let event = event_file("acr-push.json");
    invoke(&app, Function::Push, &event).await;
    let td = running(&w.sdk, &w.fx).await.task_definition_arn;

    let mut older = body_of(&event);
    let old_digest = format!("sha256:{}", "ab".repeat(32));
    older["id"] = json!("11111111-2222-4333-8444-555555555555");
    older["timestamp"] = json!("2026-11-19T08:00:00Z");
    older["target"]["digest"] = json!(old_digest);
    let reply = invoke(&app, Function::Push, &with_body(&event, &older)).await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["events"][0]["outcome"], "stale");
    assert_eq!(reply.body["events"][0]["deployments"], json!([]));
    let pk = format!("IMG#{ACR_REPO}");
    assert_eq!(
        w.item(&pk, "T#v1.4.2").await.unwrap()["digest"],
        acr_digest().as_str()
    );
    let old = w
        .item(&pk, &format!("D#{old_digest}"))
        .await
        .expect("older image recorded");
    assert_eq!(old["push_count"], 1);
    // Stale for the tag, but the digest was pushed then.
    assert_eq!(old["last_pushed_at"], "2026-11-19T08:00:00.000000000Z");
    let receipt = w
        .item("EVT#acr#11111111-2222-4333-8444-555555555555", "EVT")
        .await
        .unwrap();
    assert_eq!(receipt["outcome"], "stale");
    assert_eq!(running(&w.sdk, &w.fx).await.task_definition_arn, td);
}

#[tokio::test]
async fn an_unmatched_repository_is_recorded_without_a_deployment() {
    let w = world(&format!("{ACR_REPO}:v1.4.1")).await;
    let app = w.app(
        &w.rule("contoso.azurecr.io/billing/*", "*"),
        DeployMode::Apply,
    );
    let td = running(&w.sdk, &w.fx).await.task_definition_arn;
    let reply = invoke(&app, Function::Push, &event_file("acr-push.json")).await;
    assert_eq!(reply.status, 200);
    let e = &reply.body["events"][0];
    assert_eq!(e["outcome"], "applied");
    assert_eq!(
        e["reason"],
        "no deploy rule or followed service matches this image"
    );
    assert_eq!(e["deployments"], json!([]));
    let items = all_items(&w.sdk, &w.table).await;
    assert!(items.iter().any(|i| i["type"] == "image"));
    assert!(
        !items
            .iter()
            .any(|i| i["type"] == "service" || i["type"] == "deployment")
    );
    assert!(
        items
            .iter()
            .any(|i| i["type"] == "receipt" && i["status"] == "done")
    );
    assert_eq!(running(&w.sdk, &w.fx).await.task_definition_arn, td);
}

#[tokio::test]
async fn three_tags_for_one_digest_update_the_service_once() {
    let w = world(&format!("{ACR_REPO}:v1.4.1")).await;
    let app = w.app(&w.rule(ACR_REPO, "v*"), DeployMode::Apply);
    let event = event_file("acr-push.json");
    let revisions = w.revisions().await;
    let mut outcomes = Vec::new();
    for (i, tag) in ["v1.4.2", "v1.4", "v1"].iter().enumerate() {
        let mut body = body_of(&event);
        body["id"] = json!(format!("0000000{i}-aaaa-4bbb-8ccc-dddddddddddd"));
        body["target"]["tag"] = json!(tag);
        let reply = invoke(&app, Function::Push, &with_body(&event, &body)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        outcomes.push(reply.body["events"][0]["deployments"][0]["outcome"].clone());
    }
    assert_eq!(
        outcomes,
        vec![json!("updated"), json!("unchanged"), json!("unchanged")]
    );
    assert_eq!(w.revisions().await, revisions + 1);
    let image = get_image(&w.sdk, &w.table, &format!("IMG#{ACR_REPO}"), &acr_digest())
        .await
        .unwrap();
    assert_eq!(image["tags"], json!(["v1", "v1.4", "v1.4.2"]));
    assert_eq!(image["push_count"], 3);
}

#[tokio::test]
async fn dry_run_plans_and_records_without_calling_ecs() {
    let w = world(&format!("{ACR_REPO}:v1.4.1")).await;
    let app = w.app(&w.rule(ACR_REPO, "v*"), DeployMode::DryRun);
    let td = running(&w.sdk, &w.fx).await.task_definition_arn;
    let reply = invoke(&app, Function::Push, &event_file("acr-push.json")).await;
    assert_eq!(reply.status, 200);
    let d = &reply.body["events"][0]["deployments"][0];
    assert_eq!(d["outcome"], "planned");
    assert_eq!(d["image"], format!("{ACR_REPO}@{}", acr_digest()).as_str());
    assert_eq!(running(&w.sdk, &w.fx).await.task_definition_arn, td);
    let items = all_items(&w.sdk, &w.table).await;
    let dep = items
        .iter()
        .find(|i| i["type"] == "deployment")
        .expect("planned deployment recorded");
    assert_eq!(dep["outcome"], "planned");
    assert!(!items.iter().any(|i| i["type"] == "service"));
}

#[tokio::test]
async fn a_push_without_digest_deploys_by_tag_and_says_so() {
    let w = world("registry.example.com/shop/api:1.0.0").await;
    let app = w.app(
        &w.rule("registry.example.com/shop/api", "latest"),
        DeployMode::Apply,
    );
    let reply = invoke(
        &app,
        Function::Push,
        &event_file("generic-push-unpinned.json"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let e = &reply.body["events"][0];
    assert_eq!(e["deployments"][0]["outcome"], "updated");
    assert!(
        e["warnings"][0].as_str().unwrap().contains("not pinned"),
        "{e}"
    );
    let after = running(&w.sdk, &w.fx).await;
    assert_eq!(
        container_image(&after.task_definition, "api"),
        "registry.example.com/shop/api:latest"
    );
    let tag = w
        .item("IMG#registry.example.com/shop/api", "T#latest")
        .await
        .unwrap();
    assert_eq!(tag["unpinned"], true);
    assert!(tag.get("digest").is_none());
}

#[tokio::test]
async fn ping_and_failed_pushes_are_acknowledged_without_writes() {
    let w = world(&format!("{ACR_REPO}:v1.4.1")).await;
    let app = w.app(&w.rule(ACR_REPO, "v*"), DeployMode::Apply);
    for file in [
        "acr-ping.json",
        "ecr-push-failure.json",
        "acr-chart-push.json",
        "acr-delete.json",
    ] {
        let reply = invoke(&app, Function::Push, &event_file(file)).await;
        assert_eq!(reply.status, 200, "{file}: {}", reply.body);
        assert_eq!(reply.body["events"][0]["outcome"], "ignored", "{file}");
        assert!(reply.body["events"][0]["reason"].is_string(), "{file}");
    }
    assert!(all_items(&w.sdk, &w.table).await.is_empty());
}
