//! Inbound webhook verification, pure: the caller passes the headers, the raw body, the
//! secret (read from the environment at request time) and the clock.
//!
//! - Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`; the secret
//!   is `whsec_` + base64; HMAC-SHA256 over `id.timestamp.body`; one or more space-separated
//!   `v1,<base64>` signatures (key rotation); the timestamp within a tolerance both ways.
//! - GitHub: `X-Hub-Signature-256: sha256=<hex>` over the raw body.
//! - A shared bearer token: `Authorization: Bearer <token>`.
//!
//! Every comparison of secret material is constant-time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

pub use crate::spec::model::Scheme;

/// Why a webhook was refused (also the `reason` label of the rejection metric).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("timestamp outside the tolerance of {0} s")]
    Stale(u64),
    #[error("signature does not match")]
    BadSignature,
    #[error("token does not match")]
    BadToken,
    #[error("the verification secret is not configured")]
    NoSecret,
}

impl Rejection {
    /// A short, stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::MissingHeader(_) => "missing",
            Rejection::Malformed(_) => "malformed",
            Rejection::Stale(_) => "stale",
            Rejection::BadSignature | Rejection::BadToken => "forged",
            Rejection::NoSecret => "no-secret",
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is matched without
/// regard to case (RFC 9110: auth schemes are case-insensitive): `bearer x` counts.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(char::is_whitespace)?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Header lookup by lower-case name.
pub trait Headers {
    fn get(&self, name: &str) -> Option<&str>;
}

impl Headers for actix_web::http::header::HeaderMap {
    fn get(&self, name: &str) -> Option<&str> {
        actix_web::http::header::HeaderMap::get(self, name).and_then(|v| v.to_str().ok())
    }
}

impl Headers for [(&str, &str)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
}

/// Checks a webhook. `secret` is the configured secret's value; `now` is Unix seconds.
pub fn verify(scheme: Scheme, secret: Option<&str>, headers: &(impl Headers + ?Sized), body: &[u8], now: i64, tolerance_secs: u64) -> Result<(), Rejection> {
    match scheme {
        Scheme::None => Ok(()),
        Scheme::Token => {
            let secret = secret.ok_or(Rejection::NoSecret)?;
            let given = headers.get("authorization").ok_or(Rejection::MissingHeader("Authorization"))?;
            let token = bearer(given).ok_or(Rejection::Malformed("Authorization"))?;
            if bool::from(token.as_bytes().ct_eq(secret.as_bytes())) { Ok(()) } else { Err(Rejection::BadToken) }
        }
        Scheme::Github => {
            let secret = secret.ok_or(Rejection::NoSecret)?;
            let given = headers.get("x-hub-signature-256").ok_or(Rejection::MissingHeader("X-Hub-Signature-256"))?;
            let hex_sig = given.strip_prefix("sha256=").ok_or(Rejection::Malformed("X-Hub-Signature-256"))?;
            let sig = hex::decode(hex_sig).map_err(|_| Rejection::Malformed("X-Hub-Signature-256"))?;
            let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).map_err(|_| Rejection::NoSecret)?;
            mac.update(body);
            mac.verify_slice(&sig).map_err(|_| Rejection::BadSignature)
        }
        Scheme::StandardWebhooks => {
            let key = standard_key(secret.ok_or(Rejection::NoSecret)?)?;
            let id = headers.get("webhook-id").ok_or(Rejection::MissingHeader("webhook-id"))?;
            let ts_text = headers.get("webhook-timestamp").ok_or(Rejection::MissingHeader("webhook-timestamp"))?;
            let sigs = headers.get("webhook-signature").ok_or(Rejection::MissingHeader("webhook-signature"))?;
            let ts: i64 = ts_text.trim().parse().map_err(|_| Rejection::Malformed("webhook-timestamp"))?;
            if now.abs_diff(ts) > tolerance_secs {
                return Err(Rejection::Stale(tolerance_secs));
            }
            let expected = standard_sign(&key, id, ts_text.trim(), body);
            // Several signatures (key rotation): any `v1` one that matches is enough.
            let ok = sigs
                .split(' ')
                .filter_map(|s| s.strip_prefix("v1,"))
                .filter_map(|b| STANDARD.decode(b).ok())
                .any(|given| bool::from(given.as_slice().ct_eq(&expected)));
            if ok { Ok(()) } else { Err(Rejection::BadSignature) }
        }
    }
}

/// The key of a Standard Webhooks secret: base64 after an optional `whsec_` prefix.
fn standard_key(secret: &str) -> Result<Vec<u8>, Rejection> {
    STANDARD.decode(secret.strip_prefix("whsec_").unwrap_or(secret)).map_err(|_| Rejection::NoSecret)
}

