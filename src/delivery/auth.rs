//! A connector's authentication (`auth:`), applied to every request it makes (deliveries,
//! pulls, resolver reads, lookups) right before it is sent: Basic, Bearer and API-key
//! shorthands, and OAuth2 access tokens (client credentials or refresh token) fetched once,
//! cached until shortly before they expire, refreshed by one request at a time, and
//! refreshed once more when the target answers 401. Secrets are read at request time;
//! tokens are never logged, ticketed or returned.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;

use super::Outcome;
use super::egress::Egress;
use crate::mapping::{RenderedRequest, Secrets};
use crate::spec::model::{AuthSpec, OAuthGrant};
use crate::spec::templates::replace_secret_refs;

/// A cached access token.
#[derive(Debug, Clone)]
struct Token {
    value: String,
    /// Refresh from this instant on (its expiry minus a margin).
    refresh_at: Instant,
}

#[derive(Debug)]
pub struct Authenticator {
    spec: Option<AuthSpec>,
    /// Held while a token is fetched: concurrent requests wait for that one fetch.
    token: tokio::sync::Mutex<Option<Token>>,
    /// Token requests made (for tests and status).
    pub token_requests: AtomicU64,
}

/// `${NAME}`s of `text` filled in from `secrets`.
fn fill(text: &str, secrets: &Secrets) -> String {
    replace_secret_refs(text, |name| secrets.get(name).cloned().unwrap_or_default())
}

impl Authenticator {
    pub fn new(spec: Option<AuthSpec>) -> Self {
        Self { spec, token: tokio::sync::Mutex::new(None), token_requests: AtomicU64::new(0) }
    }

    /// Whether [`Self::apply`] adds anything (a connector with `auth:`); without, a request
    /// is sent as rendered, not copied first.
    pub fn applies(&self) -> bool {
        self.spec.is_some()
    }

    /// Does a 401 answer mean the token should be fetched anew (OAuth2)?
    pub fn refreshes(&self) -> bool {
        matches!(self.spec, Some(AuthSpec::Oauth2 { .. }))
    }

    /// Forgets the cached token (the target answered 401).
    pub async fn invalidate(&self) {
        *self.token.lock().await = None;
    }

    /// Adds the credentials to `req`. A failure to get a token is retryable, with why.
    pub async fn apply(&self, req: &mut RenderedRequest, client: &awc::Client, egress: &Egress) -> Result<(), Outcome> {
        let Some(spec) = &self.spec else { return Ok(()) };
        let secrets = egress.secrets(&spec.secret_names()).map_err(|e| Outcome::Permanent { error: e.to_string() })?;
        match spec {
            AuthSpec::Basic { username, password } => {
                let pair = format!("{}:{}", fill(username, &secrets), fill(password, &secrets));
                set_header(req, "Authorization", format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)));
            }
            AuthSpec::Bearer { token } => set_header(req, "Authorization", format!("Bearer {}", fill(token, &secrets))),
            AuthSpec::ApiKey { header: Some(name), value, .. } => set_header(req, name, fill(value, &secrets)),
            AuthSpec::ApiKey { query: Some(name), value, .. } => {
                let pair: String = form_urlencoded::Serializer::new(String::new()).append_pair(name, &fill(value, &secrets)).finish();
                req.url = format!("{}{}{pair}", req.url, if req.url.contains('?') { '&' } else { '?' });
            }
            AuthSpec::ApiKey { .. } => {}
            AuthSpec::Oauth2 { .. } => {
                let token = self.access_token(spec, &secrets, client, egress).await?;
                set_header(req, "Authorization", format!("Bearer {token}"));
            }
        }
        Ok(())
    }

    /// The cached token, or a new one (one fetch at a time: the others wait for it).
    async fn access_token(&self, spec: &AuthSpec, secrets: &Secrets, client: &awc::Client, egress: &Egress) -> Result<String, Outcome> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(t.value.clone());
        }
        let AuthSpec::Oauth2 { grant, token_url, client_id, client_secret, refresh_token, scope, private_key } = spec else { return Err(Outcome::Permanent { error: "not an OAuth2 connector".into() }) };
        let url = fill(token_url, secrets);
        let mut form = vec![];
        if *grant != OAuthGrant::JwtBearer {
            form.push(("client_id", fill(client_id, secrets)));
        }
        match grant {
            OAuthGrant::JwtBearer => {
                let key = private_key.as_deref().map(|k| fill(k, secrets)).unwrap_or_default();
                let assertion = jwt_assertion(&fill(client_id, secrets), scope.as_deref().map(|s| fill(s, secrets)).as_deref(), &url, &key)
                    .map_err(|why| Outcome::Permanent { error: format!("cannot sign the OAuth2 JWT assertion: {why}") })?;
                form.push(("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer".into()));
                form.push(("assertion", assertion));
            }
            OAuthGrant::ClientCredentials => form.push(("grant_type", "client_credentials".into())),
            OAuthGrant::RefreshToken => {
                form.push(("grant_type", "refresh_token".into()));
                form.push(("refresh_token", refresh_token.as_deref().map(|r| fill(r, secrets)).unwrap_or_default()));
            }
        }
        if let Some(s) = client_secret {
            form.push(("client_secret", fill(s, secrets)));
        }
        if let Some(s) = scope.as_ref().filter(|_| *grant != OAuthGrant::JwtBearer) {
            form.push(("scope", fill(s, secrets)));
        }
        self.token_requests.fetch_add(1, Ordering::Relaxed);
        let fail = |why: String| Outcome::Retryable { error: format!("cannot get an OAuth2 access token from {}: {why}", super::egress::redact_url(&url)), retry_after: None };
        let (routed, _) = egress.route(&url);
        let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str()))).finish();
        let mut resp = client
            .post(routed)
            .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
            .insert_header(("Accept", "application/json"))
            .send_body(body)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes = resp.body().limit(64 * 1024).await.map_err(|e| fail(e.to_string()))?;
        if !(200..300).contains(&status) {
            // The endpoint's own error code (RFC 6749 §5.2), never the body: it may echo a secret.
            let code = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string));
            return Err(fail(format!("HTTP {status}{}", code.map(|c| format!(" ({c})")).unwrap_or_default())));
        }
        let answer: Value = serde_json::from_slice(&bytes).map_err(|_| fail("the answer is not JSON".into()))?;
        let value = answer.get("access_token").and_then(Value::as_str).ok_or_else(|| fail("the answer has no access_token".into()))?.to_string();
        let lifetime = Duration::from_secs(answer.get("expires_in").and_then(Value::as_u64).unwrap_or(3_600));
        // Refreshed a little before it expires: a fifth of its life, at most a minute.
        let margin = (lifetime / 5).min(Duration::from_secs(60));
        *cached = Some(Token { value: value.clone(), refresh_at: Instant::now() + lifetime - margin });
        Ok(value)
    }
}

