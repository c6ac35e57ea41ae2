//! The AWS SDK's HTTP client: hyper's HTTP/1.1 client, over the TLS configuration imagehook's
//! other clients share (`tls.rs`).
//!
//! The SDK's own client (aws-smithy-http-client) always links HTTP/2 as well, and it enables
//! HTTP/2 in hyper for every client in the process (the Lambda runtime's too): about 600 KiB
//! of code the functions never run, since DynamoDB, ECS, SNS and Secrets Manager answer over
//! HTTP/1.1. This client also reads the trust store once per process for the SDK and
//! imagehook's clients together, and not at all when every endpoint is `http://` (a local
//! stand-in, moto).
//!
//! What the SDK expects of a client is kept: the connect timeout of its settings over the whole
//! connection (name lookup, TCP and TLS handshake) and its read timeout; errors classified as
//! the SDK's own client classifies them, so that its retry strategy retries what is transient
//! (a refused or reset connection, a connection closed mid-response, a timeout) and nothing
//! else; and each response's connection handed to the SDK, which closes it after a transient
//! error so that the retry does not reuse it.

use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_smithy_runtime_api::client::connection::{CaptureSmithyConnection, ConnectionMetadata};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::client::legacy::connect::{CaptureConnection, HttpInfo, capture_connection};
use hyper_util::rt::{TokioExecutor, TokioTimer};

type BoxError = Box<dyn StdError + Send + Sync>;

/// The client every SDK configuration of the process is given.
pub fn shared() -> SharedHttpClient {
    SharedHttpClient::new(SdkHttp::default())
}

/// One connector per distinct pair of timeouts the SDK asks for (in practice one), each with
/// its own connection pool.
#[derive(Debug, Default)]
struct SdkHttp {
    connectors: Mutex<Vec<(Timeouts, SharedHttpConnector)>>,
}

type Timeouts = (Option<Duration>, Option<Duration>);

impl HttpClient for SdkHttp {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self
            .connectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, c)) = connectors.iter().find(|(k, _)| *k == key) {
            return c.clone();
        }
        let connector = SharedHttpConnector::new(Connector::new(key));
        connectors.push((key, connector.clone()));
        connector
    }
}

/// Plain HTTP and HTTPS clients, each built on the first request that needs it: an `https://`
/// request loads the trust store, an `http://` one never does.
#[derive(Debug)]
struct Connector {
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    tcp: TcpConnector,
    plain: OnceLock<Client<ConnectTimeout<TcpConnector>, SdkBody>>,
    tls: OnceLock<Result<TlsClient, String>>,
}

type TlsClient = Client<ConnectTimeout<HttpsConnector<TcpConnector>>, SdkBody>;

impl Connector {
    fn new((connect_timeout, read_timeout): Timeouts) -> Self {
        let mut tcp = TcpConnector::new();
        tcp.set_nodelay(true);
        // The TLS connector decides the scheme; the TCP one must let it pass.
        tcp.enforce_http(false);
        Self {
            connect_timeout,
            read_timeout,
            tcp,
            plain: OnceLock::new(),
            tls: OnceLock::new(),
        }
    }

    fn timed<C>(&self, inner: C) -> ConnectTimeout<C> {
        ConnectTimeout {
            inner,
            limit: self.connect_timeout,
        }
    }

    fn builder() -> hyper_util::client::legacy::Builder {
        let mut builder = Client::builder(TokioExecutor::new());
        // The pool's idle timeout needs a timer to run.
        builder.pool_timer(TokioTimer::new());
        builder
    }

    fn plain(&self) -> Client<ConnectTimeout<TcpConnector>, SdkBody> {
        self.plain
            .get_or_init(|| Self::builder().build(self.timed(self.tcp.clone())))
            .clone()
    }

    fn tls(&self) -> Result<TlsClient, String> {
        self.tls
            .get_or_init(|| {
                let config = super::tls::client_config()?;
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(rustls::ClientConfig::clone(&config))
                    .https_only()
                    .enable_http1()
                    .wrap_connector(self.tcp.clone());
                Ok(Self::builder().build(self.timed(https)))
            })
            .clone()
    }
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let mut request = match request.try_into_http1x() {
            Ok(r) => r,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let connection = capture_connection(&mut request);
        if let Some(capture) = request.extensions().get::<CaptureSmithyConnection>() {
            capture.set_connection_retriever(move || connection_of(&connection));
        }
        let response = if request.uri().scheme_str() == Some("http") {
            let client = self.plain();
            Box::pin(async move { client.request(request).await })
                as std::pin::Pin<Box<dyn Future<Output = _> + Send>>
        } else {
            match self.tls() {
                Ok(client) => Box::pin(async move { client.request(request).await }),
                // No trust store: nothing to retry until the platform's is mended.
                Err(why) => {
                    return HttpConnectorFuture::ready(Err(ConnectorError::other(
                        why.into(),
                        None,
                    )));
                }
            }
        };
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let answered = match read_timeout {
                Some(limit) => tokio::time::timeout(limit, response)
                    .await
                    .map_err(|_| ConnectorError::timeout(Box::new(ReadTimeout(limit))))?,
                None => response.await,
            };
            match answered {
                Ok(r) => HttpResponse::try_from(r.map(SdkBody::from_body_1_x))
                    .map_err(|e| ConnectorError::other(e.into(), None)),
                Err(e) => Err(classify(e)),
            }
        })
    }
}

