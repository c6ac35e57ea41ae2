//! The input framing shared by the fuzz targets that take a whole request.
//!
//! A request input is a selector byte, then optional header lines, a blank line and the body:
//!
//! ```text
//! <selector byte><name>: <value>\n...<name>: <value>\n\n<body>
//! ```
//!
//! Without a blank line the rest is all body. Lines whose name starts with `:` are not headers but
//! what the URL would carry (`:registry`, `:region`, `:token`, `:now`). Header lines that are not a
//! valid header name and value are dropped, as they could not reach the edge. The format is
//! readable, so `scripts/fuzz seed` writes the sample events' headers and bodies in it and
//! mutations of header names and values stay meaningful.

use http::{HeaderMap, HeaderName, HeaderValue};

/// One framed request.
pub struct Request<'a> {
    pub selector: u8,
    pub headers: HeaderMap,
    /// `(name, value)` of the `:name: value` lines, name without its colon.
    pub url: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    pub fn split(data: &'a [u8]) -> Option<Self> {
        let (&selector, rest) = data.split_first()?;
        let (head, body) = match find(rest, b"\n\n") {
            Some(i) => (&rest[..i], &rest[i + 2..]),
            None => (&rest[..0], rest),
        };
        let mut headers = HeaderMap::new();
        let mut url = Vec::new();
        for line in head.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(pseudo) = line.strip_prefix(b":") {
                let Ok(pseudo) = std::str::from_utf8(pseudo) else {
                    continue;
                };
                if let Some((name, value)) = pseudo.split_once(':') {
                    url.push((name, value.trim()));
                }
                continue;
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            {
                headers.append(name, value);
            }
        }
        Some(Self {
            selector,
            headers,
            url,
            body,
        })
    }

    /// The value of the last `:name:` line.
    pub fn url(&self, name: &str) -> Option<&'a str> {
        self.url
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Header values lose their surrounding whitespace in HTTP parsing, so they never reach the edge
/// with it.
fn trim(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

/// What every parse must hold to, whichever target drove it: the error formats (the edge puts
/// its message in the 400) within a size tied to the input, and every event's time is a
/// timestamp that parses back to itself (records are read back through the same parser).
pub fn check_parse(
    input_len: usize,
    result: &Result<
        Vec<imagehook_core::model::event::Parsed>,
        imagehook_core::providers::ParseError,
    >,
) {
    use imagehook_core::model::event::{Parsed, Timestamp};
    match result {
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.len() <= 8 * input_len + 4096,
                "a {input_len}-byte input gave a {}-byte error",
                msg.len()
            );
        }
        Ok(events) => {
            for e in events {
                if let Parsed::Image(e) = e {
                    let t = e.occurred_at.as_str();
                    assert_eq!(
                        Timestamp::parse(t).as_ref().map(Timestamp::as_str),
                        Ok(t),
                        "event time does not parse back"
                    );
                    assert!(serde_json::to_string(e).is_ok());
                }
            }
        }
    }
}