/// An RS256-signed JWT for the JWT-bearer grant (RFC 7523, as Google service accounts use
/// it): `iss` the client (the service account's email), `scope`, `aud` the token endpoint,
/// valid for an hour. `pem` is the PKCS#8 private key.
fn jwt_assertion(issuer: &str, scope: Option<&str>, audience: &str, pem: &str) -> Result<String, String> {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let der = match PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| format!("the private key is not PEM: {e}"))? {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        _ => return Err("the private key must be PKCS#8 (-----BEGIN PRIVATE KEY-----)".into()),
    };
    let key = ring::signature::RsaKeyPair::from_pkcs8(&der).map_err(|e| format!("not an RSA key: {e}"))?;
    let now = chrono::Utc::now().timestamp();
    let mut claims = serde_json::json!({ "iss": issuer, "aud": audience, "iat": now, "exp": now + 3_600 });
    if let Some(scope) = scope {
        claims["scope"] = Value::String(scope.to_string());
    }
    let signing_input = format!("{}.{}", b64(br#"{"alg":"RS256","typ":"JWT"}"#), b64(claims.to_string().as_bytes()));
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(&ring::signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), signing_input.as_bytes(), &mut signature).map_err(|e| format!("signing failed: {e}"))?;
    Ok(format!("{signing_input}.{}", b64(&signature)))
}

/// Sets `name` (replacing one the connector's own headers gave).
fn set_header(req: &mut RenderedRequest, name: &str, value: String) {
    req.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    req.headers.push((name.to_string(), value));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> RenderedRequest {
        RenderedRequest { method: "GET".into(), url: "http://127.0.0.1:1/items?x=1".into(), headers: vec![("authorization".into(), "old".into())], body: None, encoding: Default::default() }
    }

    #[actix_web::test]
    async fn shorthands_set_the_header_or_the_query() {
        let client = awc::Client::default();
        let egress = Egress { redirect_to: None, demo_secrets: true };
        let mut r = req();
        Authenticator::new(Some(AuthSpec::Basic { username: "${U}".into(), password: "p:w".into() })).apply(&mut r, &client, &egress).await.unwrap();
        assert_eq!(r.headers, vec![("Authorization".into(), format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("demo-U:p:w")))], "replaces the connector's own");
        let mut r = req();
        Authenticator::new(Some(AuthSpec::ApiKey { header: None, query: Some("api_key".into()), value: "${K} x".into() })).apply(&mut r, &client, &egress).await.unwrap();
        assert_eq!(r.url, "http://127.0.0.1:1/items?x=1&api_key=demo-K+x");
        let mut r = req();
        Authenticator::new(Some(AuthSpec::Bearer { token: "${T}".into() })).apply(&mut r, &client, &egress).await.unwrap();
        assert_eq!(r.headers.last().unwrap().1, "Bearer demo-T");
    }
}
