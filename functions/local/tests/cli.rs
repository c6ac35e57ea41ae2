//! The local binary's contract (DESIGN §6a), run as a user runs it: `invoke`, `state` and
//! `serve` on the shipped sample events, with the embedded store in a temporary directory.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Server, root, serve};

use serde_json::{Value, json};

fn imagehook(state: &Path) -> Command {
    let mut c = common::local(state);
    c.env(
        "DEPLOY_RULES",
        r#"[{"repository": "shop/api", "tags": "v*", "cluster": "prod", "service": "api"}]"#,
    );
    c
}

fn invoke(state: &Path, event: &str) -> (i32, Value) {
    let out = imagehook(state)
        .args(["invoke", "push", event])
        .output()
        .unwrap();
    let printed: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), printed)
}

#[test]
fn invoke_prints_the_api_gateway_response_and_state_keeps_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let (code, printed) = invoke(dir.path(), "events/acr-push.json");
    assert_eq!(code, 0);
    assert_eq!(printed["statusCode"], 200);
    assert_eq!(printed["headers"]["content-type"], "application/json");
    let body: Value = serde_json::from_str(printed["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["events"][0]["outcome"], "applied");
    assert_eq!(body["events"][0]["deployments"][0]["outcome"], "planned");

    // A second invoke sees the first one's receipt: the state persists under --state-dir.
    let (_, again) = invoke(dir.path(), "events/acr-push.json");
    let body: Value = serde_json::from_str(again["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["events"][0]["outcome"], "duplicate");

    let out = imagehook(dir.path()).arg("state").output().unwrap();
    assert!(out.status.success());
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["images"].as_array().unwrap().len(), 1);
    assert_eq!(state["images"][0]["repository"], "shop/api");
    assert_eq!(state["tags"][0]["tag"], "v1.4.2");
    assert_eq!(state["image_tags"][0]["tag"], "v1.4.2");
    assert_eq!(state["deployments"][0]["outcome"], "planned");
    assert_eq!(state["receipts"].as_array().unwrap().len(), 1);
    assert_eq!(state["receipts"][0]["status"], "done");

    // The delete function on its sample leaves a tombstone that `state` shows.
    let out = imagehook(dir.path())
        .args(["invoke", "delete", "events/acr-delete.json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = imagehook(dir.path()).arg("state").output().unwrap();
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["images"][0]["status"], "deleted");
    assert_eq!(state["tags"], serde_json::json!([]));
    assert_eq!(state["changes"][0]["change"], "deleted");
}

#[test]
fn invoke_exits_non_zero_on_an_error_response_and_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = imagehook(dir.path())
        .env("AUTH_MODE", "token")
        .env("WEBHOOK_SECRETS", "another-token")
        .args(["invoke", "push", "events/acr-push.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["statusCode"], 401);

    let out = imagehook(dir.path())
        .args(["invoke", "push", "events/no-such-file.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-file.json"));

    let out = imagehook(dir.path())
        .env("DEPLOY_MODE", "sometimes")
        .args(["invoke", "push", "events/acr-push.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DEPLOY_MODE"));
}

fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// `imagehook serve` in token mode on a free port, once it accepts connections.
fn start_serve(state: &Path) -> (Server, u16) {
    let mut cmd = imagehook(state);
    cmd.env("AUTH_MODE", "token")
        .env("WEBHOOK_SECRETS", "sample-webhook-token");
    common::serve(cmd)
}

#[test]
fn serve_answers_the_routes_with_the_function_responses() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = start_serve(dir.path());

    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("events/acr-push.json")).unwrap(),
    )
    .unwrap();
    let body = event["body"].as_str().unwrap();
    let json = ("Content-Type", "application/json");
    let auth = ("Authorization", "Bearer sample-webhook-token");

    let (status, reply) = request(port, "POST", "/push", &[json, auth], body);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["events"][0]["outcome"], "applied");
    let (_, reply) = request(port, "POST", "/push", &[json, auth], body);
    assert_eq!(reply["events"][0]["outcome"], "duplicate");

    let (status, reply) = request(
        port,
        "POST",
        "/push",
        &[json, ("Authorization", "Bearer nope")],
        body,
    );
    assert_eq!(
        (status, reply["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, reply) = request(port, "GET", "/push", &[auth], "");
    assert_eq!(
        (status, reply["error"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let (status, unknown) = request(port, "POST", "/v2/shop/push", &[json, auth], body);
    assert_eq!(
        (status, unknown["message"].as_str()),
        (404, Some("Not Found"))
    );
    // The provider named by route or query.
    let (status, reply) = request(port, "POST", "/push/acr", &[json, auth], body);
    assert_eq!(
        (status, reply["events"][0]["outcome"].as_str()),
        (200, Some("duplicate"))
    );
    let (status, reply) = request(port, "POST", "/push?provider=nexus", &[json, auth], body);
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("invalid_event")),
        "{reply}"
    );
    let big = "x".repeat(1024 * 1024 + 10);
    let (status, reply) = request(port, "POST", "/push", &[json, auth], &big);
    assert_eq!(
        (status, reply["error"].as_str()),
        (413, Some("payload_too_large"))
    );
}

/// The README's flow: `serve` in the background, `state` beside it. `state` reads without
/// touching the journal, so what `serve` records afterwards survives a restart; a second
/// writer on the same directory is refused, naming the server.
#[test]
fn state_beside_serve_loses_nothing_and_a_second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = start_serve(dir.path());

    let out = imagehook(dir.path()).arg("state").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("events/acr-push.json")).unwrap(),
    )
    .unwrap();
    let json = ("Content-Type", "application/json");
    let auth = ("Authorization", "Bearer sample-webhook-token");
    let body = event["body"].as_str().unwrap();
    let (status, reply) = request(port, "POST", "/push", &[json, auth], body);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["events"][0]["outcome"], "applied");

    // `state` sees it while `serve` runs.
    let out = imagehook(dir.path()).arg("state").output().unwrap();
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["receipts"][0]["status"], "done");

    let out = imagehook(dir.path())
        .args(["invoke", "push", "events/acr-push.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is in use by process"), "{stderr}");

    drop(server);
    let (code, printed) = invoke(dir.path(), "events/acr-push.json");
    assert_eq!(code, 0);
    let body: Value = serde_json::from_str(printed["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["events"][0]["outcome"], "duplicate");
}

/// The status line's code of the answer to a raw request, read until the server closes (or
/// resets: a server that refuses a request before reading all of it may do so).
fn raw_status(port: u16, request: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may stop reading, answer and close before all of it is written.
    let _ = s.write_all(request);
    let mut resp = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => resp.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&resp);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Headers beyond `serve`'s limits (100 headers, 64 KiB with the request line) are answered 431
/// before any handler runs; a large credential within them is an ordinary 401; the server
/// carries on.
#[test]
fn serve_answers_431_to_oversized_headers() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = start_serve(dir.path());
    let body = r#"{"image": "registry.example.com/shop/api:1.0.0", "id": "headers-1"}"#;
    let post = |extra: &str| {
        format!(
            "POST /push HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let auth = "Authorization: Bearer sample-webhook-token\r\n";

    let huge = format!("{auth}X-Padding: {}\r\n", "p".repeat(70 * 1024));
    assert_eq!(raw_status(port, &post(&huge)), Some(431));
    let many: String = (0..101).map(|i| format!("X-Padding-{i}: p\r\n")).collect();
    assert_eq!(raw_status(port, &post(&format!("{auth}{many}"))), Some(431));
    let huge_token = format!("Authorization: Bearer {}\r\n", "t".repeat(60 * 1024));
    assert_eq!(raw_status(port, &post(&huge_token)), Some(401));

    // Within the limits, the same request is handled.
    let some: String = (0..90).map(|i| format!("X-Padding-{i}: p\r\n")).collect();
    assert_eq!(raw_status(port, &post(&format!("{auth}{some}"))), Some(200));
}

/// Runs the binary with `args`; returns the exit code, stdout as JSON (null if none) and stderr.
fn run(cmd: &mut Command, args: &[&str]) -> (i32, Value, String) {
    let out = cmd.args(args).output().unwrap();
    let printed = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap(), printed, stderr)
}

#[test]
fn history_prints_the_stages_and_outcomes_reads_eventbridge_files() {
    let dir = tempfile::tempdir().unwrap();
    let staged = r#"[{"repository": "shop/api", "tags": "v*", "cluster": "prod", "service": "api", "stage": "prod"}]"#;
    let (code, _, err) = run(
        imagehook(dir.path()).env("DEPLOY_RULES", staged),
        &["invoke", "push", "events/acr-push.json"],
    );
    assert_eq!(code, 0, "{err}");

    let history = ["history", "contoso.azurecr.io/shop/api", "--stage", "prod"];
    let (code, printed, err) = run(&mut imagehook(dir.path()), &history);
    assert_eq!(code, 0, "{err}");
    assert_eq!(printed["stages"]["prod"][0]["tag"], "v1.4.2");
    assert_eq!(
        printed["stages"]["prod"][0]["services"][0]["outcome"],
        "planned"
    );
    let entry = &printed["history"][0];
    assert_eq!(
        (&entry["kind"], &entry["outcome"]),
        (&json!("push"), &json!("applied"))
    );
    assert!(entry["received_at"].is_string(), "{printed}");
    let (_, state, _) = run(&mut imagehook(dir.path()), &["state"]);
    assert_eq!(state["history"][0]["stage"], "prod", "{state}");

    let (code, _, err) = run(
        &mut imagehook(dir.path()),
        &["history", "contoso.azurecr.io/shop/api:v1"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("without tag"), "{err}");

    // A state change for a rollout this store never started: acknowledged, nothing recorded.
    let outcomes = ["invoke", "outcomes", "events/ecs-deployment-failed.json"];
    let (code, printed, err) = run(&mut imagehook(dir.path()), &outcomes);
    assert_eq!(code, 0, "{err}");
    assert_eq!(printed["outcome"], "not-ours");
    assert_eq!(printed["state"], "failed");
    assert_eq!(printed["circuit_breaker"], true);
    let not_a_change = ["invoke", "outcomes", "events/acr-push.json"];
    let (code, printed, _) = run(&mut imagehook(dir.path()), &not_a_change);
    assert_eq!(
        code, 1,
        "an API Gateway event is no state change: {printed}"
    );
    assert_eq!(printed["outcome"], "rejected");
}

#[test]
fn simulate_prints_what_would_change_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let simulate = ["simulate", "push", "events/acr-push.json"];
    let (code, printed, err) = run(&mut imagehook(dir.path()), &simulate);
    assert_eq!(code, 0, "{err}");
    let body: Value = serde_json::from_str(printed["response"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["events"][0]["outcome"], "applied");
    let changed: Vec<&str> = printed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["after"]["type"].as_str().unwrap())
        .collect();
    for kind in ["receipt", "image", "tag", "deployment"] {
        assert!(changed.contains(&kind), "{kind} missing from {changed:?}");
    }
    assert!(printed["changes"][0]["before"].is_null());

    // Nothing was written: the real invoke still applies, and a second simulation of the same
    // event is a duplicate that changes nothing.
    let (_, state, _) = run(&mut imagehook(dir.path()), &["state"]);
    assert_eq!(state["images"], serde_json::json!([]));
    let (code, _, _) = run(
        &mut imagehook(dir.path()),
        &["invoke", "push", "events/acr-push.json"],
    );
    assert_eq!(code, 0);
    let (_, printed, _) = run(&mut imagehook(dir.path()), &simulate);
    let body: Value = serde_json::from_str(printed["response"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["events"][0]["outcome"], "duplicate");
    assert_eq!(printed["changes"], serde_json::json!([]));
}

#[test]
fn replay_redrives_a_kept_request_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(
        &mut imagehook(dir.path()),
        &["invoke", "push", "events/acr-push.json"],
    );
    assert_eq!(code, 0, "{err}");
    let (_, state, _) = run(&mut imagehook(dir.path()), &["state"]);
    assert_eq!(state["receipts"].as_array().unwrap().len(), 1, "{state}");
    let receipt = &state["receipts"][0];
    assert_eq!(receipt["type"], "receipt");
    assert!(receipt["payload"]["body"].is_string(), "{receipt}");
    let id = format!("acr#{}", receipt["event_id"].as_str().unwrap());
    let (code, printed, err) = run(&mut imagehook(dir.path()), &["replay", &id]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(printed[0]["outcome"], "duplicate");
    let (code, _, err) = run(&mut imagehook(dir.path()), &["replay", "acr#unknown"]);
    assert_eq!(code, 2);
    assert!(err.contains("no receipt"), "{err}");
}

/// `imagehook state | head`: the reader stops early; the binary exits quietly, not with a
/// panic on the closed pipe.
#[test]
fn a_reader_that_stops_early_is_no_error() {
    let dir = tempfile::tempdir().unwrap();
    // Far more than a pipe holds, so the write is still under way when the reader leaves.
    let mut journal = String::new();
    for i in 0..4000 {
        journal.push_str(&format!(
            "[[\"IMG#r/app\",\"T#t{i}\",{{\"type\":\"tag\",\"tag\":\"t{i}\",\"digest\":\"sha256:{i:064}\"}}]]\n"
        ));
    }
    std::fs::write(dir.path().join("store.jsonl"), journal).unwrap();
    let mut child = imagehook(dir.path())
        .arg("state")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// Out of file descriptors, `serve` stops accepting for a moment instead of exiting, and
/// answers again once connections close.
#[test]
fn serve_outlives_running_out_of_file_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let mut limited = Command::new("prlimit");
    limited
        .arg("--nofile=64:64")
        .arg(env!("CARGO_BIN_EXE_imagehook"))
        .current_dir(root())
        .arg("--state-dir")
        .arg(dir.path())
        .env_remove("TABLE_NAME")
        .env_remove("AUTH_MODE")
        .env_remove("DEPLOY_RULES_FILE");
    let (mut server, port) = serve(limited);
    // Twice the limit, within the listen backlog: the rest wait there while serve is out of
    // descriptors. A bounded connect, so a full backlog cannot stall the test.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let idle: Vec<TcpStream> = (0..128)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok())
        .collect();
    assert!(idle.len() > 64, "only {} connections opened", idle.len());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "serve exited when it ran out of file descriptors"
    );
    drop(idle);
    let answers = || -> Option<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"GET /nowhere HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok()?;
        Some(resp)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if answers().is_some_and(|r| r.starts_with("HTTP/1.1 404")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve no longer answers"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(server.0.try_wait().unwrap().is_none());
}

/// A client that trickles its headers is cut off, and one that never finishes its body gets
/// a 408; the server keeps answering others meanwhile.
#[test]
fn serve_cuts_off_slow_headers_and_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = start_serve(dir.path());
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let open = || {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
        // Far past the server's timeouts: expiring here means it never cut the client off.
        s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
        s
    };
    let mut slow_headers = open();
    slow_headers
        .write_all(b"POST /push HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .unwrap();
    // A byte every 200 ms keeps the connection busy: the timeout bounds the headers as a whole,
    // not the wait for each byte. Bounded, and it stops once the server has closed.
    let mut trickle = slow_headers.try_clone().unwrap();
    let trickling = std::thread::spawn(move || {
        for _ in 0..200 {
            if trickle.write_all(b"s").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    // With the right token: a wrong one is refused before the body is waited for.
    let mut slow_body = open();
    slow_body
        .write_all(
            b"POST /push HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer sample-webhook-token\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"image\":",
        )
        .unwrap();
    // Others are served meanwhile.
    let (status, _) = request(port, "GET", "/nowhere", &[], "");
    assert_eq!(status, 404);

    let mut rest = Vec::new();
    slow_headers
        .read_to_end(&mut rest)
        .expect("the connection is closed, not left hanging");
    trickling.join().unwrap();
    let mut answer = String::new();
    slow_body
        .read_to_string(&mut answer)
        .expect("an answer, not a hang");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}

/// The images API takes the webhooks' credential in `imagehook serve`, as IAM guards it in AWS.
#[test]
fn serve_asks_the_images_api_for_the_webhook_credential() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = start_serve(dir.path());
    let path = "/images/registry.example.com/shop/api";
    let (status, body) = request(port, "GET", path, &[], "");
    assert_eq!(status, 401, "{body}");
    let (status, body) = request(
        port,
        "GET",
        path,
        &[("Authorization", "Bearer wrong-token")],
        "",
    );
    assert_eq!(status, 401, "{body}");
    let (status, body) = request(
        port,
        "GET",
        path,
        &[("Authorization", "Bearer sample-webhook-token")],
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["repository"], "shop/api");
}

#[test]
fn deploy_rollback_and_status_answer_as_the_api_would() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(
        &mut imagehook(dir.path()),
        &["invoke", "push", "events/acr-push.json"],
    );
    assert_eq!(code, 0, "{err}");
    let pushed = body_digest("events/acr-push.json");

    // Dry-run (the local default): the tag is pinned through its record, and only planned.
    let deploy = [
        "deploy",
        "prod/api",
        "contoso.azurecr.io/shop/api:v1.4.2",
        "--as",
        "ana",
    ];
    let (code, printed, err) = run(&mut imagehook(dir.path()), &deploy);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        (
            &printed["outcome"],
            &printed["resolved_from"],
            &printed["by"]
        ),
        (&json!("planned"), &json!("tag-record"), &json!("ana")),
        "{printed}"
    );
    assert_eq!(printed["digest"], pushed);
    assert_eq!(printed["deployment"]["outcome"], "planned");

    let elsewhere = ["deploy", "prod/other", "contoso.azurecr.io/shop/api:v1.4.2"];
    let (code, _, err) = run(&mut imagehook(dir.path()), &elsewhere);
    assert_eq!(code, 1);
    assert!(err.contains("not a service imagehook deploys to"), "{err}");
    let unexplained = [
        "deploy",
        "prod/api",
        "contoso.azurecr.io/shop/api:v1.4.2",
        "--force",
    ];
    let (code, _, err) = run(&mut imagehook(dir.path()), &unexplained);
    assert_eq!(code, 2, "force without a reason is a usage error: {err}");
    assert!(err.contains("--reason"), "{err}");
    let (code, _, err) = run(&mut imagehook(dir.path()), &["deploy", "api", "x:1"]);
    assert_eq!(code, 2);
    assert!(err.contains("cluster/service"), "{err}");

    let (code, printed, err) = run(&mut imagehook(dir.path()), &["status", "prod/api"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(printed["known_by"], "rule", "{printed}");
    let (code, _, err) = run(&mut imagehook(dir.path()), &["rollback", "prod/api"]);
    assert_eq!(code, 1);
    assert!(err.contains("nothing to roll prod/api back to"), "{err}");
}

/// The digest a sample event's body names (`target.digest`, as ACR sends it).
fn body_digest(event: &str) -> String {
    let text = std::fs::read_to_string(root().join(event)).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let body: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    body["target"]["digest"].as_str().unwrap().to_owned()
}

/// The binary with a rule that needs two approvals.
fn held(state: &Path) -> Command {
    let mut c = common::local(state);
    c.env(
        "DEPLOY_RULES",
        r#"[{"repository": "shop/api", "tags": "v*", "cluster": "prod", "service": "api",
             "stage": "prod", "approval": {"required": 2}}]"#,
    );
    c
}

/// `imagehook <args>` as user dave: its exit code and what it printed.
fn run_held(state: &Path, args: &[&str]) -> (i32, Value) {
    let out = held(state).env("USER", "dave").args(args).output().unwrap();
    let printed: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), printed)
}

