//! Rollout policies, exact task-definition copies and deployment outcomes, against moto's ECS and
//! DynamoDB through the real clients.

use aws_sdk_ecs::types::{
    Compatibility, ContainerDefinition, KeyValuePair, NetworkMode, PortMapping, RuntimePlatform,
    Tag, TaskDefinitionPlacementConstraint, TaskDefinitionPlacementConstraintType, Volume,
};
use imagehook_core::app::config::DeployMode;
use imagehook_core::auth::AuthMode;
use imagehook_core::model::function::Function;
use imagehook_tests::*;
use serde_json::{Value, json};

const REPO: &str = "registry.example.com/shop/api";

fn digest(n: u32) -> String {
    format!("sha256:{n:064x}")
}

/// The rollout tests' view of a world: one rule with a policy, pushes through the generic form.
trait RolloutWorld {
    fn app(&self, tags: &str, newer_only: bool) -> imagehook_core::app::App;
    async fn push(&self, app: &imagehook_core::app::App, tag: &str, digest: &str) -> Value;
    fn service_pk(&self) -> String;
}

impl RolloutWorld for World {
    fn app(&self, tags: &str, newer_only: bool) -> imagehook_core::app::App {
        let rules = json!([{"repository": "shop/api", "tags": tags, "newer_only": newer_only,
                            "cluster": self.fx.cluster, "service": self.fx.service,
                            "container": "api", "stage": "prod"}]);
        app(AppSpec {
            table: &self.table,
            rules: &rules.to_string(),
            auth: AuthMode::Token,
            secrets: &["sample-webhook-token"],
            deploy_mode: DeployMode::Apply,
            dynamo_sdk: &self.sdk,
            ecs_sdk: &self.sdk,
        })
    }

    /// Pushes `REPO:tag` at `digest` through the generic form and returns the one deployment.
    async fn push(&self, app: &imagehook_core::app::App, tag: &str, digest: &str) -> Value {
        let event = with_body(
            &event_file("generic-push.json"),
            &json!({"image": format!("{REPO}:{tag}"), "digest": digest,
                    "id": unique("push")}),
        );
        let reply = invoke(app, Function::Push, &event).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body["events"][0]["deployments"][0].clone()
    }

    fn service_pk(&self) -> String {
        format!("SVC#{}/{}", self.fx.cluster, self.fx.service)
    }
}

/// (running tag, pushed tag, policy) -> decision, on a real service: what ECS ends up running
/// is checked, not only what the response says.
#[tokio::test]
async fn policy_decisions_on_a_real_service() {
    // (running, pushed, tags, newer_only, expected outcome)
    let cases: &[(&str, &str, &str, bool, &str)] = &[
        ("1.5.0", "1.4.9", "semver:>=1", false, "updated"),
        ("1.5.0", "1.4.9", "semver:>=1", true, "skipped"),
        ("1.4.2", "1.5.0", "semver:>=1", true, "updated"),
        (
            "1.4.2",
            "1.5.0-rc.1",
            "semver:>=1.5.0-rc.0",
            true,
            "updated",
        ),
        (
            "1.5.0",
            "1.5.0-rc.1",
            "semver:>=1.5.0-rc.0",
            true,
            "skipped",
        ),
        (
            "main-20261120",
            "main-20261101",
            r"regex:^main-(?P<version>\d+)$",
            true,
            "skipped",
        ),
        (
            "main-20261101",
            "main-20261120",
            r"regex:^main-(?P<version>\d+)$",
            true,
            "updated",
        ),
        ("latest", "latest", "force", false, "updated"),
        ("latest", "1.5.0", "force", false, "skipped"),
    ];
    for (i, (running_tag, pushed, tags, newer_only, expected)) in cases.iter().enumerate() {
        let w = world(&format!("{REPO}:{running_tag}")).await;
        let app = w.app(tags, *newer_only);
        let before = running(&w.sdk, &w.fx).await;
        let d = w.push(&app, pushed, &digest(100 + i as u32)).await;
        let case = format!("{running_tag} -> {pushed} with {tags} newer_only={newer_only}");
        assert_eq!(d["outcome"], *expected, "{case}: {d}");
        let after = running(&w.sdk, &w.fx).await;
        if *expected == "updated" {
            assert_eq!(
                container_image(&after.task_definition, "api"),
                format!("{REPO}@{}", digest(100 + i as u32)),
                "{case}"
            );
        } else {
            assert_eq!(
                after.task_definition_arn, before.task_definition_arn,
                "{case}"
            );
            assert!(
                d["reason"].as_str().unwrap().contains(pushed),
                "{case}: {d}"
            );
        }
    }
}

