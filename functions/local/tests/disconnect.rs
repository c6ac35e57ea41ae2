//! `imagehook serve` finishes what a request started when the client hangs up, as a Lambda
//! invocation does when API Gateway or the sender stops waiting: the deploy is not abandoned
//! half-way with the receipt left pending.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use imagehook_tests::proxy::{Proxy, ProxyOptions};
use imagehook_tests::{
    container_image, create_service, create_table, endpoint, event_file, get_item, running, sdk,
};

const REPO: &str = "contoso.azurecr.io/shop/api";
const DIGEST: &str = "sha256:4b825dc642cb6eb9a060e54bf8d69288fbee4904b3f2e7c1d0a7f1e6c5b4a392";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_finishes_after_the_client_hangs_up() {
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let fx = create_service(&sdk, &format!("{REPO}:v1.4.1")).await;
    // ECS answers slowly, so the client is gone long before the deploy is done.
    let proxy = Proxy::start(
        &endpoint(),
        ProxyOptions {
            ecs_delay: Duration::from_millis(700),
            serialize_dynamodb_writes: false,
        },
    );
    let rules = serde_json::json!([{"repository": REPO, "tags": "v*",
        "cluster": fx.cluster, "service": fx.service}]);
    let mut imagehook = Command::new(env!("CARGO_BIN_EXE_imagehook"));
    imagehook
        .current_dir(common::root())
        .env("TABLE_NAME", &table)
        .env("AWS_ENDPOINT_URL", proxy.url())
        .env("DEPLOY_MODE", "apply")
        .env("AUTH_MODE", "none")
        .env("DEPLOY_RULES", rules.to_string())
        .env_remove("DEPLOY_RULES_FILE")
        .env_remove("WEBHOOK_SECRETS");
    let (_server, port) = common::serve(imagehook);

    let event: serde_json::Value =
        serde_json::from_str(&event_file("acr-push.json")).expect("event");
    let body = event["body"].as_str().expect("body").to_owned();
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        conn,
        "POST /push HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("request sent");
    // Hang up once the deploy has begun: ECS has been asked, and will take a while.
    let started = Instant::now();
    while proxy.count("DescribeServices") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the deploy never reached ECS"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(conn);

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let receipt = get_item(
            &sdk,
            &table,
            "EVT#acr#7f3c2a10-5b6e-4c1d-9e8f-0a1b2c3d4e5f",
            "EVT",
        )
        .await;
        let runs = container_image(&running(&sdk, &fx).await.task_definition, "api");
        if receipt.as_ref().and_then(|r| r["status"].as_str()) == Some("done")
            && runs == format!("{REPO}@{DIGEST}")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deploy was abandoned: receipt {receipt:?}, service runs {runs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(proxy.count("RegisterTaskDefinition"), 1);
    assert_eq!(proxy.count("UpdateService"), 1);
}