#[test]
fn a_held_push_is_listed_approved_by_two_people_and_then_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (code, printed) = run_held(dir.path(), &["invoke", "push", "events/acr-push.json"]);
    assert_eq!(code, 0);
    let body: Value = serde_json::from_str(printed["body"].as_str().unwrap()).unwrap();
    let held = &body["events"][0]["deployments"][0];
    assert_eq!(held["outcome"], "awaiting_approval", "{body}");
    let id = held["hold_id"].as_str().unwrap().to_owned();

    let (code, listed) = run_held(dir.path(), &["waiting"]);
    assert_eq!(code, 0);
    assert_eq!(listed["waiting"][0]["id"], id.as_str(), "{listed}");
    assert_eq!(
        listed["waiting"][0]["approvals"],
        json!({"required": 2, "approvers": []})
    );

    let (code, first) = run_held(dir.path(), &["approve", &id]);
    assert_eq!(
        (code, &first["by"], &first["status"]),
        (0, &json!("dave"), &json!("awaiting_approval"))
    );
    let (_, again) = run_held(dir.path(), &["approve", &id]);
    assert_eq!(again["counted"], false, "{again}");
    let (code, second) = run_held(dir.path(), &["approve", &id, "--as", "erin"]);
    assert_eq!(code, 0);
    assert_eq!(second["status"], "applied", "{second}");
    assert_eq!(second["deployment"]["outcome"], "planned", "{second}");
    assert_eq!(second["approvals"]["approvers"], json!(["dave", "erin"]));

    let (code, late) = run_held(dir.path(), &["deny", &id, "--as", "frank"]);
    assert_eq!(
        (code, &late["error"]),
        (1, &json!("already_decided")),
        "{late}"
    );
    let (code, unknown) = run_held(dir.path(), &["approve", "feedfacecafe"]);
    assert_eq!(
        (code, &unknown["error"]),
        (1, &json!("unknown_hold")),
        "{unknown}"
    );
    let (_, listed) = run_held(dir.path(), &["waiting"]);
    assert_eq!(listed["waiting"], json!([]));
}
