//! GitHub Packages (ghcr.io): the `package` event of repository and organisation webhooks and the
//! `registry_package` event of GitHub Apps, one package version per request, plus the `ping` sent
//! when a hook is created. Actions: `published`, `updated` (and `deleted`, should GitHub send it).
//!
//! The image is `package_version.package_url` (`ghcr.io/<Owner>/<name>:<tag>`, with a trailing `:`
//! when untagged); GitHub spells owners with upper case, ghcr.io references are lower case. The tag
//! is `container_metadata.tag.name` (empty for untagged and per-platform manifests), the digest is
//! the version's own name (`sha256:...`), else `container_metadata.tag.digest`. A multi-platform
//! push arrives as several deliveries: the index and each platform manifest, most untagged.
//! GitHub signs with `X-Hub-Signature-256: sha256=<hex>`; `X-GitHub-Delivery` is the event id.

use http::HeaderMap;
use serde_json::Value;

use super::{ParseContext, ParseError, header, image_ref, timestamp};
use crate::model::event::{
    Action, IgnoredEvent, ImageEvent, Parsed, Provider, Timestamp, content_id,
};

const P: Provider = Provider::GitHubPackages;
const EVENT_HEADER: &str = "x-github-event";
const DELIVERY_HEADER: &str = "x-github-delivery";
/// Gitea, Forgejo and Gogs copy GitHub's headers; their own names tell them apart.
const FORK_EVENT_HEADERS: &[&str] = &["x-gitea-event", "x-forgejo-event", "x-gogs-event"];
/// GitHub's container registry, for a container package whose version carries no `package_url`.
const GHCR: &str = "ghcr.io";

pub(super) fn header_hint(h: &HeaderMap) -> bool {
    !FORK_EVENT_HEADERS.iter().any(|k| h.contains_key(*k))
        && matches!(
            header(h, EVENT_HEADER),
            Some("package" | "registry_package" | "ping")
        )
}

pub(super) fn body_shape(v: &Value) -> bool {
    is_ping(v)
        || (v.get("action").is_some_and(Value::is_string)
            && package_object(v).is_some_and(|(_, p)| {
                p.get("package_version").is_some_and(Value::is_object)
                    || p.get("package_type").is_some_and(Value::is_string)
            }))
}

fn is_ping(v: &Value) -> bool {
    v.get("zen").is_some_and(Value::is_string) && v.get("hook_id").is_some()
}

