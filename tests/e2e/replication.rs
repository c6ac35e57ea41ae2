//! Replication awareness against moto: a push in the primary region holds the deployments of
//! services that require another region; the replication event for that region applies them,
//! once; a failed replication leaves them held with a warning.

use imagehook_core::app::config::DeployMode;
use imagehook_core::model::function::Function;
use imagehook_tests::*;
use serde_json::{Value, json};

const ACCOUNT: &str = "210987654321";
const PRIMARY: &str = "eu-central-1";
const REPO: &str = "210987654321.dkr.ecr.eu-central-1.amazonaws.com/shop/api";
const DIGEST: &str = "sha256:5a1e0b2a3d4f5e6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c";

fn ecr(detail_type: &str, region: &str, detail: Value) -> String {
    with_body(
        &event_file("ecr-push.json"),
        &json!({"version": "0", "id": unique("evb"), "detail-type": detail_type,
                "source": "aws.ecr", "account": ACCOUNT, "time": "2026-11-20T10:16:02Z",
                "region": region, "resources": [], "detail": detail}),
    )
}

fn push() -> String {
    ecr(
        "ECR Image Action",
        PRIMARY,
        json!({"result": "SUCCESS", "repository-name": "shop/api", "image-digest": DIGEST,
               "action-type": "PUSH", "image-tag": "1.1.0"}),
    )
}

fn replication(region: &str, result: &str) -> String {
    ecr(
        "ECR Replication Action",
        region,
        json!({"result": result, "repository-name": "shop/api", "image-digest": DIGEST,
               "source-account": ACCOUNT, "action-type": "REPLICATE",
               "source-region": PRIMARY, "image-tag": "1.1.0"}),
    )
}

fn outcomes(reply: &Value) -> Vec<(String, String)> {
    deployments_by_service(reply)
        .into_iter()
        .map(|(service, outcome, _)| (service, outcome))
        .collect()
}

