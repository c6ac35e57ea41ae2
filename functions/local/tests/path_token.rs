//! `imagehook serve` with path tokens, over the wire: a wrong token gets the very bytes an
//! unknown path gets (status line, headers, body; only `date` differs by the clock), whatever
//! else the request carries, a body over the limit included.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::{Server, root};

const TOKEN: &str = "d41c9e7a-path-token";

fn serve(state: &Path) -> (Server, u16) {
    let mut cmd = common::local(state);
    cmd.env_remove("DEPLOY_RULES")
        .env_remove("SIGNATURE_HEADER")
        .env_remove("NOTIFY_WEBHOOK_URL")
        .env_remove("NOTIFY_TOPIC_ARN")
        .env("AUTH_MODE", "path-token")
        .env("WEBHOOK_SECRETS", TOKEN);
    common::serve(cmd)
}

/// The raw response to a request, without its `date` header. The body is written from another
/// thread, so a server that answers without reading it is not held up.
fn exchange(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut writer = s.try_clone().unwrap();
    let body = body.to_vec();
    let sending = std::thread::spawn(move || {
        // The server may answer and close first: an error here is expected then.
        let _ = writer.write_all(head.as_bytes());
        let _ = writer.write_all(&body);
    });
    let mut resp = Vec::new();
    let read = s.read_to_end(&mut resp);
    let _ = sending.join();
    if let Err(e) = read {
        // A reset after the answer arrived: what was read is the answer.
        assert!(!resp.is_empty(), "{method} {path}: {e}");
    }
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let head: Vec<&str> = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("date:"))
        .collect();
    format!("{}\r\n\r\n{body}", head.join("\r\n")).into_bytes()
}

/// A method, its headers and its body.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [u8]);

#[test]
fn a_wrong_path_token_is_answered_exactly_like_an_unknown_path() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = serve(dir.path());
    let body = std::fs::read_to_string(root().join("events/generic-push.json")).unwrap();
    let event: serde_json::Value = serde_json::from_str(&body).unwrap();
    let push = event["body"].as_str().unwrap().as_bytes().to_vec();
    let json = ("Content-Type", "application/json");
    let huge = vec![b'x'; 2 * 1024 * 1024];

    // The right token works, so the 404s below are the token's doing.
    let ok = exchange(
        port,
        "POST",
        &format!("/hooks/{TOKEN}/push"),
        &[json],
        &push,
    );
    assert!(
        ok.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&ok)
    );

    let unknown = exchange(port, "POST", "/no/such/path", &[json], &push);
    assert!(
        unknown.starts_with(b"HTTP/1.1 404"),
        "{}",
        String::from_utf8_lossy(&unknown)
    );
    assert!(
        unknown.ends_with(br#"{"message":"Not Found"}"#),
        "{}",
        String::from_utf8_lossy(&unknown)
    );
    let cases: &[Case<'_>] = &[
        ("POST", &[json], &push),
        ("GET", &[], b""),
        (
            "OPTIONS",
            &[("WebHook-Request-Origin", "eventgrid.azure.net")],
            b"",
        ),
        ("PUT", &[json], &push),
        ("POST", &[("Content-Type", "application/xml")], &push),
        ("POST", &[json], b""),
        ("POST", &[json], b"{not json"),
        ("POST", &[json], &huge),
        (
            "POST",
            &[("Authorization", &format!("Bearer {TOKEN}"))],
            &push,
        ),
    ];
    let wrong = [
        "/hooks/wrong/push".to_owned(),
        "/hooks/wrong/delete".to_owned(),
        "/hooks/wrong/quarantine?provider=nexus".to_owned(),
        format!("/hooks/{TOKEN}x/push"),
        format!("/hooks/{}/push", &TOKEN[1..]),
        // No token at all: the routes without one are not routes in path-token mode.
        "/push".to_owned(),
        "/push/acr".to_owned(),
        // Nor is the images API: it would tell the server apart from any other.
        "/images/registry.example.com/shop/api".to_owned(),
        "/hooks/wrong/images/registry.example.com/shop/api".to_owned(),
    ];
    for (method, headers, body) in cases {
        let unknown_too = exchange(port, method, "/no/such/path", headers, body);
        assert_eq!(
            String::from_utf8_lossy(&unknown_too),
            String::from_utf8_lossy(&unknown),
            "an unknown path answers {method} the same"
        );
        for path in &wrong {
            let got = exchange(port, method, path, headers, body);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&unknown),
                "{method} {path} with {headers:?} and {} body bytes",
                body.len()
            );
        }
    }
}

/// With the right token the images API answers under `/hooks/<token>/images/...`.
#[test]
fn the_images_api_answers_under_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = serve(dir.path());
    let answer = exchange(
        port,
        "GET",
        &format!("/hooks/{TOKEN}/images/registry.example.com/shop/api"),
        &[],
        b"",
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"repository\":\"shop/api\""), "{text}");
}
