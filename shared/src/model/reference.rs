//! Image references, parsed once at the boundary so nothing downstream handles an invalid one.
//!
//! The grammar is the Docker/OCI distribution reference grammar: registry host (with optional
//! port), lower-case path components joined by `/`, tag `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, and a
//! `sha256:` digest of exactly 64 lower-case hex characters. Events usually carry these parts
//! separately, so each part has its own constructor; `ImageRef::parse` handles a full string.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Docker Hub's canonical registry name: a reference without a registry part lives there.
pub const DOCKER_HUB: &str = "docker.io";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;
const SHA256_HEX_LEN: usize = 64;

/// Why a reference (or one of its parts) was refused. The message names the part and the value,
/// so a 422 tells the sender exactly what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid registry host {0:?}")]
    Registry(String),
    #[error(
        "invalid repository {0:?}: lower-case letters, digits and separators (. _ __ -) between path components, at most 255 characters"
    )]
    Repository(String),
    #[error("invalid tag {0:?}: [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}")]
    Tag(String),
    #[error("invalid digest {0:?}: expected sha256: followed by 64 lower-case hex characters")]
    Digest(String),
    #[error("invalid image reference {0:?}")]
    Reference(String),
}

/// A registry host such as `myregistry.azurecr.io` or `localhost:5000`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Registry(String);

/// A port as references write it: one to five digits.
fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

impl Registry {
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let err = || ReferenceError::Registry(s.chars().take(300).collect());
        // An IPv6 literal in brackets, as the reference grammar allows: `[fd00::5]:5000`.
        if let Some(rest) = s.strip_prefix('[') {
            let (addr, after) = rest.split_once(']').ok_or_else(err)?;
            let port_ok = match after.strip_prefix(':') {
                Some(p) => is_port(p),
                None => after.is_empty(),
            };
            let Ok(ip) = addr.parse::<std::net::Ipv6Addr>() else {
                return Err(err());
            };
            if !port_ok {
                return Err(err());
            }
            // One spelling per address (`[fd00:0::5]` is `[fd00::5]`): one record per registry.
            return Ok(Self(format!("[{ip}]{after}")));
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if port.is_some_and(|p| !is_port(p)) {
            return Err(err());
        }
        if host.is_empty() || host.len() > 253 {
            return Err(err());
        }
        for label in host.split('.') {
            let b = label.as_bytes();
            let ok = !b.is_empty()
                && b.len() <= 63
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric();
            if !ok {
                return Err(err());
            }
        }
        // Host names are case-insensitive; one spelling keeps store keys stable.
        Ok(Self(s.to_ascii_lowercase()))
    }

    pub fn docker_hub() -> Self {
        Self(DOCKER_HUB.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a tag names when it is no image but an artefact attached to one by the tag schema
/// cosign and the OCI referrers fallback use: `sha256-<64 hex>.sig` (signature), `.att`
/// (attestation), `.sbom`, or bare `sha256-<64 hex>` (a referrers index).
pub fn artifact_tag(tag: &str) -> Option<&'static str> {
    let rest = tag.strip_prefix("sha256-")?;
    let (hex, suffix) = rest.split_at_checked(64)?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    match suffix {
        ".sig" => Some("signature"),
        ".att" => Some("attestation"),
        ".sbom" => Some("SBOM"),
        "" => Some("referrers index"),
        _ => None,
    }
}

/// Other names of registries (`REGISTRY_ALIASES`): one registry reached as `localhost:5000`
/// and `127.0.0.1:5000` is one registry, recorded, matched and deployed under its canonical name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryAliases(Vec<(Registry, Registry)>);

impl RegistryAliases {
    /// `alias=canonical` pairs, comma-separated. An alias may not itself be a canonical name
    /// (one step maps every name), nor be given twice.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut pairs: Vec<(Registry, Registry)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (alias, canonical) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not alias=canonical"))?;
            let parse = |r: &str| {
                Registry::parse(r.trim())
                    .map_err(|_| format!("{:?} is not a registry host", r.trim()))
            };
            let (alias, canonical) = (parse(alias)?, parse(canonical)?);
            if alias == canonical || pairs.iter().any(|(a, _)| *a == alias) {
                return Err(format!(
                    "{} is given twice, or as its own alias",
                    alias.as_str()
                ));
            }
            pairs.push((alias, canonical));
        }
        if let Some((a, _)) = pairs
            .iter()
            .find(|(a, _)| pairs.iter().any(|(_, c)| c == a))
        {
            return Err(format!(
                "{} is both an alias and a canonical name",
                a.as_str()
            ));
        }
        Ok(Self(pairs))
    }

