//! Zero-config follow against moto's ECS: services tagged `imagehook:follow` are found by
//! ListServices and DescribeServices and rolled out without a rule; rules win over tags.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ecs::types::{ContainerDefinition, Tag};
use imagehook_core::adapters::DynamoStore;
use imagehook_core::adapters::EcsDeployer;
use imagehook_core::app::App;
use imagehook_core::app::config::DeployMode;
use imagehook_core::model::function::Function;
use imagehook_tests::*;
use serde_json::json;

const REPO: &str = "registry.example.com/shop/api";

async fn service(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    image: &str,
    tags: &[(&str, &str)],
) -> String {
    let td = ecs
        .register_task_definition()
        .family(unique("family"))
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image(image)
                .memory(128)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let name = unique("svc");
    let mut create = ecs
        .create_service()
        .cluster(cluster)
        .service_name(&name)
        .task_definition(td.task_definition().unwrap().task_definition_arn().unwrap())
        .desired_count(1);
    for (k, v) in tags {
        create = create.tags(Tag::builder().key(*k).value(*v).build());
    }
    create.send().await.unwrap();
    name
}

fn push_event(tag: &str, n: u32) -> String {
    with_body(
        &event_file("generic-push.json"),
        &json!({"image": format!("{REPO}:{tag}"), "digest": format!("sha256:{n:064x}"),
                "id": unique("push")}),
    )
}

/// A new, empty ECS cluster.
async fn new_cluster(ecs: &aws_sdk_ecs::Client) -> String {
    let cluster = unique("cluster");
    ecs.create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .unwrap();
    cluster
}

#[tokio::test]
async fn tagged_services_follow_their_repository_without_rules() {
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let (dynamo_log, ecs_log) = (CallLog::default(), CallLog::default());
    let (dynamo, ecs) = counted_clients(&sdk, &dynamo_log, &ecs_log);
    let cluster = new_cluster(&ecs).await;
    let follows = service(
        &ecs,
        &cluster,
        &format!("{REPO}:1.0.0"),
        &[
            ("imagehook:follow", "semver:^1"),
            ("imagehook:stage", "staging"),
        ],
    )
    .await;
    let untagged = service(&ecs, &cluster, &format!("{REPO}:1.0.0"), &[]).await;
    let other_repo = service(
        &ecs,
        &cluster,
        "registry.example.com/shop/web:1.0.0",
        &[("imagehook:follow", "semver:^1")],
    )
    .await;
    let ruled = service(
        &ecs,
        &cluster,
        &format!("{REPO}:1.0.0"),
        &[
            ("imagehook:follow", "semver:^1"),
            ("imagehook:stage", "from-tag"),
        ],
    )
    .await;
    let bad_tag = service(
        &ecs,
        &cluster,
        &format!("{REPO}:1.0.0"),
        &[("imagehook:follow", "semver:not a range")],
    )
    .await;

    // One rule, naming the last tagged service: it wins over that service's own tags.
    let rules = json!([{"repository": "shop/api", "tags": "semver:*", "cluster": cluster,
                        "service": ruled, "stage": "from-rule"}]);
    let mut config = open_config(&table, &rules.to_string(), DeployMode::Apply);
    config.follow_clusters = vec![cluster.clone()];
    let app = App::new(
        config,
        Arc::new(DynamoStore::new(dynamo, &table)),
        Arc::new(
            EcsDeployer::new(ecs.clone())
                .with_discovery(vec![cluster.clone()], Duration::from_secs(60)),
        ),
    );
    let before_untagged = running_image(&ecs, &cluster, &untagged).await;

    let reply = invoke(&app, Function::Push, &push_event("1.1.0", 1)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let mut expected = vec![
        (follows.clone(), "updated".to_owned(), json!("staging")),
        (ruled.clone(), "updated".to_owned(), json!("from-rule")),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        deployments_by_service(&reply.body),
        expected,
        "{}",
        reply.body
    );
    let pinned = format!("{REPO}@sha256:{:064x}", 1);
    assert_eq!(running_image(&ecs, &cluster, &follows).await, pinned);
    assert_eq!(
        running_image(&ecs, &cluster, &untagged).await,
        before_untagged
    );
    assert_eq!(
        running_image(&ecs, &cluster, &other_repo).await,
        "registry.example.com/shop/web:1.0.0"
    );
    assert_eq!(
        running_image(&ecs, &cluster, &bad_tag).await,
        format!("{REPO}:1.0.0")
    );
    let calls = ecs_log.take();
    assert_eq!(
        calls.iter().filter(|c| *c == "ListServices").count(),
        1,
        "{calls:?}"
    );

    // Outside the tag's range: only the rule's service (semver:*) takes it. Discovery is
    // cached: no second ListServices.
    let reply = invoke(&app, Function::Push, &push_event("2.0.0", 2)).await;
    assert_eq!(
        deployments_by_service(&reply.body),
        vec![(ruled.clone(), "updated".to_owned(), json!("from-rule"))]
    );
    assert!(!ecs_log.take().contains(&"ListServices".to_owned()));
    let _ = dynamo_log.take();
}

async fn running_image(ecs: &aws_sdk_ecs::Client, cluster: &str, service: &str) -> String {
    let svc = ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .send()
        .await
        .unwrap();
    let td = ecs
        .describe_task_definition()
        .task_definition(svc.services()[0].task_definition().unwrap())
        .send()
        .await
        .unwrap();
    td.task_definition().unwrap().container_definitions()[0]
        .image()
        .unwrap()
        .to_owned()
}

/// A service that follows a repository by its tag, with no rule naming it, can be deployed by
/// hand: the control function finds it as the push function does (ListServices on the
/// followed clusters), and one that follows nothing stays unknown.
#[tokio::test]
async fn a_followed_service_is_deployed_by_hand_through_the_control_api() {
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let ecs = ecs_client(&sdk);
    let cluster = new_cluster(&ecs).await;
    let follows = service(
        &ecs,
        &cluster,
        &format!("{REPO}:1.0.0"),
        &[("imagehook:follow", "semver:^1")],
    )
    .await;
    let untagged = service(&ecs, &cluster, &format!("{REPO}:1.0.0"), &[]).await;
    let mut config = open_config(&table, "[]", DeployMode::Apply);
    config.follow_clusters = vec![cluster.clone()];
    let app = App::new(
        config,
        Arc::new(DynamoStore::new(dynamo_client(&sdk), &table)),
        Arc::new(
            EcsDeployer::new(ecs.clone())
                .with_discovery(vec![cluster.clone()], Duration::from_secs(60)),
        ),
    );
    let caller = Some("arn:aws:iam::123456789012:user/ops");
    let pinned = format!("{REPO}@sha256:{:064x}", 3);
    let body = json!({"image": pinned}).to_string();

    let path = format!("/services/{cluster}/{follows}/deploy");
    let (status, done) = control_api(&app, "POST", &path, Some(&body), caller).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["outcome"], "applied", "{done}");
    assert_eq!(running_image(&ecs, &cluster, &follows).await, pinned);

    let path = format!("/services/{cluster}/{untagged}/deploy");
    let (status, refused) = control_api(&app, "POST", &path, Some(&body), caller).await;
    assert_eq!(
        (status, &refused["error"]),
        (404, &json!("unknown_service")),
        "{refused}"
    );
    assert_eq!(
        running_image(&ecs, &cluster, &untagged).await,
        format!("{REPO}:1.0.0")
    );
}