/// ECS shows a pinned service as `repo@digest`: newer-only still knows the version it runs
/// from imagehook's own record of the last rollout.
#[tokio::test]
async fn newer_only_remembers_the_version_of_a_pinned_service() {
    let w = world(&format!("{REPO}:1.4.0")).await;
    let app = w.app("semver:^1", true);
    assert_eq!(
        w.push(&app, "1.5.0", &digest(1)).await["outcome"],
        "updated"
    );
    let d = w.push(&app, "1.4.9", &digest(2)).await;
    assert_eq!(d["outcome"], "skipped", "{d}");
    assert!(d["reason"].as_str().unwrap().contains("1.5.0"), "{d}");
    let current = w.item(&w.service_pk(), "CURRENT").await.unwrap();
    assert_eq!(current["tag"], "1.5.0");
    assert_eq!(current["digest"], digest(1).as_str());
    assert_eq!(
        w.push(&app, "1.5.1", &digest(3)).await["outcome"],
        "updated"
    );
}

/// Every field of the registered definition is the original's, except the images of the
/// containers that run the pushed repository; tags are kept and `managed-by` is added.
#[tokio::test]
async fn task_definition_copies_change_only_the_repository_containers() {
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let ecs = aws_sdk_ecs::Client::new(&sdk);
    let cluster = unique("cluster");
    let service = unique("svc");
    let family = unique("family");
    ecs.create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .unwrap();
    let api = ContainerDefinition::builder()
        .name("api")
        .image(format!("{REPO}:1.4.0"))
        .cpu(128)
        .memory(256)
        .essential(true)
        .port_mappings(PortMapping::builder().container_port(8080).build())
        .environment(KeyValuePair::builder().name("MODE").value("web").build())
        .command("serve")
        .build();
    let worker = ContainerDefinition::builder()
        .name("worker")
        .image(format!("{REPO}:1.4.0"))
        .memory(256)
        .essential(false)
        .environment(KeyValuePair::builder().name("MODE").value("jobs").build())
        .command("work")
        .build();
    let proxy = ContainerDefinition::builder()
        .name("proxy")
        .image("public.ecr.aws/nginx/nginx:1.27")
        .memory(64)
        .essential(false)
        .build();
    let registered = ecs
        .register_task_definition()
        .family(&family)
        .container_definitions(api)
        .container_definitions(worker)
        .container_definitions(proxy)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("512")
        .memory("1024")
        .task_role_arn("arn:aws:iam::123456789012:role/shop-api-task")
        .execution_role_arn("arn:aws:iam::123456789012:role/ecsTaskExecutionRole")
        .volumes(Volume::builder().name("scratch").build())
        .placement_constraints(
            TaskDefinitionPlacementConstraint::builder()
                .r#type(TaskDefinitionPlacementConstraintType::MemberOf)
                .expression("attribute:ecs.os-type == linux")
                .build(),
        )
        .runtime_platform(
            RuntimePlatform::builder()
                .cpu_architecture(aws_sdk_ecs::types::CpuArchitecture::Arm64)
                .operating_system_family(aws_sdk_ecs::types::OsFamily::Linux)
                .build(),
        )
        .tags(Tag::builder().key("team").value("shop").build())
        .tags(Tag::builder().key("managed-by").value("terraform").build())
        // What CloudFormation sets on what it registers: ECS refuses it in a request.
        .tags(
            Tag::builder()
                .key("aws:cloudformation:stack-name")
                .value("shop")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let original_arn = registered
        .task_definition()
        .unwrap()
        .task_definition_arn()
        .unwrap()
        .to_owned();
    ecs.create_service()
        .cluster(&cluster)
        .service_name(&service)
        .task_definition(&original_arn)
        .desired_count(1)
        .send()
        .await
        .unwrap();
    let fx = EcsFixture {
        cluster: cluster.clone(),
        service: service.clone(),
        family: family.clone(),
        task_definition_arn: original_arn.clone(),
    };
    let before = running(&sdk, &fx).await;

    // No container named: every container running shop/api follows it.
    let rules = json!([{"repository": "shop/api", "tags": "semver:^1", "cluster": cluster,
                        "service": service}]);
    let app = sample_app(&sdk, &table, &rules.to_string(), DeployMode::Apply);
    let event = with_body(
        &event_file("generic-push.json"),
        &json!({"image": format!("{REPO}:1.4.1"), "digest": digest(7), "id": unique("push")}),
    );
    let reply = invoke(&app, Function::Push, &event).await;
    assert_eq!(
        reply.body["events"][0]["deployments"][0]["outcome"], "updated",
        "{}",
        reply.body
    );
    let after = running(&sdk, &fx).await;
    let (b, a) = (&before.task_definition, &after.task_definition);
    assert_ne!(a.task_definition_arn(), b.task_definition_arn());

    let pinned = format!("{REPO}@{}", digest(7));
    let mut expected = b.container_definitions().to_vec();
    for c in &mut expected {
        if c.name() != Some("proxy") {
            c.image = Some(pinned.clone());
        }
    }
    assert_eq!(a.container_definitions(), expected.as_slice());
    assert_eq!(a.family(), b.family());
    assert_eq!(a.task_role_arn(), b.task_role_arn());
    assert_eq!(a.execution_role_arn(), b.execution_role_arn());
    assert_eq!(a.network_mode(), b.network_mode());
    assert_eq!(a.volumes(), b.volumes());
    assert_eq!(a.placement_constraints(), b.placement_constraints());
    assert_eq!(a.requires_compatibilities(), b.requires_compatibilities());
    assert_eq!(a.cpu(), b.cpu());
    assert_eq!(a.memory(), b.memory());
    assert_eq!(a.pid_mode(), b.pid_mode());
    assert_eq!(a.ipc_mode(), b.ipc_mode());
    assert_eq!(a.proxy_configuration(), b.proxy_configuration());
    assert_eq!(a.ephemeral_storage(), b.ephemeral_storage());
    assert_eq!(a.runtime_platform(), b.runtime_platform());
    // Tags: the original's but the reserved aws: ones, with managed-by now saying imagehook
    // registered this revision.
    assert_eq!(
        after.tags,
        vec![
            ("managed-by".to_owned(), "imagehook".to_owned()),
            ("team".to_owned(), "shop".to_owned())
        ]
    );
    // The old revision is left registered: infrastructure-as-code may own it.
    let old = ecs
        .describe_task_definition()
        .task_definition(&original_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        old.task_definition().unwrap().status().map(|s| s.as_str()),
        Some("ACTIVE")
    );
}

/// The outcomes function's answer to `event`, and the (Function, State, Rollouts) of each metric
/// line it printed, checked as EMF: the alarm on failed rollouts reads exactly these.
async fn outcome_metrics(
    app: &imagehook_core::app::App,
    event: &str,
) -> (Value, Vec<(String, String, f64)>) {
    let (answer, lines) = outcomes_reported(app, event).await;
    let metrics = lines
        .iter()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let decl = &v["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(decl["Namespace"], "imagehook", "{line}");
            assert_eq!(decl["Dimensions"], json!([["Function", "State"]]), "{line}");
            assert_eq!(
                decl["Metrics"],
                json!([{"Name": "Rollouts", "Unit": "Count"}]),
                "{line}"
            );
            (
                v["Function"].as_str().unwrap().to_owned(),
                v["State"].as_str().unwrap().to_owned(),
                v["Rollouts"].as_f64().unwrap(),
            )
        })
        .collect();
    (answer.unwrap(), metrics)
}

