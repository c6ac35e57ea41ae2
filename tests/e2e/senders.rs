//! What each sender needs, against moto: a registry that retries every refusal for ever
//! (CNCF Distribution) has the events imagehook cannot accept rejected in a 200 while the rest of
//! its batch goes on; one registry under several names is one registry; signature, attestation
//! and SBOM tags are never deployed unless a rule asks.

use imagehook_core::app::config::{DeployMode, RegistryAliases};
use imagehook_core::auth::{AuthMode, sign_standard_webhooks};
use imagehook_core::model::event::Timestamp;
use imagehook_core::model::function::Function;
use imagehook_tests::*;
use serde_json::{Value, json};

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

/// One Distribution event: a manifest push (or a delete by digest) made through `host`.
fn dist_event(id: &str, action: &str, host: &str, tag: &str, digest: &str, at: &str) -> Value {
    json!({"id": id, "timestamp": at, "action": action,
           "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "digest": digest, "size": 1609, "repository": "shop/api", "tag": tag,
                      "url": format!("https://{host}/v2/shop/api/manifests/{digest}")},
           "request": {"id": format!("r-{id}"), "host": host, "method": "PUT"}})
}

fn envelope(events: Vec<Value>) -> String {
    with_body(
        &event_file("distribution-push.json"),
        &json!({ "events": events }),
    )
}

