//! The registry resolver: `HEAD /v2/<name>/manifests/<tag>` as the Distribution specification
//! defines it, reading the digest from `Docker-Content-Digest`. A 401 is answered once, with the
//! token the challenge's realm hands out (anonymously for public repositories, with the login
//! REGISTRY_CREDENTIALS_ARN keeps for the host otherwise) or with HTTP Basic when the registry
//! asks for it.
//!
//! Over the HTTPS client stack the Slack adapter already links (hyper 1, rustls on ring, the
//! system's trust store). Only https:// is used, except for the loopback hosts that
//! REGISTRY_INSECURE_HOSTS names.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::OnceCell;

use super::slack::connect_error;
use crate::model::reference::{DOCKER_HUB, Digest, ImageRef};
use crate::ports::resolver::{ResolveError, Resolver};

/// Manifest lists and OCI indexes first: a multi-platform tag is pinned to its index, which is
/// what `docker pull` and ECS resolve it to. Without these the registry may answer with the
/// digest of a single-platform manifest it converts on the fly (or refuse with 404).
pub const MANIFEST_ACCEPT: &str = "application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.oci.image.manifest.v1+json";

/// Docker Hub's API is not served at `docker.io`, the name references use.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// How long a token is kept when its answer names no lifetime: the token specification's
/// default.
const DEFAULT_TOKEN_SECONDS: u64 = 60;
/// A token is dropped this long before it expires, so it never expires in flight.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);
/// The most repositories whose authorization is kept; past it the cache starts again.
const MAX_KEPT: usize = 256;

/// A manifest HEAD has no body and a token answer is a small JSON object: anything larger is
/// neither.
const MAX_BODY: usize = 64 * 1024;

/// What the registry or its token service answered, the body read within `MAX_BODY`.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A login for one registry host. Never shown: `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    username: String,
    password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Login([REDACTED])")
    }
}

impl Login {
    fn basic(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

/// Why the REGISTRY_CREDENTIALS_ARN document was refused. It names the host at most, never a
/// value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        r#"is not a JSON object of registry host to {{"username": ..., "password": ...}} (or "token" for "password")"#
    )]
    NotAMap,
    #[error(
        r#"has an entry for {0:?} without a string "username" and exactly one string "password" or "token""#
    )]
    Entry(String),
}

/// The logins REGISTRY_CREDENTIALS_ARN keeps, by registry host as references name it
/// (`quay.io`, `docker.io`, `registry.example.com:5000`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials(HashMap<String, Login>);

impl Credentials {
    /// `{"quay.io": {"username": "org+robot", "password": "..."}, ...}`. `token` is accepted in
    /// place of `password` (a personal access token is sent the same way).
    pub fn parse(text: &str) -> Result<Self, CredentialsError> {
        let doc: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|_| CredentialsError::NotAMap)?;
        let mut out = HashMap::with_capacity(doc.len());
        for (host, entry) in doc {
            let bad = || CredentialsError::Entry(host.chars().take(253).collect());
            let field = |k: &str| entry.get(k).map(|v| v.as_str().map(str::to_owned));
            let username = field("username").flatten().ok_or_else(bad)?;
            let password = match (field("password"), field("token")) {
                (Some(Some(p)), None) | (None, Some(Some(p))) => p,
                _ => return Err(bad()),
            };
            if username.is_empty() || password.is_empty() {
                return Err(bad());
            }
            out.insert(host.to_ascii_lowercase(), Login { username, password });
        }
        Ok(Self(out))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

pub struct RegistryResolver {
    /// Hosts reached over plain HTTP (loopback only: the configuration refuses others).
    insecure: Vec<String>,
    credentials: Credentials,
    budget: Duration,
    /// Built on the first resolution: loading the trust store costs a few milliseconds that a
    /// cold start whose events all carry digests should not pay.
    client: OnceCell<HttpsClient>,
    /// The `Authorization` that last worked for a repository (`registry/repository`), until it
    /// expires: a warm function asks the token service once per repository and token lifetime,
    /// and each push is one HEAD.
    kept: std::sync::Mutex<HashMap<String, (String, tokio::time::Instant)>>,
}

impl RegistryResolver {
    pub fn new(budget: Duration, insecure: Vec<String>, credentials: Credentials) -> Self {
        Self {
            insecure: insecure.iter().map(|h| h.to_ascii_lowercase()).collect(),
            credentials,
            budget,
            client: OnceCell::new(),
            kept: std::sync::Mutex::new(HashMap::new()),
        }
    }

