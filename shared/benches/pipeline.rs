//! Warm cost per event: verify + parse + plan (rule matching), no I/O, on the shipped sample
//! bodies; and HMAC-SHA256 next to raw SHA-256 over the same bytes (the limit for signed bodies).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use imagehook_core::auth::{AuthMode, Presented, Secret, Verifier, sign_standard_webhooks};
use imagehook_core::model::event::{Parsed, Timestamp};
use imagehook_core::model::rules::Rules;
use imagehook_core::providers::{self, ParseContext};
use sha2::{Digest as _, Sha256};
use std::hint::black_box;

const TOKEN: &str = "sample-webhook-token";
const SW_KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A body and the headers from one of `events/`.
fn sample(name: &str) -> (Vec<u8>, HeaderMap) {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let event: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("event file")).expect("json");
    let mut headers = HeaderMap::new();
    for (k, v) in event["headers"].as_object().expect("headers") {
        if let (Ok(k), Some(Ok(v))) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            v.as_str().map(http::HeaderValue::from_str),
        ) {
            headers.insert(k, v);
        }
    }
    (
        event["body"].as_str().expect("body").as_bytes().to_vec(),
        headers,
    )
}

fn rules() -> Rules {
    Rules::parse(
        &std::fs::read_to_string(format!(
            "{}/../events/deploy-rules.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("rules"),
    )
    .expect("rules parse")
}

/// What a function does before its first I/O.
fn pipeline(
    verifier: &Verifier,
    rules: &Rules,
    body: &[u8],
    headers: &HeaderMap,
    now: i64,
) -> usize {
    verifier
        .verify(
            body,
            headers,
            Presented {
                path_token: None,
                now,
            },
        )
        .expect("verified");
    let received = Timestamp::from_unix(now).expect("time");
    let events = providers::parse(
        body,
        &ParseContext {
            headers,
            received_at: &received,
            provider: None,
        },
    )
    .expect("parsed");
    events
        .iter()
        .map(|e| match e {
            Parsed::Image(e) => rules.targets(&e.image).len(),
            _ => 0,
        })
        .sum()
}

/// A Distribution envelope of ten manifest pushes.
fn distribution_envelope() -> (Vec<u8>, HeaderMap) {
    let (body, headers) = sample("distribution-push.json");
    let one: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let event = &one["events"][0];
    let events: Vec<serde_json::Value> = (0..10)
        .map(|i| {
            let mut e = event.clone();
            e["id"] = serde_json::json!(format!("bench-{i}"));
            e["target"]["tag"] = serde_json::json!(format!("1.5.{i}"));
            e
        })
        .collect();
    (
        serde_json::to_vec(&serde_json::json!({"events": events})).expect("json"),
        headers,
    )
}

fn bench_pipeline(c: &mut Criterion) {
    let rules = rules();
    let token = Verifier::new(AuthMode::Token, None, vec![Secret::new(TOKEN)]).expect("verifier");
    let mut group = c.benchmark_group("pipeline");

    let (body, headers) = sample("acr-push.json");
    group.bench_function("acr push", |b| {
        b.iter(|| pipeline(&token, &rules, black_box(&body), &headers, 1_795_000_000))
    });

    let (body, headers) = distribution_envelope();
    group.bench_function("distribution envelope, 10 events", |b| {
        b.iter(|| pipeline(&token, &rules, black_box(&body), &headers, 1_795_000_000))
    });

    let standard = Verifier::new(AuthMode::StandardWebhooks, None, vec![Secret::new(SW_KEY)])
        .expect("verifier");
    let body = serde_json::json!({"type": "image.pushed", "timestamp": "2026-11-20T10:15:30Z",
        "data": {"image": "registry.example.com/shop/api:1.4.2",
                 "digest": "sha256:0d7f2c4e6a8b1c3d5e7f9a0b2c4d6e8f1a3b5c7d9e0f2a4b6c8d0e1f3a5b7c9d"}})
    .to_string()
    .into_bytes();
    let now = 1_795_000_000;
    let mut headers = HeaderMap::new();
    headers.insert("webhook-id", http::HeaderValue::from_static("msg_bench"));
    headers.insert(
        "webhook-timestamp",
        http::HeaderValue::from_str(&now.to_string()).expect("ts"),
    );
    let sig = sign_standard_webhooks(SW_KEY, "msg_bench", now, &body).expect("sign");
    headers.insert(
        "webhook-signature",
        http::HeaderValue::from_str(&sig).expect("sig"),
    );
    group.bench_function("standard webhooks signed", |b| {
        b.iter(|| pipeline(&standard, &rules, black_box(&body), &headers, now))
    });
    group.finish();
}

fn bench_hashing(c: &mut Criterion) {
    let mut group = c.benchmark_group("hash");
    for size in [1024usize, 64 * 1024] {
        let data = vec![0x5au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("hmac-sha256", size), &data, |b, d| {
            b.iter(|| {
                let mut mac =
                    <Hmac<Sha256> as KeyInit>::new_from_slice(TOKEN.as_bytes()).expect("key");
                mac.update(black_box(d));
                mac.finalize()
            })
        });
        group.bench_with_input(BenchmarkId::new("sha256", size), &data, |b, d| {
            b.iter(|| Sha256::digest(black_box(d)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_pipeline, bench_hashing);
criterion_main!(benches);
