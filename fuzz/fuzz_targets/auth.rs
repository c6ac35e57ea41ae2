//! The auth layer in every mode, with fixed test secrets. A framed request (see `src/lib.rs`): the
//! selector byte picks the verifier and how the valid credential is spelled, `:token` is the URL's
//! path token, `:now` the clock.
//!
//! Whatever the headers and body, `verify` answers without panicking. Then the same request is
//! given a valid credential computed here (the headers the input set stay, except the one
//! replaced), which must verify, and a tampered one, which must not.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderMap, HeaderName, HeaderValue};
use imagehook_core::auth::{
    self, AuthError, AuthMode, Presented, SIGNATURE_TOLERANCE_SECS, Secret, Verifier,
};
use imagehook_fuzz::Request;
use libfuzzer_sys::fuzz_target;

struct Setup {
    mode: AuthMode,
    header: Option<&'static str>,
    secrets: &'static [&'static str],
}

const SETUPS: &[Setup] = &[
    Setup {
        mode: AuthMode::Token,
        header: None,
        secrets: &["s3cr3t-token", "rotated-token"],
    },
    Setup {
        mode: AuthMode::Token,
        header: Some("x-api-key"),
        secrets: &["s3cr3t-token", "rotated-token"],
    },
    Setup {
        mode: AuthMode::Basic,
        header: None,
        secrets: &["user:pass", "ci:p@ss:word"],
    },
    Setup {
        mode: AuthMode::HmacSha256,
        header: None,
        secrets: &["It's a Secret to Everybody", "rotated"],
    },
    Setup {
        mode: AuthMode::HmacSha256,
        header: Some("x-gitea-signature"),
        secrets: &["It's a Secret to Everybody", "rotated"],
    },
    Setup {
        mode: AuthMode::HmacSha1,
        header: None,
        secrets: &["nexus-secret", "rotated"],
    },
    Setup {
        mode: AuthMode::StandardWebhooks,
        header: None,
        secrets: &[
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_cm90YXRlZC1rZXk=",
        ],
    },
    Setup {
        mode: AuthMode::PathToken,
        header: None,
        secrets: &["path-token-1234", "path-token-5678"],
    },
    Setup {
        mode: AuthMode::None,
        header: None,
        secrets: &[],
    },
];

const DEFAULT_NOW: i64 = 1_767_225_600;