/// The package object and the event it names: `package` (webhooks) or `registry_package` (Apps).
fn package_object(v: &Value) -> Option<(&'static str, &Value)> {
    ["package", "registry_package"]
        .into_iter()
        .find_map(|k| v.get(k).filter(|p| p.is_object()).map(|p| (k, p)))
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

pub(super) fn parse(v: &Value, ctx: &ParseContext<'_>) -> Result<Vec<Parsed>, ParseError> {
    let delivery = header(ctx.headers, DELIVERY_HEADER);
    let event = header(ctx.headers, EVENT_HEADER);
    if event == Some("ping") || is_ping(v) {
        let id = delivery.map(str::to_owned).or_else(|| {
            v.get("hook_id")
                .filter(|h| !h.is_null())
                .map(|h| format!("ping:{h}"))
        });
        return Ok(vec![Parsed::Ignored(bare_ignored(
            id,
            "ping",
            "ping acknowledged".to_owned(),
        ))]);
    }
    if let Some(other) = event.filter(|e| !matches!(*e, "package" | "registry_package")) {
        return Ok(vec![Parsed::Ignored(bare_ignored(
            delivery.map(str::to_owned),
            other,
            format!("GitHub {other:?} events are not image events"),
        ))]);
    }
    let action = v
        .get("action")
        .and_then(Value::as_str)
        .ok_or_else(|| ParseError::malformed(P, "event without `action`"))?;
    let (key, pkg) = package_object(v).ok_or_else(|| {
        ParseError::malformed(P, "event without a `package` or `registry_package` object")
    })?;
    let found = Found::read(pkg);

    let kind = package_kind(pkg);
    if !kind.is_container {
        let reason = format!(
            "GitHub {} packages are not container images",
            kind.name.unwrap_or("(untyped)")
        );
        return Ok(vec![Parsed::Ignored(
            found.ignored(delivery, action, reason),
        )]);
    }
    let action_kind = match action {
        "published" => Action::Push,
        "updated" if found.tag.is_some() => Action::Push,
        "updated" => {
            let reason = "an update without a tag changes no image reference".to_owned();
            return Ok(vec![Parsed::Ignored(
                found.ignored(delivery, action, reason),
            )]);
        }
        "deleted" => Action::Delete,
        other => {
            let reason = format!("GitHub {key} action {other:?} is not handled");
            return Ok(vec![Parsed::Ignored(
                found.ignored(delivery, action, reason),
            )]);
        }
    };

    let host = found.registry.as_deref().unwrap_or(GHCR);
    let repository = found.repository.as_deref().ok_or_else(|| {
        ParseError::malformed(
            P,
            format!(
                "{key} without `package_version.package_url` or `owner.login` and `name`: the image is unknown"
            ),
        )
    })?;
    let image = image_ref(
        P,
        host,
        repository,
        found.tag.as_deref(),
        found.digest.as_deref(),
        || {
            format!(
                "{key} with neither `package_version.container_metadata.tag.name` nor a digest (`package_version.name`, `container_metadata.tag.digest`)"
            )
        },
    )?;

    // The payload's times describe the version, not its removal: a delete happened on arrival.
    let occurred_at = match action_kind {
        Action::Delete => None,
        _ => sender_time(&[
            str_at(pkg, "/package_version/updated_at"),
            str_at(pkg, "/package_version/created_at"),
            str_at(pkg, "/updated_at"),
        ])?,
    }
    .unwrap_or_else(|| ctx.received_at.clone());

    let id = match delivery {
        Some(d) => d.to_owned(),
        None => content_id(&[
            P.as_str(),
            key,
            action,
            &image.to_string(),
            &pkg.pointer("/package_version/id")
                .map(Value::to_string)
                .unwrap_or_default(),
            str_at(pkg, "/package_version/updated_at").unwrap_or_default(),
        ]),
    };

    // The manifest's details only when they describe the digest recorded.
    let manifest = pkg.pointer("/package_version/container_metadata/manifest");
    let manifest_matches = manifest.is_some_and(|m| {
        m.get("digest")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .is_none_or(|d| image.digest.as_ref().is_some_and(|own| own.as_str() == d))
    });
    let (media_type, size) = match manifest.filter(|_| manifest_matches) {
        Some(m) => (
            m.get("media_type")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            m.get("size").and_then(Value::as_u64),
        ),
        None => (None, None),
    };

    Ok(vec![Parsed::Image(
        ImageEvent::new(id, P, action_kind, image, occurred_at)
            .with_media_type(media_type)
            .with_size(size),
    )])
}

struct Kind<'a> {
    is_container: bool,
    /// The most specific type GitHub named, for the reason of an ignored event.
    name: Option<&'a str>,
}

/// GitHub's type fields disagree across eras and samples (`CONTAINER`, `container`, `docker`, even
/// `package_type: npm` with `ecosystem: docker`): any of them naming a container registry counts.
fn package_kind(pkg: &Value) -> Kind<'_> {
    let fields = [
        str_at(pkg, "/package_type"),
        str_at(pkg, "/ecosystem"),
        str_at(pkg, "/registry/type"),
    ];
    let is_container = fields
        .iter()
        .flatten()
        .any(|t| t.eq_ignore_ascii_case("container") || t.eq_ignore_ascii_case("docker"));
    Kind {
        is_container,
        name: fields.into_iter().flatten().next(),
    }
}

/// What the package version says about the image, as raw strings (tag and digest already
/// normalised: an empty tag or a tag that is a digest means untagged).
struct Found {
    registry: Option<String>,
    repository: Option<String>,
    tag: Option<String>,
    digest: Option<String>,
    version_id: Option<String>,
}

