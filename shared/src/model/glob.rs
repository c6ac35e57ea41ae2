//! Globs on repository names and tags, as the deploy rules write them.
//!
//! A glob is translated once into an anchored regular expression and matched by regex-lite, the
//! engine the AWS SDK already links: a rule's glob is matched against names of at most a few
//! hundred bytes, where a backtracking-free engine without a DFA is as fast as a full one, and the
//! Lambda artefact carries one regular-expression engine instead of two.
//!
//! Syntax, for names made of `/`-separated segments:
//! - `*` any run of characters within one segment; `?` one character other than `/`;
//! - `**` as a whole segment (`**`, `**/a`, `a/**`, `a/**/b`) any number of segments, none
//!   included; elsewhere it is `*`;
//! - `[abc]`, `[a-z]`, `[!a-z]` (or `[^a-z]`) one character of (or not of) the class;
//! - `{a,b}` one of the alternatives (not nested);
//! - `\` takes the next character literally.

use regex_lite::Regex;

/// A compiled glob.
#[derive(Debug, Clone)]
pub struct Glob {
    source: String,
    re: Regex,
    /// Made of literals, `*` and `?` only (`v*`, `shop/*`, `*.azurecr.io/billing`, most
    /// rules): matched segment by segment without the engine, about ten times faster on a
    /// warm push, which matches a few of them per rule.
    simple: bool,
}

/// Why a glob cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("unclosed character class `[`")]
    UnclosedClass,
    #[error("unclosed alternatives `{{`")]
    UnclosedAlternatives,
    #[error("`}}` without `{{`")]
    UnopenedAlternatives,
    #[error("alternatives `{{` inside alternatives")]
    NestedAlternatives,
    #[error("`\\` at the end of the pattern")]
    DanglingEscape,
    /// What is left: a class the engine refuses, such as the range `[z-a]`.
    #[error("{0}")]
    Class(String),
}

impl Glob {
    pub fn new(glob: &str) -> Result<Self, GlobError> {
        let pattern = translate(glob)?;
        let re = Regex::new(&pattern).map_err(|e| GlobError::Class(e.to_string()))?;
        Ok(Self {
            source: glob.to_owned(),
            re,
            simple: !glob.contains("**") && !glob.contains(['[', ']', '{', '}', '\\']),
        })
    }

