//! Pushes without a digest, pinned by resolving the tag at the registry (a loopback stand-in of
//! the Distribution API, `imagehook_tests::registry`): services are deployed `repo@digest`, the
//! event id takes the digest (a new image under the same tag is a new push, a redelivery is
//! still a duplicate), and when the registry cannot say, the push deploys by tag and the
//! response says why.

use std::sync::Arc;
use std::time::Duration;

use imagehook_core::adapters::secrets::SecretsManager;
use imagehook_core::app::config::{DeployMode, RegistryConfig};
use imagehook_core::app::{App, InitError, registry_resolver};
use imagehook_core::auth::AuthMode;
use imagehook_core::model::function::Function;
use imagehook_core::ports::resolver::Resolver;
use imagehook_tests::calls::secrets_client;
use imagehook_tests::registry::{Auth, DOCKER_MANIFEST, OCI_INDEX, Registry};
use imagehook_tests::*;
use serde_json::{Value, json};

const REPO: &str = "org/app";

/// The push function's resolver for the stand-in, as its init builds it.
async fn resolver(
    registry: &Registry,
    timeout: Duration,
    credentials_arn: Option<String>,
) -> Result<Option<Arc<dyn Resolver>>, InitError> {
    let config = RegistryConfig {
        resolve: true,
        timeout,
        insecure_hosts: vec![registry.host()],
        credentials_arn,
    };
    let secrets = SecretsManager::new(secrets_client(&sdk().await));
    as_function(
        Function::Push.name(),
        registry_resolver(&config, Some(&secrets)),
    )
    .await
}

/// The resolver with no logins, waiting up to a second.
async fn anonymous(registry: &Registry) -> Arc<dyn Resolver> {
    resolver(registry, Duration::from_secs(1), None)
        .await
        .unwrap()
        .unwrap()
}

/// Keeps `logins` in Secrets Manager as an operator would (not a function's call: not
/// recorded); the secret's ARN.
async fn keep_logins(logins: &str) -> String {
    aws_sdk_secretsmanager::Client::new(&sdk().await)
        .create_secret()
        .name(unique("imagehook/registries"))
        .secret_string(logins)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap()
}

fn push_app(sdk: &aws_config::SdkConfig, table: &str, rules: &Value) -> App {
    app(AppSpec {
        table,
        rules: &rules.to_string(),
        auth: AuthMode::Token,
        secrets: &["sample-webhook-token"],
        deploy_mode: DeployMode::Apply,
        dynamo_sdk: sdk,
        ecs_sdk: sdk,
    })
}

fn rule(fx: &EcsFixture, repository: &str, tags: &str) -> Value {
    json!({"repository": repository, "tags": tags, "cluster": fx.cluster,
           "service": fx.service, "container": "api"})
}

/// Quay's repo_push for `tags` of `host/org/app`.
fn quay_push(host: &str, tags: &[&str]) -> String {
    with_body(
        &event_file("quay-push.json"),
        &json!({"repository": REPO, "namespace": "org", "name": "app",
                "docker_url": format!("{host}/{REPO}"),
                "homepage": format!("https://{host}/repository/{REPO}"),
                "updated_tags": tags}),
    )
}

/// A generic push by tag, with the CI run's id and no digest.
fn generic_push(host: &str, id: &str, tag: &str) -> String {
    with_body(
        &event_file("generic-push-unpinned.json"),
        &json!({"id": id, "image": format!("{host}/{REPO}:{tag}")}),
    )
}

async fn app_image(sdk: &aws_config::SdkConfig, fx: &EcsFixture) -> String {
    container_image(&running(sdk, fx).await.task_definition, "api")
}

/// A stand-in that hands out anonymous tokens, with `latest` pushed from `seed`, and a service
/// following `latest` through an app that resolves there.
struct Followed {
    registry: Registry,
    host: String,
    name: String,
    w: World,
    app: App,
    /// The digest `latest` points at.
    first: String,
}

async fn followed(seed: &str) -> Followed {
    let registry = Registry::start(Auth::Token { login: None });
    let host = registry.host();
    let name = format!("{host}/{REPO}");
    let first = registry.push(REPO, "latest", OCI_INDEX, seed);
    let w = world(&format!("{name}:old")).await;
    let app = push_app(&w.sdk, &w.table, &json!([rule(&w.fx, &name, "latest")]))
        .with_resolver(anonymous(&registry).await);
    Followed {
        registry,
        host,
        name,
        w,
        app,
        first,
    }
}