    async fn client(&self) -> Result<&HttpsClient, ResolveError> {
        self.client
            .get_or_try_init(|| async {
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                http.set_connect_timeout(Some(self.budget));
                let https = super::tls::connector(http).map_err(ResolveError::Connect)?;
                Ok(Client::builder(TokioExecutor::new()).build(https))
            })
            .await
    }

    /// `https://`, or `http://` for a host REGISTRY_INSECURE_HOSTS names.
    fn scheme_for(&self, authority: &str) -> &'static str {
        if self.insecure.iter().any(|h| h == authority) {
            "http"
        } else {
            "https"
        }
    }

    fn manifest_uri(&self, image: &ImageRef) -> Result<Uri, ResolveError> {
        let tag = image.tag.as_ref().ok_or(ResolveError::NoTag)?;
        let host = api_host(image.registry.as_str());
        let uri = format!(
            "{}://{host}/v2/{}/manifests/{tag}",
            self.scheme_for(host),
            image.repository
        );
        uri.parse()
            .map_err(|_| ResolveError::BadAnswer(format!("{uri} is not a URL")))
    }

    async fn send(
        &self,
        method: Method,
        uri: &Uri,
        accept: &str,
        auth: Option<&str>,
    ) -> Result<Answer, ResolveError> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(uri.clone())
            .header(header::ACCEPT, accept)
            .header(header::USER_AGENT, "imagehook");
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|_| ResolveError::BadAnswer("the request could not be built".into()))?;
        let resp = self
            .client()
            .await?
            .request(req)
            .await
            .map_err(|e| ResolveError::Connect(connect_error(&e)))?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|_| {
                ResolveError::BadAnswer(format!(
                    "an answer was unreadable or over {MAX_BODY} bytes"
                ))
            })?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    fn kept(&self, name: &str) -> Option<String> {
        let mut kept = self.kept.lock().ok()?;
        match kept.get(name) {
            Some((auth, until)) if *until > tokio::time::Instant::now() => Some(auth.clone()),
            Some(_) => {
                kept.remove(name);
                None
            }
            None => None,
        }
    }

    fn keep(&self, name: String, auth: String, lifetime: Duration) {
        if let Ok(mut kept) = self.kept.lock() {
            if kept.len() >= MAX_KEPT {
                kept.clear();
            }
            kept.insert(name, (auth, tokio::time::Instant::now() + lifetime));
        }
    }

    /// The `Authorization` a 401's challenge asks for, fetching a token when it is Bearer, and
    /// how long it may be used.
    async fn authorize(
        &self,
        image: &ImageRef,
        headers: &HeaderMap,
    ) -> Result<(String, Duration), ResolveError> {
        let login = self.credentials.0.get(image.registry.as_str());
        let challenges: Vec<Challenge> = headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(Challenge::parse)
            .collect();
        let Some(challenge) = challenges
            .iter()
            .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
            .or_else(|| challenges.first())
        else {
            return Err(ResolveError::Unauthorized(
                "HTTP 401 without a WWW-Authenticate challenge".into(),
            ));
        };
        if challenge.scheme.eq_ignore_ascii_case("basic") {
            // A login does not expire; it is asked for again after the default token lifetime all
            // the same, so a changed challenge is seen.
            return login
                .map(|l| (l.basic(), Duration::from_secs(DEFAULT_TOKEN_SECONDS)))
                .ok_or_else(|| {
                ResolveError::Unauthorized(format!(
                    "HTTP 401: {} asks for a login and REGISTRY_CREDENTIALS_ARN holds none for it",
                    image.registry
                ))
            });
        }
        if !challenge.scheme.eq_ignore_ascii_case("bearer") {
            return Err(ResolveError::Unauthorized(format!(
                "HTTP 401 with an unsupported {} challenge",
                challenge.scheme
            )));
        }
        let (token, lifetime) = self.token(image, challenge, login).await?;
        Ok((format!("Bearer {token}"), lifetime))
    }

    /// A token from the challenge's realm, for the challenge's scope (pull on the repository
    /// when it names none).
    async fn token(
        &self,
        image: &ImageRef,
        challenge: &Challenge,
        login: Option<&Login>,
    ) -> Result<(String, Duration), ResolveError> {
        let realm = challenge.param("realm").ok_or_else(|| {
            ResolveError::Unauthorized("HTTP 401: a Bearer challenge without a realm".into())
        })?;
        let realm: Uri = realm.parse().map_err(|_| {
            ResolveError::BadAnswer(format!("the token realm {realm:?} is not a URL"))
        })?;
        let authority = realm.authority().map(|a| a.as_str().to_ascii_lowercase());
        match (realm.scheme_str(), authority) {
            (Some("https"), Some(_)) => {}
            (Some("http"), Some(a)) if self.scheme_for(&a) == "http" => {}
            _ => {
                return Err(ResolveError::Insecure(format!(
                    "the token realm {realm} is not https:// (http:// only to a host in REGISTRY_INSECURE_HOSTS)"
                )));
            }
        }
        let default_scope = format!("repository:{}:pull", image.repository);
        let query = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            if let Some(service) = challenge.param("service") {
                query.append_pair("service", service);
            }
            query.append_pair("scope", challenge.param("scope").unwrap_or(&default_scope));
            query.finish()
        };
        let uri = match realm.query() {
            Some(q) if !q.is_empty() => format!("{realm}&{query}"),
            _ => format!("{}?{query}", realm.to_string().trim_end_matches('?')),
        };
        let uri: Uri = uri
            .parse()
            .map_err(|_| ResolveError::BadAnswer("the token URL could not be built".into()))?;
        let basic = login.map(Login::basic);
        let resp = self
            .send(Method::GET, &uri, "application/json", basic.as_deref())
            .await?;
        let status = resp.status;
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Err(ResolveError::Unauthorized(format!(
                "the token service refused {} (HTTP {})",
                if login.is_some() {
                    "the login REGISTRY_CREDENTIALS_ARN holds"
                } else {
                    "an anonymous pull (a private repository needs a login in REGISTRY_CREDENTIALS_ARN)"
                },
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(ResolveError::BadAnswer(format!(
                "the token service answered HTTP {}",
                status.as_u16()
            )));
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let answer: TokenAnswer = serde_json::from_slice(&resp.body)
            .map_err(|_| ResolveError::BadAnswer("the token answer is not a JSON object".into()))?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(DEFAULT_TOKEN_SECONDS))
            .saturating_sub(TOKEN_MARGIN);
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty() && HeaderValue::from_str(&format!("Bearer {t}")).is_ok())
            .ok_or_else(|| ResolveError::BadAnswer("the token answer holds no token".into()))?;
        Ok((token, lifetime))
    }
}

