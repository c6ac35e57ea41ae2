//! Rollout policy: how a rule orders versions, and whether a service that runs one tag should be
//! moved to a pushed one.
//!
//! The decision needs the tag the service runs now, which only the deployer learns (from the task
//! definition), so rules carry a `Policy` on each target and the deployer asks it.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use regex_lite::Regex;

/// How versions are read from tags.
#[derive(Debug, Clone)]
pub enum Scheme {
    /// `1.4.2`, `v1.4.2`, `1.4`, `7`: semver, with missing parts taken as zero.
    Semver,
    /// The named group `version` of the rule's regex, read as above.
    Regex(Arc<Regex>),
}

// Targets are sorted and deduplicated; a regex compares by its source text.
impl PartialEq for Scheme {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Scheme {}
impl PartialOrd for Scheme {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheme {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(other.key())
    }
}
impl Hash for Scheme {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl Scheme {
    fn key(&self) -> &str {
        match self {
            Self::Semver => "",
            Self::Regex(re) => re.as_str(),
        }
    }

    /// The version a tag carries under this scheme, if any.
    pub fn version(&self, tag: &str) -> Option<semver::Version> {
        match self {
            Self::Semver => lenient_semver(tag),
            Self::Regex(re) => lenient_semver(re.captures(tag)?.name("version")?.as_str()),
        }
    }
}

/// `v1.4.2` -> 1.4.2, `1.4` -> 1.4.0, `7` -> 7.0.0, `1.5.0-rc.1` -> itself; anything else: none.
pub(crate) fn lenient_semver(s: &str) -> Option<semver::Version> {
    let s = s.strip_prefix('v').unwrap_or(s);
    if let Ok(v) = semver::Version::parse(s) {
        return Some(v);
    }
    let mut parts = s.split('.');
    let mut next = || -> Option<Option<u64>> {
        match parts.next() {
            None => Some(None),
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().ok().map(Some)
            }
            Some(_) => None,
        }
    };
    let major = next()??;
    let minor = next()?;
    let patch = if minor.is_some() { next()? } else { None };
    if parts.next().is_some() {
        return None;
    }
    Some(semver::Version::new(
        major,
        minor.unwrap_or(0),
        patch.unwrap_or(0),
    ))
}

/// What a rule asks beyond "this tag matches".
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Policy {
    pub scheme: Scheme,
    /// Never move a service to a lower version than the one it runs.
    pub newer_only: bool,
    /// `force`: the service follows the tag it runs; a push of that tag with a new digest
    /// redeploys it, pushes of other tags leave it alone.
    pub follow_tag: bool,
    /// What the scheduled reconcile does when the service runs an image imagehook did not
    /// deploy (changed by hand, or by infrastructure as code).
    pub on_drift: OnDrift,
}

/// `on_drift` of a rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDrift {
    /// Record it and notify (`service-drifted`); leave the service as it is.
    #[default]
    Report,
    /// Also apply what the service should run again.
    Restore,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            scheme: Scheme::Semver,
            newer_only: false,
            follow_tag: false,
            on_drift: OnDrift::Report,
        }
    }
}

/// Whether to move a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Deploy,
    Skip(String),
}

