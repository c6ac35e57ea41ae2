//! The cap on the connections `imagehook serve` keeps open. Each one holds a task, its buffers
//! and a file descriptor until it closes; without a cap, enough idle or slow clients would take
//! all of them. Past the cap a connection is told so at once, instead of waiting unanswered in
//! the listen backlog.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use imagehook_core::edge::http::ApiError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a refused connection may take, writing the answer and then reading what the client
/// sent before it (unread bytes at close would reset the connection, and the client could lose
/// the answer): a client that reads nothing cannot hold its task longer.
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// The connections open, and the answer to one too many.
pub struct Connections {
    slots: Arc<Semaphore>,
    max: usize,
    refusal: Bytes,
    /// Connections refused since the cap was last reached, to log the episode once.
    refused: Option<u64>,
}

/// An open connection's place under the cap, given back when it is dropped.
pub type Slot = OwnedSemaphorePermit;

impl Connections {
    pub fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            refusal: refusal(max),
            refused: None,
        }
    }

    /// A slot for `stream`, or `None` once it has been answered 503 and is being closed.
    pub fn admit(&mut self, stream: TcpStream) -> Option<(TcpStream, Slot)> {
        match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => {
                if let Some(refused) = self.refused.take() {
                    tracing::info!(refused, "below the connection limit again");
                }
                Some((stream, slot))
            }
            Err(_) => {
                let refused = self.refused.get_or_insert_with(|| {
                    tracing::warn!(
                        max = self.max,
                        "at the connection limit: new connections are answered 503 until some close"
                    );
                    0
                });
                *refused += 1;
                tokio::spawn(refuse(stream, self.refusal.clone()));
                None
            }
        }
    }
}

async fn refuse(mut stream: TcpStream, answer: Bytes) {
    let _ = tokio::time::timeout(REFUSAL_TIME, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// The whole HTTP/1.1 answer to a connection over the cap, written before its request is read.
fn refusal(max: usize) -> Bytes {
    let resp = ApiError::TooManyConnections(max).render();
    let status = resp.status();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    for (name, value) in resp.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let body = resp.body().as_ref();
    out.extend_from_slice(
        format!(
            "connection: close\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    Bytes::from(out)
}
