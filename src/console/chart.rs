//! The connector page's chart: delivered, failed and parked per minute over the last hour,
//! drawn here as SVG (numbers only, nothing from a user: no escaping to get wrong, no
//! script, no chart library).

use std::collections::HashMap;
use std::fmt::Write;

use chrono::{DateTime, Duration, Utc};

use crate::storage::Counts;

/// Minutes shown.
pub const MINUTES: i64 = 60;
const WIDTH: i64 = 720;
const HEIGHT: i64 = 160;
const TOP: i64 = 12;
const BOTTOM: i64 = 20;

/// The 60 minutes ending with the one `now` is in, oldest first, each with its counts.
pub fn minutes(counts: &HashMap<String, Counts>, now: DateTime<Utc>) -> Vec<(String, Counts)> {
    (0..MINUTES)
        .rev()
        .map(|ago| {
            let key = (now - Duration::minutes(ago)).format("%Y-%m-%d %H:%M").to_string();
            let c = counts.get(&key).copied().unwrap_or_default();
            (key, c)
        })
        .collect()
}

/// Three bars per minute (delivered, failed, parked) on one scale, with the largest value
/// written at the top left and the hours' minutes along the bottom.
pub fn svg(minutes: &[(String, Counts)]) -> String {
    let max = minutes.iter().map(|(_, c)| c.delivered.max(c.failed).max(c.parked)).max().unwrap_or(0).max(1);
    let slot = WIDTH / MINUTES.max(1);
    let plot = HEIGHT - TOP - BOTTOM;
    let mut out = format!(r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-title"><title id="chart-title">Delivered, failed and parked per minute, last hour (max {max})</title>"#);
    let _ = write!(out, r#"<line x1="0" y1="{y}" x2="{WIDTH}" y2="{y}" class="axis"/>"#, y = HEIGHT - BOTTOM);
    let _ = write!(out, r#"<text x="2" y="10" class="label">{max}</text>"#);
    for (i, (minute, c)) in minutes.iter().enumerate() {
        let x0 = i as i64 * slot;
        for (k, (value, class)) in [(c.delivered, "delivered"), (c.failed, "failed"), (c.parked, "parked")].into_iter().enumerate() {
            if value == 0 {
                continue;
            }
            let h = (value * plot / max).max(1);
            let _ = write!(out, r#"<rect x="{}" y="{}" width="{}" height="{h}" class="{class}"><title>{minute} {class}: {value}</title></rect>"#, x0 + 1 + k as i64 * (slot - 2) / 3, HEIGHT - BOTTOM - h, ((slot - 2) / 3).max(1));
        }
        if i % 15 == 0 {
            let _ = write!(out, r#"<text x="{x0}" y="{}" class="label">{}</text>"#, HEIGHT - 6, minute.get(11..).unwrap_or(""));
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_of_minutes_with_bars_only_where_something_happened() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T10:30:20Z").unwrap().with_timezone(&Utc);
        let mut counts = HashMap::new();
        counts.insert("2026-12-01 10:30".to_string(), Counts { delivered: 10, failed: 2, parked: 0 });
        counts.insert("2026-12-01 09:31".to_string(), Counts { delivered: 5, failed: 0, parked: 1 });
        counts.insert("2026-12-01 09:30".to_string(), Counts { delivered: 99, failed: 0, parked: 0 });
        let m = minutes(&counts, now);
        assert_eq!(m.len(), 60);
        assert_eq!(m[0].0, "2026-12-01 09:31", "the oldest minute shown; 09:30 is out of the hour");
        assert_eq!(m[59].1.delivered, 10);
        let svg = svg(&m);
        assert_eq!(svg.matches("<rect").count(), 4, "{svg}");
        assert!(svg.contains(">10</text>"), "the largest value labels the scale");
        assert!(svg.contains("10:30 failed: 2"));
    }
}
