//! Conformance over the vendor payload corpus (`../shared/payloads` beside the repository, or
//! `IMAGEHOOK_PAYLOADS`): every file of the supported senders must parse to exactly the events
//! listed here, or be refused with exactly the error listed. A new file without an expectation
//! fails the suite, so the corpus cannot grow past what is checked.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use http::HeaderMap;
use imagehook_core::Function;
use imagehook_core::event::{Action, Parsed, Timestamp};
use imagehook_core::providers::{self, ParseContext, ParseError};

/// What one file must produce.
enum Expect {
    /// One event: action, registry, repository, tag, digest.
    Event(
        Action,
        &'static str,
        &'static str,
        Option<&'static str>,
        &'static str,
    ),
    /// Acknowledged and ignored, with the action named so.
    Ignored(&'static str),
    /// Refused: 422, an invalid reference (the vendor's sample holds a masked or short digest).
    InvalidReference,
    /// Refused: 400, not a shape any supported sender produces.
    UnknownShape,
    /// A whole API Gateway event (not a body): run through the push function, expect this status.
    ApiGatewayStatus(u16),
}
use Expect::*;

const ACR_DIGEST: &str = "sha256:80f0d5c8786bb9e621a45ece0db56d11cdc624ad20da9fe62e9d25490f331d7d";

/// Senders covered so far, with every file they hold.
const CORPUS: &[(&str, &[(&str, Expect)])] = &[
    (
        "acr-webhook",
        &[
            (
                "push.json",
                Event(
                    Action::Push,
                    "myregistry.azurecr.io",
                    "hello-world",
                    Some("v1"),
                    ACR_DIGEST,
                ),
            ),
            (
                "push.captured-2026.json",
                Event(
                    Action::Push,
                    "mojrodevops.azurecr.io",
                    "hello-world",
                    Some("test-v1"),
                    "sha256:c766679d161d4ffe3dc4503b4c9f90b978f0d363fcedb02d1ae0cd271e645c0a",
                ),
            ),
            // The capture's author masked the digest with `xxxx`.
            ("push.captured-2023.json", InvalidReference),
            (
                "delete.json",
                Event(
                    Action::Delete,
                    "myregistry.azurecr.io",
                    "hello-world",
                    None,
                    ACR_DIGEST,
                ),
            ),
            // The preview doc truncates the digest and masks the registry host.
            ("quarantine.json", InvalidReference),
            ("chart_push.json", Ignored("chart_push")),
            ("chart_delete.json", Ignored("chart_delete")),
            ("ping.reconstructed.json", Ignored("ping")),
            // A record from the listEvents REST API, not a webhook delivery.
            ("api-webhook-listevents-record.json", UnknownShape),
        ],
    ),
    (
        "aws-ecr-eventbridge",
        &[
            // AWS's documentation samples carry a 60-character digest: refused, never stored.
            ("ecr-image-action.push.success.json", InvalidReference),
            ("ecr-image-action.delete.success.json", InvalidReference),
            (
                "ecr-image-action.push.untagged.reconstructed.json",
                InvalidReference,
            ),
            (
                "ecr-image-action.push.failure.reconstructed.json",
                Ignored("push"),
            ),
            (
                "ecr-image-action.archive.json",
                Ignored("update_storage_class"),
            ),
            (
                "ecr-image-action.restore.json",
                Ignored("update_storage_class"),
            ),
            (
                "ecr-referrer-action.restore.json",
                Ignored("ECR Referrer Action"),
            ),
            // Scan results are quarantine candidates; AWS's samples carry a truncated (60 hex)
            // or EXAMPLE digest, so they are refused.
            ("ecr-image-scan.basic.complete.json", InvalidReference),
            (
                "ecr-scan-resource-change.enhanced.json",
                Ignored("ECR Scan Resource Change"),
            ),
            (
                "ecr-pull-through-cache-action.success.json",
                Ignored("ECR Pull Through Cache Action"),
            ),
            (
                "ecr-replication-action.success.json",
                Ignored("ECR Replication Action"),
            ),
            (
                "ecr-replication-action.failed.json",
                Ignored("ECR Replication Action"),
            ),
            (
                "inspector2-scan.ecr-initial-scan-complete.json",
                InvalidReference,
            ),
            ("inspector2-finding.ecr-image.json", InvalidReference),
            // A user-defined input-transformer template, not an AWS format.
            (
                "api-destination.cloudevents-input-transformer.example.json",
                UnknownShape,
            ),
            // The whole API Gateway event around the push sample: 422 for its short digest.
            (
                "apigw-httpapi-v2.via-api-destination.reconstructed.json",
                ApiGatewayStatus(422),
            ),
        ],
    ),
];

fn payloads_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("IMAGEHOOK_PAYLOADS")
        .map(PathBuf::from)
        .unwrap_or_else(|| imagehook_tests::workspace_root().join("../shared/payloads"));
    dir.is_dir().then_some(dir)
}