    /// The canonical name of `registry` (itself when it has none).
    pub fn canonical(&self, registry: &Registry) -> Registry {
        self.0
            .iter()
            .find(|(a, _)| a == registry)
            .map_or_else(|| registry.clone(), |(_, c)| c.clone())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A repository path such as `shop/api` (without the registry).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Repository(String);

impl Repository {
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() || s.len() > MAX_NAME_LEN || !s.split('/').all(is_path_component) {
            return Err(ReferenceError::Repository(s.chars().take(300).collect()));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `[a-z0-9]+ (separator [a-z0-9]+)*` where a separator is `.`, `_`, `__` or one or more `-`.
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A tag such as `v1.4.2`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let b = s.as_bytes();
        let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
        let ok = !b.is_empty()
            && b.len() <= MAX_TAG_LEN
            && word(b[0])
            && b[1..].iter().all(|&x| word(x) || x == b'.' || x == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ReferenceError::Tag(s.chars().take(300).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A content digest, `sha256:` + 64 lower-case hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let ok = s.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == SHA256_HEX_LEN
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ReferenceError::Digest(s.chars().take(300).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_newtype_impls {
    ($($t:ident),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<String> for $t {
            type Error = ReferenceError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
    )*};
}
string_newtype_impls!(Registry, Repository, Tag, Digest);

/// A fully qualified image reference: registry and repository always, tag and/or digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageRef {
    pub registry: Registry,
    pub repository: Repository,
    pub tag: Option<Tag>,
    pub digest: Option<Digest>,
}

impl ImageRef {
    /// Parses `[registry/]path[:tag][@digest]` as `docker pull` does: the first component is a
    /// registry when it holds a `.` or `:` or is `localhost`; otherwise the image is on Docker Hub,
    /// where a single-component name lives under `library/`.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let whole = || ReferenceError::Reference(s.to_owned());
        if s.is_empty() || s.len() > MAX_NAME_LEN + 300 {
            return Err(whole());
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d)?)),
            None => (s, None),
        };
        // A ':' after the last '/' starts the tag; one before it belongs to a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(Tag::parse(&rest[at + 1..])?))
            }
            None => (rest, None),
        };
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (Registry::parse(first)?, path.to_owned())
            }
            _ if name.contains('/') => (Registry::docker_hub(), name.to_owned()),
            _ => (Registry::docker_hub(), format!("library/{name}")),
        };
        let path = if registry.as_str() == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        Ok(Self {
            registry,
            repository: Repository::parse(&path)?,
            tag,
            digest,
        })
    }

    /// `registry/repository`, the name a rule's repository glob and the store's keys use.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What a task definition should run: pinned by digest when the event carried one.
    pub fn deployable(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => format!("{}@{}", self.name(), d),
            (None, Some(t)) => format!("{}:{}", self.name(), t),
            (None, None) => self.name(),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The account and Region of an Amazon ECR registry host
/// (`<account>.dkr.ecr.<region>.amazonaws.com`, `.amazonaws.com.cn` in China).
pub fn ecr_account_region(host: &str) -> Option<(&str, &str)> {
    let (account, rest) = host.split_once(".dkr.ecr.")?;
    let region = rest
        .strip_suffix(".amazonaws.com")
        .or_else(|| rest.strip_suffix(".amazonaws.com.cn"))?;
    let plain =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) && plain(region))
        .then_some((account, region))
}