fn standard_sign(key: &[u8], id: &str, ts: &str, body: &[u8]) -> Vec<u8> {
    // A key of any length is accepted by HMAC; this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// A Standard Webhooks `v1,<base64>` signature (for senders and tests).
pub fn sign_standard(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, Rejection> {
    let key = standard_key(secret)?;
    Ok(format!("v1,{}", STANDARD.encode(standard_sign(&key, id, &timestamp.to_string(), body))))
}

/// A GitHub `sha256=<hex>` signature (for senders and tests).
pub fn sign_github(secret: &str, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks specification's published test vector.
    const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SW_TS: i64 = 1_614_265_330;
    const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn sw_headers(sig: &str, ts: &str) -> Vec<(&'static str, String)> {
        vec![("webhook-id", SW_ID.into()), ("webhook-timestamp", ts.into()), ("webhook-signature", sig.into())]
    }

    fn check(h: &[(&'static str, String)], body: &[u8], now: i64) -> Result<(), Rejection> {
        let pairs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        verify(Scheme::StandardWebhooks, Some(SW_SECRET), pairs.as_slice(), body, now, 300)
    }

    #[test]
    fn standard_webhooks_test_vector() {
        assert_eq!(sign_standard(SW_SECRET, SW_ID, SW_TS, SW_BODY).unwrap(), SW_SIG);
        assert_eq!(check(&sw_headers(SW_SIG, "1614265330"), SW_BODY, SW_TS), Ok(()));
        // Key rotation: several signatures, one valid.
        assert_eq!(check(&sw_headers(&format!("v1,bm9wZQ== {SW_SIG}"), "1614265330"), SW_BODY, SW_TS), Ok(()));
        // Tolerance both ways.
        assert_eq!(check(&sw_headers(SW_SIG, "1614265330"), SW_BODY, SW_TS + 300), Ok(()));
        assert_eq!(check(&sw_headers(SW_SIG, "1614265330"), SW_BODY, SW_TS + 301), Err(Rejection::Stale(300)));
        assert_eq!(check(&sw_headers(SW_SIG, "1614265330"), SW_BODY, SW_TS - 301), Err(Rejection::Stale(300)));
        // Forged: another body, another signature.
        assert_eq!(check(&sw_headers(SW_SIG, "1614265330"), br#"{"test": 1}"#, SW_TS), Err(Rejection::BadSignature));
        assert_eq!(check(&sw_headers("v1,bm9wZQ==", "1614265330"), SW_BODY, SW_TS), Err(Rejection::BadSignature));
        assert_eq!(check(&sw_headers("v2,whatever", "1614265330"), SW_BODY, SW_TS), Err(Rejection::BadSignature));
        assert_eq!(check(&sw_headers(SW_SIG, "soon"), SW_BODY, SW_TS), Err(Rejection::Malformed("webhook-timestamp")));
        let missing: Vec<(&'static str, String)> = vec![("webhook-id", SW_ID.into())];
        assert_eq!(check(&missing, SW_BODY, SW_TS), Err(Rejection::MissingHeader("webhook-timestamp")));
    }

    #[test]
    fn github_documented_example() {
        // GitHub's docs: secret "It's a Secret to Everybody", payload "Hello, World!".
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign_github("It's a Secret to Everybody", b"Hello, World!"), sig);
        let h: [(&str, &str); 1] = [("X-Hub-Signature-256", sig)];
        assert_eq!(verify(Scheme::Github, Some("It's a Secret to Everybody"), h.as_slice(), b"Hello, World!", 0, 300), Ok(()));
        assert_eq!(verify(Scheme::Github, Some("It's a Secret to Everybody"), h.as_slice(), b"Hello, World?", 0, 300), Err(Rejection::BadSignature));
        let bad: [(&str, &str); 1] = [("X-Hub-Signature-256", "sha1=abc")];
        assert_eq!(verify(Scheme::Github, Some("s"), bad.as_slice(), b"", 0, 300), Err(Rejection::Malformed("X-Hub-Signature-256")));
    }

    #[test]
    fn shared_token() {
        let good: [(&str, &str); 1] = [("Authorization", "Bearer t0k")];
        let bad: [(&str, &str); 1] = [("Authorization", "Bearer nope")];
        assert_eq!(verify(Scheme::Token, Some("t0k"), good.as_slice(), b"", 0, 0), Ok(()));
        assert_eq!(verify(Scheme::Token, Some("t0k"), bad.as_slice(), b"", 0, 0), Err(Rejection::BadToken));
        assert_eq!(Rejection::BadToken.to_string(), "token does not match");
        let lower = [("authorization", "bearer t0k")];
        assert_eq!(verify(Scheme::Token, Some("t0k"), lower.as_slice(), b"", 0, 0), Ok(()));
        let none: [(&str, &str); 0] = [];
        assert_eq!(verify(Scheme::Token, Some("t0k"), none.as_slice(), b"", 0, 0), Err(Rejection::MissingHeader("Authorization")));
        assert_eq!(verify(Scheme::Token, None, good.as_slice(), b"", 0, 0), Err(Rejection::NoSecret));
    }
}