impl Policy {
    /// `running`: the tag of the image the service's container runs now (none when it runs a
    /// bare digest or no image of this repository); `pushed`: the tag being rolled out.
    pub fn decide(&self, running: Option<&str>, pushed: &str) -> Decision {
        if self.follow_tag {
            return match running {
                Some(r) if r == pushed => Decision::Deploy,
                Some(r) => {
                    Decision::Skip(format!("force: the service follows tag {r}, not {pushed}"))
                }
                None => Decision::Skip(format!(
                    "force: the service runs no tag of this repository to follow, so {pushed} is not rolled out"
                )),
            };
        }
        if !self.newer_only {
            return Decision::Deploy;
        }
        let Some(running) = running else {
            return Decision::Deploy;
        };
        let Some(from) = self.scheme.version(running) else {
            // The service runs something unversioned (latest, a branch tag): any version is a
            // step forward from nothing comparable.
            return Decision::Deploy;
        };
        match self.scheme.version(pushed) {
            None => Decision::Skip(format!(
                "newer-only: tag {pushed} carries no version to compare with {running}"
            )),
            Some(to) if to < from => Decision::Skip(format!(
                "newer-only: {pushed} ({to}) is older than {running} ({from}), which the service runs"
            )),
            Some(_) => Decision::Deploy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(newer_only: bool, follow_tag: bool) -> Policy {
        Policy {
            newer_only,
            follow_tag,
            ..Policy::default()
        }
    }

    #[test]
    fn lenient_versions() {
        let v = |s: &str| lenient_semver(s).map(|v| v.to_string());
        assert_eq!(v("v1.4.2").as_deref(), Some("1.4.2"));
        assert_eq!(v("1.4").as_deref(), Some("1.4.0"));
        assert_eq!(v("7").as_deref(), Some("7.0.0"));
        assert_eq!(v("1.5.0-rc.1").as_deref(), Some("1.5.0-rc.1"));
        assert_eq!(v("latest"), None);
        assert_eq!(v("1.2.3.4"), None);
        assert_eq!(v("1..2"), None);
        assert_eq!(v(""), None);
    }

    /// (running tag, pushed tag, policy) -> decision: the table of docs/rollouts.md, Policies.
    #[test]
    fn decision_table() {
        let date = Policy {
            scheme: Scheme::Regex(Arc::new(
                Regex::new(r"^main-(?P<version>\d+)-[0-9a-f]{7}$").unwrap(),
            )),
            newer_only: true,
            follow_tag: false,
            on_drift: OnDrift::Report,
        };
        let deploy = Decision::Deploy;
        let cases: &[(&str, Option<&str>, &str, &Policy, bool)] = &[
            (
                "plain rule, older push",
                Some("1.5.0"),
                "1.4.9",
                &policy(false, false),
                true,
            ),
            (
                "newer-only, newer",
                Some("1.4.2"),
                "1.4.3",
                &policy(true, false),
                true,
            ),
            (
                "newer-only, same version",
                Some("1.4.2"),
                "v1.4.2",
                &policy(true, false),
                true,
            ),
            (
                "newer-only, older",
                Some("1.5.0"),
                "1.4.9",
                &policy(true, false),
                false,
            ),
            (
                "newer-only, pre-release of running",
                Some("1.5.0"),
                "1.5.0-rc.1",
                &policy(true, false),
                false,
            ),
            (
                "newer-only, 2-part vs 3-part",
                Some("1.4"),
                "1.4.1",
                &policy(true, false),
                true,
            ),
            (
                "newer-only, unversioned push",
                Some("1.4.2"),
                "latest",
                &policy(true, false),
                false,
            ),
            (
                "newer-only, service runs latest",
                Some("latest"),
                "1.0.0",
                &policy(true, false),
                true,
            ),
            (
                "newer-only, service runs a bare digest",
                None,
                "1.0.0",
                &policy(true, false),
                true,
            ),
            (
                "regex version group, newer",
                Some("main-20261101-abc1234"),
                "main-20261123-def5678",
                &date,
                true,
            ),
            (
                "regex version group, older",
                Some("main-20261123-def5678"),
                "main-20261101-abc1234",
                &date,
                false,
            ),
            (
                "force, same tag",
                Some("latest"),
                "latest",
                &policy(false, true),
                true,
            ),
            (
                "force, other tag",
                Some("latest"),
                "1.4.2",
                &policy(false, true),
                false,
            ),
            (
                "force, nothing to follow",
                None,
                "latest",
                &policy(false, true),
                false,
            ),
        ];
        for (name, running, pushed, p, expect) in cases {
            let got = p.decide(*running, pushed);
            assert_eq!(got == deploy, *expect, "{name}: {got:?}");
            if let Decision::Skip(why) = got {
                assert!(
                    why.contains(pushed),
                    "{name}: the reason names the tag: {why}"
                );
            }
        }
    }
}
