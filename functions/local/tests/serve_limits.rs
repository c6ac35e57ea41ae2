//! What keeps `imagehook serve` up under clients that hold on to it: a cap on open connections
//! answered with a clear 503, a descriptor limit it outlives, and header credentials checked
//! before a body is read.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, root};
use serde_json::Value;

const TOKEN: &str = "sample-webhook-token";
const MIB: usize = 1024 * 1024;

fn imagehook(state: &Path, program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args)
        .current_dir(root())
        .arg("--state-dir")
        .arg(state)
        .env_remove("TABLE_NAME")
        .env_remove("DEPLOY_MODE")
        .env_remove("DEPLOY_RULES_FILE")
        .env_remove("SIGNATURE_HEADER")
        .env_remove("NOTIFY_WEBHOOK_URL")
        .env_remove("NOTIFY_TOPIC_ARN")
        .env_remove("SERVE_MAX_CONNECTIONS")
        .env("AUTH_MODE", "token")
        .env("WEBHOOK_SECRETS", TOKEN);
    c
}

fn serve(state: &Path, env: &[(&str, &str)]) -> (Server, u16) {
    let mut cmd = imagehook(state, env!("CARGO_BIN_EXE_imagehook"), &[]);
    cmd.envs(env.iter().copied());
    common::serve(cmd)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn push_body() -> String {
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("events/acr-push.json")).unwrap(),
    )
    .unwrap();
    event["body"].as_str().unwrap().to_owned()
}

fn push_head(authorization: &str, content_length: usize) -> String {
    format!(
        "POST /push HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Authorization: {authorization}\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

/// Everything the server sends on `conn` until it closes; `None` if it has not closed within
/// `within`.
fn answer(conn: &mut TcpStream, within: Duration) -> Option<String> {
    conn.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // A reset after the answer arrived: what was read is the answer.
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !got.is_empty() => break,
            Err(_) => return None,
        }
    }
    Some(String::from_utf8_lossy(&got).into_owned())
}

/// A push with the right token on a new connection: the whole answer.
fn push(port: u16) -> Option<String> {
    let mut conn = TcpStream::connect_timeout(&addr(port), Duration::from_secs(2)).ok()?;
    let body = push_body();
    let head = push_head(&format!("Bearer {TOKEN}"), body.len());
    let head = head.replacen("\r\n", "\r\nConnection: close\r\n", 1);
    conn.write_all(format!("{head}{body}").as_bytes()).ok()?;
    answer(&mut conn, Duration::from_secs(5))
}

fn status(answer: &str) -> Option<u16> {
    answer.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

fn json_body(answer: &str) -> Value {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// Whether `conn` has been sent anything, or closed, by the server.
fn answered(conn: &TcpStream) -> bool {
    conn.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    let got = (&*conn).read(&mut buf);
    conn.set_nonblocking(false).unwrap();
    !matches!(got, Err(e) if e.kind() == ErrorKind::WouldBlock)
}

fn assert_too_many_connections(answer: &str) {
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    let head = answer.to_ascii_lowercase();
    assert!(head.contains("\r\nretry-after: 1\r\n"), "{answer}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(
        head.contains("\r\ncontent-type: application/json\r\n"),
        "{answer}"
    );
    assert_eq!(
        json_body(answer)["error"],
        "too_many_connections",
        "{answer}"
    );
}

/// Pushes until one is served or `within` has passed: the slots of closed connections come
/// back once the server has seen them close.
fn served_again(port: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let got = push(port).unwrap_or_default();
        if status(&got) == Some(200) || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_connection_over_the_cap_is_answered_503_and_new_ones_are_served_once_some_close() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = serve(dir.path(), &[("SERVE_MAX_CONNECTIONS", "8")]);
    // The start-up probe's connection has closed by now.
    std::thread::sleep(Duration::from_millis(200));
    let mut idle: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(addr(port)).unwrap())
        .collect();

    // The ninth is answered at once, its request unread.
    let refused = push(port).expect("an answer, and the connection closed");
    assert_too_many_connections(&refused);
    assert_eq!(
        json_body(&refused)["message"],
        "the server has its limit of 8 connections open: retry in a moment"
    );
    assert!(
        !idle.iter().any(answered),
        "the connections under the cap are kept open"
    );

    idle.truncate(5);
    let served = served_again(port, Duration::from_secs(5));
    assert_eq!(status(&served), Some(200), "{served}");
    assert_eq!(json_body(&served)["events"][0]["outcome"], "applied");
}

/// Under a descriptor limit of 64 and a cap of 32, 128 idle connections: 32 are held, every
/// other one is answered 503 (the refusals free their descriptors within a second, and while
/// none is free the accept is retried), and once they close the server answers again.
#[test]
fn under_a_low_descriptor_limit_every_connection_over_the_cap_is_still_answered() {
    let dir = tempfile::tempdir().unwrap();
    let limited = imagehook(
        dir.path(),
        "sh",
        &[
            "-c",
            r#"ulimit -n 64 && exec "$0" "$@""#,
            env!("CARGO_BIN_EXE_imagehook"),
        ],
    );
    let mut limited = limited;
    limited.env("SERVE_MAX_CONNECTIONS", "32");
    let (mut server, port) = common::serve(limited);
    std::thread::sleep(Duration::from_millis(200));
    // Bounded connects, so a full backlog cannot stall the test.
    let mut conns: Vec<TcpStream> = (0..128)
        .filter_map(|_| TcpStream::connect_timeout(&addr(port), Duration::from_secs(1)).ok())
        .collect();
    assert!(conns.len() > 64, "only {} connections opened", conns.len());

    let (held, over) = conns.split_at_mut(32);
    for conn in over.iter_mut() {
        let got = answer(conn, Duration::from_secs(10)).expect("an answer, not a wait");
        assert_too_many_connections(&got);
    }
    assert!(
        !held.iter().any(answered),
        "the connections under the cap are kept open"
    );
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "serve exited under the descriptor limit"
    );

    drop(conns);
    let served = served_again(port, Duration::from_secs(10));
    assert_eq!(status(&served), Some(200), "{served}");
}