fuzz_target!(|data: &[u8]| {
    let Some(req) = Request::split(data) else {
        return;
    };
    let setup = &SETUPS[usize::from(req.selector) % SETUPS.len()];
    // The rest of the selector: which secret the valid credential uses and how it is spelled.
    let variant = usize::from(req.selector) / SETUPS.len();
    let secret = setup.secrets.get(variant % 2).copied();
    let verifier = Verifier::new(
        setup.mode,
        setup.header,
        setup.secrets.iter().map(|s| Secret::new(*s)).collect(),
    )
    .expect("the fixed test configurations are valid");
    let now = req
        .url("now")
        .map_or(Some(DEFAULT_NOW), |n| n.parse().ok())
        .unwrap_or(DEFAULT_NOW);
    let presented = Presented {
        path_token: req.url("token"),
        now,
    };

    let as_sent = verifier.verify(req.body, &req.headers, presented);
    if setup.mode == AuthMode::None {
        assert_eq!(as_sent, Ok(()));
    }

    let Some(secret) = secret else {
        return;
    };
    let body = req.body;
    let mut tampered = body.to_vec();
    tampered.push(b'\n');
    let header = |name: &str| HeaderName::from_bytes(name.as_bytes()).expect("a valid name");
    let value = |v: &str| HeaderValue::from_str(v).expect("a valid value");
    let with = |pairs: &[(&str, &str)]| {
        let mut h: HeaderMap = req.headers.clone();
        for (k, v) in pairs {
            h.insert(header(k), value(v));
        }
        h
    };
    let verify = |body: &[u8], h: &HeaderMap, path_token: Option<&str>| {
        verifier.verify(body, h, Presented { path_token, now })
    };

    match setup.mode {
        AuthMode::Token => {
            let (good, bad) = match setup.header {
                None => {
                    let scheme = ["Bearer", "bearer", "BEARER"][variant / 2 % 3];
                    (format!("{scheme} {secret}"), format!("{scheme} {secret}x"))
                }
                Some(_) => (secret.to_owned(), format!("{secret}x")),
            };
            let name = setup.header.unwrap_or("authorization");
            assert_eq!(verify(body, &with(&[(name, &good)]), None), Ok(()));
            assert_eq!(verify(body, &with(&[(name, &bad)]), None), Err(AuthError));
        }
        AuthMode::Basic => {
            let good = format!("Basic {}", BASE64.encode(secret));
            let bad = format!("Basic {}", BASE64.encode(format!("{secret}x")));
            assert_eq!(
                verify(body, &with(&[("authorization", &good)]), None),
                Ok(())
            );
            assert_eq!(
                verify(body, &with(&[("authorization", &bad)]), None),
                Err(AuthError)
            );
        }
        AuthMode::HmacSha256 => {
            let name = setup.header.unwrap_or(auth::DEFAULT_HMAC_HEADER);
            let signed = auth::sign_hmac_sha256(secret, body);
            // Gitea sends the bare hex digest.
            let sig = if variant / 2 % 2 == 1 {
                signed.trim_start_matches("sha256=")
            } else {
                signed.as_str()
            };
            let h = with(&[(name, sig)]);
            assert_eq!(verify(body, &h, None), Ok(()));
            assert_eq!(verify(&tampered, &h, None), Err(AuthError));
        }
        AuthMode::HmacSha1 => {
            let name = setup.header.unwrap_or(auth::DEFAULT_HMAC_SHA1_HEADER);
            let signed = auth::sign_hmac_sha1(secret, body);
            let h = with(&[(name, &signed)]);
            assert_eq!(verify(body, &h, None), Ok(()));
            assert_eq!(verify(&tampered, &h, None), Err(AuthError));
        }
        AuthMode::StandardWebhooks => {
            // The input's own id when a sender could have sent it, so ids vary too.
            let id = req
                .headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .unwrap_or("msg_2KWPBgLlAfxdpx2AI54pPJ85f1W");
            let skew = [0, SIGNATURE_TOLERANCE_SECS, -SIGNATURE_TOLERANCE_SECS][variant / 2 % 3];
            let (Some(ts), Some(late)) = (
                now.checked_add(skew),
                now.checked_sub(SIGNATURE_TOLERANCE_SECS + 1),
            ) else {
                return;
            };
            let sign = |ts: i64| {
                auth::sign_standard_webhooks(secret, id, ts, body).expect("a valid whsec_ key")
            };
            // Other entries the input sent stay beside the valid one, as rotating senders do.
            let others = req
                .headers
                .get("webhook-signature")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let signatures = format!("{others} {}", sign(ts));
            let (ts_text, late_text) = (ts.to_string(), late.to_string());
            let h = with(&[
                ("webhook-id", id),
                ("webhook-timestamp", &ts_text),
                ("webhook-signature", signatures.trim()),
            ]);
            assert_eq!(verify(body, &h, None), Ok(()));
            assert_eq!(verify(&tampered, &h, None), Err(AuthError));
            let stale = with(&[
                ("webhook-id", id),
                ("webhook-timestamp", &late_text),
                ("webhook-signature", &sign(late)),
            ]);
            assert_eq!(verify(body, &stale, None), Err(AuthError));
        }
        AuthMode::PathToken => {
            assert_eq!(verify(body, &req.headers, Some(secret)), Ok(()));
            let wrong = format!("{secret}x");
            assert_eq!(verify(body, &req.headers, Some(&wrong)), Err(AuthError));
        }
        // A token needs an issuer's keys, fetched at run time: the OIDC unit and end-to-end
        // tests cover it, not this target of fixed secrets.
        AuthMode::None | AuthMode::Oidc => {}
    }
});
