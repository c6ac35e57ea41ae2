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

/// Services in the destination Region pull their own replica (`…dkr.ecr.us-east-1…`), not the
/// source: a held deployment is applied with the replica's reference, a rule may name the
/// replica's registry (of this account or another), and either waits for the digest to get there.
#[tokio::test]
async fn services_pulling_a_replica_are_deployed_the_replicas_reference() {
    const EAST: &str = "210987654321.dkr.ecr.us-east-1.amazonaws.com/shop/api";
    const OTHER: &str = "123456789012.dkr.ecr.us-west-2.amazonaws.com/shop/api";
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let by_region = create_service(&sdk, &format!("{EAST}:1.0.0")).await;
    let by_registry = create_service(&sdk, &format!("{EAST}:1.0.0")).await;
    let cross_account = create_service(&sdk, &format!("{OTHER}:1.0.0")).await;
    let rules = json!([
        {"repository": "shop/api", "tags": "semver:^1", "cluster": by_region.cluster,
         "service": by_region.service, "require_region": "us-east-1"},
        {"repository": EAST, "tags": "semver:^1", "cluster": by_registry.cluster,
         "service": by_registry.service},
        {"repository": OTHER, "tags": "semver:^1", "cluster": cross_account.cluster,
         "service": cross_account.service, "container": "api"}
    ]);
    let app = sample_app(&sdk, &table, &rules.to_string(), DeployMode::Apply);

    // Pushed in eu-central-1: every one of them waits for its replica.
    let reply = invoke(&app, Function::Push, &push()).await;
    let held = outcomes(&reply.body);
    assert_eq!(held.len(), 3, "{}", reply.body);
    assert!(held.iter().all(|(_, o)| o == "blocked"), "{held:?}");

    // ECR replicates to us-east-1 of the same account.
    let reply = invoke(&app, Function::Push, &replication("us-east-1", "SUCCESS")).await;
    let mut expected = vec![
        (by_region.service.clone(), "updated".to_owned()),
        (by_registry.service.clone(), "updated".to_owned()),
    ];
    expected.sort();
    assert_eq!(outcomes(&reply.body), expected, "{}", reply.body);
    for fx in [&by_region, &by_registry] {
        assert_eq!(
            container_image(&running(&sdk, fx).await.task_definition, "api"),
            format!("{EAST}@{DIGEST}")
        );
    }

    // And to us-west-2 of another account: the event comes from there, naming its source.
    let cross = with_body(
        &event_file("ecr-push.json"),
        &json!({"version": "0", "id": unique("evb"), "detail-type": "ECR Replication Action",
                "source": "aws.ecr", "account": "123456789012", "time": "2026-11-20T10:18:00Z",
                "region": "us-west-2", "resources": [],
                "detail": {"result": "SUCCESS", "repository-name": "shop/api",
                           "image-digest": DIGEST, "source-account": ACCOUNT,
                           "action-type": "REPLICATE", "source-region": PRIMARY,
                           "image-tag": "1.1.0"}}),
    );
    let reply = invoke(&app, Function::Push, &cross).await;
    assert_eq!(
        outcomes(&reply.body),
        vec![(cross_account.service.clone(), "updated".to_owned())],
        "{}",
        reply.body
    );
    assert_eq!(
        container_image(&running(&sdk, &cross_account).await.task_definition, "api"),
        format!("{OTHER}@{DIGEST}")
    );
    let image = get_image(&sdk, &table, &format!("IMG#{REPO}"), DIGEST)
        .await
        .unwrap();
    assert_eq!(
        image["regions"],
        json!(["123456789012:us-west-2", PRIMARY, "us-east-1"])
    );
    // Each arrival records the registry its replica serves the digest from.
    for (region, registry) in [
        ("us-east-1", "210987654321.dkr.ecr.us-east-1.amazonaws.com"),
        (
            "123456789012:us-west-2",
            "123456789012.dkr.ecr.us-west-2.amazonaws.com",
        ),
    ] {
        let item = get_item(
            &sdk,
            &table,
            &format!("IMG#{REPO}"),
            &format!("D#{DIGEST}#R#{region}"),
        )
        .await
        .unwrap();
        assert_eq!(item["registry"], registry);
    }
}

/// A deployment held by a quarantine still needs its replica: the release applies it only once
/// the digest has arrived there, with the replica's reference.
#[tokio::test]
async fn a_released_digest_still_waits_for_the_replica_its_service_pulls() {
    const EAST: &str = "210987654321.dkr.ecr.us-east-1.amazonaws.com/shop/api";
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let fx = create_service(&sdk, &format!("{EAST}:1.0.0")).await;
    let rules = json!([{"repository": EAST, "tags": "semver:^1", "cluster": fx.cluster,
                        "service": fx.service}]);
    let app = sample_app(&sdk, &table, &rules.to_string(), DeployMode::Apply);
    let generic = |body: Value| with_body(&event_file("generic-quarantine.json"), &body);
    let hold = generic(
        json!({"image": format!("{REPO}@{DIGEST}"), "quarantine": true,
                               "timestamp": "2026-11-20T10:00:00Z"}),
    );
    assert_eq!(invoke(&app, Function::Quarantine, &hold).await.status, 200);
    let reply = invoke(&app, Function::Push, &push()).await;
    assert_eq!(outcomes(&reply.body)[0].1, "blocked", "{}", reply.body);

    let release = generic(
        json!({"image": format!("{REPO}@{DIGEST}"), "quarantine": false,
                                  "timestamp": "2026-11-20T10:20:00Z"}),
    );
    let reply = invoke(&app, Function::Quarantine, &release).await;
    assert!(
        reply.body["events"][0]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("still waits for the digest to arrive in us-east-1"),
        "{}",
        reply.body
    );
    assert_eq!(
        running(&sdk, &fx).await.task_definition_arn,
        fx.task_definition_arn
    );

    let reply = invoke(&app, Function::Push, &replication("us-east-1", "SUCCESS")).await;
    assert_eq!(
        outcomes(&reply.body),
        vec![(fx.service.clone(), "updated".to_owned())],
        "{}",
        reply.body
    );
    assert_eq!(
        container_image(&running(&sdk, &fx).await.task_definition, "api"),
        format!("{EAST}@{DIGEST}")
    );
}