    pub fn is_match(&self, name: &str) -> bool {
        if self.simple && name.is_ascii() {
            segments_match(&self.source, name)
        } else {
            self.re.is_match(name)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// The anchored regular expression a glob stands for.
fn translate(glob: &str) -> Result<String, GlobError> {
    let chars: Vec<char> = glob.chars().collect();
    let mut out = String::with_capacity(glob.len() * 2 + 8);
    out.push('^');
    let mut in_alternatives = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                let starts_segment = i == 0 || chars[i - 1] == '/';
                let after = chars.get(i + 2);
                if starts_segment && after.is_none() {
                    // `**` or `a/**`: everything below, the empty name included.
                    out.push_str(".*");
                    i += 2;
                } else if starts_segment && after == Some(&'/') {
                    // `**/a` or `a/**/b`: any number of whole segments.
                    out.push_str("(?:[^/]*/)*");
                    i += 3;
                } else {
                    out.push_str("[^/]*");
                    i += 2;
                    while chars.get(i) == Some(&'*') {
                        i += 1;
                    }
                }
                continue;
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '[' => {
                i = class(&chars, i, &mut out)?;
                continue;
            }
            '{' if in_alternatives => return Err(GlobError::NestedAlternatives),
            '{' => {
                in_alternatives = true;
                out.push_str("(?:");
            }
            '}' if in_alternatives => {
                in_alternatives = false;
                out.push(')');
            }
            '}' => return Err(GlobError::UnopenedAlternatives),
            ',' if in_alternatives => out.push('|'),
            '\\' => {
                let next = chars.get(i + 1).ok_or(GlobError::DanglingEscape)?;
                literal(*next, &mut out);
                i += 2;
                continue;
            }
            c => literal(c, &mut out),
        }
        i += 1;
    }
    if in_alternatives {
        return Err(GlobError::UnclosedAlternatives);
    }
    out.push('$');
    Ok(out)
}

/// A character class starting at `chars[start] == '['`; returns the index after its `]`.
fn class(chars: &[char], start: usize, out: &mut String) -> Result<usize, GlobError> {
    let mut i = start + 1;
    out.push('[');
    if matches!(chars.get(i), Some('!' | '^')) {
        // Like `?` and `*`, a class never matches the separator.
        out.push_str("^/");
        i += 1;
    }
    // A `]` first in the class is one of its characters, as in POSIX globs.
    let first = i;
    loop {
        let c = *chars.get(i).ok_or(GlobError::UnclosedClass)?;
        if c == ']' && i > first {
            break;
        }
        match c {
            // A range keeps its `-`; everything else is taken literally.
            '-' if i > first && chars.get(i + 1).is_some_and(|n| *n != ']') => out.push('-'),
            c => {
                if matches!(c, '\\' | '[' | ']' | '^' | '-' | '&' | '~') {
                    out.push('\\');
                }
                out.push(c);
            }
        }
        i += 1;
    }
    out.push(']');
    Ok(i + 1)
}

/// A simple glob against an ASCII name: as many segments, each matching its own. Neither `*`
/// nor `?` matches `/`, so the segments pair up in order.
fn segments_match(glob: &str, name: &str) -> bool {
    let mut globs = glob.split('/');
    let mut names = name.split('/');
    loop {
        match (globs.next(), names.next()) {
            (Some(g), Some(n)) if wildcard(g.as_bytes(), n.as_bytes()) => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// `*` any run, `?` any one byte, the rest literal; a star that failed to match resumes one
/// byte further, from the last star only, so the time is at most the product of the lengths.
fn wildcard(glob: &[u8], name: &[u8]) -> bool {
    let (mut g, mut n) = (0, 0);
    let mut last_star: Option<(usize, usize)> = None;
    while n < name.len() {
        match glob.get(g) {
            Some(b'*') => {
                last_star = Some((g, n));
                g += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                g += 1;
                n += 1;
            }
            _ => match last_star {
                Some((star, from)) => {
                    last_star = Some((star, from + 1));
                    g = star + 1;
                    n = from + 1;
                }
                None => return false,
            },
        }
    }
    glob[g..].iter().all(|&c| c == b'*')
}

fn literal(c: char, out: &mut String) {
    let mut buf = [0u8; 4];
    out.push_str(&regex_lite::escape(c.encode_utf8(&mut buf)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(glob: &str, name: &str) -> bool {
        Glob::new(glob).unwrap().is_match(name)
    }

    #[test]
    fn a_star_stays_within_one_segment() {
        assert!(m("shop/*", "shop/api"));
        assert!(!m("shop/*", "shop/api/v2"));
        assert!(!m("shop/*", "registry.example.com/shop/api"));
        assert!(m("*.azurecr.io/billing", "contoso.azurecr.io/billing"));
        assert!(!m("*.azurecr.io/billing", "a/contoso.azurecr.io/billing"));
        assert!(m("v*", "v1.2.3") && m("v*", "v") && !m("v*", "latest"));
        assert!(m("*", "api") && !m("*", "shop/api"));
    }

    #[test]
    fn a_double_star_segment_crosses_segments() {
        assert!(m("**", "r.example.com/a") && m("**", "a") && m("**", ""));
        assert!(m("**/api", "api") && m("**/api", "r.example.com/shop/api"));
        assert!(!m("**/api", "r.example.com/shop/api2"));
        assert!(m("shop/**", "shop/api") && m("shop/**", "shop/a/b"));
        assert!(!m("shop/**", "shopping/api"));
        assert!(m("r.example.com/**/api", "r.example.com/api"));
        assert!(m("r.example.com/**/api", "r.example.com/a/b/api"));
        // Not a whole segment: one segment's worth, as `*`.
        assert!(m("a**", "abc") && !m("a**", "a/bc"));
        assert!(m("shop/a**b", "shop/axxb") && !m("shop/a**b", "shop/a/b"));
    }

    #[test]
    fn question_marks_classes_and_alternatives() {
        assert!(m("v?", "v1") && !m("v?", "v10") && !m("a?b", "a/b"));
        assert!(m("v[0-9]*", "v1.2") && !m("v[0-9]*", "vx"));
        assert!(m("[!a-c]x", "dx") && !m("[!a-c]x", "bx"));
        assert!(m("[^a-c]x", "dx") && !m("[^a-c]x", "ax"));
        assert!(!m("shop[!x]api", "shop/api") && m("shop[!x]api", "shop-api"));
        assert!(m("[]]", "]") && m("[a-]", "-") && m("[.]", ".") && !m("[.]", "x"));
        assert!(m("{api,web}-*", "api-1") && m("{api,web}-*", "web-2"));
        assert!(!m("{api,web}-*", "db-1"));
        assert!(m("release-{,rc-}7", "release-7") && m("release-{,rc-}7", "release-rc-7"));
        assert!(m("a,b", "a,b"));
    }

    #[test]
    fn everything_else_is_literal() {
        assert!(m("a.b", "a.b") && !m("a.b", "axb"));
        assert!(m("a+b(c)$|^", "a+b(c)$|^"));
        assert!(m(r"\*", "*") && !m(r"\*", "x"));
        assert!(m(r"v\?", "v?") && !m(r"v\?", "v1"));
        assert!(m("é*", "été"));
        assert!(!m("API", "api"));
    }

    #[test]
    fn simple_globs_match_as_the_engine_does() {
        let globs = [
            "shop/*",
            "*",
            "v*",
            "*.azurecr.io/billing",
            "*.dkr.ecr.*.amazonaws.com/shop/api",
            "a?c",
            "*a*b",
            "**x",
            "*/*",
            "shop/api",
            "",
            "*-*-*",
            "??",
            "a*",
            "*a",
        ];
        let names = [
            "shop/api",
            "shop/a/b",
            "api",
            "v1.2",
            "v",
            "contoso.azurecr.io/billing",
            "1.dkr.ecr.us-east-1.amazonaws.com/shop/api",
            "abc",
            "abbc",
            "xaxb",
            "axbb",
            "x",
            "a/b",
            "",
            "a-b-c",
            "a--",
            "ab",
            "a",
            "/",
            "ba",
            "shop/",
            "é",
        ];
        for g in globs {
            let glob = Glob::new(g).unwrap();
            for n in names {
                let engine = glob.re.is_match(n);
                assert_eq!(glob.is_match(n), engine, "{g:?} against {n:?}");
            }
        }
        assert!(Glob::new("v*").unwrap().simple && !Glob::new("**/api").unwrap().simple);
        assert!(!Glob::new("v[0-9]").unwrap().simple && !Glob::new("{a,b}").unwrap().simple);
    }

    #[test]
    fn malformed_globs_are_named() {
        let e = |g: &str| Glob::new(g).unwrap_err();
        assert_eq!(e("v[0-9"), GlobError::UnclosedClass);
        assert_eq!(e("[]"), GlobError::UnclosedClass);
        assert_eq!(e("{a,b"), GlobError::UnclosedAlternatives);
        assert_eq!(e("a}"), GlobError::UnopenedAlternatives);
        assert_eq!(e("{a,{b,c}}"), GlobError::NestedAlternatives);
        assert_eq!(e("a\\"), GlobError::DanglingEscape);
        assert!(matches!(e("[z-a]"), GlobError::Class(_)));
        assert_eq!(Glob::new("shop/*").unwrap().as_str(), "shop/*");
    }
}
