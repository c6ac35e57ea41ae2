//! Metrics in CloudWatch Embedded Metric Format: JSON lines the function prints, which
//! CloudWatch Logs turns into metrics. No API calls, no extra latency, nothing to fail.
//!
//! Namespace `imagehook`, every metric with the dimension `Function`:
//! - `Requests`, `AuthFailures`, `ServerErrors`, `NotificationFailures` (count) and `Latency`
//!   (milliseconds), per request;
//! - `Events` (count) by `Provider`, `Action` and `Outcome`;
//! - `Deployments` (count) by `Outcome` (updated, unchanged, skipped, planned, blocked, failed).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "imagehook";

/// What one request did, as far as metrics go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub status: u16,
    pub auth_failed: bool,
    /// (provider, action, outcome) of each event.
    pub events: Vec<(&'static str, String, &'static str)>,
    /// The outcome of each deployment.
    pub deployments: Vec<&'static str>,
    /// Notification sinks that failed for this request.
    pub notify_failures: u32,
}

/// One EMF document: `metrics` (name, unit, value) under one set of dimension values.
fn document(now_ms: i64, dimensions: &[(&str, &str)], metrics: &[(&str, &str, f64)]) -> String {
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions.iter().map(|(k, _)| *k).collect::<Vec<_>>()],
                "Metrics": metrics.iter()
                    .map(|(name, unit, _)| json!({"Name": name, "Unit": unit}))
                    .collect::<Vec<_>>(),
            }],
        }),
    );
    for (k, v) in dimensions {
        doc.insert((*k).into(), json!(v));
    }
    for (name, _, value) in metrics {
        doc.insert((*name).into(), json!(value));
    }
    Value::Object(doc).to_string()
}

/// The EMF lines for one request of `function`.
pub fn emf_lines(function: &str, report: &Report, latency_ms: f64, now_ms: i64) -> Vec<String> {
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let mut lines = vec![document(
        now_ms,
        &[("Function", function)],
        &[
            ("Requests", "Count", 1.0),
            ("AuthFailures", "Count", flag(report.auth_failed)),
            ("ServerErrors", "Count", flag(report.status >= 500)),
            (
                "NotificationFailures",
                "Count",
                f64::from(report.notify_failures),
            ),
            ("Latency", "Milliseconds", latency_ms),
        ],
    )];
    let mut events: BTreeMap<(&str, &str, &str), u32> = BTreeMap::new();
    for (provider, action, outcome) in &report.events {
        *events.entry((provider, action, outcome)).or_default() += 1;
    }
    for ((provider, action, outcome), n) in events {
        lines.push(document(
            now_ms,
            &[
                ("Function", function),
                ("Provider", provider),
                ("Action", action),
                ("Outcome", outcome),
            ],
            &[("Events", "Count", f64::from(n))],
        ));
    }
    let mut deployments: BTreeMap<&str, u32> = BTreeMap::new();
    for outcome in &report.deployments {
        *deployments.entry(outcome).or_default() += 1;
    }
    for (outcome, n) in deployments {
        lines.push(document(
            now_ms,
            &[("Function", function), ("Outcome", outcome)],
            &[("Deployments", "Count", f64::from(n))],
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line is a valid EMF document: each declared metric is a number at the top level,
    /// each declared dimension a string, under the imagehook namespace.
    fn check(line: &str) -> Value {
        let v: Value = serde_json::from_str(line).unwrap();
        let decl = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(decl["Namespace"], NAMESPACE);
        assert!(v["_aws"]["Timestamp"].is_i64());
        for d in decl["Dimensions"][0].as_array().unwrap() {
            assert!(v[d.as_str().unwrap()].is_string(), "{line}");
        }
        for m in decl["Metrics"].as_array().unwrap() {
            assert!(v[m["Name"].as_str().unwrap()].is_number(), "{line}");
            assert!(m["Unit"].is_string());
        }
        v
    }

    #[test]
    fn a_request_becomes_emf_documents() {
        let report = Report {
            status: 200,
            auth_failed: false,
            events: vec![
                ("acr", "push".into(), "applied"),
                ("acr", "push".into(), "applied"),
                ("acr", "push".into(), "duplicate"),
            ],
            deployments: vec!["updated", "updated", "failed"],
            notify_failures: 1,
        };
        let lines = emf_lines("push", &report, 12.5, 1_795_000_000_000);
        let docs: Vec<Value> = lines.iter().map(|l| check(l)).collect();
        assert_eq!(docs.len(), 1 + 2 + 2);
        assert_eq!(docs[0]["Latency"], 12.5);
        assert_eq!(docs[0]["AuthFailures"], 0.0);
        assert_eq!(docs[0]["NotificationFailures"], 1.0);
        let applied = docs
            .iter()
            .find(|d| d["Outcome"] == "applied" && d.get("Events").is_some())
            .unwrap();
        assert_eq!(
            (
                &applied["Events"],
                &applied["Provider"],
                &applied["Function"]
            ),
            (&json!(2.0), &json!("acr"), &json!("push"))
        );
        let failed = docs
            .iter()
            .find(|d| d["Outcome"] == "failed" && d.get("Deployments").is_some())
            .unwrap();
        assert_eq!(failed["Deployments"], 1.0);
    }

    #[test]
    fn auth_failures_and_server_errors_are_counted() {
        let denied = Report {
            status: 401,
            auth_failed: true,
            ..Report::default()
        };
        let lines = emf_lines("delete", &denied, 0.4, 0);
        assert_eq!(lines.len(), 1);
        let v = check(&lines[0]);
        assert_eq!(
            (v["AuthFailures"].as_f64(), v["ServerErrors"].as_f64()),
            (Some(1.0), Some(0.0))
        );
        let failed = Report {
            status: 503,
            ..Report::default()
        };
        assert_eq!(
            check(&emf_lines("push", &failed, 1.0, 0)[0])["ServerErrors"],
            1.0
        );
    }
}