fn parse(body: &[u8]) -> Result<Vec<Parsed>, ParseError> {
    let headers = HeaderMap::new();
    let now = Timestamp::parse("2026-11-23T00:00:00Z").unwrap();
    providers::parse(
        body,
        &ParseContext {
            headers: &headers,
            received_at: &now,
        },
    )
}

#[tokio::test]
async fn every_payload_of_the_supported_senders_parses_or_is_refused_as_expected() {
    let Some(root) = payloads_dir() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the payload corpus (../shared/payloads) is missing, and CI must run the conformance suite"
        );
        eprintln!(
            "conformance: ../shared/payloads not found; skipped (set IMAGEHOOK_PAYLOADS to run it)"
        );
        return;
    };
    let mut failures = Vec::new();
    let mut checked = 0;
    for (sender, expectations) in CORPUS {
        let dir = root.join(sender);
        let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".json"))
            .collect();
        let expected: BTreeSet<String> =
            expectations.iter().map(|(f, _)| (*f).to_owned()).collect();
        for missing in on_disk.difference(&expected) {
            failures.push(format!("{sender}/{missing}: no expectation for this file"));
        }
        for gone in expected.difference(&on_disk) {
            failures.push(format!(
                "{sender}/{gone}: expected file is not in the corpus"
            ));
        }
        for (file, expect) in *expectations {
            let path = dir.join(file);
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            checked += 1;
            if let Err(msg) = check(&bytes, expect).await {
                failures.push(format!("{sender}/{file}: {msg}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} files failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 25, "only {checked} files checked");
}

async fn check(bytes: &[u8], expect: &Expect) -> Result<(), String> {
    if let ApiGatewayStatus(status) = expect {
        return check_api_gateway(bytes, *status).await;
    }
    let got = parse(bytes);
    match (expect, &got) {
        (Event(action, registry, repository, tag, digest), Ok(events)) => {
            let [Parsed::Image(e)] = events.as_slice() else {
                return Err(format!("expected one image event, got {events:?}"));
            };
            let actual = (
                e.action,
                e.image.registry.as_str(),
                e.image.repository.as_str(),
                e.image.tag.as_ref().map(|t| t.as_str()),
                e.image.digest.as_ref().map(|d| d.as_str()),
            );
            let wanted = (*action, *registry, *repository, *tag, Some(*digest));
            if actual != wanted {
                return Err(format!("got {actual:?}, expected {wanted:?}"));
            }
            if e.id.is_empty() {
                return Err("empty event id".into());
            }
            Ok(())
        }
        (Ignored(action), Ok(events)) => match events.as_slice() {
            [Parsed::Ignored(i)] if i.action == *action && !i.reason.is_empty() => Ok(()),
            other => Err(format!("expected ignored {action:?}, got {other:?}")),
        },
        (InvalidReference, Err(ParseError::Reference { .. })) => Ok(()),
        (UnknownShape, Err(ParseError::UnknownShape { .. })) => Ok(()),
        _ => Err(format!("unexpected result {got:?}")),
    }
}

async fn check_api_gateway(bytes: &[u8], status: u16) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let req = lambda_http::request::from_str(text)
        .map_err(|e| format!("not an API Gateway event: {e}"))?;
    let config = imagehook_core::config::Config::from_lookup(
        imagehook_core::config::Defaults::LOCAL,
        |_| None,
    )
    .map_err(|e| e.to_string())?;
    let app = imagehook_core::App::new(
        config,
        std::sync::Arc::new(imagehook_core::store::EmbeddedStore::in_memory()),
        std::sync::Arc::new(imagehook_core::deploy::DryRunDeployer),
    );
    let resp = imagehook_core::http::handle(&app, Function::Push, req).await;
    if resp.status().as_u16() == status {
        Ok(())
    } else {
        Err(format!(
            "status {} ({}), expected {status}",
            resp.status(),
            String::from_utf8_lossy(resp.body().as_ref())
        ))
    }
}
