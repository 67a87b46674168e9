//! Egress: how requests leave the process. Where secrets come from (the environment, or
//! demo placeholders) and whether every request is redirected to one base URL (the
//! built-in demo target, a staging capture) instead of the host the connector names.

use std::sync::Arc;

use crate::mapping::{MappingError, Secrets};

/// Header telling a redirect target which URL the connector really named.
pub const TARGET_HEADER: &str = "X-Hms-Sync-Target";

#[derive(Debug, Clone, Default)]
pub struct Egress {
    /// Base URL every request goes to instead (path and query kept), e.g.
    /// `http://127.0.0.1:7500/demo/sink`.
    pub redirect_to: Option<Arc<str>>,
    /// Every secret is `demo-NAME` (the environment is not read), so a missing one does not
    /// park the job and a real one never reaches the demo target. Only `up --demo` sets it.
    pub demo_secrets: bool,
}

impl Egress {
    /// The values of `names` from the environment, read at send time and never stored.
    pub fn secrets(&self, names: &[String]) -> Result<Secrets, MappingError> {
        names
            .iter()
            .map(|n| match std::env::var(n) {
                _ if self.demo_secrets => Ok((n.clone(), format!("demo-{n}"))),
                Ok(v) => Ok((n.clone(), v)),
                Err(_) => Err(MappingError::MissingSecret(n.clone())),
            })
            .collect()
    }

    /// The values of those of `names` that are set: what error messages are scrubbed of,
    /// whichever request (or read, or pull) produced them.
    pub fn known(&self, names: &[String]) -> Secrets {
        names.iter().filter_map(|n| self.secrets(std::slice::from_ref(n)).ok()).flatten().collect()
    }

    /// The environment variables `spec` reads that are not set: its requests' secrets
    /// (none in demo mode, where they are placeholders) and its webhooks' verification
    /// secrets (always read from the environment). Sorted, each once.
    pub fn missing(&self, spec: &crate::spec::ConnectorSpec) -> Vec<String> {
        let requests = if self.demo_secrets { Vec::new() } else { spec.secret_names() };
        let mut names: Vec<String> = requests.into_iter().chain(spec.webhook_secret_names()).filter(|n| std::env::var_os(n).is_none()).collect();
        names.sort();
        names.dedup();
        names
    }

    /// The URL to really call for `url`, and the original when it was redirected.
    pub fn route(&self, url: &str) -> (String, Option<String>) {
        let Some(base) = &self.redirect_to else { return (url.to_string(), None) };
        let after_scheme = url.find("://").map_or(0, |i| i + 3);
        let path = url[after_scheme..].find('/').map_or("/", |i| &url[after_scheme + i..]);
        (format!("{}{path}", base.trim_end_matches('/')), Some(url.to_string()))
    }
}

/// `url` with any password replaced by `***`: the one in `user:password@host` and any
/// `password=` / `sslpassword=` query parameter. Safe to log and to put in errors.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let auth_start = scheme_end + 3;
        let auth_end = out[auth_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| auth_start + i);
        if let Some(at) = out[auth_start..auth_end].rfind('@') {
            let userinfo = &out[auth_start..auth_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(auth_start + colon + 1..auth_start + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _))
                    if k.eq_ignore_ascii_case("password")
                        || k.eq_ignore_ascii_case("sslpassword") =>
                {
                    format!("{k}=***")
                }
                _ => kv.to_owned(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_keeps_path_and_query() {
        let e = Egress { redirect_to: Some("http://127.0.0.1:7500/demo/sink/".into()), demo_secrets: false };
        assert_eq!(
            e.route("https://services.arcgis.com/item/roadwork/RW-481?f=json"),
            ("http://127.0.0.1:7500/demo/sink/item/roadwork/RW-481?f=json".into(), Some("https://services.arcgis.com/item/roadwork/RW-481?f=json".into()))
        );
        assert_eq!(e.route("https://state.api.gov").0, "http://127.0.0.1:7500/demo/sink/");
        assert_eq!(Egress::default().route("https://h/x"), ("https://h/x".into(), None));
    }

    #[test]
    fn demo_secrets_are_placeholders_whatever_the_environment_holds() {
        let names = vec!["HMS_SYNC_TEST_SURELY_UNSET_SECRET".to_string(), "PATH".to_string()];
        assert!(Egress::default().secrets(&names).is_err());
        assert_eq!(Egress::default().known(&names).len(), 1, "only PATH is set");
        let demo = Egress { redirect_to: None, demo_secrets: true };
        let s = demo.secrets(&names).unwrap();
        assert_eq!(s["HMS_SYNC_TEST_SURELY_UNSET_SECRET"], "demo-HMS_SYNC_TEST_SURELY_UNSET_SECRET");
        assert_eq!(s["PATH"], "demo-PATH", "a real value never goes out in demo mode");
    }
}