#[tokio::test]
async fn deployments_wait_for_their_region_and_apply_on_arrival() {
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let running_image = format!("{REPO}:1.0.0");
    // us-east-1 by name, the function's own region (us-east-1 in the tests) by service-region,
    // and eu-west-1, where replication will fail.
    let east = create_service(&sdk, &running_image).await;
    let local = create_service(&sdk, &running_image).await;
    let west = create_service(&sdk, &running_image).await;
    let rule = |fx: &EcsFixture, region: &str| {
        json!({"repository": "shop/api", "tags": "semver:^1", "cluster": fx.cluster,
               "service": fx.service, "container": "api", "require_region": region})
    };
    let rules = json!([
        rule(&east, "us-east-1"),
        rule(&local, "service-region"),
        rule(&west, "eu-west-1")
    ]);
    let app = sample_app(&sdk, &table, &rules.to_string(), DeployMode::Apply);
    let before: Vec<String> = [&east, &local, &west]
        .iter()
        .map(|fx| fx.task_definition_arn.clone())
        .collect();

    // The push lands in eu-central-1 only: every deployment waits.
    let reply = invoke(&app, Function::Push, &push()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let held = outcomes(&reply.body);
    assert!(held.iter().all(|(_, o)| o == "blocked"), "{held:?}");
    let d = &reply.body["events"][0]["deployments"];
    assert!(
        d.as_array().unwrap().iter().any(|d| d["reason"]
            .as_str()
            .unwrap()
            .contains("not yet replicated to eu-west-1")),
        "{d}"
    );
    for (fx, arn) in [&east, &local, &west].iter().zip(&before) {
        assert_eq!(&running(&sdk, fx).await.task_definition_arn, arn);
    }
    let image_pk = format!("IMG#{REPO}");
    let image = get_image(&sdk, &table, &image_pk, DIGEST).await.unwrap();
    assert_eq!(image["regions"], json!([PRIMARY]));

    // It arrives in us-east-1: the two services that wait for it roll out, once.
    let arrival = replication("us-east-1", "SUCCESS");
    let reply = invoke(&app, Function::Push, &arrival).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["events"][0]["action"], "replicate");
    let mut expected = vec![
        (east.service.clone(), "updated".to_owned()),
        (local.service.clone(), "updated".to_owned()),
    ];
    expected.sort();
    assert_eq!(outcomes(&reply.body), expected, "{}", reply.body);
    for fx in [&east, &local] {
        assert_eq!(
            container_image(&running(&sdk, fx).await.task_definition, "api"),
            format!("{REPO}@{DIGEST}")
        );
    }
    assert_eq!(running(&sdk, &west).await.task_definition_arn, before[2]);
    let image = get_image(&sdk, &table, &image_pk, DIGEST).await.unwrap();
    assert_eq!(image["regions"], json!([PRIMARY, "us-east-1"]));

    // A redelivery changes nothing: no second revision.
    let east_now = running(&sdk, &east).await.task_definition_arn;
    let again = invoke(&app, Function::Push, &arrival).await;
    assert_eq!(
        again.body["events"][0]["outcome"], "duplicate",
        "{}",
        again.body
    );
    assert_eq!(running(&sdk, &east).await.task_definition_arn, east_now);

    // Replication to eu-west-1 fails: a warning, and that service keeps waiting.
    let failed = invoke(&app, Function::Push, &replication("eu-west-1", "FAILED")).await;
    assert_eq!(failed.status, 200, "{}", failed.body);
    let warning = failed.body["events"][0]["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("eu-west-1") && warning.contains("failed"),
        "{warning}"
    );
    assert_eq!(running(&sdk, &west).await.task_definition_arn, before[2]);
    let held = get_item(
        &sdk,
        &table,
        &image_pk,
        &format!("B#{DIGEST}#{}/{}", west.cluster, west.service),
    )
    .await
    .expect("still held");
    assert_eq!(held["waiting_region"], "eu-west-1");
    let image = get_image(&sdk, &table, &image_pk, DIGEST).await.unwrap();
    assert_eq!(image["replication_failures"][0]["region"], "eu-west-1");

    // A later success for eu-west-1 applies the last one.
    let reply = invoke(&app, Function::Push, &replication("eu-west-1", "SUCCESS")).await;
    assert_eq!(
        outcomes(&reply.body),
        vec![(west.service.clone(), "updated".to_owned())]
    );
}

/// ACR geo-replication: one webhook per replica, each with `?region=`. The same event id from
/// two replicas records two arrivals, not a duplicate.
#[tokio::test]
async fn acr_replica_webhooks_record_their_region() {
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let app = sample_app(&sdk, &table, "[]", DeployMode::DryRun);
    let with_region = |region: &str| {
        let mut v: Value = serde_json::from_str(&event_file("acr-push.json")).unwrap();
        // As API Gateway passes it: the raw string URL-encoded, the parameters decoded.
        v["rawQueryString"] = json!(format!("region={}", region.replace(' ', "%20")));
        v["queryStringParameters"] = json!({"region": region});
        v.to_string()
    };
    for region in ["eastus", "westeurope"] {
        let reply = invoke(&app, Function::Push, &with_region(region)).await;
        assert_eq!(
            reply.body["events"][0]["outcome"], "applied",
            "{}",
            reply.body
        );
        assert!(
            reply.body["events"][0]["id"]
                .as_str()
                .unwrap()
                .ends_with(&format!("@{region}"))
        );
    }
    let again = invoke(&app, Function::Push, &with_region("eastus")).await;
    assert_eq!(again.body["events"][0]["outcome"], "duplicate");
    let digest = body_of(&event_file("acr-push.json"))["target"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let image = get_image(&sdk, &table, "IMG#contoso.azurecr.io/shop/api", &digest)
        .await
        .unwrap();
    assert_eq!(image["regions"], json!(["eastus", "westeurope"]));
    let (status, shown) = images_api(&app, "contoso.azurecr.io/shop/api", None).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(
        shown["images"][0]["regions"],
        json!(["eastus", "westeurope"])
    );
    assert_eq!(
        shown["images"][0]["region_arrivals"][1]["region"],
        "westeurope"
    );
    let bad = invoke(&app, Function::Push, &with_region("east us")).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
}
