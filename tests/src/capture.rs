//! A local HTTP server that records what is posted to it: the far end of notification tests
//! (a Slack-compatible webhook, an SNS HTTP subscription). Paths choose the answer:
//! `/fail...` answers 500, `/slow...` never answers in time, anything else 200 "ok".

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Captured {
    pub path: String,
    pub content_type: String,
    pub body: Value,
}

#[derive(Clone)]
pub struct Capture {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Captured>>>,
}

impl Capture {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Captured>>> = Arc::default();
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let log = Arc::clone(&log);
                        async move {
                            let path = req.uri().path().to_owned();
                            let content_type = req
                                .headers()
                                .get(http::header::CONTENT_TYPE)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            let body = body
                                .ok()
                                .and_then(|b| serde_json::from_slice(&b).ok())
                                .unwrap_or(Value::Null);
                            log.lock().expect("log").push(Captured {
                                path: path.clone(),
                                content_type,
                                body,
                            });
                            let (status, text) = if path.starts_with("/fail") {
                                (500, "no_service")
                            } else if path.starts_with("/slow") {
                                tokio::time::sleep(Duration::from_secs(30)).await;
                                (200, "late")
                            } else {
                                (200, "ok")
                            };
                            let mut resp = hyper::Response::new(Full::new(Bytes::from(text)));
                            *resp.status_mut() =
                                hyper::StatusCode::from_u16(status).expect("status");
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, seen }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A new SNS topic with an HTTP subscription to this server's `/sns`.
    pub async fn sns_topic(&self, sdk: &aws_config::SdkConfig) -> String {
        let sns = aws_sdk_sns::Client::new(sdk);
        let arn = sns
            .create_topic()
            .name(crate::unique("imagehook-notices"))
            .send()
            .await
            .expect("CreateTopic")
            .topic_arn()
            .expect("a topic ARN")
            .to_owned();
        sns.subscribe()
            .topic_arn(&arn)
            .protocol("http")
            .endpoint(self.url("/sns"))
            .send()
            .await
            .expect("Subscribe");
        arn
    }

    /// Everything posted to `path` so far, and forgets it.
    pub fn take(&self, path: &str) -> Vec<Captured> {
        let mut seen = self.seen.lock().expect("log");
        let (hit, rest): (Vec<_>, Vec<_>) = seen.drain(..).partition(|c| c.path == path);
        *seen = rest;
        hit
    }
}
