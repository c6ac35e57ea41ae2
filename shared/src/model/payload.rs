//! The verified request behind an event, as its receipt keeps it for `imagehook replay`, and
//! what the request's URL said beyond its body.

use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::model::event::Provider;

/// What a request's URL says about its body: the sender (`?provider=` or the route), the
/// registry (`?registry=`), the replica (`?region=`). Kept with the body so a replay parses it
/// the same way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlHints {
    pub provider: Option<Provider>,
    pub registry: Option<String>,
    pub region: Option<String>,
}

/// Bodies up to this size are kept in the receipt itself; DynamoDB items stop at 400 KB and a
/// receipt is written once per event of an envelope.
pub const INLINE_LIMIT: usize = 32 * 1024;

/// The verified request behind an event, as its receipt keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The body after authentication and decoding; `None` when over `INLINE_LIMIT`.
    pub body: Option<String>,
    pub sha256: String,
    pub size: usize,
    /// What the request's URL said beyond its body.
    pub hints: UrlHints,
}

impl Payload {
    pub fn new(body: &[u8], hints: UrlHints) -> Self {
        let text = (body.len() <= INLINE_LIMIT)
            .then(|| String::from_utf8(body.to_vec()).ok())
            .flatten();
        let digest = Sha256::digest(body);
        // `hex::encode` builds its String a char at a time; every delivery pays for this one.
        let mut hex = [0u8; 64];
        let sha256 = match hex::encode_to_slice(digest, &mut hex) {
            Ok(()) => String::from_utf8_lossy(&hex).into_owned(),
            Err(_) => hex::encode(digest),
        };
        Self {
            body: text,
            sha256,
            size: body.len(),
            hints,
        }
    }

    /// The receipt attribute.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if let Some(b) = &self.body {
            m.insert("body".into(), json!(b));
        }
        m.insert("sha256".into(), json!(self.sha256));
        m.insert("size".into(), json!(self.size));
        for (k, v) in [
            (
                "provider",
                self.hints.provider.map(|p| p.as_str().to_owned()),
            ),
            ("registry_hint", self.hints.registry.clone()),
            ("region", self.hints.region.clone()),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), json!(v));
            }
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_keep_the_body_and_its_sha256_in_hex() {
        let p = Payload::new(b"abc", UrlHints::default());
        assert_eq!(p.body.as_deref(), Some("abc"));
        assert_eq!(
            p.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(p.size, 3);
        let big = vec![b'x'; INLINE_LIMIT + 1];
        let p = Payload::new(&big, UrlHints::default());
        assert_eq!(p.body, None);
        assert_eq!(p.sha256, hex::encode(Sha256::digest(&big)));
    }
}