fn outcomes(reply: &Value) -> Vec<(String, String)> {
    reply["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["outcome"].as_str().unwrap().to_owned(),
                e["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_refused_event_does_not_hold_up_a_registrys_queue() {
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let app = sample_app(&sdk, &table, "[]", DeployMode::DryRun);
    let future = Timestamp::now()
        .plus(std::time::Duration::from_secs(7200))
        .to_string();
    let batch = envelope(vec![
        // What nginx sends with proxy_pass when Host is not forwarded.
        dist_event(
            "e1",
            "push",
            "shop_registry:5000",
            "1.0.0",
            D1,
            "2026-11-20T10:00:00Z",
        ),
        dist_event(
            "e2",
            "push",
            "[fd00::5]:5000",
            "1.0.0",
            D2,
            "2026-11-20T10:00:01Z",
        ),
        dist_event("e3", "push", "registry.example.com", "1.0.1", D3, &future),
        dist_event(
            "e4",
            "push",
            "registry.example.com",
            "1.0.2",
            D3,
            "2026-11-20T10:00:02Z",
        ),
    ]);
    let reply = invoke(&app, Function::Push, &batch).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let got = outcomes(&reply.body);
    assert_eq!(got[0].0, "rejected", "{got:?}");
    assert!(got[0].1.contains("proxy_set_header Host"), "{}", got[0].1);
    assert_eq!(reply.body["events"][0]["id"], "e1");
    // An IPv6 literal is a registry name the reference grammar accepts.
    assert_eq!(got[1].0, "applied", "{got:?}");
    assert_eq!(reply.body["events"][1]["registry"], "[fd00::5]:5000");
    assert_eq!(got[2].0, "rejected", "{got:?}");
    assert!(
        got[2].1.contains("correct the sender's clock"),
        "{}",
        got[2].1
    );
    assert_eq!(got[3].0, "applied", "{got:?}");
    // Nothing of the rejected ones is recorded; the others are.
    assert!(
        get_image(&sdk, &table, "IMG#[fd00::5]:5000/shop/api", D2)
            .await
            .is_some()
    );
    assert!(
        get_item(&sdk, &table, "IMG#registry.example.com/shop/api", "T#1.0.1")
            .await
            .is_none()
    );

    // A clock a little fast is outlived by the registry's retries: 503, asked again, not lost.
    let soon = Timestamp::now()
        .plus(std::time::Duration::from_secs(30 * 60))
        .to_string();
    let reply = invoke(
        &app,
        Function::Push,
        &envelope(vec![dist_event(
            "e5",
            "push",
            "registry.example.com",
            "1.0.3",
            D3,
            &soon,
        )]),
    )
    .await;
    assert_eq!(
        (reply.status, reply.body["error"].as_str()),
        (503, Some("time_in_future")),
        "{}",
        reply.body
    );

    // A wrong webhook URL is a setup fault every event repeats: it stays a 400.
    let mut bad_url: Value = serde_json::from_str(&batch).unwrap();
    bad_url["rawQueryString"] = json!("region=not%20a%20region");
    bad_url["queryStringParameters"] = json!({"region": "not a region"});
    let reply = invoke(&app, Function::Push, &bad_url.to_string()).await;
    assert_eq!(reply.status, 400, "{}", reply.body);

    // A body that is no envelope at all is rejected too, in a 200.
    let broken = with_body(
        &event_file("distribution-push.json"),
        &json!({"events": "not a list"}),
    );
    let reply = invoke(&app, Function::Push, &broken).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["events"][0]["outcome"], "rejected");

    // A wrong token is still a 401: the sender's retries must keep failing loudly.
    let mut unsigned: Value = serde_json::from_str(&batch).unwrap();
    unsigned["headers"]["authorization"] = json!("Bearer wrong");
    let reply = invoke(&app, Function::Push, &unsigned.to_string()).await;
    assert_eq!(reply.status, 401, "{}", reply.body);

    // A sender that does not retry refusals still gets the precise 4xx.
    let generic = with_body(
        &event_file("generic-push.json"),
        &json!({"image": "registry.example.com/shop/api:1", "digest": "sha256:12"}),
    );
    let reply = invoke(&app, Function::Push, &generic).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
}

#[tokio::test]
async fn one_registry_under_two_names_is_one_registry() {
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let fx = create_service(&sdk, "registry.example.com/shop/api:0.9.0").await;
    // A service whose task definition names the registry by an alias keeps that name.
    let by_alias = create_service(&sdk, "localhost:5000/shop/api:0.9.0").await;
    // A host-less rule: the deployed reference must be one the container runs.
    let rules = json!([{"repository": "shop/api", "cluster": fx.cluster,
                        "service": fx.service},
                       {"repository": "shop/api", "cluster": by_alias.cluster,
                        "service": by_alias.service}])
    .to_string();
    let aliases = RegistryAliases::parse(
        "localhost:5000=registry.example.com,127.0.0.1:5000=registry.example.com",
    )
    .unwrap();
    let app = app_with_aliases(
        AppSpec {
            table: &table,
            rules: &rules,
            auth: AuthMode::Token,
            secrets: &["sample-webhook-token"],
            deploy_mode: DeployMode::Apply,
            dynamo_sdk: &sdk,
            ecs_sdk: &sdk,
        },
        aliases,
    );

    let push = envelope(vec![dist_event(
        "p1",
        "push",
        "localhost:5000",
        "1.0.0",
        D1,
        "2026-11-20T10:00:00Z",
    )]);
    let reply = invoke(&app, Function::Push, &push).await;
    assert_eq!(reply.body["events"][0]["registry"], "registry.example.com");
    let outcomes = deployments_by_service(&reply.body);
    assert!(
        outcomes.iter().all(|(_, o, _)| o == "updated"),
        "{}",
        reply.body
    );
    assert_eq!(
        container_image(&running(&sdk, &fx).await.task_definition, "api"),
        format!("registry.example.com/shop/api@{D1}")
    );
    assert_eq!(
        container_image(&running(&sdk, &by_alias).await.task_definition, "api"),
        format!("localhost:5000/shop/api@{D1}")
    );

    let delete = envelope(vec![dist_event(
        "d1",
        "delete",
        "127.0.0.1:5000",
        "",
        D1,
        "2026-11-20T11:00:00Z",
    )]);
    let reply = invoke(&app, Function::Delete, &delete).await;
    assert_eq!(
        reply.body["events"][0]["outcome"], "applied",
        "{}",
        reply.body
    );
    let image = get_image(&sdk, &table, "IMG#registry.example.com/shop/api", D1)
        .await
        .unwrap();
    assert_eq!(image["status"], "deleted");
    let items = all_items(&sdk, &table).await;
    assert!(
        items
            .iter()
            .all(|i| !i["PK"].as_str().unwrap().contains("127.0.0.1")
                && !i["PK"].as_str().unwrap().contains("localhost")),
        "records under an alias"
    );
}

#[tokio::test]
async fn signatures_attestations_and_sboms_are_never_deployed_unless_a_rule_asks() {
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let fx = create_service(&sdk, "registry.example.com/shop/api:0.9.0").await;
    let opted = create_service(&sdk, "registry.example.com/shop/api:0.9.0").await;
    let rules = json!([
        {"repository": "shop/api", "tags": "*", "cluster": fx.cluster, "service": fx.service},
        {"repository": "shop/api", "cluster": opted.cluster, "service": opted.service,
         "artifacts": true}
    ])
    .to_string();
    let app = sample_app(&sdk, &table, &rules, DeployMode::Apply);
    let sig = format!("sha256-{}.sig", &D1[7..]);
    let reply = invoke(
        &app,
        Function::Push,
        &envelope(vec![dist_event(
            "s1",
            "push",
            "registry.example.com",
            &sig,
            D2,
            "2026-11-20T10:00:00Z",
        )]),
    )
    .await;
    let deployments = deployments_by_service(&reply.body);
    assert_eq!(deployments.len(), 1, "{}", reply.body);
    assert_eq!(deployments[0].0, opted.service);
    assert_eq!(
        running(&sdk, &fx).await.task_definition_arn,
        fx.task_definition_arn
    );

    // With no rule opting in, the event is ignored and nothing is recorded.
    let plain = sample_app(
        &sdk,
        &table,
        &json!([{"repository": "shop/api", "cluster": fx.cluster, "service": fx.service}])
            .to_string(),
        DeployMode::Apply,
    );
    let att = format!("sha256-{}.att", &D1[7..]);
    let reply = invoke(
        &plain,
        Function::Push,
        &envelope(vec![dist_event(
            "s2",
            "push",
            "registry.example.com",
            &att,
            D3,
            "2026-11-20T10:00:00Z",
        )]),
    )
    .await;
    let e = &reply.body["events"][0];
    assert_eq!(e["outcome"], "ignored", "{e}");
    assert!(e["reason"].as_str().unwrap().contains("attestation"), "{e}");
    assert!(
        get_image(&sdk, &table, "IMG#registry.example.com/shop/api", D3)
            .await
            .is_none()
    );
    assert_eq!(
        running(&sdk, &fx).await.task_definition_arn,
        fx.task_definition_arn
    );
}

/// Sender fixes, through the real handler: Svix's own header names verify, an unknown Standard
/// Webhooks type is refused by name, an npm package is never an image, and a Harbor
/// `resource_url` naming another repository is refused.
#[tokio::test]
async fn each_sender_is_read_the_way_it_sends() {
    // Svix: svix-id / svix-timestamp / svix-signature.
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let signed = crate::edge::app_with(AuthMode::StandardWebhooks, &[secret]);
    let now = time_now();
    let svix = |body: &str, id: &str| {
        let mut v: Value = serde_json::from_str(&event_file("generic-push.json")).unwrap();
        v["body"] = json!(body);
        v["headers"] = json!({
            "content-type": "application/json",
            "svix-id": id,
            "svix-timestamp": now.to_string(),
            "svix-signature": sign_standard_webhooks(secret, id, now, body.as_bytes()).unwrap(),
        });
        v.to_string()
    };
    let pushed = json!({"type": "image.pushed", "timestamp": "2026-11-20T10:00:00Z",
                        "data": {"image": "registry.example.com/shop/api:1.0.0", "digest": D1}})
    .to_string();
    let reply = invoke(&signed, Function::Push, &svix(&pushed, "msg_svix_1")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["events"][0]["outcome"], "applied");
    assert_eq!(reply.body["events"][0]["id"], "msg_svix_1");
    let mut forged: Value = serde_json::from_str(&svix(&pushed, "msg_svix_2")).unwrap();
    forged["headers"]["svix-signature"] = json!("v1,AAAA");
    let reply = invoke(&signed, Function::Push, &forged.to_string()).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    let unknown = json!({"type": "contact.updated", "timestamp": "2026-11-20T10:00:00Z",
                         "data": {"id": "c-1"}})
    .to_string();
    let reply = invoke(&signed, Function::Push, &svix(&unknown, "msg_svix_3")).await;
    assert_eq!(
        (reply.status, reply.body["error"].as_str()),
        (400, Some("invalid_event")),
        "{}",
        reply.body
    );
    assert!(
        reply.body["message"]
            .as_str()
            .unwrap()
            .contains("contact.updated")
    );

    let open = crate::edge::app_with(AuthMode::Token, &["sample-webhook-token"]);
    // GitHub: an npm package whose ecosystem says docker is an npm package.
    let github = event_file("github-push.json");
    let mut body = body_of(&github);
    body["package"]["package_type"] = json!("npm");
    body["package"]["ecosystem"] = json!("docker");
    let mut v: Value = serde_json::from_str(&with_body(&github, &body)).unwrap();
    v["headers"]
        .as_object_mut()
        .unwrap()
        .remove("x-hub-signature-256");
    let reply = invoke(&open, Function::Push, &v.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.body["events"][0]["outcome"], "ignored",
        "{}",
        reply.body
    );

    // Harbor: the repository of `resource_url` must be `repo_full_name`.
    let harbor = event_file("harbor-push.json");
    let mut body = body_of(&harbor);
    body["event_data"]["resources"][0]["resource_url"] = json!("harbor.example.com/shop/web:1.5.0");
    let reply = invoke(&open, Function::Push, &with_body(&harbor, &body)).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body["message"].as_str().unwrap().contains("shop/web"));
}