#[async_trait::async_trait]
impl Resolver for RegistryResolver {
    async fn resolve(&self, image: &ImageRef) -> Result<Digest, ResolveError> {
        let uri = self.manifest_uri(image)?;
        let name = image.name();
        let kept = self.kept(&name);
        let resp = self
            .send(Method::HEAD, &uri, MANIFEST_ACCEPT, kept.as_deref())
            .await?;
        let resp = if resp.status == StatusCode::UNAUTHORIZED {
            let (auth, lifetime) = self.authorize(image, &resp.headers).await?;
            let resp = self
                .send(Method::HEAD, &uri, MANIFEST_ACCEPT, Some(&auth))
                .await?;
            if resp.status == StatusCode::OK && !lifetime.is_zero() {
                self.keep(name, auth, lifetime);
            }
            resp
        } else {
            resp
        };
        digest_of(resp.status, &resp.headers)
    }

    fn budget(&self) -> Duration {
        self.budget
    }
}

/// The host the registry's API is served at.
fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        DOCKER_HUB_API
    } else {
        registry
    }
}

/// The digest a manifest HEAD answered with, checked to be one.
fn digest_of(status: StatusCode, headers: &HeaderMap) -> Result<Digest, ResolveError> {
    match status {
        StatusCode::OK => {}
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            return Err(ResolveError::Unauthorized(format!(
                "HTTP {} for the manifest, even with the registry's token or login",
                status.as_u16()
            )));
        }
        StatusCode::NOT_FOUND => {
            return Err(ResolveError::NotFound(
                "HTTP 404: the registry has no manifest for this tag (or no such repository)"
                    .into(),
            ));
        }
        s => {
            return Err(ResolveError::BadAnswer(format!(
                "HTTP {} for the manifest",
                s.as_u16()
            )));
        }
    }
    let value = headers
        .get("docker-content-digest")
        .ok_or_else(|| ResolveError::BadAnswer("no Docker-Content-Digest header".into()))?;
    let text = value.to_str().unwrap_or_default().trim();
    Digest::parse(text).map_err(|_| {
        let shown: String = text.chars().take(80).collect();
        ResolveError::BadAnswer(format!(
            "Docker-Content-Digest {shown:?} is not sha256:<64 hex>"
        ))
    })
}

