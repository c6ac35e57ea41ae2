//! The one event model every provider parses into.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::model::reference::{ImageRef, Registry};

/// Who sent the event. The name is part of the receipt key, so it must never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    Acr,
    AcrEventGrid,
    EcrEventbridge,
    Distribution,
    Harbor,
    DockerHub,
    Quay,
    GitHubPackages,
    Gitea,
    ArtifactRegistry,
    Angos,
    Artifactory,
    AlibabaAcr,
    Nexus,
    Generic,
    /// A deploy or rollback someone asked for by hand (`imagehook deploy`, the API): never a
    /// sender, so not in [`Provider::ALL`] and not accepted as `?provider=`; its events name
    /// the request (`manual#<request id>`) in desired states, deployments and history.
    Manual,
}

impl Provider {
    pub const ALL: &'static [Provider] = &[
        Provider::Acr,
        Provider::AcrEventGrid,
        Provider::EcrEventbridge,
        Provider::Distribution,
        Provider::Harbor,
        Provider::DockerHub,
        Provider::Quay,
        Provider::GitHubPackages,
        Provider::Gitea,
        Provider::ArtifactRegistry,
        Provider::Angos,
        Provider::Artifactory,
        Provider::AlibabaAcr,
        Provider::Nexus,
        Provider::Generic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Acr => "acr",
            Provider::AcrEventGrid => "acr-eventgrid",
            Provider::EcrEventbridge => "ecr-eventbridge",
            Provider::Distribution => "distribution",
            Provider::Harbor => "harbor",
            Provider::DockerHub => "dockerhub",
            Provider::Quay => "quay",
            Provider::GitHubPackages => "github",
            Provider::Gitea => "gitea",
            Provider::ArtifactRegistry => "gar",
            Provider::Angos => "angos",
            Provider::Artifactory => "artifactory",
            Provider::AlibabaAcr => "alibaba-acr",
            Provider::Nexus => "nexus",
            Provider::Generic => "generic",
            Provider::Manual => "manual",
        }
    }

    /// A sender by its name; `manual` is no sender.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|p| p.as_str() == s)
    }

    /// Whoever made an event the records name (`<provider>#<id>`): a sender, or a request by
    /// hand.
    pub fn from_recorded(s: &str) -> Option<Self> {
        match s {
            "manual" => Some(Self::Manual),
            _ => Self::parse(s),
        }
    }

    /// Whether the sender redelivers a request refused with `status` until it is accepted, so
    /// that the refusal of one bad event holds up or repeats for ever: CNCF Distribution retries
    /// every non-2xx for ever, in order, one event at a time per endpoint; Pub/Sub push
    /// redelivers for the subscription's retention (7 days by default); Event Grid retries every
    /// 4xx but 400 and 413 (which it dead-letters) for 24 hours. Such refusals are answered
    /// 200, with the event `rejected`.
    pub fn retries_refusal(self, status: u16) -> bool {
        match self {
            Provider::Distribution | Provider::ArtifactRegistry => true,
            Provider::AcrEventGrid => !matches!(status, 400 | 413),
            _ => false,
        }
    }

    /// Whether the sender retries some refusal for ever (see [`Self::retries_refusal`]).
    pub fn retries_refusals(self) -> bool {
        self.retries_refusal(422)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Push,
    Delete,
    Quarantine,
    Release,
    /// The digest arrived in a registry replica (`ImageEvent::region`).
    Replicate,
    /// Replicating the digest to `ImageEvent::region` failed.
    ReplicationFailed,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Quarantine => "quarantine",
            Action::Release => "release",
            Action::Replicate => "replicate",
            Action::ReplicationFailed => "replication-failed",
        }
    }
}

/// An instant kept as RFC 3339 in UTC with nine fractional digits, so that the string order is
/// the time order: DynamoDB compares `updated_at` as a string in a condition expression.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Timestamp(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp {0:?}: expected RFC 3339")]
pub struct TimestampError(pub String);

