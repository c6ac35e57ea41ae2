//! The webhook secret kept in Secrets Manager (WEBHOOK_SECRETS_ARN), read at init through the
//! real SDK client against moto: each webhook function reads it once and accepts `current` and
//! `previous`; a new execution environment reads a rotation, a pinned version
//! (WEBHOOK_SECRETS_VERSION) is read as pinned; a secret that is missing or malformed stops the
//! start, with a message that names the secret and never shows its value.

use std::collections::HashMap;

use imagehook_core::adapters::secrets::SecretsManager;
use imagehook_core::app::config::{Config, Defaults};
use imagehook_core::app::{InitError, config_with_secrets};
use imagehook_core::auth::Presented;
use imagehook_core::model::function::Function;
use imagehook_tests::calls::{as_function, secrets_client};
use imagehook_tests::{sdk, unique};

const WEBHOOKS: [Function; 3] = [Function::Push, Function::Delete, Function::Quarantine];

/// Creates a secret as an operator would (not a function's call: not recorded); its ARN.
async fn create_secret(admin: &aws_sdk_secretsmanager::Client, value: &str) -> String {
    admin
        .create_secret()
        .name(unique("imagehook/webhook"))
        .secret_string(value)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap()
}

/// A webhook function's start, in a new execution environment: its variables, then the secret.
async fn start(function: Function, vars: &[(&str, &str)]) -> Result<Config, InitError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let secrets = SecretsManager::new(secrets_client(&sdk().await));
    as_function(
        function.name(),
        config_with_secrets(Defaults::LAMBDA, |k| vars.get(k).cloned(), &secrets),
    )
    .await
}

fn accepts(config: &Config, token: &str) -> bool {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    let presented = Presented {
        path_token: None,
        now: 0,
    };
    config.verifier.verify(b"{}", &headers, presented).is_ok()
}

#[tokio::test]
async fn webhook_functions_read_the_kept_secret_and_follow_a_rotation() {
    let admin = aws_sdk_secretsmanager::Client::new(&sdk().await);
    let arn = create_secret(&admin, r#"{"current": "tok-one", "previous": ""}"#).await;
    let vars = [
        ("TABLE_NAME", "images"),
        ("AUTH_MODE", "token"),
        ("WEBHOOK_SECRETS_ARN", arn.as_str()),
    ];
    for function in WEBHOOKS {
        let config = start(function, &vars).await.unwrap();
        assert!(accepts(&config, "tok-one"), "{function:?}");
        assert!(!accepts(&config, "tok-two"), "{function:?}");
    }
    let warm = start(Function::Push, &vars).await.unwrap();

    // The rotation: the new secret becomes current, the old one stays valid as previous.
    let first = admin
        .list_secret_version_ids()
        .secret_id(&arn)
        .send()
        .await
        .unwrap()
        .versions
        .unwrap()[0]
        .version_id
        .clone()
        .unwrap();
    admin
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(r#"{"current": "tok-two", "previous": "tok-one"}"#)
        .send()
        .await
        .unwrap();
    let fresh = start(Function::Push, &vars).await.unwrap();
    assert!(accepts(&fresh, "tok-two") && accepts(&fresh, "tok-one"));
    assert!(!accepts(&fresh, "tok-three"));
    // An environment started before keeps what it read: senders move to the new secret only
    // once every environment is new (docs/security.md, rotation).
    assert!(accepts(&warm, "tok-one") && !accepts(&warm, "tok-two"));

    // A pinned version is read as pinned, whatever is current.
    let pinned = [
        vars[0],
        vars[1],
        vars[2],
        ("WEBHOOK_SECRETS_VERSION", &first),
    ];
    let old = start(Function::Delete, &pinned).await.unwrap();
    assert!(accepts(&old, "tok-one") && !accepts(&old, "tok-two"));

    // The outcomes and images functions never read it, whatever their environment says.
    let events = Config::from_parts(
        Defaults::EVENTS,
        |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        },
        None,
    )
    .unwrap();
    assert!(accepts(&events, "anything"));
}

#[tokio::test]
async fn a_missing_or_malformed_secret_stops_the_start_without_showing_it() {
    let admin = aws_sdk_secretsmanager::Client::new(&sdk().await);
    let vars = |arn: &str| {
        [
            ("TABLE_NAME", "images".to_owned()),
            ("AUTH_MODE", "token".to_owned()),
            ("WEBHOOK_SECRETS_ARN", arn.to_owned()),
        ]
    };
    let started = |arn: String| async move {
        let v = vars(&arn);
        let v: Vec<(&str, &str)> = v.iter().map(|(k, v)| (*k, v.as_str())).collect();
        start(Function::Quarantine, &v).await
    };

    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:imagehook/none-AbCdEf";
    let e = started(missing.to_owned()).await.unwrap_err();
    assert!(matches!(e, InitError::Secret(_)), "{e:?}");
    let e = e.to_string();
    assert!(
        e.contains(missing) && e.contains("ResourceNotFoundException"),
        "{e}"
    );

    for (value, says) in [
        ("hunter2,hunter3", "is not a JSON object"),
        (r#"{"previous": "hunter2"}"#, r#"has no "current" secret"#),
        (
            r#"{"current": ["hunter2"]}"#,
            r#""current" that is not a string"#,
        ),
    ] {
        let arn = create_secret(&admin, value).await;
        let e = started(arn.clone()).await.unwrap_err().to_string();
        assert!(
            e.contains("WEBHOOK_SECRETS_ARN") && e.contains(&arn) && e.contains(says),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }
}