/// The connection a response came on, as the SDK's retry interceptor closes it ("poisons")
/// after a transient error.
fn connection_of(captured: &CaptureConnection) -> Option<ConnectionMetadata> {
    let connected = captured.connection_metadata();
    let connected = connected.as_ref()?;
    let mut extras = http::Extensions::new();
    connected.get_extras(&mut extras);
    let info = extras.get::<HttpInfo>();
    let poison = captured.clone();
    let mut metadata = ConnectionMetadata::builder()
        .proxied(false)
        .poison_fn(move || {
            if let Some(c) = poison.connection_metadata().as_ref() {
                c.poison();
            }
        });
    metadata
        .set_local_addr(info.map(HttpInfo::local_addr))
        .set_remote_addr(info.map(HttpInfo::remote_addr));
    Some(metadata.build())
}

/// A connector whose whole connection (name lookup, TCP, TLS handshake) must be made within
/// the SDK's connect timeout; hyper's own TCP timeout covers only the TCP part, and splits it
/// among the addresses a name has.
#[derive(Debug, Clone)]
struct ConnectTimeout<C> {
    inner: C,
    limit: Option<Duration>,
}

type Connecting<R> = Pin<Box<dyn Future<Output = Result<R, BoxError>> + Send>>;

impl<C> tower_service::Service<http::Uri> for ConnectTimeout<C>
where
    C: tower_service::Service<http::Uri>,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
    C::Response: 'static,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Connecting<C::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let limit = self.limit;
        Box::pin(async move {
            let Some(limit) = limit else {
                return connecting.await.map_err(Into::into);
            };
            match tokio::time::timeout(limit, connecting).await {
                Ok(connected) => connected.map_err(Into::into),
                Err(_) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection within the connect timeout of {limit:?}"),
                )) as BoxError),
            }
        })
    }
}

/// No response within the read timeout the SDK's settings ask for.
#[derive(Debug, thiserror::Error)]
#[error("no response within the read timeout of {0:?}")]
struct ReadTimeout(Duration);

/// The SDK's classification of a failed request: I/O and closed connections are retried as
/// transient, a response cut short too, a timeout as a timeout; a request the SDK built wrong
/// is its own error; anything else is not retried.
fn classify(err: hyper_util::client::legacy::Error) -> ConnectorError {
    let connect = err.is_connect();
    let err: BoxError = Box::new(err);
    if let Some(h) = find::<hyper::Error>(err.as_ref()) {
        if h.is_timeout() {
            return ConnectorError::timeout(err);
        }
        if h.is_user() {
            return ConnectorError::user(err);
        }
        if h.is_closed() || h.is_canceled() || find::<std::io::Error>(h).is_some() {
            return ConnectorError::io(err);
        }
        if h.is_incomplete_message() {
            return ConnectorError::other(err, Some(ErrorKind::TransientError));
        }
        return ConnectorError::other(err, None);
    }
    match find::<std::io::Error>(err.as_ref()).map(std::io::Error::kind) {
        Some(std::io::ErrorKind::TimedOut) => ConnectorError::timeout(err),
        Some(_) => ConnectorError::io(err),
        None if connect => ConnectorError::io(err),
        None => ConnectorError::other(err, None),
    }
}

fn find<'a, E: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    std::iter::successors(Some(err), |&e| e.source()).find_map(|e| e.downcast_ref::<E>())
}

