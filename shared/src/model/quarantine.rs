//! Which scan results quarantine a digest.

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
