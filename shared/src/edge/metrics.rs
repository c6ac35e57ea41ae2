//! Metrics in CloudWatch Embedded Metric Format: JSON lines the function prints, which
//! CloudWatch Logs turns into metrics. No API calls, no extra latency, nothing to fail.
//!
//! Namespace `imagehook`, every metric with the dimension `Function`:
//! - `Requests`, `AuthFailures`, `ServerErrors`, `NotificationFailures` (count) and `Latency`
//!   (milliseconds), per request;
//! - `Events` (count) by `Provider`, `Action` and `Outcome`;
//! - `Deployments` (count) by `Outcome` (updated, unchanged, skipped, planned, blocked, failed);
//! - `Rollouts` (count) by `State`: the outcomes function, one per ECS deployment state change it
//!   records (completed, failed, in-progress), none for duplicates or deployments not its own.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "imagehook";

/// The `level` of every metric line. With an application log level set, Lambda drops each line
/// below it, and reads a line without a level as INFO: at WARN the alarms would see nothing.
/// FATAL is the highest level Lambda knows, so no setting filters it; imagehook logs nothing
/// else at FATAL (tracing has no such level), so the level also tells metric lines apart.
pub const LEVEL: &str = "FATAL";

/// `now_ms` in RFC 3339, the form Lambda reads a line's `timestamp` in: without one Lambda
/// takes the line as INFO whatever its level.
fn rfc3339(now_ms: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(&Rfc3339)
        .unwrap_or_default()
}

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
    doc.insert("level".into(), json!(LEVEL));
    doc.insert("timestamp".into(), json!(rfc3339(now_ms)));
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

/// The EMF line for one deployment state change the outcomes function recorded.
pub fn rollout_line(function: &str, state: &str, now_ms: i64) -> String {
    document(
        now_ms,
        &[("Function", function), ("State", state)],
        &[("Rollouts", "Count", 1.0)],
    )
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

    /// Lambda's application log levels, from the most detail to the least.
    const LAMBDA_LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

    #[test]
    fn metric_lines_pass_every_log_level_lambda_can_filter_at() {
        let report = Report {
            status: 200,
            events: vec![("ecr-eventbridge", "push".into(), "applied")],
            deployments: vec!["failed"],
            ..Report::default()
        };
        let now_ms = 1_795_169_730_412;
        for line in emf_lines("push", &report, 3.0, now_ms) {
            let v = check(&line);
            let level = v["level"].as_str().unwrap_or_default();
            let rank = LAMBDA_LEVELS.iter().position(|l| *l == level);
            assert_eq!(rank, Some(LAMBDA_LEVELS.len() - 1), "{line}");
            let at = v["timestamp"].as_str().unwrap_or_default();
            let parsed =
                time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                    .expect("an RFC 3339 timestamp");
            assert_eq!(
                parsed.unix_timestamp_nanos() / 1_000_000,
                i128::from(now_ms)
            );
        }
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