/// The registry and repository of an image string as found in a task definition
/// (`repo:tag`, `repo@digest`, `registry/repo:tag@digest`), used to find the container that
/// runs a repository. Lenient on purpose: it reads what ECS holds, it does not validate input.
pub fn image_name_of(image: &str) -> String {
    let no_digest = image.split_once('@').map_or(image, |(n, _)| n);
    let last_slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    let name = match no_digest[last_slash..].find(':') {
        Some(i) => &no_digest[..last_slash + i],
        None => no_digest,
    };
    match ImageRef::parse(name) {
        Ok(r) => r.name(),
        Err(_) => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn full_reference_parses_into_its_parts() {
        let r = ImageRef::parse(&format!("myregistry.azurecr.io/shop/api:v1.4.2@{D}")).unwrap();
        assert_eq!(r.registry.as_str(), "myregistry.azurecr.io");
        assert_eq!(r.repository.as_str(), "shop/api");
        assert_eq!(r.tag.as_ref().map(Tag::as_str), Some("v1.4.2"));
        assert_eq!(r.digest.as_ref().map(Digest::as_str), Some(D));
        assert_eq!(
            r.deployable(),
            format!("myregistry.azurecr.io/shop/api@{D}")
        );
    }

    #[test]
    fn docker_hub_defaults_apply_to_short_names() {
        let r = ImageRef::parse("nginx:1.27").unwrap();
        assert_eq!(r.registry.as_str(), "docker.io");
        assert_eq!(r.repository.as_str(), "library/nginx");
        let r = ImageRef::parse("bitnami/redis").unwrap();
        assert_eq!(r.repository.as_str(), "bitnami/redis");
        assert_eq!(r.tag, None);
        let r = ImageRef::parse("docker.io/nginx").unwrap();
        assert_eq!(r.repository.as_str(), "library/nginx");
    }

    #[test]
    fn registry_port_is_not_mistaken_for_a_tag() {
        let r = ImageRef::parse("localhost:5000/app").unwrap();
        assert_eq!(r.registry.as_str(), "localhost:5000");
        assert_eq!(r.repository.as_str(), "app");
        assert_eq!(r.tag, None);
        let r = ImageRef::parse("registry.local:5000/team/app:2").unwrap();
        assert_eq!(r.tag.as_ref().map(Tag::as_str), Some("2"));
    }

    #[test]
    fn upper_case_repository_is_refused() {
        assert!(matches!(
            ImageRef::parse("example.com/Shop/api:1"),
            Err(ReferenceError::Repository(_))
        ));
    }

    #[test]
    fn repository_separators_follow_the_grammar() {
        for ok in ["a", "a.b", "a_b", "a__b", "a-b", "a---b", "a/b/c", "0/9"] {
            assert!(Repository::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "-a", "a-", "a..b", "a___b", "a._b", "a//b", "/a", "a/", "a b", "é",
        ] {
            assert!(Repository::parse(bad).is_err(), "{bad}");
        }
        assert!(Repository::parse(&"a".repeat(255)).is_ok());
        assert!(Repository::parse(&"a".repeat(256)).is_err());
    }

    #[test]
    fn tag_grammar_edges() {
        assert!(Tag::parse("_").is_ok());
        assert!(Tag::parse("V1.0-rc_1").is_ok());
        assert!(Tag::parse(&"a".repeat(128)).is_ok());
        assert!(Tag::parse(&"a".repeat(129)).is_err());
        for bad in ["", ".a", "-a", "a:b", "a/b", "a@b", "a b"] {
            assert!(Tag::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digest_must_be_sha256_with_64_lower_hex() {
        assert!(Digest::parse(D).is_ok());
        assert!(Digest::parse(&D.to_uppercase()).is_err());
        assert!(Digest::parse(&D[..D.len() - 1]).is_err());
        assert!(Digest::parse(&format!("{D}0")).is_err());
        assert!(Digest::parse(&D.replace("sha256", "sha512")).is_err());
        assert!(Digest::parse("sha256:91ef6").is_err());
        assert!(Digest::parse(&D.replace('a', "g")).is_err());
    }

    #[test]
    fn signature_attestation_and_sbom_tags_are_artifacts() {
        let h = "a".repeat(64);
        assert_eq!(artifact_tag(&format!("sha256-{h}.sig")), Some("signature"));
        assert_eq!(
            artifact_tag(&format!("sha256-{h}.att")),
            Some("attestation")
        );
        assert_eq!(artifact_tag(&format!("sha256-{h}.sbom")), Some("SBOM"));
        assert_eq!(
            artifact_tag(&format!("sha256-{h}")),
            Some("referrers index")
        );
        for image in [
            "1.4.2",
            "latest",
            "sha256-abc.sig",
            &format!("sha256-{h}.zip"),
            &format!("sha256-{}.sig", "g".repeat(64)),
        ] {
            assert_eq!(artifact_tag(image), None, "{image}");
        }
    }

    #[test]
    fn aliases_map_every_name_to_one() {
        let a = RegistryAliases::parse(
            "localhost:5000=registry.example.com, 127.0.0.1:5000=registry.example.com",
        )
        .unwrap();
        let r = |s: &str| Registry::parse(s).unwrap();
        assert_eq!(a.canonical(&r("127.0.0.1:5000")), r("registry.example.com"));
        assert_eq!(a.canonical(&r("LOCALHOST:5000")), r("registry.example.com"));
        assert_eq!(a.canonical(&r("ghcr.io")), r("ghcr.io"));
        for bad in [
            "a.com",
            "a.com=a.com",
            "a_b=c.com",
            "a.com=b.com,a.com=c.com",
            "a.com=b.com,b.com=c.com",
        ] {
            assert!(RegistryAliases::parse(bad).is_err(), "{bad}");
        }
        assert!(RegistryAliases::parse("").unwrap().is_empty());
    }

    #[test]
    fn registry_host_grammar() {
        for ok in [
            "example.com",
            "localhost:5000",
            "123456789012.dkr.ecr.us-west-2.amazonaws.com",
            "10.0.0.1:443",
            "[fd00::5]:5000",
            "[::1]",
            "[2001:DB8::1]:443",
        ] {
            assert!(Registry::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            Registry::parse("[FD00:0:0::5]:5000").unwrap().as_str(),
            "[fd00::5]:5000"
        );
        for bad in [
            "",
            "[fd00::5",
            "[fd00::5]:",
            "[fd00::5]5000",
            "[not-ip]:5000",
            "[10.0.0.1]:5000",
            "[registry].azurecr.io",
            "-a.com",
            "a..com",
            "a.com:",
            "a.com:123456",
            "a_b.com",
        ] {
            assert!(Registry::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Registry::parse("MyReg.AzureCR.io").unwrap().as_str(),
            "myreg.azurecr.io"
        );
    }

    #[test]
    fn image_name_of_reads_task_definition_images() {
        assert_eq!(image_name_of("nginx:1"), "docker.io/library/nginx");
        assert_eq!(
            image_name_of(&format!("r.example.com:5000/a/b:1@{D}")),
            "r.example.com:5000/a/b"
        );
        assert_eq!(image_name_of("r.example.com/a/b"), "r.example.com/a/b");
        let v6 = ImageRef::parse(&format!("[fd00::5]:5000/shop/api:1.0@{D}")).unwrap();
        assert_eq!(v6.registry.as_str(), "[fd00::5]:5000");
        assert_eq!(v6.tag.unwrap().as_str(), "1.0");
        assert_eq!(
            image_name_of("[fd00::5]:5000/shop/api:1.0"),
            "[fd00::5]:5000/shop/api"
        );
    }

    proptest! {
        #[test]
        fn display_round_trips(
            repo in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}(-[a-z0-9]{1,4})?){0,3}",
            tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
            hex in proptest::option::of("[0-9a-f]{64}"),
        ) {
            let r = ImageRef {
                registry: Registry::parse("registry.example.com:5000").unwrap(),
                repository: Repository::parse(&repo).unwrap(),
                tag: tag.map(|t| Tag::parse(&t).unwrap()),
                digest: hex.map(|h| Digest::parse(&format!("sha256:{h}")).unwrap()),
            };
            prop_assert_eq!(ImageRef::parse(&r.to_string()).unwrap(), r);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = ImageRef::parse(&s);
        }
    }
}