fn rollouts(state: &str) -> Vec<(String, String, f64)> {
    vec![("outcomes".to_owned(), state.to_owned(), 1.0)]
}

/// A circuit-breaker failure is recorded on the deployment, marks the digest failed for the
/// service and returns its record to the version it ran; a force rule then leaves the digest
/// alone. Redeliveries change nothing.
#[tokio::test]
async fn failed_rollouts_are_recorded_and_not_retried() {
    let w = world(&format!("{REPO}:latest")).await;
    let app = w.app("force", false);
    let d = w.push(&app, "latest", &digest(21)).await;
    assert_eq!(d["outcome"], "updated", "{d}");
    let id = d["ecs_deployment_id"]
        .as_str()
        .expect("deployment id")
        .to_owned();

    let failed = w.state_change(
        "SERVICE_DEPLOYMENT_FAILED",
        &id,
        "ECS deployment circuit breaker: tasks failed to start.",
    );
    let (out, metrics) = outcome_metrics(&app, &failed).await;
    assert_eq!(out["outcome"], "recorded", "{out}");
    assert_eq!(out["digest"], digest(21).as_str());
    assert_eq!(metrics, rollouts("failed"));
    let (again, metrics) = outcome_metrics(&app, &failed).await;
    assert_eq!(
        (again["outcome"].as_str(), metrics),
        (Some("duplicate"), vec![])
    );

    let deployment = w.only_deployment().await;
    assert_eq!(deployment["state"], "failed");
    assert_eq!(deployment["circuit_breaker"], true);
    let current = w.item(&w.service_pk(), "CURRENT").await.unwrap();
    assert!(current.get("failed_digests").is_none(), "{current}");
    let failed = w
        .item(&w.service_pk(), &format!("F#{}", digest(21)))
        .await
        .expect("the failed rollout's own item");
    assert_eq!(
        (&failed["type"], &failed["deployment_id"]),
        (&json!("failed_rollout"), &json!(id))
    );
    assert_eq!(current["rolled_back_from"], digest(21).as_str());
    assert!(current.get("running").is_none(), "{current}");

    // The same digest pushed again (a new delivery, say a re-tag): not rolled out again.
    let revisions = running(&w.sdk, &w.fx).await.task_definition_arn;
    let again = w.push(&app, "latest", &digest(21)).await;
    assert_eq!(again["outcome"], "skipped", "{again}");
    assert!(again["reason"].as_str().unwrap().contains("failed before"));
    assert_eq!(running(&w.sdk, &w.fx).await.task_definition_arn, revisions);
    // ECS's rollback put the service back on its old revision (moto does not roll back, so the
    // test does what the circuit breaker would). A fix, a new digest of the tag, is rolled out.
    w.back_to_the_first_revision().await;
    assert_eq!(
        w.push(&app, "latest", &digest(22)).await["outcome"],
        "updated"
    );
}