/// One `WWW-Authenticate` challenge: `Bearer realm="...",service="...",scope="..."`.
#[derive(Debug, PartialEq, Eq)]
struct Challenge {
    scheme: String,
    params: Vec<(String, String)>,
}

impl Challenge {
    /// The scheme and its parameters; quoted values may hold commas (`scope="...:pull,push"`).
    fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (scheme, mut rest) = match s.split_once(char::is_whitespace) {
            Some((scheme, rest)) => (scheme, rest.trim_start()),
            None => (s, ""),
        };
        if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let mut params = Vec::new();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=')?;
            let key = key.trim().to_ascii_lowercase();
            let after = after.trim_start();
            let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next().map(|(_, c)| c)),
                        '"' => {
                            end = Some(i + 1);
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end?..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            };
            params.push((key, value));
            rest = next.trim_start().trim_start_matches(',').trim_start();
        }
        Some(Self {
            scheme: scheme.to_owned(),
            params,
        })
    }

    fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn resolver(insecure: &[&str]) -> RegistryResolver {
        RegistryResolver::new(
            Duration::from_secs(1),
            insecure.iter().map(|h| (*h).to_owned()).collect(),
            Credentials::default(),
        )
    }

    #[test]
    fn docker_hub_references_are_asked_at_registry_1_under_library() {
        let r = resolver(&[]);
        let image = ImageRef::parse("nginx:1.27").unwrap();
        assert_eq!(
            r.manifest_uri(&image).unwrap().to_string(),
            "https://registry-1.docker.io/v2/library/nginx/manifests/1.27"
        );
        let image = ImageRef::parse("quay.io/org/app:latest").unwrap();
        assert_eq!(
            r.manifest_uri(&image).unwrap().to_string(),
            "https://quay.io/v2/org/app/manifests/latest"
        );
        assert_eq!(
            r.manifest_uri(&ImageRef::parse("quay.io/org/app").unwrap()),
            Err(ResolveError::NoTag)
        );
    }

    #[test]
    fn plain_http_only_for_a_listed_host() {
        let r = resolver(&["127.0.0.1:5000"]);
        let local = ImageRef::parse("127.0.0.1:5000/app:1").unwrap();
        assert!(
            r.manifest_uri(&local)
                .unwrap()
                .to_string()
                .starts_with("http://")
        );
        let other = ImageRef::parse("127.0.0.1:5001/app:1").unwrap();
        assert!(
            r.manifest_uri(&other)
                .unwrap()
                .to_string()
                .starts_with("https://")
        );
    }

    #[tokio::test]
    async fn a_token_realm_on_plain_http_is_refused_unless_listed() {
        let image = ImageRef::parse("quay.io/org/app:latest").unwrap();
        let challenge =
            Challenge::parse(r#"Bearer realm="http://auth.example.com/token",service="quay.io""#)
                .unwrap();
        let e = resolver(&["127.0.0.1:5000"])
            .token(&image, &challenge, None)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, ResolveError::Insecure(m) if m.contains("REGISTRY_INSECURE_HOSTS")),
            "{e}"
        );
        let no_realm = Challenge::parse(r#"Bearer service="quay.io""#).unwrap();
        assert!(matches!(
            resolver(&[]).token(&image, &no_realm, None).await,
            Err(ResolveError::Unauthorized(_))
        ));
    }

    #[test]
    fn challenges_parse_with_quoted_commas() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "Bearer");
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("service"), Some("registry.docker.io"));
        assert_eq!(
            c.param("scope"),
            Some("repository:samalba/my-app:pull,push")
        );
        let c = Challenge::parse(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(c.scheme, "Basic");
        assert_eq!(c.param("realm"), Some("Registry Realm"));
        assert_eq!(Challenge::parse("Basic").unwrap().params, vec![]);
        for bad in [
            "",
            r#"Bearer realm="unterminated"#,
            "Bearer realm",
            "B@d x=y",
        ] {
            assert_eq!(Challenge::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_a_200_with_a_sha256_digest_resolves() {
        let mut h = HeaderMap::new();
        h.insert("docker-content-digest", D.parse().unwrap());
        assert_eq!(digest_of(StatusCode::OK, &h).unwrap().as_str(), D);
        assert!(matches!(
            digest_of(StatusCode::NOT_FOUND, &h),
            Err(ResolveError::NotFound(_))
        ));
        assert!(matches!(
            digest_of(StatusCode::INTERNAL_SERVER_ERROR, &h),
            Err(ResolveError::BadAnswer(_))
        ));
        h.insert("docker-content-digest", "sha512:abc".parse().unwrap());
        assert!(matches!(
            digest_of(StatusCode::OK, &h),
            Err(ResolveError::BadAnswer(_))
        ));
        assert!(matches!(
            digest_of(StatusCode::OK, &HeaderMap::new()),
            Err(ResolveError::BadAnswer(_))
        ));
    }

    #[test]
    fn credentials_parse_and_never_show() {
        let c = Credentials::parse(
            r#"{"Quay.io": {"username": "org+robot", "password": "s3cr3t"},
                "ghcr.io": {"username": "me", "token": "ghp_s3cr3t"}}"#,
        )
        .unwrap();
        assert_eq!(c.len(), 2);
        assert!(c.0.contains_key("quay.io"));
        assert!(!format!("{c:?}").contains("s3cr3t"));
        for bad in [
            "s3cr3t",
            r#"["s3cr3t"]"#,
            r#"{"quay.io": "s3cr3t"}"#,
            r#"{"quay.io": {"username": "u"}}"#,
            r#"{"quay.io": {"username": "u", "password": "s3cr3t", "token": "s3cr3t"}}"#,
            r#"{"quay.io": {"username": "u", "password": 7}}"#,
            r#"{"quay.io": {"username": "", "password": "s3cr3t"}}"#,
        ] {
            let e = Credentials::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("s3cr3t"), "{e}");
        }
    }
}
