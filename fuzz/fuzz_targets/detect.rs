//! A raw body with no headers and nothing in the URL: detection picks the sender from the body's
//! shape and that sender's parser runs, as for a webhook URL that names no provider.
#![no_main]

use http::HeaderMap;
use imagehook_core::model::event::{Parsed, Timestamp};
use imagehook_core::providers::{self, ParseError, UrlHints};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let headers = HeaderMap::new();
    let Some(now) = Timestamp::from_unix(1_767_225_600) else {
        return;
    };
    let result = providers::parse_request(body, &headers, &UrlHints::default(), &now);
    imagehook_fuzz::check_parse(body.len(), &result);

    // The sender named in logs on failure paths is the one whose parser ran.
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        assert!(matches!(result, Err(ParseError::Json(_))));
        return;
    };
    let detected = providers::detect(&value, &headers);
    assert_eq!(
        detected.is_none(),
        matches!(result, Err(ParseError::UnknownShape { .. })),
        "detect() and parse_request() disagree on {detected:?}"
    );
    for e in result.iter().flatten() {
        let provider = match e {
            Parsed::Image(e) => e.provider,
            Parsed::Ignored(e) | Parsed::Rejected(e) => e.provider,
            Parsed::Handshake(_) => continue,
        };
        assert_eq!(Some(provider), detected);
    }
});