#[tokio::test]
async fn completed_rollouts_are_kept_against_late_progress_events() {
    let w = world(&format!("{REPO}:1.0.0")).await;
    let app = w.app("semver:^1", false);
    let d = w.push(&app, "1.1.0", &digest(31)).await;
    let id = d["ecs_deployment_id"].as_str().unwrap().to_owned();
    let progress = w.state_change("SERVICE_DEPLOYMENT_IN_PROGRESS", &id, "in progress.");
    let (out, metrics) = outcome_metrics(&app, &progress).await;
    assert_eq!(
        (out["outcome"].as_str(), metrics),
        (Some("recorded"), rollouts("in-progress"))
    );
    let done = w.state_change("SERVICE_DEPLOYMENT_COMPLETED", &id, "completed.");
    let (out, metrics) = outcome_metrics(&app, &done).await;
    assert_eq!(
        (out["outcome"].as_str(), metrics),
        (Some("recorded"), rollouts("completed"))
    );
    let late = w.state_change("SERVICE_DEPLOYMENT_IN_PROGRESS", &id, "in progress.");
    let (out, metrics) = outcome_metrics(&app, &late).await;
    assert_eq!(
        (out["outcome"].as_str(), metrics),
        (Some("settled"), vec![])
    );
    let deployment = w.only_deployment().await;
    assert_eq!(deployment["state"], "completed");
    // A deployment imagehook did not start is acknowledged, not recorded, and not counted.
    let other = w.state_change("SERVICE_DEPLOYMENT_COMPLETED", "ecs-svc/1", "completed.");
    let (out, metrics) = outcome_metrics(&app, &other).await;
    assert_eq!(
        (out["outcome"].as_str(), metrics),
        (Some("not-ours"), vec![])
    );
    let current = w.item(&w.service_pk(), "CURRENT").await.unwrap();
    assert!(current.get("failed_digests").is_none(), "{current}");
    assert!(
        w.item(&w.service_pk(), &format!("F#{}", digest(31)))
            .await
            .is_none()
    );
}

