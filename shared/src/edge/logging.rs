//! The functions' log lines, as Lambda's log-level filter reads them. With the JSON log format
//! and an application log level, Lambda reads each line's `level` and `timestamp`: a line
//! without a level, or without a valid RFC 3339 timestamp, is taken as INFO and dropped at WARN
//! and above ("Log-level filtering", Lambda developer guide). The runtime's default subscriber
//! prints no time at all, so every warning and error would be read as INFO.

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Lambda's log level (`AWS_LAMBDA_LOG_LEVEL`, then `RUST_LOG`) as a tracing filter. Lambda has
/// FATAL above ERROR and tracing has not: FATAL keeps errors, which Lambda then drops itself.
fn level(configured: Option<&str>) -> LevelFilter {
    match configured.map(str::trim) {
        Some(l) if l.eq_ignore_ascii_case("fatal") => LevelFilter::ERROR,
        Some(l) => l.parse().unwrap_or(LevelFilter::INFO),
        None => LevelFilter::INFO,
    }
}

/// The subscriber: JSON lines (Lambda's JSON log format) or text, each with its level and an
/// RFC 3339 timestamp.
pub fn subscriber<W>(
    json: bool,
    configured_level: Option<&str>,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt()
        .with_target(false)
        .with_ansi(false)
        .with_max_level(level(configured_level))
        .with_writer(writer);
    if json {
        Box::new(fmt.json().finish())
    } else {
        Box::new(fmt.finish())
    }
}

/// Installs the subscriber Lambda's logging configuration asks for, writing to stdout.
pub fn init() {
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let configured = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    // Only fails when a subscriber is already set, which then stays.
    let _ = tracing::subscriber::set_global_default(subscriber(
        json,
        configured.as_deref(),
        std::io::stdout,
    ));
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::Value;
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Self;
        fn make_writer(&'w self) -> Self {
            self.clone()
        }
    }

    fn lines(json: bool, level: &str, log: impl FnOnce()) -> Vec<String> {
        let out = Captured::default();
        tracing::subscriber::with_default(subscriber(json, Some(level), out.clone()), log);
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn error_lines_carry_the_level_and_an_rfc3339_timestamp_lambda_reads() {
        let out = lines(true, "WARN", || {
            tracing::info!("not kept at WARN");
            tracing::error!(service = "prod/api", "rollout failed");
        });
        let [line] = out.as_slice() else {
            panic!("{out:?}")
        };
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["level"], "ERROR", "{line}");
        let at = v["timestamp"].as_str().unwrap_or_default();
        let parsed = OffsetDateTime::parse(at, &Rfc3339).expect("an RFC 3339 timestamp");
        assert!(
            (OffsetDateTime::now_utc() - parsed).whole_seconds().abs() < 60,
            "{line}"
        );
    }

    #[test]
    fn text_lines_carry_a_timestamp_too() {
        let out = lines(false, "info", || tracing::warn!("slow"));
        let [line] = out.as_slice() else {
            panic!("{out:?}")
        };
        let at = line.split_whitespace().next().unwrap_or_default();
        assert!(OffsetDateTime::parse(at, &Rfc3339).is_ok(), "{line}");
    }

    #[test]
    fn lambda_levels_map_to_tracing_filters() {
        assert_eq!(level(Some("FATAL")), LevelFilter::ERROR);
        assert_eq!(level(Some("WARN")), LevelFilter::WARN);
        assert_eq!(level(Some("trace")), LevelFilter::TRACE);
        assert_eq!(level(None), LevelFilter::INFO);
    }
}
