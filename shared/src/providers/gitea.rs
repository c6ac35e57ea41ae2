//! Gitea and Forgejo (and Gogs-compatible) `package` webhooks: one package version per request,
//! `action` = created | deleted, `package.type` = container | npm | maven | ...
//!
//! A container version is `<host>/<owner>/<name>:<version>`: the host is the instance's (taken from
//! `package.html_url`), `package.version` is the tag, or the digest for an untagged push. Gitea puts
//! no digest in the payload. It sends its own headers (`X-Gitea-*`, `X-Forgejo-*`, `X-Gogs-*`)
//! besides GitHub-compatible copies; `X-Gitea-Signature` is the bare hex HMAC-SHA256 of the body
//! (and `X-Hub-Signature-256` the same as `sha256=<hex>`).

use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use super::common::{ParseContext, ParseError, header, image_ref, non_empty, timestamp, typed};
use crate::model::event::{Action, IgnoredEvent, ImageEvent, Parsed, Provider, content_id};

const P: Provider = Provider::Gitea;
const EVENT_HEADERS: &[&str] = &["x-gitea-event", "x-forgejo-event", "x-gogs-event"];
const DELIVERY_HEADERS: &[&str] = &["x-gitea-delivery", "x-forgejo-delivery", "x-gogs-delivery"];

pub(super) fn header_hint(h: &HeaderMap) -> bool {
    EVENT_HEADERS.iter().any(|k| h.contains_key(*k))
}

pub(super) fn body_shape(v: &Value) -> bool {
    v.get("action").is_some_and(Value::is_string)
        && v.get("package").is_some_and(|p| {
            p.is_object()
                && p.get("type").is_some_and(Value::is_string)
                && p.get("name").is_some_and(Value::is_string)
                && p.get("version").is_some_and(Value::is_string)
                // GitHub's package objects carry these instead.
                && p.get("package_version").is_none()
                && p.get("package_type").is_none()
        })
}

fn first_header<'a>(h: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|n| header(h, n))
}

#[derive(Deserialize)]
struct Body {
    action: String,
    package: Package,
}

#[derive(Deserialize)]
struct Package {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    owner: Option<User>,
    #[serde(default)]
    repository: Option<Repo>,
    #[serde(rename = "type")]
    kind: String,
    name: String,
    version: String,
    #[serde(default)]
    html_url: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    /// Not in Gitea's payload today; used should a version carry one.
    #[serde(default)]
    digest: Option<String>,
}

#[derive(Deserialize)]
struct User {
    #[serde(default)]
    login: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    html_url: Option<String>,
}

#[derive(Deserialize)]
struct Repo {
    #[serde(default)]
    html_url: Option<String>,
}

pub(super) fn parse(v: &Value, ctx: &ParseContext<'_>) -> Result<Vec<Parsed>, ParseError> {
    let delivery = first_header(ctx.headers, DELIVERY_HEADERS);
    if let Some(other) = first_header(ctx.headers, EVENT_HEADERS).filter(|e| *e != "package") {
        return Ok(vec![Parsed::Ignored(IgnoredEvent {
            id: delivery.map(str::to_owned),
            provider: P,
            action: other.to_owned(),
            reason: format!("Gitea {other:?} events are not image events"),
            registry: None,
            repository: None,
            tag: None,
            digest: None,
        })]);
    }
    let body: Body = typed(P, v)?;
    let pkg = &body.package;
    let found = Found::read(pkg);

    if !pkg.kind.eq_ignore_ascii_case("container") {
        let reason = format!("Gitea {} packages are not container images", pkg.kind);
        return Ok(vec![Parsed::Ignored(
            found.ignored(&body, delivery, reason),
        )]);
    }
    let action = match body.action.as_str() {
        "created" => Action::Push,
        "deleted" => Action::Delete,
        other => {
            let reason = format!("Gitea package action {other:?} is not handled");
            return Ok(vec![Parsed::Ignored(
                found.ignored(&body, delivery, reason),
            )]);
        }
    };

    let host = found.registry.as_deref().ok_or_else(|| {
        ParseError::malformed(
            P,
            "event without `package.html_url` (or an owner or repository `html_url`): the registry host is unknown",
        )
    })?;
    let repository = found
        .repository
        .as_deref()
        .ok_or_else(|| ParseError::malformed(P, "event without `package.owner.login`"))?;
    if pkg.name.is_empty() {
        return Err(ParseError::malformed(
            P,
            "event with an empty `package.name`",
        ));
    }
    let image = image_ref(
        P,
        host,
        repository,
        found.tag.as_deref(),
        found.digest.as_deref(),
        || "event with an empty `package.version`".to_owned(),
    )?;

    // `created_at` is the version's creation: the time of a push, not of a deletion.
    let occurred_at = match (action, non_empty(&pkg.created_at)) {
        (Action::Push, Some(t)) => Some(timestamp(P, t)?).filter(|t| t.unix_seconds() > 0),
        _ => None,
    }
    .unwrap_or_else(|| ctx.received_at.clone());

    let id = match delivery {
        Some(d) => d.to_owned(),
        None => content_id(&[
            P.as_str(),
            &body.action,
            &image.to_string(),
            &pkg.id.as_ref().map(Value::to_string).unwrap_or_default(),
            pkg.created_at.as_deref().unwrap_or_default(),
        ]),
    };

    Ok(vec![Parsed::Image(ImageEvent::new(
        id,
        P,
        action,
        image,
        occurred_at,
    ))])
}