fn warnings(event: &Value) -> Vec<String> {
    event["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|s| s.as_str())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn quay_push_of_three_tags_deploys_each_service_pinned_by_digest() {
    let registry = Registry::start(Auth::Token { login: None });
    let host = registry.host();
    let name = format!("{host}/{REPO}");
    let one = registry.push(REPO, "latest", OCI_INDEX, "build-1");
    assert_eq!(registry.push(REPO, "v1", OCI_INDEX, "build-1"), one);
    let two = registry.push(REPO, "stable", DOCKER_MANIFEST, "build-0");
    let sdk = sdk().await;
    let table = create_table(&sdk).await;
    let mut services = Vec::new();
    for _ in 0..3 {
        services.push(create_service(&sdk, &format!("{name}:old")).await);
    }
    let rules = json!([
        rule(&services[0], &name, "latest"),
        rule(&services[1], &name, "v1"),
        rule(&services[2], &name, "stable"),
    ]);
    let app = push_app(&sdk, &table, &rules).with_resolver(anonymous(&registry).await);

    let reply = invoke(
        &app,
        Function::Push,
        &quay_push(&host, &["latest", "v1", "stable"]),
    )
    .await;

    assert_eq!(reply.status, 200, "{}", reply.body);
    let events = reply.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    for (event, (tag, digest)) in
        events
            .iter()
            .zip([("latest", &one), ("v1", &one), ("stable", &two)])
    {
        assert_eq!(event["outcome"], "applied", "{event}");
        assert_eq!(event["tag"], tag);
        assert_eq!(event["digest"], digest.as_str(), "{event}");
        // Quay's content id, the digest, then the redelivery window (pipeline::identity).
        assert!(
            event["id"]
                .as_str()
                .unwrap()
                .contains(&format!("@{digest}@")),
            "{event}"
        );
        assert_eq!(event["deployments"][0]["outcome"], "updated", "{event}");
        assert!(
            warnings(event).iter().all(|w| !w.contains("not pinned")),
            "{event}"
        );
    }
    for (fx, digest) in services.iter().zip([&one, &one, &two]) {
        assert_eq!(app_image(&sdk, fx).await, format!("{name}@{digest}"));
    }
    // The tag is recorded at its digest, and the anonymous token flow was followed: a HEAD, a
    // 401 with a Bearer challenge, a token for the pull scope, the HEAD again with it.
    let tag = get_item(&sdk, &table, &format!("IMG#{name}"), "T#stable")
        .await
        .unwrap();
    assert_eq!(tag["digest"], two.as_str());
    assert!(tag.get("unpinned").is_none(), "{tag}");
    let asked = registry.requests();
    let tokens = asked.iter().filter(|r| r.path == "/token").count();
    // Each tag: a HEAD refused with the challenge, a token, the HEAD again; or, once a token is
    // kept for the repository, one HEAD with it.
    assert!((1..=3).contains(&tokens), "{asked:?}");
    let heads: Vec<_> = asked.iter().filter(|r| r.method == "HEAD").collect();
    assert_eq!(heads.len(), 3 + tokens, "{asked:?}");
    assert!(heads.iter().all(|r| {
        r.accept
            .as_deref()
            .is_some_and(|a| a.contains(OCI_INDEX) && a.contains(DOCKER_MANIFEST))
    }));
    assert_eq!(
        heads
            .iter()
            .filter(|r| r
                .authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("Bearer ")))
            .count(),
        3
    );
}

#[tokio::test]
async fn tags_that_resolve_to_one_digest_roll_a_service_out_once() {
    let registry = Registry::start(Auth::Open);
    let host = registry.host();
    let name = format!("{host}/{REPO}");
    let digest = registry.push(REPO, "latest", OCI_INDEX, "build-7");
    registry.push(REPO, "v7", OCI_INDEX, "build-7");
    registry.push(REPO, "stable", OCI_INDEX, "build-7");
    let w = world(&format!("{name}:old")).await;
    let app = push_app(&w.sdk, &w.table, &json!([rule(&w.fx, &name, "*")]))
        .with_resolver(anonymous(&registry).await);
    let before = revisions(&w.sdk, &w.fx).await;

    let reply = invoke(
        &app,
        Function::Push,
        &quay_push(&host, &["latest", "v7", "stable"]),
    )
    .await;

    assert_eq!(reply.status, 200, "{}", reply.body);
    let outcomes: Vec<_> = reply.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["digest"].as_str().unwrap().to_owned(),
                e["deployments"][0]["outcome"].clone(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            (digest.clone(), json!("updated")),
            (digest.clone(), json!("superseded")),
            (digest.clone(), json!("superseded")),
        ]
    );
    let first = reply.body["events"][0]["id"].as_str().unwrap();
    for e in &reply.body["events"].as_array().unwrap()[1..] {
        let why = e["deployments"][0]["reason"].as_str().unwrap();
        assert!(
            why.starts_with(&format!("quay#{first} brings "))
                && why.ends_with("the same digest: it is rolled out once, by that push"),
            "{why}"
        );
    }
    assert_eq!(revisions(&w.sdk, &w.fx).await, before + 1);
    assert_eq!(app_image(&w.sdk, &w.fx).await, format!("{name}@{digest}"));
}