impl Found {
    fn read(pkg: &Value) -> Self {
        let url = str_at(pkg, "/package_version/package_url").and_then(split_package_url);
        let (registry, repository, url_tag) = match url {
            Some((host, path, tag)) => (
                Some(host.to_ascii_lowercase()),
                Some(path.to_ascii_lowercase()),
                tag,
            ),
            None => {
                let owner = str_at(pkg, "/owner/login");
                let name = str_at(pkg, "/name");
                let repository = owner
                    .zip(name)
                    .map(|(o, n)| format!("{o}/{n}").to_ascii_lowercase());
                (None, repository, None)
            }
        };
        let is_digest = |s: &&str| s.starts_with("sha256:");
        let tag = str_at(pkg, "/package_version/container_metadata/tag/name")
            .or(url_tag)
            .filter(|t| !is_digest(t))
            .map(str::to_owned);
        let digest = str_at(pkg, "/package_version/name")
            .filter(is_digest)
            .or_else(|| str_at(pkg, "/package_version/version").filter(is_digest))
            .or_else(|| str_at(pkg, "/package_version/container_metadata/tag/digest"))
            .or_else(|| str_at(pkg, "/package_version/container_metadata/manifest/digest"))
            .map(str::to_owned);
        Self {
            registry,
            repository,
            tag,
            digest,
            version_id: pkg
                .pointer("/package_version/id")
                .filter(|id| !id.is_null())
                .map(|id| match id.as_str() {
                    Some(s) => s.to_owned(),
                    None => id.to_string(),
                }),
        }
    }

    fn ignored(&self, delivery: Option<&str>, action: &str, reason: String) -> IgnoredEvent {
        IgnoredEvent {
            id: delivery
                .map(str::to_owned)
                .or_else(|| self.version_id.clone()),
            provider: P,
            action: action.to_owned(),
            reason,
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: self.tag.clone(),
            digest: self.digest.clone(),
        }
    }
}

fn bare_ignored(id: Option<String>, action: &str, reason: String) -> IgnoredEvent {
    IgnoredEvent {
        id,
        provider: P,
        action: action.to_owned(),
        reason,
        registry: None,
        repository: None,
        tag: None,
        digest: None,
    }
}

/// `ghcr.io/Owner/name:tag` (tag possibly empty, or `@digest` instead) into host, path and tag.
fn split_package_url(url: &str) -> Option<(&str, &str, Option<&str>)> {
    let url = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    let url = url.split_once('@').map_or(url, |(name, _)| name);
    let (host, rest) = url.split_once('/')?;
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (path, tag) = match rest[last_slash..].find(':') {
        Some(i) => {
            let at = last_slash + i;
            (&rest[..at], Some(&rest[at + 1..]).filter(|t| !t.is_empty()))
        }
        None => (rest, None),
    };
    (!host.is_empty() && !path.is_empty()).then_some((host, path, tag))
}