/// What the package says about the image, as raw strings.
struct Found {
    registry: Option<String>,
    repository: Option<String>,
    tag: Option<String>,
    digest: Option<String>,
}

impl Found {
    fn read(pkg: &Package) -> Self {
        let owner = pkg.owner.as_ref();
        let registry = [
            non_empty(&pkg.html_url),
            owner.and_then(|o| non_empty(&o.html_url)),
            pkg.repository.as_ref().and_then(|r| non_empty(&r.html_url)),
        ]
        .into_iter()
        .flatten()
        .find_map(url_host)
        .map(str::to_ascii_lowercase);
        // Container names are lower case in Gitea's registry whatever the owner's spelling.
        let repository = owner
            .and_then(|o| non_empty(&o.login).or_else(|| non_empty(&o.username)))
            .map(|o| format!("{o}/{}", pkg.name).to_ascii_lowercase());
        let version_is_digest = pkg.version.starts_with("sha256:");
        let tag = (!version_is_digest && !pkg.version.is_empty()).then(|| pkg.version.clone());
        let digest = non_empty(&pkg.digest)
            .map(str::to_owned)
            .or_else(|| version_is_digest.then(|| pkg.version.clone()));
        Self {
            registry,
            repository,
            tag,
            digest,
        }
    }

    fn ignored(&self, body: &Body, delivery: Option<&str>, reason: String) -> IgnoredEvent {
        IgnoredEvent {
            id: delivery.map(str::to_owned),
            provider: P,
            action: body.action.clone(),
            reason,
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: self.tag.clone(),
            digest: self.digest.clone(),
        }
    }
}

