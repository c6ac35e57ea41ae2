//! A Slack-compatible incoming webhook: one POST of `{"text": ...}` per delivery, the format
//! Slack, Mattermost, Rocket.Chat, Google Chat and Discord's `/slack` endpoints all accept.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::OnceCell;

use crate::ports::notifier::{Notice, NotifyError, Sink};

/// More lines than this go into one "and N more" line: a message stays readable and well under
/// Slack's 40,000-character limit.
const MAX_LINES: usize = 20;

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// An incoming webhook's URL. Its path is the secret that lets anyone post to the channel, so
/// it never shows in logs, errors or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(http::Uri);

impl WebhookUrl {
    /// An `https://` URL, or `http://` to this machine (a local relay, tests): a remote
    /// plain-HTTP endpoint would send the secret in the clear.
    pub fn parse(s: &str) -> Option<Self> {
        let uri: http::Uri = s.parse().ok()?;
        let host = uri.host()?;
        let local = matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1");
        match uri.scheme_str()? {
            "https" => Some(Self(uri)),
            "http" if local => Some(Self(uri)),
            _ => None,
        }
    }
}

impl std::fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookUrl([REDACTED])")
    }
}

pub struct SlackWebhook {
    url: WebhookUrl,
    /// Built on the first notice: loading the trust store costs a few milliseconds that a cold
    /// start without notices should not pay.
    client: OnceCell<HttpsClient>,
}

impl SlackWebhook {
    pub fn new(url: WebhookUrl) -> Self {
        Self {
            url,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> Result<&HttpsClient, NotifyError> {
        self.client
            .get_or_try_init(|| async {
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                let https = super::tls::connector(http).map_err(NotifyError::Transport)?;
                Ok(Client::builder(TokioExecutor::new()).build(https))
            })
            .await
    }
}

/// Slack reads `&`, `<` and `>` as markup: escaped, an image name or reason shows as written.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The message: the notices' lines, a bullet each when there are several.
pub fn message(notices: &[Notice]) -> serde_json::Value {
    let text = match notices {
        [one] => format!("imagehook: {}", escape(&one.text())),
        many => {
            let mut lines = vec![format!("imagehook: {} notices", many.len())];
            lines.extend(
                many.iter()
                    .take(MAX_LINES)
                    .map(|n| format!("• {}", escape(&n.text()))),
            );
            if many.len() > MAX_LINES {
                lines.push(format!("… and {} more", many.len() - MAX_LINES));
            }
            lines.join("\n")
        }
    };
    serde_json::json!({ "text": text })
}

#[async_trait::async_trait]
impl Sink for SlackWebhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    async fn send(&self, notices: &[Notice]) -> Result<(), NotifyError> {
        let body = message(notices).to_string();
        let req = http::Request::post(self.url.0.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| NotifyError::Transport("the request could not be built".into()))?;
        let resp = self
            .client()
            .await?
            .request(req)
            .await
            // The error's text names the host at most, never the path that holds the secret.
            .map_err(|e| NotifyError::Transport(connect_error(&e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        // Slack explains a refusal in the body ("invalid_token", "no_service"): worth logging.
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let said: String = String::from_utf8_lossy(&body).chars().take(120).collect();
        Err(NotifyError::Refused {
            status: status.as_u16(),
            said,
        })
    }
}

/// What went wrong connecting, without the URL: hyper-util's error chain names the cause
/// (refused, timed out, certificate), not the request. The registry resolver says it the same way.
pub(super) fn connect_error(e: &hyper_util::client::legacy::Error) -> String {
    let mut out = String::from(if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    });
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::notifier::NoticeKind;

    fn notice(service: &str, detail: &str) -> Notice {
        Notice {
            kind: NoticeKind::DeploymentFailed,
            service: service.into(),
            image: "r.example.com/a@sha256:ab".into(),
            stage: None,
            detail: Some(detail.into()),
            event_id: None,
        }
    }

    #[test]
    fn only_https_or_a_local_http_url_is_accepted() {
        assert!(WebhookUrl::parse("https://hooks.slack.com/services/T0/B0/x").is_some());
        assert!(WebhookUrl::parse("http://127.0.0.1:8080/hook").is_some());
        assert!(WebhookUrl::parse("http://localhost/hook").is_some());
        assert!(WebhookUrl::parse("http://hooks.slack.com/services/T0/B0/x").is_none());
        assert!(WebhookUrl::parse("ftp://example.com/x").is_none());
        assert!(WebhookUrl::parse("hooks.slack.com/services/x").is_none());
        assert!(WebhookUrl::parse("").is_none());
    }

    #[test]
    fn the_url_never_shows_in_debug_output() {
        let url = WebhookUrl::parse("https://hooks.slack.com/services/T0/B0/s3cr3t").unwrap();
        assert!(!format!("{url:?}").contains("s3cr3t"));
    }

    #[test]
    fn one_notice_is_one_line_and_markup_is_escaped() {
        let m = message(&[notice("prod/a", "<!channel> & co")]);
        assert_eq!(
            m["text"],
            "imagehook: Deployment failed: prod/a -&gt; r.example.com/a@sha256:ab: &lt;!channel&gt; &amp; co"
        );
    }

    #[test]
    fn many_notices_are_bulleted_and_capped() {
        let many: Vec<_> = (0..25)
            .map(|i| notice(&format!("prod/s{i}"), "x"))
            .collect();
        let text = message(&many)["text"].as_str().unwrap().to_owned();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines[0], "imagehook: 25 notices");
        assert_eq!(lines.len(), 1 + MAX_LINES + 1);
        assert!(lines[1].starts_with("• Deployment failed: prod/s0 "));
        assert_eq!(lines[MAX_LINES + 1], "… and 5 more");
    }
}
