//! Items that cannot outgrow DynamoDB: an adversarial sender drives one digest through every
//! event that used to grow its item (a tag per push, quarantines and releases with the longest
//! reasons, arrivals in new regions, failed replications), through the real handler. The largest
//! item, sized by DynamoDB's own rules, is the same after 30 rounds and after 600, and far below
//! the 400 KB limit; 10,000 events on one digest grow the journal linearly.

use imagehook_core::adapters::EmbeddedStore;
use imagehook_core::app::App;
use imagehook_core::auth::AuthMode;
use imagehook_core::model::event::{MAX_EVENT_ID, MAX_REASON, MAX_REGION};
use imagehook_core::model::function::Function;
use imagehook_core::ports::store::Item;
use imagehook_tests::*;
use serde_json::{Value, json};

use crate::edge::app_on;

const TOKEN: &str = "sample-webhook-token";
const REPO: &str = "registry.example.com/shop/api";
const DIGEST: &str = "sha256:0d7f2c4e6a8b1c3d5e7f9a0b2c4d6e8f1a3b5c7d9e0f2a4b6c8d0e1f3a5b7c9d";
/// DynamoDB refuses any item over 400 KB.
const DYNAMODB_ITEM_LIMIT: usize = 400 * 1024;

/// The size DynamoDB charges for a value: strings their UTF-8 bytes, numbers a byte per two
/// significant digits plus one, booleans and nulls one byte, lists and maps three bytes plus
/// one per element (and each map key's bytes).
fn value_size(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Number(n) => {
            let digits = n
                .to_string()
                .trim_start_matches('-')
                .replace('.', "")
                .trim_matches('0')
                .len()
                .max(1);
            digits.div_ceil(2) + 1
        }
        Value::Bool(_) | Value::Null => 1,
        Value::Array(a) => 3 + a.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
        Value::Object(o) => {
            3 + o
                .iter()
                .map(|(k, e)| 1 + k.len() + value_size(e))
                .sum::<usize>()
        }
    }
}

/// An item's size as DynamoDB counts it: each attribute's name and value.
fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

#[test]
fn item_sizes_follow_dynamodbs_rules() {
    let item: Item = serde_json::from_value(json!({"PK": "ab", "n": 12345, "l": ["x", true],
                                                   "m": {"k": null}}))
    .unwrap();
    // PK 2+2, n 1+(3+1), l 1+(3+(1+1)+(1+1)), m 1+(3+(1+1+1))
    assert_eq!(item_size(&item), 4 + 5 + 8 + 7);
}

/// A sender-chosen string of exactly `len` bytes, unique per `n`.
fn padded(prefix: &str, n: usize, len: usize) -> String {
    let head = format!("{prefix}{n:06}-");
    format!("{head}{}", "x".repeat(len - head.len()))
}

/// The reply to a generic event, which must be a 200.
async fn answer(app: &App, function: Function, body: &Value) -> Value {
    let event = with_body(&event_file("generic-push.json"), body);
    let req = lambda_http::request::from_str(&event).unwrap();
    let resp = imagehook_core::edge::http::handle(app, function, req).await;
    let reply: Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{body}: {reply}");
    reply
}

/// The reply to a generic event, which must be applied.
async fn send(app: &App, function: Function, body: Value) -> Value {
    let reply = answer(app, function, &body).await;
    let outcome = &reply["events"][0]["outcome"];
    assert!(
        outcome == "applied" || outcome == "warning",
        "{body}: {reply}"
    );
    reply
}

/// Round `n` of the worst a sender can do to one digest: a new tag of the longest kind, a
/// quarantine and a release with the longest reasons, an arrival in a new region, a failed
/// replication to a new region and to one that keeps failing, and every other round a delete of
/// the tag; every event with the longest id.
async fn round(app: &App, n: usize) {
    let pinned = format!("{REPO}@{DIGEST}");
    let id = |kind: &str| padded(kind, n, MAX_EVENT_ID);
    let reason = |kind: &str| padded(kind, n, MAX_REASON);
    let tag = padded("t", n, 128);
    send(
        app,
        Function::Push,
        json!({"image": format!("{REPO}:{tag}"), "digest": DIGEST, "id": id("p")}),
    )
    .await;
    for (kind, quarantine) in [("q", true), ("r", false)] {
        send(
            app,
            Function::Quarantine,
            json!({"image": pinned, "quarantine": quarantine, "reason": reason(kind),
                   "id": id(kind)}),
        )
        .await;
    }
    send(
        app,
        Function::Push,
        json!({"image": pinned, "action": "replicate", "region": padded("a", n, MAX_REGION),
               "id": id("a")}),
    )
    .await;
    for (kind, region) in [("f", padded("f", n, MAX_REGION)), ("g", "eu-west-1".into())] {
        send(
            app,
            Function::Push,
            json!({"image": pinned, "action": "replication-failed", "region": region,
                   "reason": reason(kind), "id": id(kind)}),
        )
        .await;
    }
    if n % 2 == 1 {
        send(
            app,
            Function::Delete,
            json!({"image": format!("{REPO}:{tag}"), "action": "delete", "id": id("d")}),
        )
        .await;
    }
}