/// The `host[:port]` of an `http(s)://` URL.
fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::reference::{Digest, Tag};

    const D: &str = "sha256:7d1c0b2a3f4e5d6c7b8a99887766554433221100ffeeddccbbaa998877665544";

    fn run(v: Value) -> Result<Vec<Parsed>, ParseError> {
        super::super::common::run_parser(parse, &v)
    }

    fn run_with(v: Value, headers: &[(&'static str, &str)]) -> Result<Vec<Parsed>, ParseError> {
        super::super::common::run_parser_with(parse, &v, headers)
    }

    fn body(action: &str, kind: &str, version: &str) -> Value {
        let user = serde_json::json!({"id": 7, "login": "Platform-Team", "username": "Platform-Team",
            "html_url": "https://git.acme.test:3000/Platform-Team"});
        serde_json::json!({
            "action": action,
            "repository": null,
            "package": {
                "id": 315,
                "owner": user,
                "repository": null,
                "creator": user,
                "type": kind,
                "name": "order-service",
                "version": version,
                "html_url": format!("https://git.acme.test:3000/Platform-Team/-/packages/{kind}/order-service/{version}"),
                "created_at": "2026-06-07T08:09:10+02:00"
            },
            "organization": null,
            "sender": user
        })
    }

    #[test]
    fn created_maps_every_field() {
        let out = run(body("created", "container", "4.0.1")).unwrap();
        let e = super::super::common::only_image(&out);
        assert_eq!(e.provider, Provider::Gitea);
        assert_eq!(e.action, Action::Push);
        assert_eq!(e.image.registry.as_str(), "git.acme.test:3000");
        assert_eq!(e.image.repository.as_str(), "platform-team/order-service");
        assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("4.0.1"));
        assert_eq!(e.image.digest, None);
        assert_eq!(e.occurred_at.as_str(), "2026-06-07T06:09:10.000000000Z");
        assert!(e.id.starts_with("sha256:"));
        assert_eq!((e.media_type.as_deref(), e.size), (None, None));
    }

    #[test]
    fn delivery_headers_give_the_id() {
        let v = body("created", "container", "4.0.1");
        let out = run_with(
            v.clone(),
            &[("x-gitea-event", "package"), ("x-gitea-delivery", "g-1")],
        );
        assert_eq!(super::super::common::only_image(&out.unwrap()).id, "g-1");
        let out = run_with(
            v.clone(),
            &[
                ("x-forgejo-event", "package"),
                ("x-forgejo-delivery", "f-1"),
            ],
        );
        assert_eq!(super::super::common::only_image(&out.unwrap()).id, "f-1");
        let a = run(v.clone()).unwrap();
        assert_eq!(
            super::super::common::only_image(&a).id,
            super::super::common::only_image(&run(v).unwrap()).id
        );
    }

    #[test]
    fn digest_version_is_an_untagged_push() {
        let out = run(body("created", "container", D)).unwrap();
        let e = super::super::common::only_image(&out);
        assert_eq!(e.image.tag, None);
        assert_eq!(e.image.digest.as_ref().map(Digest::as_str), Some(D));
    }

    #[test]
    fn explicit_digest_is_kept_with_the_tag() {
        let mut v = body("created", "container", "4.0.1");
        v["package"]["digest"] = D.into();
        let out = run(v).unwrap();
        assert_eq!(
            super::super::common::only_image(&out).image.to_string(),
            format!("git.acme.test:3000/platform-team/order-service:4.0.1@{D}")
        );
    }

    #[test]
    fn deleted_is_a_delete_at_arrival_time() {
        let out = run(body("deleted", "container", "4.0.1")).unwrap();
        let e = super::super::common::only_image(&out);
        assert_eq!(e.action, Action::Delete);
        assert_eq!(e.image.tag.as_ref().map(Tag::as_str), Some("4.0.1"));
        assert_eq!(e.occurred_at.as_str(), "2026-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn other_types_actions_and_events_are_ignored() {
        let out = run(body("created", "npm", "1.0.0")).unwrap();
        let i = super::super::common::only_ignored(&out);
        assert_eq!(i.action, "created");
        assert!(i.reason.contains("npm"), "{}", i.reason);
        assert_eq!(i.repository.as_deref(), Some("platform-team/order-service"));
        let out = run(body("updated", "container", "1")).unwrap();
        assert_eq!(super::super::common::only_ignored(&out).action, "updated");
        let out = run_with(
            serde_json::json!({"ref": "main"}),
            &[("x-gitea-event", "push")],
        )
        .unwrap();
        assert_eq!(super::super::common::only_ignored(&out).action, "push");
    }

    #[test]
    fn host_falls_back_to_the_owner_url() {
        let mut v = body("created", "container", "1");
        v["package"]["html_url"] = "".into();
        v["package"]["owner"]["html_url"] = "http://forge.internal/Platform-Team".into();
        assert_eq!(
            super::super::common::only_image(&run(v).unwrap())
                .image
                .registry
                .as_str(),
            "forge.internal"
        );
        let mut v = body("created", "container", "1");
        v["package"]["html_url"] = Value::Null;
        v["package"]["owner"]["html_url"] = "".into();
        let err = run(v).unwrap_err();
        assert!(err.to_string().contains("package.html_url"), "{err}");
    }

    #[test]
    fn invalid_or_missing_parts_are_refused() {
        assert!(matches!(
            run(body("created", "container", "sha256:abc")),
            Err(ParseError::Reference { .. })
        ));
        assert!(matches!(
            run(body("created", "container", "-bad")),
            Err(ParseError::Reference { .. })
        ));
        let mut v = body("created", "container", "1");
        v["package"]["owner"] = Value::Null;
        assert!(
            run(v)
                .unwrap_err()
                .to_string()
                .contains("package.owner.login")
        );
        assert!(
            run(body("created", "container", ""))
                .unwrap_err()
                .to_string()
                .contains("package.version")
        );
        let mut v = body("created", "container", "1");
        v["package"]["created_at"] = "soon".into();
        assert!(matches!(run(v), Err(ParseError::Timestamp { .. })));
    }

    #[test]
    fn header_hint_and_body_shape() {
        let mut h = HeaderMap::new();
        assert!(!header_hint(&h));
        h.insert("x-github-event", "package".parse().unwrap());
        assert!(!header_hint(&h));
        h.insert("x-forgejo-event", "package".parse().unwrap());
        assert!(header_hint(&h));
        assert!(body_shape(&body("created", "container", "1")));
        let github = serde_json::json!({"action": "published", "package": {"name": "a",
            "package_type": "CONTAINER", "package_version": {"name": D}}});
        assert!(!body_shape(&github));
        assert!(!body_shape(
            &serde_json::json!({"action": "created", "package": "x"})
        ));
    }

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("https://a.example/x/y"), Some("a.example"));
        assert_eq!(
            url_host("http://u:p@a.example:8443?q"),
            Some("a.example:8443")
        );
        assert_eq!(url_host("a.example/x"), None);
        assert_eq!(url_host("https:///x"), None);
    }
}