/// Per repository and stage, which tag and digest went out when and to which services, newest
/// first, through the read API's handler on DynamoDB in moto.
#[tokio::test]
async fn history_lists_versions_per_stage_newest_first() {
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let rules = json!([
        {"repository": "shop/api", "tags": "semver:*", "cluster": "dev", "service": "api", "stage": "dev"},
        {"repository": "shop/api", "tags": "semver:*", "cluster": "dev", "service": "worker", "stage": "dev"},
        {"repository": "shop/api", "tags": "semver:>=1.1", "cluster": "prod", "service": "api", "stage": "prod"}
    ]);
    let app = sample_app(&sdk, &table, &rules.to_string(), DeployMode::DryRun);
    for (i, tag) in ["1.0.0", "1.1.0"].iter().enumerate() {
        let event = with_body(
            &event_file("generic-push.json"),
            &json!({"image": format!("{REPO}:{tag}"), "digest": digest(40 + i as u32),
                    "id": unique("push"), "timestamp": format!("2026-11-2{}T10:00:00Z", i + 1)}),
        );
        let reply = invoke(&app, Function::Push, &event).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        // A redelivery adds nothing to the history.
        assert_eq!(invoke(&app, Function::Push, &event).await.status, 200);
    }

    let (status, all) = images_api(&app, REPO, None).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["registry"], "registry.example.com");
    assert_eq!(all["repository"], "shop/api");
    let dev = all["stages"]["dev"].as_array().unwrap();
    assert_eq!(dev.len(), 2, "{all}");
    assert_eq!(dev[0]["tag"], "1.1.0");
    assert_eq!(dev[0]["digest"], digest(41).as_str());
    assert_eq!(dev[0]["pushed_at"], "2026-11-22T10:00:00.000000000Z");
    assert_eq!(dev[1]["tag"], "1.0.0");
    let services: Vec<&str> = dev[0]["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["api", "worker"]);
    assert_eq!(dev[0]["services"][0]["outcome"], "planned");
    let prod = all["stages"]["prod"].as_array().unwrap();
    assert_eq!(prod.len(), 1, "1.0.0 is below prod's range: {all}");
    assert_eq!(prod[0]["tag"], "1.1.0");

    let (_, only_prod) = images_api(&app, REPO, Some("prod")).await;
    assert_eq!(
        only_prod["stages"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["prod"]
    );
    let (status, none) = images_api(&app, "registry.example.com/shop/other", None).await;
    assert_eq!((status, &none["stages"]), (200, &json!({})));
    let (status, bad) = images_api(&app, &format!("{REPO}:1.0.0"), None).await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad["message"].as_str().unwrap().contains("without tag"));
}
