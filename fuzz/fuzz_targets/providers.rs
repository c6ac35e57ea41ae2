//! A framed request (see `src/lib.rs`): the selector byte forces one sender's parser, as
//! `?provider=` or the `/{provider}` route does, or (for the last value) leaves it to detection
//! with the request's headers; `:registry` and `:region` lines are the URL's `?registry=` and
//! `?region=`. Every parser is reached directly, whatever the body's shape.
#![no_main]

use imagehook_core::model::event::{Action, Parsed, Provider, Timestamp};
use imagehook_core::providers::{self, UrlHints};
use imagehook_fuzz::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(req) = Request::split(data) else {
        return;
    };
    let Some(now) = Timestamp::from_unix(1_767_225_600) else {
        return;
    };
    let hints = UrlHints {
        provider: Provider::ALL
            .get(usize::from(req.selector) % (Provider::ALL.len() + 1))
            .copied(),
        registry: req.url("registry").map(str::to_owned),
        region: req.url("region").map(str::to_owned),
    };
    let result = providers::parse_request(req.body, &req.headers, &hints, &now);
    imagehook_fuzz::check_parse(data.len(), &result);

    // A replica's pushes are placed in its region.
    if let (Some(region), Ok(events)) = (&hints.region, &result) {
        for e in events {
            if let Parsed::Image(e) = e
                && e.action == Action::Push
            {
                assert!(
                    e.region.is_some(),
                    "push from ?region={region} has no region"
                );
            }
        }
    }
});
