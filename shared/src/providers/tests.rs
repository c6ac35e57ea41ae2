//! Tests of detection and dispatch over every sender, and a property test that no body makes a
//! parser panic.

use super::*;
use proptest::prelude::*;

fn ctx_parse(body: &str, headers: HeaderMap) -> Result<Vec<Parsed>, ParseError> {
    let now = Timestamp::parse("2026-01-01T00:00:00Z").unwrap();
    parse(
        body.as_bytes(),
        &ParseContext {
            headers: &headers,
            received_at: &now,
            provider: None,
        },
    )
}

#[test]
fn unknown_shape_names_every_format_tried() {
    let err = ctx_parse(r#"{"hello": "world"}"#, HeaderMap::new()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ParseError::UnknownShape { .. }));
    assert!(msg.contains("Azure Container Registry webhook"), "{msg}");
    assert!(
        msg.contains("Amazon EventBridge event (ECR, Inspector)"),
        "{msg}"
    );
    assert!(msg.contains("generic"), "{msg}");
}

#[test]
fn invalid_json_is_a_json_error() {
    assert!(matches!(
        ctx_parse("{", HeaderMap::new()),
        Err(ParseError::Json(_))
    ));
    assert!(matches!(
        ctx_parse("[1,2]", HeaderMap::new()),
        Err(ParseError::UnknownShape { .. })
    ));
}

#[test]
fn detection_picks_the_sender_from_the_body_shape() {
    let acr = serde_json::json!({"id": "1", "timestamp": "2026-01-01T00:00:00Z", "action": "ping"});
    assert_eq!(detect(&acr, &HeaderMap::new()), Some(Provider::Acr));
    let ecr =
        serde_json::json!({"source": "aws.ecr", "detail-type": "ECR Image Action", "detail": {}});
    assert_eq!(
        detect(&ecr, &HeaderMap::new()),
        Some(Provider::EcrEventbridge)
    );
    let generic = serde_json::json!({"image": "a/b:1"});
    assert_eq!(detect(&generic, &HeaderMap::new()), Some(Provider::Generic));
}

#[test]
fn detection_names_the_sender_whose_parser_runs() {
    // Two header hints: Event Grid's comes first in the table and its body shape fails, so
    // the body decides, and Harbor's shape comes before GitHub's.
    let mut headers = HeaderMap::new();
    headers.insert("aeg-event-type", "Notification".parse().unwrap());
    headers.insert("x-github-event", "package".parse().unwrap());
    let body = serde_json::json!({"type": "PUSH_ARTIFACT", "occur_at": 1, "event_data": {},
        "action": "published", "package": {"package_version": {}}});
    assert_eq!(detect(&body, &headers), Some(Provider::Harbor));
    let parsed = ctx_parse(&body.to_string(), headers);
    let provider = match parsed {
        Ok(out) => match out.as_slice() {
            [Parsed::Image(e)] => Some(e.provider),
            [Parsed::Ignored(i)] => Some(i.provider),
            _ => None,
        },
        Err(ParseError::Malformed { provider, .. }) => Some(provider),
        Err(_) => None,
    };
    assert_eq!(provider, Some(Provider::Harbor));
}

/// Keys the parsers look for, so random documents reach deep into every parser.
const KEYS: &[&str] = &[
    "id",
    "action",
    "timestamp",
    "target",
    "repository",
    "tag",
    "digest",
    "request",
    "host",
    "detail-type",
    "source",
    "detail",
    "account",
    "region",
    "time",
    "result",
    "action-type",
    "repository-name",
    "image-digest",
    "image-tag",
    "events",
    "type",
    "occur_at",
    "event_data",
    "resources",
    "resource_url",
    "push_data",
    "repo_name",
    "pushed_at",
    "docker_url",
    "updated_tags",
    "namespace",
    "name",
    "package",
    "package_version",
    "container_metadata",
    "message",
    "data",
    "eventType",
    "eventTime",
    "specversion",
    "image",
    "quarantine",
    "scan-status",
    "finding-severity-counts",
    "mediaType",
    "url",
];

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-zA-Z0-9:./@_-]{0,80}".prop_map(serde_json::Value::from),
        "[0-9a-f]{64}".prop_map(|h| serde_json::Value::from(format!("sha256:{h}"))),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|kv| {
                serde_json::Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// No body, however odd, makes a parser panic: it parses or it is refused.
    #[test]
    fn parsing_never_panics(v in json_value(), forced in prop::option::of(prop::sample::select(Provider::ALL))) {
        let headers = HeaderMap::new();
        let now = Timestamp::parse("2026-01-01T00:00:00Z").unwrap();
        let body = serde_json::to_vec(&v).unwrap();
        let ctx = ParseContext { headers: &headers, received_at: &now, provider: forced };
        let _ = parse(&body, &ctx);
    }
}

#[test]
fn the_new_senders_are_detected_by_body_and_by_header() {
    let jfrog = serde_json::json!({"domain": "docker", "event_type": "pushed", "data": {}});
    assert_eq!(
        detect(&jfrog, &HeaderMap::new()),
        Some(Provider::Artifactory)
    );
    let aliyun = serde_json::json!({
        "push_data": {"tag": "v1"},
        "repository": {"repo_full_name": "ns/app", "region": "cn-hangzhou"}
    });
    assert_eq!(
        detect(&aliyun, &HeaderMap::new()),
        Some(Provider::AlibabaAcr)
    );
    let nexus = serde_json::json!({
        "nodeId": "n", "initiator": "admin", "repositoryName": "docker-hosted",
        "action": "CREATED", "component": {"format": "docker"}
    });
    assert_eq!(detect(&nexus, &HeaderMap::new()), Some(Provider::Nexus));
    // A Docker Hub body keeps its sender: no region, and `repo_name` rather than `repo_full_name`.
    let hub = serde_json::json!({"push_data": {"tag": "v1"}, "repository": {"repo_name": "a/b"}});
    assert_eq!(detect(&hub, &HeaderMap::new()), Some(Provider::DockerHub));
    let mut h = HeaderMap::new();
    h.insert("x-nexus-webhook-id", "rm:repository:audit".parse().unwrap());
    let audit = serde_json::json!({"nodeId": "n", "initiator": "admin", "audit": {}});
    assert_eq!(detect(&audit, &h), Some(Provider::Nexus));
    // None of them retries a refusal for ever.
    for p in [Provider::Artifactory, Provider::AlibabaAcr, Provider::Nexus] {
        assert!(!p.retries_refusals(), "{p}");
    }
}