/// A sender's headers with a wrong credential and the promise of a mebibyte it never sends:
/// the 401 comes as soon as the headers are in, not after the 10 s body timeout.
fn refused_without_its_body(port: u16, authorization: &str) -> String {
    let mut conn = TcpStream::connect(addr(port)).unwrap();
    conn.write_all(push_head(authorization, MIB).as_bytes())
        .unwrap();
    // A bound, not a benchmark: far under the body timeout.
    answer(&mut conn, Duration::from_secs(3)).expect("a 401 before the body, and the close")
}

fn assert_unauthorized_and_closed(answer: &str) {
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{answer}"
    );
    assert_eq!(json_body(answer)["error"], "unauthorized", "{answer}");
}

#[test]
fn a_wrong_header_credential_is_refused_before_the_body_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = serve(dir.path(), &[]);
    for authorization in ["Bearer wrong-token", "", &format!("Basic {TOKEN}")] {
        assert_unauthorized_and_closed(&refused_without_its_body(port, authorization));
    }
    // The right token still reaches the handler.
    let served = push(port).unwrap();
    assert_eq!(status(&served), Some(200), "{served}");

    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = serve(
        dir.path(),
        &[
            ("AUTH_MODE", "basic"),
            ("WEBHOOK_SECRETS", "registry:s3cret"),
        ],
    );
    // base64("registry:wrong")
    assert_unauthorized_and_closed(&refused_without_its_body(
        port,
        "Basic cmVnaXN0cnk6d3Jvbmc=",
    ));
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// 200 uploads with a wrong token, each stalled a byte short of its mebibyte: the server
/// holds none of them, where reading them first held each until the body timeout.
#[test]
fn stalled_uploads_with_a_wrong_token_do_not_grow_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = serve(dir.path(), &[]);
    let pid = server.0.id();
    let warm = push(port).unwrap();
    assert_eq!(status(&warm), Some(200), "{warm}");
    let before = rss_kib(pid);

    let head = push_head("Bearer wrong-token", MIB);
    let almost = vec![b'x'; MIB - 1];
    let stalled: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut conn = TcpStream::connect(addr(port)).unwrap();
            conn.set_write_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            // Refused after the headers, the rest is not taken: the writes may fail.
            let _ = conn
                .write_all(head.as_bytes())
                .and_then(|()| conn.write_all(&almost));
            conn
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let after = rss_kib(pid);
    drop(stalled);

    let grown_mib = after.saturating_sub(before) / 1024;
    assert!(
        grown_mib < 50,
        "serve grew by {grown_mib} MiB ({before} KiB to {after} KiB)"
    );
}