#[tokio::test]
async fn a_re_push_of_a_tag_with_a_new_image_is_applied_and_deploys_the_new_digest() {
    let Followed {
        registry,
        host,
        name,
        w,
        app,
        first,
    } = followed("run-42-attempt-1").await;
    // A CI run re-run: the same run id, the same tag, a new image.
    let body = generic_push(&host, "run-42", "latest");

    let reply = invoke(&app, Function::Push, &body).await;
    assert_eq!(
        reply.body["events"][0]["outcome"], "applied",
        "{}",
        reply.body
    );
    assert_eq!(app_image(&w.sdk, &w.fx).await, format!("{name}@{first}"));

    let second = registry.push(REPO, "latest", OCI_INDEX, "run-42-attempt-2");
    let reply = invoke(&app, Function::Push, &body).await;
    let e = &reply.body["events"][0];
    assert_eq!(e["outcome"], "applied", "{e}");
    assert_eq!(e["digest"], second.as_str());
    assert_eq!(e["id"], format!("run-42@{second}"));
    assert_eq!(e["deployments"][0]["outcome"], "updated", "{e}");
    assert_eq!(app_image(&w.sdk, &w.fx).await, format!("{name}@{second}"));
    let tag = w.item(&format!("IMG#{name}"), "T#latest").await.unwrap();
    assert_eq!(tag["digest"], second.as_str());
    assert_eq!(tag["previous_digest"], first.as_str());

    // The sender's retry of that delivery: the same image, so the same event.
    let reply = invoke(&app, Function::Push, &body).await;
    assert_eq!(
        reply.body["events"][0]["outcome"], "duplicate",
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn a_redelivered_quay_notification_is_a_duplicate_but_a_new_image_under_it_is_applied() {
    let Followed {
        registry,
        host,
        name,
        w,
        app,
        first,
    } = followed("a").await;
    let notification = quay_push(&host, &["latest"]);

    let reply = invoke(&app, Function::Push, &notification).await;
    assert_eq!(
        reply.body["events"][0]["outcome"], "applied",
        "{}",
        reply.body
    );
    let after_first = revisions(&w.sdk, &w.fx).await;

    // Quay's retry: the same body, the same image.
    let reply = invoke(&app, Function::Push, &notification).await;
    assert_eq!(
        reply.body["events"][0]["outcome"], "duplicate",
        "{}",
        reply.body
    );
    assert_eq!(revisions(&w.sdk, &w.fx).await, after_first);
    assert_eq!(app_image(&w.sdk, &w.fx).await, format!("{name}@{first}"));

    // A new image pushed under the tag minutes later: Quay's notification reads the same.
    let second = registry.push(REPO, "latest", OCI_INDEX, "b");
    let reply = invoke(&app, Function::Push, &notification).await;
    let e = &reply.body["events"][0];
    assert_eq!(e["outcome"], "applied", "{e}");
    assert_eq!(e["digest"], second.as_str());
    assert_eq!(e["deployments"][0]["outcome"], "updated", "{e}");
    assert_eq!(app_image(&w.sdk, &w.fx).await, format!("{name}@{second}"));
    // The token the first delivery fetched served the other two (it lives 300 s).
    let asked = registry.requests();
    assert_eq!(
        asked.iter().filter(|r| r.path == "/token").count(),
        1,
        "{asked:?}"
    );
    assert_eq!(asked.iter().filter(|r| r.method == "HEAD").count(), 4);
}

#[tokio::test]
async fn a_private_repository_is_resolved_with_the_login_kept_in_secrets_manager() {
    let login = ("org+robot".to_owned(), "robot-password".to_owned());
    for auth in [
        Auth::Token {
            login: Some(login.clone()),
        },
        Auth::Basic {
            login: login.clone(),
        },
    ] {
        let registry = Registry::start(auth.clone());
        let host = registry.host();
        let name = format!("{host}/{REPO}");
        let digest = registry.push(REPO, "latest", OCI_INDEX, "private");
        let arn = keep_logins(
            &json!({host.clone(): {"username": login.0, "password": login.1}}).to_string(),
        )
        .await;
        let w = world(&format!("{name}:old")).await;
        let rules = json!([rule(&w.fx, &name, "latest")]);

        // Without the login, then with it.
        let mut answers = Vec::new();
        for (logins, id) in [(None, "anon"), (Some(arn.clone()), "robot")] {
            let resolver = resolver(&registry, Duration::from_secs(1), logins).await;
            let app = push_app(&w.sdk, &w.table, &rules).with_resolver(resolver.unwrap().unwrap());
            let reply = invoke(&app, Function::Push, &generic_push(&host, id, "latest")).await;
            answers.push((reply.body, app_image(&w.sdk, &w.fx).await));
        }
        // Without it the push is deployed by tag, and the response says why.
        let (anonymous, image) = &answers[0];
        let e = &anonymous["events"][0];
        assert_eq!(e["outcome"], "applied", "{e}");
        let said = warnings(e);
        assert!(
            said[0].starts_with(&format!(
                "could not resolve {name}:latest to a digest: unauthorized: "
            )) && said[0].contains("REGISTRY_CREDENTIALS_ARN")
                && said[0].ends_with("; deployed by tag, not pinned"),
            "{auth:?}: {said:?}"
        );
        assert_eq!(image, &format!("{name}:latest"));
        let (reply, image) = &answers[1];
        assert_eq!(
            reply["events"][0]["digest"],
            digest.as_str(),
            "{auth:?}: {reply}"
        );
        assert_eq!(image, &format!("{name}@{digest}"));
        // The login never shows, in the answer or in an error.
        assert!(!reply.to_string().contains(&login.1));
    }

    // A secret that is not a map of logins stops the start, naming the secret, not its value.
    let registry = Registry::start(Auth::Open);
    let arn = keep_logins(r#"{"quay.io": "robot-password"}"#).await;
    let e = resolver(&registry, Duration::from_secs(1), Some(arn.clone()))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("REGISTRY_CREDENTIALS_ARN") && e.contains(&arn),
        "{e}"
    );
    assert!(!e.contains("robot-password"), "{e}");
}

#[tokio::test]
async fn when_the_registry_cannot_say_the_push_deploys_by_tag_and_says_why() {
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let missing = Registry::start(Auth::Token { login: None });
    missing.push(REPO, "other", OCI_INDEX, "x");
    let slow = Registry::start(Auth::Open);
    slow.push(REPO, "latest", OCI_INDEX, "slow");
    slow.set_delay(Duration::from_secs(3));
    let budget = Duration::from_millis(300);
    let down_resolver = {
        let config = RegistryConfig {
            resolve: true,
            timeout: budget,
            insecure_hosts: vec![down.clone()],
            credentials_arn: None,
        };
        registry_resolver(&config, None).await.unwrap().unwrap()
    };
    let cases = [
        (down.clone(), down_resolver, "cannot connect: "),
        (
            missing.host(),
            resolver(&missing, budget, None).await.unwrap().unwrap(),
            "not found: HTTP 404",
        ),
        (
            slow.host(),
            resolver(&slow, budget, None).await.unwrap().unwrap(),
            "timed out after 300 ms",
        ),
    ];
    for (host, resolver, cause) in cases {
        let name = format!("{host}/{REPO}");
        let w = world(&format!("{name}:old")).await;
        let app = push_app(&w.sdk, &w.table, &json!([rule(&w.fx, &name, "latest")]))
            .with_resolver(resolver);
        let started = std::time::Instant::now();

        let reply = invoke(&app, Function::Push, &quay_push(&host, &["latest"])).await;

        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{cause}: {:?}",
            started.elapsed()
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        let e = &reply.body["events"][0];
        assert_eq!(e["outcome"], "applied", "{e}");
        assert!(e.get("digest").is_none_or(Value::is_null), "{e}");
        assert_eq!(e["deployments"][0]["outcome"], "updated", "{e}");
        let said = warnings(e);
        assert_eq!(
            said.iter().filter(|w| w.contains("not pinned")).count(),
            1,
            "{said:?}"
        );
        assert!(
            said[0].starts_with(&format!(
                "could not resolve {name}:latest to a digest: {cause}"
            )) && said[0].ends_with("; deployed by tag, not pinned"),
            "{said:?}"
        );
        assert_eq!(app_image(&w.sdk, &w.fx).await, format!("{name}:latest"));

        // Quay's retry: still unresolved, so identified as before, a duplicate that deploys
        // nothing, and says so.
        let reply = invoke(&app, Function::Push, &quay_push(&host, &["latest"])).await;
        let e = &reply.body["events"][0];
        assert_eq!(e["outcome"], "duplicate", "{e}");
        let said = warnings(e);
        assert!(
            said[0].starts_with(&format!(
                "could not resolve {name}:latest to a digest: {cause}"
            )) && said[0].ends_with("; recorded by tag, not pinned"),
            "{said:?}"
        );
    }
}
