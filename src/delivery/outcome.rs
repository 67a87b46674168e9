//! What one attempt came to, from the status code or the transport error.

use std::time::Duration;

/// The result of one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// 2xx.
    Delivered { status: u16 },
    /// Worth trying again: network error, timeout, 408, 429, 5xx. `retry_after` is the
    /// server's own `Retry-After`, which wins over our back-off when longer.
    Retryable { error: String, retry_after: Option<Duration> },
    /// Trying again cannot help (other 4xx, 3xx, a request we cannot build): park now.
    Permanent { error: String },
}

impl Outcome {
    /// Classifies an HTTP status. 3xx is a failure: we never follow a redirect silently,
    /// as the target of a mirrored write must be the one the connector names.
    pub fn from_status(status: u16, retry_after: Option<Duration>, body_excerpt: &str) -> Self {
        let detail = if body_excerpt.is_empty() { String::new() } else { format!(": {body_excerpt}") };
        match status {
            200..=299 => Outcome::Delivered { status },
            408 | 429 | 500..=599 => Outcome::Retryable { error: format!("HTTP {status}{detail}"), retry_after },
            _ => Outcome::Permanent { error: format!("HTTP {status}{detail}") },
        }
    }

    /// What went wrong, for a ticket, a log line or an error: the failure's own text, or
    /// `HTTP <status>` where a caller expected no success.
    pub fn error_text(&self) -> String {
        match self {
            Outcome::Delivered { status } => format!("HTTP {status}"),
            Outcome::Retryable { error, .. } | Outcome::Permanent { error } => error.clone(),
        }
    }
}

/// Parses `Retry-After` given in seconds or as an HTTP date.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&chrono::Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        let cases = [(200, "ok"), (204, "ok"), (301, "perm"), (400, "perm"), (404, "perm"), (408, "retry"), (429, "retry"), (500, "retry"), (503, "retry")];
        for (status, want) in cases {
            let got = match Outcome::from_status(status, None, "") {
                Outcome::Delivered { .. } => "ok",
                Outcome::Retryable { .. } => "retry",
                Outcome::Permanent { .. } => "perm",
            };
            assert_eq!(got, want, "status {status}");
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = chrono::DateTime::parse_from_rfc2822("Sun, 22 Nov 2026 10:00:00 GMT").unwrap().with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Sun, 22 Nov 2026 10:00:05 GMT", now), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
