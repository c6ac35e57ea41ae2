//! Which scan results quarantine a digest, and the holds that block it: one per source.

use std::collections::BTreeMap;

use crate::model::event::{ScanSummary, Severity};

/// When a scan result quarantines a digest: any threshold reached by the findings at its
/// severity or above (`high:1` is reached by one critical finding as much as by one high).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinePolicy(Vec<(Severity, u32)>);

impl Default for QuarantinePolicy {
    /// One critical finding is enough.
    fn default() -> Self {
        Self(vec![(Severity::Critical, 1)])
    }
}

impl QuarantinePolicy {
    /// `critical:1,high:5`: quarantine on one critical or five high findings.
    pub fn parse(s: &str) -> Option<Self> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (sev, n) = part.split_once(':')?;
            let n: u32 = n.trim().parse().ok().filter(|n| *n > 0)?;
            out.push((Severity::parse(sev.trim())?, n));
        }
        (!out.is_empty()).then_some(Self(out))
    }

    /// Why this scan quarantines the digest, or `None` when it is under every threshold.
    pub fn breach(&self, scan: &ScanSummary) -> Option<String> {
        let over: Vec<String> = self
            .0
            .iter()
            .filter(|(sev, n)| scan.at_or_above(*sev) >= *n)
            .map(|(sev, n)| {
                let found = scan.at_or_above(*sev);
                match sev {
                    Severity::Critical => format!("{found} critical (threshold {n})"),
                    _ => format!("{found} {} or above (threshold {n})", sev.as_str()),
                }
            })
            .collect();
        (!over.is_empty()).then(|| format!("{} scan found {}", scan.scanner, over.join(", ")))
    }
}

/// The hold an explicit quarantine places (the generic form's `"quarantine": true`): only an
/// explicit release lifts it, never a scan.
pub const MANUAL: &str = "manual";

/// What an explicit release without a `source` lifts: every hold.
pub const ALL: &str = "all";

/// Every source a hold can come from. A hold is kept per source, so a digest's holds are at most
/// this many; an explicit release may name one of them.
pub const SOURCES: [&str; 5] = [MANUAL, "acr", "ecr-basic-scan", "inspector2", "harbor-scan"];

/// The source whose hold a scanner's results place and lift: an Inspector finding and a whole
/// Inspector scan are the same scanner.
pub fn scanner_source(scanner: &str) -> &str {
    match scanner {
        "inspector2-finding" => "inspector2",
        s => s,
    }
}

/// The source of a hold recorded before holds were kept per source, when the provider's name
/// stood for it.
pub fn legacy_source(source: Option<&str>) -> String {
    match source {
        None | Some("" | "generic") => MANUAL.to_owned(),
        Some(s) => scanner_source(s).to_owned(),
    }
}

/// One source's block on a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub source: String,
    pub reason: String,
    /// The sender's time of the quarantine or scan that placed it.
    pub at: String,
    /// The event that placed it (`provider#id`).
    pub event: Option<String>,
}

/// Every hold on a digest, and when each source last released it. `version` counts their
/// changes: a change is written only if no other was written since it was read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holds {
    /// One per source, in source order.
    pub held: Vec<Hold>,
    pub released: BTreeMap<String, String>,
    pub version: u64,
}

/// What lifting a source's hold did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lift {
    /// These sources' holds were lifted.
    Lifted(Vec<String>),
    /// The source held nothing: its release is remembered, so an older hold arriving late is
    /// stale.
    NotHeld,
    /// The hold was placed after this release was made.
    Stale,
}

impl Holds {
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub fn get(&self, source: &str) -> Option<&Hold> {
        self.held.iter().find(|h| h.source == source)
    }