/// The largest item after `rounds` rounds (and its key), and the digest's own item's size.
async fn largest_after(rounds: usize) -> ((usize, String), usize) {
    let dir = tempfile::tempdir().unwrap();
    let app = app_in(dir.path());
    for n in 0..rounds {
        round(&app, n).await;
    }
    let items = app.dump().await.unwrap();
    let largest = items
        .iter()
        .map(|i| (item_size(i), format!("{} {}", i["PK"], i["SK"])))
        .max()
        .unwrap();
    let image = items
        .iter()
        .find(|i| i["SK"] == format!("D#{DIGEST}").as_str())
        .map(item_size)
        .unwrap();
    (largest, image)
}

#[tokio::test]
async fn no_sequence_of_events_grows_an_item() {
    let ((few, _), few_image) = largest_after(30).await;
    let ((many, many_key), many_image) = largest_after(600).await;
    eprintln!(
        "largest item: {few} bytes after 30 rounds, {many} after 600 ({many_key}); \
         the digest's own item: {few_image} and {many_image} bytes"
    );
    assert!(
        many_image <= few_image + 8,
        "the digest's item grew from {few_image} to {many_image} bytes"
    );
    // Counters (pushes, versions, failures) gain a digit or two; nothing else may grow.
    assert!(
        many <= few + 8,
        "the largest item grew from {few} to {many} bytes: {many_key}"
    );
    // Receipts are the largest items (the kept body, at most `INLINE_LIMIT` = 32 KiB of it).
    assert!(
        many * 10 < DYNAMODB_ITEM_LIMIT,
        "{many} bytes is not far below DynamoDB's limit: {many_key}"
    );
}

/// The handlers on a store kept in `dir`, as `imagehook serve` runs them.
fn app_in(dir: &std::path::Path) -> App {
    app_on(
        EmbeddedStore::open(dir).unwrap(),
        Some(dir),
        AuthMode::Token,
        &[TOKEN],
    )
}

/// Bytes of the journal now.
fn journal_len(dir: &std::path::Path) -> u64 {
    std::fs::metadata(dir.join("store.jsonl")).unwrap().len()
}

#[tokio::test]
async fn ten_thousand_events_on_one_digest_grow_the_journal_linearly() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_in(dir.path());
    let pinned = format!("{REPO}@{DIGEST}");
    // A push of a new tag, a quarantine and a release, over and over: 10,020 events.
    let event = |n: usize| match n % 3 {
        0 => (
            Function::Push,
            json!({"image": format!("{REPO}:{}", padded("t", n, 64)), "digest": DIGEST,
                   "id": padded("p", n, 64)}),
        ),
        k => (
            Function::Quarantine,
            json!({"image": pinned, "quarantine": k == 1, "reason": padded("r", n, 256),
                   "id": padded("q", n, 64)}),
        ),
    };
    let mut marks = Vec::new();
    for n in 0..10_020 {
        if n % 1_002 == 0 {
            marks.push(journal_len(dir.path()));
        }
        let (function, body) = event(n);
        send(&app, function, body).await;
    }
    marks.push(journal_len(dir.path()));
    let first = marks[1] - marks[0];
    let last = marks[marks.len() - 1] - marks[marks.len() - 2];
    eprintln!("journal bytes per 1,002 events: first {first}, last {last} ({marks:?})");
    assert!(
        last * 100 <= first * 105,
        "the journal grows faster as the digest ages: {first} bytes for the first 1,002 \
         events, {last} for the last"
    );
}

#[tokio::test]
async fn a_digest_with_more_tags_than_one_transaction_holds_is_deleted_whole() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_in(dir.path());
    for n in 0..250 {
        send(
            &app,
            Function::Push,
            json!({"image": format!("{REPO}:{}", padded("t", n, 16)), "digest": DIGEST,
                   "id": format!("p{n}")}),
        )
        .await;
    }
    let reply = send(
        &app,
        Function::Delete,
        json!({"image": format!("{REPO}@{DIGEST}"), "action": "delete", "id": "d"}),
    )
    .await;
    let items = app.dump().await.unwrap();
    let tags = items
        .iter()
        .filter(|i| i["type"] == "tag" && i["SK"].as_str().unwrap().starts_with("T#"))
        .count();
    assert_eq!(tags, 0, "every tag of the digest is removed: {reply}");
    let image = items
        .iter()
        .find(|i| i["SK"] == format!("D#{DIGEST}").as_str())
        .unwrap();
    assert_eq!(image["status"], "deleted");
    // A redelivery is recognised: nothing is removed twice, nothing fails.
    let again = answer(
        &app,
        Function::Delete,
        &json!({"image": format!("{REPO}@{DIGEST}"), "action": "delete", "id": "d"}),
    )
    .await;
    assert_eq!(again["events"][0]["outcome"], "duplicate", "{again}");
}