/// The text of a UTC time with nanoseconds, through `format!`.
fn formatted(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

impl Timestamp {
    pub fn parse(s: &str) -> Result<Self, TimestampError> {
        let t = OffsetDateTime::parse(s, &Rfc3339)
            .ok()
            .and_then(in_rfc3339_years)
            .ok_or_else(|| TimestampError(s.to_owned()))?;
        Ok(Self::from_datetime(t))
    }

    pub fn from_datetime(t: OffsetDateTime) -> Self {
        let t = t.to_offset(time::UtcOffset::UTC);
        // Every delivery stamps its receipt, and `format!` cost more than the rest of it.
        if let Ok(year) = u32::try_from(t.year())
            && year <= 9999
        {
            let mut s = String::with_capacity(30);
            for (n, width, then) in [
                (year, 4, '-'),
                (u32::from(u8::from(t.month())), 2, '-'),
                (u32::from(t.day()), 2, 'T'),
                (u32::from(t.hour()), 2, ':'),
                (u32::from(t.minute()), 2, ':'),
                (u32::from(t.second()), 2, '.'),
                (t.nanosecond(), 9, 'Z'),
            ] {
                for place in (0..width).rev() {
                    s.push(char::from(b'0' + (n / 10u32.pow(place) % 10) as u8));
                }
                s.push(then);
            }
            return Self(s);
        }
        Self(formatted(t))
    }

    pub fn from_unix(secs: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp(secs)
            .ok()
            .and_then(in_rfc3339_years)
            .map(Self::from_datetime)
    }

    pub fn now() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
    }

    /// This instant moved `by` later (saturating at the end of year 9999).
    pub fn plus(&self, by: std::time::Duration) -> Self {
        let t = OffsetDateTime::parse(&self.0, &Rfc3339).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let later = t
            .checked_add(time::Duration::try_from(by).unwrap_or(time::Duration::MAX))
            .and_then(in_rfc3339_years)
            .unwrap_or(t);
        Self::from_datetime(later)
    }

    pub fn unix_nanos(&self) -> i128 {
        OffsetDateTime::parse(&self.0, &Rfc3339).map_or(0, |t| t.unix_timestamp_nanos())
    }

    pub fn unix_seconds(&self) -> i64 {
        OffsetDateTime::parse(&self.0, &Rfc3339).map_or(0, |t| t.unix_timestamp())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The instant in UTC if its year is one RFC 3339 can write (0000 to 9999). An offset can move a
/// time at either end past them (`9999-12-31T23:59:59-01:00`, where converting panics), and so
/// can a sender's Unix seconds: such a time would neither format as RFC 3339 nor parse back.
fn in_rfc3339_years(t: OffsetDateTime) -> Option<OffsetDateTime> {
    t.checked_to_offset(time::UtcOffset::UTC)
        .filter(|t| (0..=9999).contains(&t.year()))
}

impl TryFrom<String> for Timestamp {
    type Error = TimestampError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Timestamp> for String {
    fn from(t: Timestamp) -> String {
        t.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One image event, whatever registry sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageEvent {
    /// The sender's event id, or a content hash when the sender has none (stable across retries).
    pub id: String,
    pub provider: Provider,
    pub action: Action,
    pub image: ImageRef,
    /// The sender's time; the receipt time only when the sender gives none.
    pub occurred_at: Timestamp,
    pub media_type: Option<String>,
    pub size: Option<u64>,
    /// Vulnerability counts, for scan results (the quarantine function compares them with
    /// `QUARANTINE_SEVERITY`).
    pub scan: Option<ScanSummary>,
    /// Why, for quarantines and releases the sender explains.
    pub reason: Option<String>,
    /// The registry replica (region or location) the event happened in: where a push or a
    /// replication put the digest. None when the sender does not say.
    pub region: Option<String>,
    /// For a replication: the registry the replica serves the digest from, when it is not the
    /// image's own (an ECR replica is the same repository under its Region's registry host).
    pub replica_registry: Option<Registry>,
    /// For an explicit release: the one source whose hold it lifts (`None`: every hold).
    pub release_source: Option<String>,
    /// The id is a hash of what the event says, and the sender gave no time: the same body
    /// sent again later is a new push as often as a retry (`pipeline::identity` tells which).
    #[serde(skip)]
    pub identified_by_content: bool,
}

/// The most a sender may put where it chooses the value: what is stored stays far below
/// DynamoDB's 2 KB key and 400 KB item limits, on both stores.
pub const MAX_EVENT_ID: usize = 256;
pub const MAX_REASON: usize = 1024;
pub const MAX_MEDIA_TYPE: usize = 255;
/// A region (registry replica) is part of a sort key (`D#<digest>#R#<region>`): AWS's longest
/// Region and Azure's longest location names are under 30 characters.
pub const MAX_REGION: usize = 64;
/// How far after its arrival an event may say it happened. Clocks drift by seconds; a time far
/// ahead would freeze its tag (every later push `stale`) or its digest's quarantine state.
pub const MAX_FUTURE_SKEW: std::time::Duration = std::time::Duration::from_secs(600);

/// An event that carries more than imagehook keeps: refused whole (422), nothing recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutOfBounds {
    #[error("event {id}: {field} is {len} bytes; the limit is {max}")]
    TooLong {
        /// The event's id, cut to 64 characters.
        id: String,
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error(
        "event {id}: its time {at} is more than 10 minutes after it arrived ({received}); correct the sender's clock"
    )]
    Future {
        id: String,
        at: String,
        received: String,
    },
}

impl ImageEvent {
    /// Whether every sender-chosen value is within what imagehook keeps, and the event's time
    /// is not in the future of `received_at` by more than `MAX_FUTURE_SKEW`.
    pub fn check_bounds(&self, received_at: &Timestamp) -> Result<(), OutOfBounds> {
        let id: String = self.id.chars().take(64).collect();
        for (field, value, max) in [
            ("id", Some(self.id.as_str()), MAX_EVENT_ID),
            ("reason", self.reason.as_deref(), MAX_REASON),
            ("media type", self.media_type.as_deref(), MAX_MEDIA_TYPE),
            ("region", self.region.as_deref(), MAX_REGION),
        ] {
            if let Some(v) = value.filter(|v| v.len() > max) {
                return Err(OutOfBounds::TooLong {
                    id,
                    field,
                    len: v.len(),
                    max,
                });
            }
        }
        if self.occurred_at.as_str() > received_at.plus(MAX_FUTURE_SKEW).as_str() {
            return Err(OutOfBounds::Future {
                id,
                at: self.occurred_at.to_string(),
                received: received_at.to_string(),
            });
        }
        Ok(())
    }

    /// An event with only what every event has; the `with_` setters add the optional fields a
    /// sender provides (each takes an `Option`, so a field the sender left out stays `None`).
    pub fn new(
        id: String,
        provider: Provider,
        action: Action,
        image: ImageRef,
        occurred_at: Timestamp,
    ) -> Self {
        Self {
            id,
            provider,
            action,
            image,
            occurred_at,
            media_type: None,
            size: None,
            scan: None,
            reason: None,
            region: None,
            replica_registry: None,
            release_source: None,
            identified_by_content: false,
        }
    }

    /// Marks the id as a hash of a body that carries no time of its own.
    pub fn with_replica_registry(mut self, registry: Option<Registry>) -> Self {
        self.replica_registry = registry;
        self
    }

    pub fn with_release_source(mut self, source: Option<String>) -> Self {
        self.release_source = source;
        self
    }

    pub fn identified_by_content(mut self, yes: bool) -> Self {
        self.identified_by_content = yes;
        self
    }

    pub fn with_media_type(mut self, media_type: Option<String>) -> Self {
        self.media_type = media_type;
        self
    }

    pub fn with_size(mut self, size: Option<u64>) -> Self {
        self.size = size;
        self
    }

    pub fn with_scan(mut self, scan: Option<ScanSummary>) -> Self {
        self.scan = scan;
        self
    }

    pub fn with_reason(mut self, reason: Option<String>) -> Self {
        self.reason = reason;
        self
    }

    pub fn with_region(mut self, region: Option<String>) -> Self {
        self.region = region;
        self
    }
}

/// Findings of a vulnerability scan, by severity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanSummary {
    /// Which scanner: `ecr-basic-scan`, `inspector2`, ...
    pub scanner: String,
    /// A whole scan's result (a clean one releases a quarantine), rather than one finding.
    pub complete: bool,
    pub critical: u32,
    pub high: u32,
    pub medium: u32,
    pub low: u32,
}

impl ScanSummary {
    /// The findings at `severity` and every severity above it.
    pub fn at_or_above(&self, severity: Severity) -> u32 {
        Severity::FROM_WORST
            .iter()
            .take_while(|s| **s != severity)
            .chain(std::iter::once(&severity))
            .map(|s| self.count(*s))
            .sum()
    }

    pub fn count(&self, severity: Severity) -> u32 {
        match severity {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
        }
    }

    pub fn add(&mut self, severity: &str, n: u32) {
        match Severity::parse(severity) {
            Some(Severity::Critical) => self.critical += n,
            Some(Severity::High) => self.high += n,
            Some(Severity::Medium) => self.medium += n,
            Some(Severity::Low) => self.low += n,
            None => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
}

impl Severity {
    pub const FROM_WORST: [Self; 4] = [Self::Critical, Self::High, Self::Medium, Self::Low];

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "critical" => Some(Self::Critical),
            "high" => Some(Self::High),
            "medium" => Some(Self::Medium),
            "low" => Some(Self::Low),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
        }
    }
}

/// An event the request held that this function does not act on (a ping, a chart push, a pull,
/// an action another function handles). It is acknowledged, never a reason to fail a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IgnoredEvent {
    pub id: Option<String>,
    pub provider: Provider,
    pub action: String,
    pub reason: String,
    pub registry: Option<String>,
    pub repository: Option<String>,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// What a parser found, one entry per event in the request, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Image(ImageEvent),
    Ignored(IgnoredEvent),
    /// An event the sender's delivery carried but imagehook cannot accept (the reason names
    /// why), from a sender that would retry a refusal for ever: answered among the others,
    /// nothing recorded.
    Rejected(IgnoredEvent),
    /// A handshake the sender expects answered with this JSON body and nothing recorded
    /// (Azure Event Grid's SubscriptionValidation).
    Handshake(serde_json::Value),
}

/// A stable id for senders that give none: the hash of the fields that identify the event.
pub fn content_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_normalise_to_sortable_utc() {
        let a = Timestamp::parse("2017-11-17T16:52:01.343145347Z").unwrap();
        assert_eq!(a.as_str(), "2017-11-17T16:52:01.343145347Z");
        let b = Timestamp::parse("2017-11-17T17:52:01+01:00").unwrap();
        assert_eq!(b.as_str(), "2017-11-17T16:52:01.000000000Z");
        assert!(b < a);
        let c = Timestamp::parse("2026-06-01T12:22:07.0958813Z").unwrap();
        assert_eq!(c.as_str(), "2026-06-01T12:22:07.095881300Z");
        assert!(Timestamp::parse("yesterday").is_err());
        assert_eq!(
            Timestamp::from_unix(0).unwrap().as_str(),
            "1970-01-01T00:00:00.000000000Z"
        );
    }

    #[test]
    fn times_whose_utc_year_leaves_rfc3339_are_refused() {
        // The first panicked converting to UTC; the others gave a year -1, kept as "-001-...",
        // which never parsed back.
        assert!(Timestamp::parse("9999-12-31T23:59:59-01:00").is_err());
        assert!(Timestamp::parse("0000-01-01T00:30:00+01:00").is_err());
        assert_eq!(Timestamp::from_unix(-62_167_219_201), None);
        assert_eq!(Timestamp::from_unix(253_402_300_800), None);
        let edges = [
            Timestamp::parse("0000-01-01T00:00:00Z"),
            Timestamp::parse("9999-12-31T23:59:59+01:00"),
        ];
        for t in edges {
            let t = t.unwrap();
            assert_eq!(Timestamp::parse(t.as_str()).unwrap(), t);
        }
    }

    #[test]
    fn content_ids_do_not_collide_on_concatenation() {
        assert_ne!(content_id(&["ab", "c"]), content_id(&["a", "bc"]));
        assert_eq!(content_id(&["a", "b"]), content_id(&["a", "b"]));
    }

    proptest::proptest! {
        #[test]
        fn timestamps_are_written_as_format_writes_them(
            secs in -62_167_219_200i64..253_402_300_800,
            nanos in 0u32..1_000_000_000,
        ) {
            let t = OffsetDateTime::from_unix_timestamp(secs).unwrap()
                + time::Duration::nanoseconds(i64::from(nanos));
            proptest::prop_assert_eq!(Timestamp::from_datetime(t).0, formatted(t));
        }
    }
}