    /// Places (or renews) `hold`. `Err` when the hold is older than its source's last release
    /// or than the hold the source already has: the newer word stands.
    pub fn place(&mut self, hold: Hold) -> Result<(), &'static str> {
        if self
            .released
            .get(&hold.source)
            .is_some_and(|r| r.as_str() > hold.at.as_str())
        {
            return Err("released after this scan or quarantine was made");
        }
        if self.get(&hold.source).is_some_and(|h| h.at > hold.at) {
            return Err("a newer scan or quarantine from the same source already holds the digest");
        }
        self.held.retain(|h| h.source != hold.source);
        self.held.push(hold);
        self.held.sort_by(|a, b| a.source.cmp(&b.source));
        Ok(())
    }

    /// Lifts `source`'s hold (every hold for [`ALL`]) as of `at`.
    pub fn lift(&mut self, source: &str, at: &str) -> Lift {
        let sources: Vec<&str> = if source == ALL {
            SOURCES.to_vec()
        } else {
            vec![source]
        };
        for s in &sources {
            let r = self.released.entry((*s).to_owned()).or_default();
            if r.as_str() < at {
                at.clone_into(r);
            }
        }
        let (lifted, kept): (Vec<Hold>, Vec<Hold>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| (source == ALL || h.source == source) && h.at.as_str() <= at);
        self.held = kept;
        if !lifted.is_empty() {
            Lift::Lifted(lifted.into_iter().map(|h| h.source).collect())
        } else if self
            .held
            .iter()
            .any(|h| source == ALL || h.source == source)
        {
            Lift::Stale
        } else {
            Lift::NotHeld
        }
    }

    /// The holds in one line: the reason alone for one hold, `source: reason; …` for several.
    pub fn summary(&self) -> Option<String> {
        match self.held.as_slice() {
            [] => None,
            [one] => Some(one.reason.clone()),
            many => Some(
                many.iter()
                    .map(|h| format!("{}: {}", h.source, h.reason))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        }
    }

    pub fn sources(&self) -> String {
        self.held
            .iter()
            .map(|h| h.source.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The latest time a hold was placed.
    pub fn latest(&self) -> Option<&str> {
        self.held.iter().map(|h| h.at.as_str()).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(source: &str, at: &str) -> Hold {
        Hold {
            source: source.into(),
            reason: format!("{source} says no"),
            at: at.into(),
            event: None,
        }
    }

    #[test]
    fn a_source_lifts_only_its_own_hold() {
        let mut h = Holds::default();
        h.place(hold(MANUAL, "t1")).unwrap();
        h.place(hold("inspector2", "t2")).unwrap();
        assert_eq!(
            h.lift("inspector2", "t3"),
            Lift::Lifted(vec!["inspector2".into()])
        );
        assert_eq!(h.sources(), "manual");
        assert_eq!(h.lift("inspector2", "t4"), Lift::NotHeld);
        assert_eq!(h.summary().as_deref(), Some("manual says no"));
        assert_eq!(h.lift(ALL, "t5"), Lift::Lifted(vec![MANUAL.into()]));
        assert!(h.is_empty());
    }

    #[test]
    fn older_words_are_stale() {
        let mut h = Holds::default();
        h.place(hold("acr", "t5")).unwrap();
        assert_eq!(h.lift("acr", "t4"), Lift::Stale);
        assert!(h.place(hold("acr", "t3")).is_err());
        assert_eq!(h.lift("acr", "t6"), Lift::Lifted(vec!["acr".into()]));
        // A clean scan that arrived first makes the older dirty one stale.
        assert!(h.place(hold("acr", "t5")).is_err());
        assert_eq!(h.lift("harbor-scan", "t9"), Lift::NotHeld);
        assert!(h.place(hold("harbor-scan", "t8")).is_err());
        assert!(h.place(hold(MANUAL, "t1")).is_ok());
    }

    #[test]
    fn several_holds_read_as_one_line() {
        let mut h = Holds::default();
        h.place(hold("inspector2", "t2")).unwrap();
        h.place(hold(MANUAL, "t1")).unwrap();
        assert_eq!(h.sources(), "inspector2,manual");
        assert_eq!(
            h.summary().as_deref(),
            Some("inspector2: inspector2 says no; manual: manual says no")
        );
        assert_eq!(h.latest(), Some("t2"));
        assert_eq!(legacy_source(Some("generic")), MANUAL);
        assert_eq!(legacy_source(Some("inspector2-finding")), "inspector2");
    }
}