/// How many connectors the client has built.
#[cfg(test)]
fn connectors_of(client: &SdkHttp) -> usize {
    client
        .connectors
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .len()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn components() -> RuntimeComponents {
        RuntimeComponentsBuilder::for_tests()
            .build()
            .expect("test components")
    }

    fn settings(read: Option<Duration>) -> HttpConnectorSettings {
        let mut settings = HttpConnectorSettings::builder().connect_timeout(Duration::from_secs(1));
        settings.set_read_timeout(read);
        settings.build()
    }

    fn get(url: &str) -> HttpRequest {
        let request = http::Request::builder()
            .uri(url)
            .body(SdkBody::from("{}"))
            .expect("request");
        HttpRequest::try_from(request).expect("smithy request")
    }

    /// A server on loopback that answers each request with `answer` (after `delay`; an empty
    /// answer closes the connection instead) and counts the connections.
    async fn server(answer: &'static [u8], delay: Duration) -> (String, Arc<Mutex<usize>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let count = Arc::new(Mutex::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                *seen.lock().expect("count") += 1;
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    while socket.read(&mut buf).await.is_ok_and(|n| n > 0) {
                        tokio::time::sleep(delay).await;
                        if answer.is_empty() || socket.write_all(answer).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (url, count)
    }

    #[tokio::test]
    async fn answers_over_http1_and_keeps_the_connection() {
        let (url, connections) = server(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            Duration::ZERO,
        )
        .await;
        let client = SdkHttp::default();
        let connector = client.http_connector(&settings(None), &components());
        for _ in 0..2 {
            let response = connector.call(get(&url)).await.expect("answered");
            assert_eq!(response.status().as_u16(), 200);
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            assert_eq!(&body[..], b"ok");
        }
        // The same settings get the same connector.
        let _ = client.http_connector(&settings(None), &components());
        assert_eq!(connectors_of(&client), 1);
        let _ = client.http_connector(&settings(Some(Duration::from_secs(9))), &components());
        assert_eq!(connectors_of(&client), 2);
        assert_eq!(*connections.lock().expect("count"), 1);
    }

    #[tokio::test]
    async fn a_refused_connection_is_io_and_retried() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let connector = SdkHttp::default().http_connector(&settings(None), &components());
        let err = connector
            .call(get(&format!("http://127.0.0.1:{port}/")))
            .await
            .expect_err("nothing listens");
        assert!(err.is_io(), "{err:?}");
    }

    #[tokio::test]
    async fn a_slow_answer_is_a_timeout() {
        let (url, _) = server(
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        let connector = SdkHttp::default()
            .http_connector(&settings(Some(Duration::from_millis(100))), &components());
        let err = connector.call(get(&url)).await.expect_err("too slow");
        assert!(err.is_timeout(), "{err:?}");
    }

    #[tokio::test]
    async fn a_tls_handshake_that_never_ends_is_a_timeout_of_the_connection() {
        // Accepts TCP and says nothing: the handshake waits for the server's hello.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("https://{}/", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let mut settings = HttpConnectorSettings::builder();
        settings.set_connect_timeout(Some(Duration::from_millis(200)));
        let connector = SdkHttp::default().http_connector(&settings.build(), &components());
        let started = std::time::Instant::now();
        let err = connector.call(get(&url)).await.expect_err("no handshake");
        assert!(err.is_timeout(), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn the_sdk_can_close_the_connection_a_response_came_on() {
        let (url, connections) = server(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
            Duration::ZERO,
        )
        .await;
        let connector = SdkHttp::default().http_connector(&settings(None), &components());
        let capture = CaptureSmithyConnection::new();
        let mut request = get(&url);
        request.add_extension(capture.clone());
        let response = connector.call(request).await.expect("answered");
        assert_eq!(response.status().as_u16(), 503);
        let connection = capture.get().expect("the connection is known");
        assert!(connection.remote_addr().is_some());
        // What the SDK's retry interceptor does after a transient error: the retry then
        // opens a new connection instead of reusing this one.
        connection.poison();
        let response = connector.call(get(&url)).await.expect("answered");
        assert_eq!(response.status().as_u16(), 503);
        assert_eq!(*connections.lock().expect("count"), 2);
    }

    #[tokio::test]
    async fn a_connection_closed_before_the_answer_is_transient() {
        let (url, _) = server(b"", Duration::ZERO).await;
        let connector = SdkHttp::default().http_connector(&settings(None), &components());
        let err = connector.call(get(&url)).await.expect_err("closed");
        assert!(
            err.is_io() || err.as_other() == Some(ErrorKind::TransientError),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_malformed_answer_is_not_retried() {
        let (url, _) = server(b"SMTP ready\r\n\r\n", Duration::ZERO).await;
        let connector = SdkHttp::default().http_connector(&settings(None), &components());
        let err = connector.call(get(&url)).await.expect_err("not HTTP");
        assert!(
            !err.is_io() && !err.is_timeout() && err.as_other().is_none(),
            "{err:?}"
        );
    }
}
