//! Conformance over the vendor payload corpus (`../shared/payloads` beside the repository, or
//! `IMAGEHOOK_PAYLOADS`): every file of the supported senders must parse to exactly the events
//! listed here, or be refused with exactly the error listed. A new file without an expectation
//! fails the suite, so the corpus cannot grow past what is checked. The senders the shared corpus
//! lacks have their payloads in the repository (`tests/conformance/corpus`, with their provenance
//! in its README), checked the same way and always present.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use http::HeaderMap;
use imagehook_core::model::event::{Action, Parsed, Timestamp};
use imagehook_core::model::function::Function;
use imagehook_core::providers::{self, ParseContext, ParseError};

/// One image event: action, registry, repository, tag, digest.
type ImageRow = (
    Action,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
);

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
    /// Image events only, in order (digests may be absent: Docker Hub, Quay, Gitea).
    Events(&'static [ImageRow]),
    /// Image events in order, mixed with this many acknowledged-and-ignored ones (envelopes).
    Mixed(&'static [ImageRow], usize),
    /// A handshake answered with `{"validationResponse": <code>}` and nothing recorded.
    Handshake(&'static str),
    /// Refused: 400, the sender's format with an unusable field.
    Malformed,
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

const DIST_DIGEST: &str = "sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf";
const HARBOR_DIGEST: &str =
    "sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4";
const ANGOS_DIGEST: &str =
    "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const EG_DIGEST: &str = "sha256:213bbc182920ab41e18edc2001e06abcca6735d87782d9cef68abd83941cf0e5";

/// Request headers a sender's deliveries need besides the body (Angos events name no registry
/// host; the webhook URL's `?registry=` supplies it as this header).
const SENDER_HEADERS: &[(&str, &[(&str, &str)])] = &[
    ("angos", &[("x-imagehook-registry", "registry.example.com")]),
    (
        "artifactory",
        &[("x-imagehook-registry", "artifactory.example.com")],
    ),
    ("nexus", &[("x-imagehook-registry", "nexus.example.com")]),
];

const JFROG_DIGEST: &str =
    "sha256:35c4a2c15539c6c1e4e5fa4e554dac323ad0107d8eb5c582d6ff386b383b7dce";

/// The senders whose payloads live in the repository, with every file each holds.
const REPO_CORPUS: &[(&str, &[(&str, Expect)])] = &[
    (
        "artifactory",
        &[
            (
                "docker-pushed.doc.json",
                Event(
                    Action::Push,
                    "artifactory.example.com",
                    "library/ubuntu",
                    Some("latest"),
                    JFROG_DIGEST,
                ),
            ),
            (
                "docker-pushed.keel-fixture.json",
                Event(
                    Action::Push,
                    "artifactory.example.com",
                    "library/ubuntu",
                    Some("latest"),
                    JFROG_DIGEST,
                ),
            ),
            // The documentation's placeholder checksum is no digest.
            ("docker-deleted.doc.json", InvalidReference),
            ("artifact-deployed.doc.json", Ignored("artifact:deployed")),
        ],
    ),
    (
        "alibaba-acr",
        &[
            // The documentation's repository name has a capital letter, which no image
            // reference may hold.
            ("push.doc.json", InvalidReference),
            (
                "push.argocd-fixture.json",
                Events(&[(
                    Action::Push,
                    "registry.cn-beijing.aliyuncs.com",
                    "ns/app",
                    Some("v1"),
                    None,
                )]),
            ),
        ],
    ),
    (
        "nexus",
        &[
            ("asset-created.doc.json", Ignored("asset")),
            (
                "component-created.docker.reconstructed.json",
                Events(&[(
                    Action::Push,
                    "nexus.example.com",
                    "my-app",
                    Some("2.0"),
                    None,
                )]),
            ),
            (
                "component-deleted.docker.reconstructed.json",
                Events(&[(
                    Action::Delete,
                    "nexus.example.com",
                    "my-app",
                    Some("2.0"),
                    None,
                )]),
            ),
        ],
    ),
];

/// Every sender, with every file it holds.
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
            // Replication events mark where a digest arrived; the documentation's samples carry
            // digests that are not 64 hex digits (60 digits; non-hex `g`), so they are refused
            // before anything is stored. Valid ones are tested in providers/ecr.rs and e2e.
            ("ecr-replication-action.success.json", InvalidReference),
            ("ecr-replication-action.failed.json", InvalidReference),
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
    (
        "azure-event-grid",
        &[
            // Event Grid schema: a one-element array. CloudEvents: a bare object.
            (
                "ImagePushed.eventgrid-schema.json",
                Event(
                    Action::Push,
                    "demo.azurecr.io",
                    "aci-helloworld",
                    Some("v1"),
                    EG_DIGEST,
                ),
            ),
            (
                "ImagePushed.cloudevents-schema.json",
                Event(
                    Action::Push,
                    "demo.azurecr.io",
                    "aci-helloworld",
                    Some("v1"),
                    EG_DIGEST,
                ),
            ),
            (
                "ImageDeleted.eventgrid-schema.json",
                Event(
                    Action::Delete,
                    "demo.azurecr.io",
                    "aci-helloworld",
                    None,
                    EG_DIGEST,
                ),
            ),
            (
                "ImageDeleted.cloudevents-schema.json",
                Event(
                    Action::Delete,
                    "demo.azurecr.io",
                    "aci-helloworld",
                    None,
                    EG_DIGEST,
                ),
            ),
            (
                "ChartPushed.eventgrid-schema.json",
                Ignored("Microsoft.ContainerRegistry.ChartPushed"),
            ),
            (
                "ChartPushed.cloudevents-schema.json",
                Ignored("Microsoft.ContainerRegistry.ChartPushed"),
            ),
            (
                "ChartDeleted.eventgrid-schema.json",
                Ignored("Microsoft.ContainerRegistry.ChartDeleted"),
            ),
            (
                "ChartDeleted.cloudevents-schema.json",
                Ignored("Microsoft.ContainerRegistry.ChartDeleted"),
            ),
            (
                "SubscriptionValidation.request.json",
                Handshake("512d38b6-c7b8-40c8-89fe-f46f9e9622b6"),
            ),
            // The expected answer to the handshake, not a request: no sender's shape.
            ("SubscriptionValidation.response.json", UnknownShape),
        ],
    ),
    (
        "quay",
        &[
            // Quay pushes name tags only: unpinned, one event per updated tag.
            (
                "repo_push.json",
                Events(&[(
                    Action::Push,
                    "quay.io",
                    "mynamespace/repository",
                    Some("latest"),
                    None,
                )]),
            ),
            // Older Quay releases: `updated_tags` as a {tag: image id} map; image ids are not
            // digests, so the push is still unpinned.
            (
                "repo_push.legacy-docs.json",
                Events(&[(
                    Action::Push,
                    "quay.io",
                    "mynamespace/repository",
                    Some("latest"),
                    None,
                )]),
            ),
            // The UI's "Test notification": two tags, two events.
            (
                "repo_push.test-notification.from-source.json",
                Events(&[
                    (
                        Action::Push,
                        "quay.io",
                        "mynamespace/repository",
                        Some("latest"),
                        None,
                    ),
                    (
                        Action::Push,
                        "quay.io",
                        "mynamespace/repository",
                        Some("foo"),
                        None,
                    ),
                ]),
            ),
            (
                "vulnerability_found.test-notification.from-source.json",
                Ignored("vulnerability_found"),
            ),
        ],
    ),
    (
        "dockerhub",
        &[
            // Docker Hub sends no digest: every push is unpinned.
            (
                "push.json",
                Events(&[(
                    Action::Push,
                    "docker.io",
                    "svendowideit/testhook",
                    Some("latest"),
                    None,
                )]),
            ),
            (
                "push.captured-2017.json",
                Events(&[(
                    Action::Push,
                    "docker.io",
                    "antoineaumjaud/api-synology-chatbot",
                    Some("latest"),
                    None,
                )]),
            ),
            (
                "push.captured-2022.json",
                Events(&[(
                    Action::Push,
                    "docker.io",
                    "y2khub/tag_game",
                    Some("latest"),
                    None,
                )]),
            ),
        ],
    ),
    (
        "docker-distribution",
        &[
            ("pull.json", Ignored("pull")),
            // The doc's "full event": one manifest push (by digest, no tag) and two layer pushes.
            (
                "push.multi-event-envelope.json",
                Mixed(
                    &[(
                        Action::Push,
                        "registrycluster.local",
                        "library/test",
                        None,
                        Some(DIST_DIGEST),
                    )],
                    2,
                ),
            ),
            (
                "v2.push.manifest-tagged.reconstructed.json",
                Event(
                    Action::Push,
                    "registry.example.com",
                    "team/app",
                    Some("v1.2.3"),
                    DIST_DIGEST,
                ),
            ),
            (
                "v2.push.manifest-by-digest.reconstructed.json",
                Event(
                    Action::Push,
                    "registry.example.com",
                    "team/app",
                    None,
                    DIST_DIGEST,
                ),
            ),
            ("v2.mount.blob.reconstructed.json", Ignored("mount")),
            (
                "v2.delete.manifest.reconstructed.json",
                Event(
                    Action::Delete,
                    "registry.example.com",
                    "team/app",
                    None,
                    DIST_DIGEST,
                ),
            ),
            // A tag delete names no digest.
            (
                "v2.delete.tag.reconstructed.json",
                Mixed(
                    &[(
                        Action::Delete,
                        "registry.example.com",
                        "team/app",
                        Some("v1.2.3"),
                        None,
                    )],
                    0,
                ),
            ),
            ("v2.delete.repository.reconstructed.json", Ignored("delete")),
            (
                "v3.push.manifest-tagged.reconstructed.json",
                Event(
                    Action::Push,
                    "registry.example.com",
                    "team/app",
                    Some("v1.2.3"),
                    DIST_DIGEST,
                ),
            ),
            (
                "v3.push.manifest-by-digest.reconstructed.json",
                Event(
                    Action::Push,
                    "registry.example.com",
                    "team/app",
                    None,
                    DIST_DIGEST,
                ),
            ),
            ("v3.mount.blob.reconstructed.json", Ignored("mount")),
            // 3.x serialises `"mediaType": ""`, `"size": 0` and, on tag/repo deletes, `"digest": ""`.
            (
                "v3.delete.manifest.reconstructed.json",
                Event(
                    Action::Delete,
                    "registry.example.com",
                    "team/app",
                    None,
                    DIST_DIGEST,
                ),
            ),
            (
                "v3.delete.tag.reconstructed.json",
                Mixed(
                    &[(
                        Action::Delete,
                        "registry.example.com",
                        "team/app",
                        Some("v1.2.3"),
                        None,
                    )],
                    0,
                ),
            ),
            ("v3.delete.repository.reconstructed.json", Ignored("delete")),
        ],
    ),
    (
        "harbor",
        &[
            // Pushed by digest: Harbor repeats the digest in `tag`, so the push is untagged.
            (
                "PUSH_ARTIFACT.default.json",
                Event(
                    Action::Push,
                    "localhost",
                    "harbor/alpine",
                    None,
                    HARBOR_DIGEST,
                ),
            ),
            (
                "PUSH_ARTIFACT.cloudevents.json",
                Event(
                    Action::Push,
                    "localhost",
                    "harbor/alpine",
                    None,
                    HARBOR_DIGEST,
                ),
            ),
            (
                "PUSH_ARTIFACT.default.tagged.captured.json",
                Event(
                    Action::Push,
                    "hb.nicolas.my.id",
                    "library/rumput",
                    Some("v1"),
                    "sha256:76525f02955aec223342400a080c73024c995c9db1ba2eabf7505cf3bdf3f1f0",
                ),
            ),
            // The whole artifact goes (Harbor refuses deletes by tag): a delete by digest.
            (
                "DELETE_ARTIFACT.default.json",
                Event(
                    Action::Delete,
                    "localhost",
                    "harbor/alpine",
                    None,
                    "sha256:2bb501e6173d9d006e56de5bce2720eb06396803300fe1687b58a7ff32bf4c14",
                ),
            ),
            (
                "DELETE_ARTIFACT.cloudevents.json",
                Event(
                    Action::Delete,
                    "localhost",
                    "harbor/alpine",
                    None,
                    "sha256:2bb501e6173d9d006e56de5bce2720eb06396803300fe1687b58a7ff32bf4c14",
                ),
            ),
            // A clean Trivy report: a quarantine candidate with zero counts (releases, never holds).
            (
                "SCANNING_COMPLETED.default.json",
                Event(
                    Action::Quarantine,
                    "localhost",
                    "harbor/alpine",
                    None,
                    HARBOR_DIGEST,
                ),
            ),
            (
                "SCANNING_COMPLETED.cloudevents.json",
                Event(
                    Action::Quarantine,
                    "localhost",
                    "harbor/alpine",
                    None,
                    HARBOR_DIGEST,
                ),
            ),
            ("SCANNING_FAILED.default.json", Ignored("SCANNING_FAILED")),
            (
                "SCANNING_FAILED.cloudevents.json",
                Ignored("harbor.scan.failed"),
            ),
            ("SCANNING_STOPPED.default.json", Ignored("SCANNING_STOPPED")),
            (
                "SCANNING_STOPPED.cloudevents.json",
                Ignored("harbor.scan.stopped"),
            ),
            ("PULL_ARTIFACT.default.json", Ignored("PULL_ARTIFACT")),
            (
                "PULL_ARTIFACT.cloudevents.json",
                Ignored("harbor.artifact.pulled"),
            ),
            ("QUOTA_EXCEED.default.json", Ignored("QUOTA_EXCEED")),
            (
                "QUOTA_EXCEED.cloudevents.json",
                Ignored("harbor.quota.exceeded"),
            ),
            ("QUOTA_WARNING.default.json", Ignored("QUOTA_WARNING")),
            (
                "QUOTA_WARNING.cloudevents.json",
                Ignored("harbor.quota.warned"),
            ),
            ("REPLICATION.default.json", Ignored("REPLICATION")),
            (
                "REPLICATION.cloudevents.json",
                Ignored("harbor.replication.status.changed"),
            ),
            ("TAG_RETENTION.default.json", Ignored("TAG_RETENTION")),
            (
                "TAG_RETENTION.cloudevents.json",
                Ignored("harbor.tag_retention.finished"),
            ),
        ],
    ),
    // With `x-imagehook-registry: registry.example.com` (see SENDER_HEADERS above).
    (
        "angos",
        &[
            // Digest only, by tag or by digest: the tags follow as `tag.create`.
            (
                "manifest.push.by-tag.json",
                Event(
                    Action::Push,
                    "registry.example.com",
                    "library/nginx",
                    None,
                    ANGOS_DIGEST,
                ),
            ),
            (
                "manifest.push.by-digest.json",
                Event(
                    Action::Push,
                    "registry.example.com",
                    "library/nginx",
                    None,
                    ANGOS_DIGEST,
                ),
            ),
            // A pull-through cache fill (`actor.internal = "cache"`) is a copy made on a pull.
            ("manifest.push.cache-fill.json", Ignored("manifest.push")),
            (
                "tag.create.json",
                Event(
                    Action::Push,
                    "registry.example.com",
                    "library/nginx",
                    Some("latest"),
                    ANGOS_DIGEST,
                ),
            ),
            (
                "manifest.delete.by-digest.json",
                Event(
                    Action::Delete,
                    "registry.example.com",
                    "library/nginx",
                    None,
                    ANGOS_DIGEST,
                ),
            ),
            // Retention (`actor.internal = "prune"`) really deletes.
            (
                "manifest.delete.prune.json",
                Event(
                    Action::Delete,
                    "registry.example.com",
                    "library/nginx",
                    None,
                    ANGOS_DIGEST,
                ),
            ),
            // A delete by tag: `manifest.delete` without a digest, then `tag.delete`.
            (
                "manifest.delete.by-tag.json",
                Mixed(
                    &[(
                        Action::Delete,
                        "registry.example.com",
                        "library/nginx",
                        Some("latest"),
                        None,
                    )],
                    0,
                ),
            ),
            (
                "tag.delete.json",
                Mixed(
                    &[(
                        Action::Delete,
                        "registry.example.com",
                        "library/nginx",
                        Some("latest"),
                        None,
                    )],
                    0,
                ),
            ),
            ("manifest.pull.by-tag.json", Ignored("manifest.pull")),
            ("blob.push.json", Ignored("blob.push")),
            ("blob.pull.anonymous.json", Ignored("blob.pull")),
            // The reference doc's example: `sha256:abc123def456...` is not a digest.
            ("schema-example.docs.json", InvalidReference),
        ],
    ),
    (
        "github-packages",
        &[
            // octokit's edited sample says `package_type: npm` (with `ecosystem: docker` and a
            // ghcr.io `package_url`): GitHub's package type decides, so it is an npm package and
            // ignored, never deployed.
            ("package.published.container.json", Ignored("published")),
            (
                "registry_package.published.container.json",
                Ignored("published"),
            ),
            ("ping.json", Ignored("ping")),
        ],
    ),
    (
        "gitea-forgejo",
        &[
            // Gitea sends no digest: `package.version` is the tag.
            (
                "package.created.container.reconstructed.json",
                Events(&[(
                    Action::Push,
                    "gitea.example",
                    "alice/app",
                    Some("v1.2.3"),
                    None,
                )]),
            ),
            (
                "package.deleted.container.reconstructed.json",
                Events(&[(
                    Action::Delete,
                    "gitea.example",
                    "alice/app",
                    Some("v1.2.3"),
                    None,
                )]),
            ),
        ],
    ),
    (
        "gcp-artifact-registry-pubsub",
        &[
            // Bare message data, as a subscription with payload unwrapping delivers it.
            (
                "message-data.DELETE.tag.json",
                Events(&[(
                    Action::Delete,
                    "us-west1-docker.pkg.dev",
                    "my-project/my-repo/hello-world",
                    Some("1.1"),
                    None,
                )]),
            ),
            // Google's doc truncates the digest (`sha256:6ec128e26cd5...`).
            ("message-data.INSERT.digest-only.json", InvalidReference),
            ("message-data.INSERT.tagged.json", InvalidReference),
            // Pub/Sub's generic example: `message.data` is "Hello Cloud Pub/Sub! ...", not JSON.
            ("pubsub-push-envelope.doc-example.json", Malformed),
            (
                "pubsub-push.DELETE.tag.reconstructed.json",
                Events(&[(
                    Action::Delete,
                    "us-west1-docker.pkg.dev",
                    "my-project/my-repo/hello-world",
                    Some("1.1"),
                    None,
                )]),
            ),
            (
                "pubsub-push.INSERT.digest-only.reconstructed.json",
                InvalidReference,
            ),
            (
                "pubsub-push.INSERT.tagged.reconstructed.json",
                InvalidReference,
            ),
        ],
    ),
    (
        "standard-webhooks",
        // The spec's thin example (`contact.created`) is no image event; image events arrive as
        // the generic form inside the envelope's `data`. It is refused naming its type.
        &[("example-payload.spec.json", Malformed)],
    ),
];

fn payloads_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("IMAGEHOOK_PAYLOADS")
        .map(PathBuf::from)
        .unwrap_or_else(|| imagehook_tests::workspace_root().join("../shared/payloads"));
    dir.is_dir().then_some(dir)
}

fn parse(body: &[u8], sender: &str) -> Result<Vec<Parsed>, ParseError> {
    let mut headers = HeaderMap::new();
    for (name, value) in SENDER_HEADERS
        .iter()
        .filter(|(s, _)| *s == sender)
        .flat_map(|(_, h)| h.iter())
    {
        headers.insert(*name, http::HeaderValue::from_static(value));
    }
    let now = Timestamp::parse("2026-11-23T00:00:00Z").unwrap();
    providers::parse(
        body,
        &ParseContext {
            headers: &headers,
            received_at: &now,
            provider: None,
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
    let (failures, checked) = check_corpus(&root, CORPUS).await;
    assert_none_failed(&failures, checked);
    // Every sender folder of the corpus is covered (a new folder fails here until it is).
    let folders: BTreeSet<String> = std::fs::read_dir(&root)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .filter(|e| {
                    std::fs::read_dir(e.path()).is_ok_and(|mut f| {
                        f.any(|x| {
                            x.is_ok_and(|x| x.path().extension().is_some_and(|e| e == "json"))
                        })
                    })
                })
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    let covered: BTreeSet<String> = CORPUS.iter().map(|(s, _)| (*s).to_owned()).collect();
    assert_eq!(folders, covered, "sender folders without expectations");
    assert!(checked >= 100, "only {checked} files checked");
}

#[tokio::test]
async fn every_payload_kept_in_the_repository_parses_or_is_refused_as_expected() {
    let root = imagehook_tests::workspace_root().join("tests/conformance/corpus");
    let (failures, checked) = check_corpus(&root, REPO_CORPUS).await;
    assert_none_failed(&failures, checked);
    let folders: BTreeSet<String> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    let covered: BTreeSet<String> = REPO_CORPUS.iter().map(|(s, _)| (*s).to_owned()).collect();
    assert_eq!(folders, covered, "sender folders without expectations");
}

fn assert_none_failed(failures: &[String], checked: usize) {
    assert!(
        failures.is_empty(),
        "{} of {checked} files failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every file of every sender folder under `root` against its expectation: the failures, and
/// how many files were checked.
async fn check_corpus(
    root: &std::path::Path,
    table: &[(&str, &[(&str, Expect)])],
) -> (Vec<String>, usize) {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (sender, expectations) in table {
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
            if let Err(msg) = check(&bytes, sender, expect).await {
                failures.push(format!("{sender}/{file}: {msg}"));
            }
        }
    }
    (failures, checked)
}

async fn check(bytes: &[u8], sender: &str, expect: &Expect) -> Result<(), String> {
    if let ApiGatewayStatus(status) = expect {
        return check_api_gateway(bytes, *status).await;
    }
    let got = parse(bytes, sender);
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
        (Events(images), Ok(events)) => check_images(events, images, 0),
        (Mixed(images, ignored), Ok(events)) => check_images(events, images, *ignored),
        (Handshake(code), Ok(events)) => match events.as_slice() {
            [Parsed::Handshake(body)] if body["validationResponse"] == *code => Ok(()),
            other => Err(format!("expected the validation handshake, got {other:?}")),
        },
        (Malformed, Err(ParseError::Malformed { .. })) => Ok(()),
        (InvalidReference, Err(ParseError::Reference { .. })) => Ok(()),
        (UnknownShape, Err(ParseError::UnknownShape { .. })) => Ok(()),
        _ => Err(format!("unexpected result {got:?}")),
    }
}

/// The image events of a parse, in order, against the expected rows; every other entry must be
/// an ignored event with a reason, and image ids must be present and unique.
fn check_images(events: &[Parsed], images: &[ImageRow], ignored: usize) -> Result<(), String> {
    let got: Vec<ImageRow> = events
        .iter()
        .filter_map(|p| match p {
            Parsed::Image(e) => Some((
                e.action,
                leak(e.image.registry.as_str()),
                leak(e.image.repository.as_str()),
                e.image.tag.as_ref().map(|t| leak(t.as_str())),
                e.image.digest.as_ref().map(|d| leak(d.as_str())),
            )),
            _ => None,
        })
        .collect();
    let n_ignored = events
        .iter()
        .filter(|p| matches!(p, Parsed::Ignored(i) if !i.reason.is_empty()))
        .count();
    if got != images || n_ignored != ignored || events.len() != images.len() + ignored {
        return Err(format!(
            "got {events:?}, expected {images:?} and {ignored} ignored"
        ));
    }
    let ids: BTreeSet<&str> = events
        .iter()
        .filter_map(|p| match p {
            Parsed::Image(e) => Some(e.id.as_str()),
            _ => None,
        })
        .collect();
    if ids.len() != images.len() || ids.contains("") {
        return Err("image event ids must be present and unique".into());
    }
    Ok(())
}

/// Comparing owned strings with the table's `&'static str`s; a test process, so leaking is fine.
fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

async fn check_api_gateway(bytes: &[u8], status: u16) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let req = lambda_http::request::from_str(text)
        .map_err(|e| format!("not an API Gateway event: {e}"))?;
    let config = imagehook_core::app::config::Config::from_lookup(
        imagehook_core::app::config::Defaults::LOCAL,
        |_| None,
    )
    .map_err(|e| e.to_string())?;
    let app = imagehook_core::app::App::new(
        config,
        std::sync::Arc::new(imagehook_core::adapters::EmbeddedStore::in_memory()),
        std::sync::Arc::new(imagehook_core::adapters::DryRunDeployer),
    );
    let resp = imagehook_core::edge::http::handle(&app, Function::Push, req).await;
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
