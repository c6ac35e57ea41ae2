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

use super::common::{ParseContext, ParseError, header, image_ref, timestamp};
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

/// GitHub names a package's type in `package_type` (`CONTAINER`, or `docker` for the old
/// Docker registry): when present it decides, so an npm package whose `ecosystem` says `docker`
/// is an npm package. Only without it do `ecosystem` and `registry.type` tell.
fn package_kind(pkg: &Value) -> Kind<'_> {
    let container =
        |t: &&str| t.eq_ignore_ascii_case("container") || t.eq_ignore_ascii_case("docker");
    if let Some(t) = str_at(pkg, "/package_type") {
        return Kind {
            is_container: container(&t),
            name: Some(t),
        };
    }
    let fields = [str_at(pkg, "/ecosystem"), str_at(pkg, "/registry/type")];
    Kind {
        is_container: fields.iter().flatten().any(container),
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
mod tests;