/// The first of the sender's times that is set: GitHub fills unknown ones with `0001-01-01`.
fn sender_time(candidates: &[Option<&str>]) -> Result<Option<Timestamp>, ParseError> {
    for s in candidates.iter().flatten() {
        let t = timestamp(P, s)?;
        if t.unix_seconds() > 0 {
            return Ok(Some(t));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::reference::{Digest, Tag};

    const D: &str = "sha256:5e8f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7";
    const D2: &str = "sha256:a0b1c2d3e4f5061728394a5b6c7d8e9f00112233445566778899aabbccddeeff";

    fn run(v: Value) -> Result<Vec<Parsed>, ParseError> {
        super::super::run_parser(parse, &v)
    }

    fn run_with(v: Value, headers: &[(&'static str, &str)]) -> Result<Vec<Parsed>, ParseError> {
        super::super::run_parser_with(parse, &v, headers)
    }

    fn body(key: &str, action: &str, tag: &str) -> Value {
        let url = format!("ghcr.io/Northwind-Labs/Billing-API:{tag}");
        serde_json::json!({
            "action": action,
            key: {
                "id": 4711,
                "name": "billing-api",
                "namespace": "Northwind-Labs/billing",
                "ecosystem": "CONTAINER",
                "package_type": "CONTAINER",
                "created_at": "2025-10-01T08:00:00Z",
                "updated_at": "2026-04-05T06:07:08Z",
                "owner": {"login": "Northwind-Labs", "type": "Organization"},
                "package_version": {
                    "id": 998877,
                    "name": D,
                    "version": D,
                    "created_at": "2026-04-05T06:07:00Z",
                    "updated_at": "2026-04-05T06:07:01Z",
                    "container_metadata": {
                        "tag": {"name": tag, "digest": D},
                        "manifest": {"digest": D, "size": 1904,
                                     "media_type": "application/vnd.oci.image.manifest.v1+json"}
                    },
                    "package_url": url
                },
                "registry": {"type": "CONTAINER", "url": "https://CONTAINER.pkg.github.com/Northwind-Labs"}
            },
            "sender": {"login": "ci-bot"}
        })
    }

    #[test]
    fn published_maps_every_field() {
        let out = run(body("package", "published", "2.3.0")).unwrap();
        let e = super::super::only_image(&out);
        assert_eq!(e.provider, Provider::GitHubPackages);
        assert_eq!(e.action, Action::Push);
        assert_eq!(e.image.registry.as_str(), "ghcr.io");
        assert_eq!(e.image.repository.as_str(), "northwind-labs/billing-api");
        assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("2.3.0"));
        assert_eq!(e.image.digest.as_ref().map(Digest::as_str), Some(D));
        assert_eq!(e.occurred_at.as_str(), "2026-04-05T06:07:01.000000000Z");
        assert_eq!(
            e.media_type.as_deref(),
            Some("application/vnd.oci.image.manifest.v1+json")
        );
        assert_eq!(e.size, Some(1904));
        assert!(e.id.starts_with("sha256:"), "{}", e.id);
        assert_eq!(e.scan, None);
    }

    #[test]
    fn delivery_header_is_the_id() {
        let out = run_with(
            body("registry_package", "published", "2.3.0"),
            &[
                ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
                ("x-github-event", "registry_package"),
            ],
        )
        .unwrap();
        assert_eq!(
            super::super::only_image(&out).id,
            "72d3162e-cc78-11e3-81ab-4c9367dc0958"
        );
    }

    #[test]
    fn content_id_is_stable_and_distinguishes_versions() {
        let a = run(body("package", "published", "1")).unwrap();
        let b = run(body("package", "published", "1")).unwrap();
        assert_eq!(
            super::super::only_image(&a).id,
            super::super::only_image(&b).id
        );
        let c = run(body("package", "published", "2")).unwrap();
        assert_ne!(
            super::super::only_image(&a).id,
            super::super::only_image(&c).id
        );
    }

    #[test]
    fn untagged_push_has_no_tag_and_trailing_colon_is_harmless() {
        let out = run(body("package", "published", "")).unwrap();
        let e = super::super::only_image(&out);
        assert_eq!(e.image.tag, None);
        assert_eq!(e.image.digest.as_ref().map(Digest::as_str), Some(D));
        assert_eq!(e.image.repository.as_str(), "northwind-labs/billing-api");
    }

    #[test]
    fn digest_falls_back_to_the_tag_metadata() {
        let mut v = body("package", "published", "edge");
        v["package"]["package_version"]["name"] = "edge".into();
        v["package"]["package_version"]["version"] = "edge".into();
        v["package"]["package_version"]["container_metadata"]["tag"]["digest"] = D2.into();
        let out = run(v).unwrap();
        let e = super::super::only_image(&out);
        assert_eq!(e.image.digest.as_ref().map(Digest::as_str), Some(D2));
        // The manifest metadata describes another digest: not attached.
        assert_eq!(e.media_type, None);
        assert_eq!(e.size, None);
    }

    #[test]
    fn a_tag_that_is_a_digest_means_untagged() {
        let mut v = body("package", "published", "x");
        v["package"]["package_version"]["container_metadata"]["tag"]["name"] = D.into();
        v["package"]["package_version"]["package_url"] =
            "ghcr.io/northwind-labs/billing-api:".into();
        assert_eq!(super::super::only_image(&run(v).unwrap()).image.tag, None);
    }

    #[test]
    fn without_package_url_the_owner_and_name_on_ghcr_are_used() {
        let mut v = body("package", "published", "1.0");
        v["package"]["package_version"]
            .as_object_mut()
            .unwrap()
            .remove("package_url");
        let out = run(v).unwrap();
        let e = super::super::only_image(&out);
        assert_eq!(
            e.image.to_string(),
            format!("ghcr.io/northwind-labs/billing-api:1.0@{D}")
        );
    }

    #[test]
    fn nested_names_and_other_hosts_come_from_the_package_url() {
        let mut v = body("package", "published", "3");
        v["package"]["package_version"]["package_url"] =
            "containers.GHE.example.com/Team/tools/Builder:3".into();
        let e = run(v).unwrap();
        let e = super::super::only_image(&e);
        assert_eq!(e.image.registry.as_str(), "containers.ghe.example.com");
        assert_eq!(e.image.repository.as_str(), "team/tools/builder");
        assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("3"));
    }

    #[test]
    fn updated_with_a_tag_is_a_push_without_one_is_ignored() {
        let out = run(body("package", "updated", "latest")).unwrap();
        assert_eq!(super::super::only_image(&out).action, Action::Push);
        let out = run(body("package", "updated", "")).unwrap();
        let i = super::super::only_ignored(&out);
        assert_eq!(i.action, "updated");
        assert!(i.reason.contains("without a tag"), "{}", i.reason);
        assert_eq!(i.digest.as_deref(), Some(D));
        assert_eq!(i.repository.as_deref(), Some("northwind-labs/billing-api"));
    }

    #[test]
    fn deleted_is_a_delete_at_arrival_time() {
        let out = run(body("package", "deleted", "old")).unwrap();
        let e = super::super::only_image(&out);
        assert_eq!(e.action, Action::Delete);
        assert_eq!(e.occurred_at.as_str(), "2026-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn unset_version_times_fall_back_to_the_package_time() {
        let mut v = body("package", "published", "1");
        v["package"]["package_version"]["created_at"] = "0001-01-01T00:00:00Z".into();
        v["package"]["package_version"]["updated_at"] = "0001-01-01T00:00:00Z".into();
        let out = run(v).unwrap();
        assert_eq!(
            super::super::only_image(&out).occurred_at.as_str(),
            "2026-04-05T06:07:08.000000000Z"
        );
        let mut v = body("package", "published", "1");
        v["package"]["package_version"]["updated_at"] = "last tuesday".into();
        assert!(matches!(run(v), Err(ParseError::Timestamp { .. })));
    }

    #[test]
    fn docker_ecosystem_counts_as_container_and_npm_is_ignored() {
        let mut v = body("package", "published", "1");
        v["package"]["package_type"] = "npm".into();
        v["package"]["ecosystem"] = "docker".into();
        v["package"]["registry"] = Value::Null;
        assert_eq!(
            super::super::only_image(&run(v).unwrap()).action,
            Action::Push
        );
        let mut v = body("package", "published", "1");
        for k in ["package_type", "ecosystem"] {
            v["package"][k] = "npm".into();
        }
        v["package"]["registry"]["type"] = "npm".into();
        let out = run(v).unwrap();
        let i = super::super::only_ignored(&out);
        assert_eq!(i.action, "published");
        assert!(i.reason.contains("npm"), "{}", i.reason);
    }

    #[test]
    fn other_actions_are_ignored() {
        let out = run(body("registry_package", "archived", "1")).unwrap();
        let i = super::super::only_ignored(&out);
        assert_eq!(i.action, "archived");
        assert!(i.reason.contains("registry_package"), "{}", i.reason);
    }

    #[test]
    fn ping_is_acknowledged() {
        let v = serde_json::json!({"zen": "Keep it logically awesome.", "hook_id": 4242,
            "hook": {"type": "Organization", "events": ["package"]}});
        let out = run(v.clone()).unwrap();
        let i = super::super::only_ignored(&out);
        assert_eq!(i.action, "ping");
        assert_eq!(i.reason, "ping acknowledged");
        assert_eq!(i.id.as_deref(), Some("ping:4242"));
        let out = run_with(
            v,
            &[("x-github-delivery", "d-1"), ("x-github-event", "ping")],
        )
        .unwrap();
        assert_eq!(super::super::only_ignored(&out).id.as_deref(), Some("d-1"));
    }

    #[test]
    fn other_github_events_named_by_the_header_are_ignored() {
        let out = run_with(
            serde_json::json!({"ref": "refs/heads/main", "commits": []}),
            &[("x-github-event", "push")],
        )
        .unwrap();
        let i = super::super::only_ignored(&out);
        assert_eq!(i.action, "push");
    }

    #[test]
    fn invalid_references_are_refused() {
        let mut v = body("package", "published", "1");
        v["package"]["package_version"]["name"] = "sha256:6c62fb45".into();
        assert!(matches!(run(v), Err(ParseError::Reference { .. })));
        let v = body("package", "published", "bad:tag");
        assert!(matches!(run(v), Err(ParseError::Reference { .. })));
    }

    #[test]
    fn missing_fields_are_malformed() {
        let mut v = body("package", "published", "");
        let pv = v["package"]["package_version"].as_object_mut().unwrap();
        pv.remove("package_url");
        pv.remove("name");
        pv.remove("version");
        pv.remove("container_metadata");
        let err = run(v).unwrap_err();
        assert!(
            err.to_string().contains("container_metadata.tag.name"),
            "{err}"
        );
        let mut v = body("package", "published", "1");
        v["package"]["package_version"]
            .as_object_mut()
            .unwrap()
            .remove("package_url");
        v["package"].as_object_mut().unwrap().remove("owner");
        let err = run(v).unwrap_err();
        assert!(err.to_string().contains("owner.login"), "{err}");
        let v = serde_json::json!({"package": {"package_type": "CONTAINER"}});
        assert!(run(v).unwrap_err().to_string().contains("action"));
    }

    #[test]
    fn header_hint_and_body_shape() {
        let mut h = HeaderMap::new();
        assert!(!header_hint(&h));
        h.insert("x-github-event", "registry_package".parse().unwrap());
        assert!(header_hint(&h));
        h.insert("x-github-event", "push".parse().unwrap());
        assert!(!header_hint(&h));
        h.insert("x-github-event", "package".parse().unwrap());
        h.insert("x-gitea-event", "package".parse().unwrap());
        assert!(!header_hint(&h));

        assert!(body_shape(&body("package", "published", "1")));
        assert!(body_shape(&body("registry_package", "published", "1")));
        assert!(body_shape(&serde_json::json!({"zen": "z", "hook_id": 1})));
        let gitea = serde_json::json!({"action": "created",
            "package": {"type": "container", "name": "app", "version": "1"}});
        assert!(!body_shape(&gitea));
        assert!(!body_shape(&serde_json::json!({"image": "a/b:1"})));
    }

    #[test]
    fn package_urls_split_into_parts() {
        assert_eq!(
            split_package_url("ghcr.io/Codertocat/hello-world:"),
            Some(("ghcr.io", "Codertocat/hello-world", None))
        );
        assert_eq!(
            split_package_url("localhost:5000/a/b:1"),
            Some(("localhost:5000", "a/b", Some("1")))
        );
        assert_eq!(
            split_package_url(&format!("https://ghcr.io/a/b@{D}")),
            Some(("ghcr.io", "a/b", None))
        );
        assert_eq!(split_package_url("ghcr.io"), None);
        assert_eq!(split_package_url("ghcr.io/"), None);
    }
}
