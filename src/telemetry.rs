//! The tracing subscriber: text or JSON lines on stderr, filtered by `RUST_LOG` or the setting.
//!
//! In the text format a delivery prints the seed's console line, after the timestamp and
//! level: `… INFO [ddot.gis.outbound.v1] PATCH https://services.arcgis.com/… 200 OK` (the
//! event's target is [`DELIVERY`]; its message carries the connector). Every other line,
//! and every line of the JSON format, keeps its span context and fields.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The target of the delivery lines (`[connector] METHOD URL STATUS REASON`).
pub const DELIVERY: &str = "hms_sync::delivery";

/// Installs the global subscriber once; later calls (tests start many apps) are no-ops.
pub fn init(format: &str, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_timer(Stamp);
    let _ = if format.eq_ignore_ascii_case("json") {
        builder.json().flatten_event(true).try_init()
    } else {
        // Colours only on a terminal: logs piped to a file or a collector stay plain text.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let full = tracing_subscriber::fmt::format().with_target(false).with_ansi(ansi);
        builder.with_ansi(ansi).event_format(SeedLines(full)).try_init()
    };
}

/// The text format, with the delivery lines as the seed prints them.
struct SeedLines(Format<Full>);

impl<S, N> FormatEvent<S, N> for SeedLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        if event.metadata().target() != DELIVERY {
            return self.0.format_event(ctx, writer, event);
        }
        Stamp.format_time(&mut writer)?;
        write!(writer, " {:>5} ", event.metadata().level())?;
        let mut message = Message(writer.by_ref(), Ok(()));
        event.record(&mut message);
        message.1?;
        writeln!(writer)
    }
}

/// Writes the `message` field of an event (and how that went).
struct Message<'w>(Writer<'w>, fmt::Result);

impl tracing::field::Visit for Message<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.1 = write!(self.0, "{value:?}");
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.1 = self.0.write_str(value);
        }
    }
}

/// The time of a line, as tracing's own `SystemTime` writes it (`2026-12-04T01:02:03.123456Z`,
/// UTC, microseconds), with the text up to the second made once per second on each thread:
/// formatting the whole date at every line took 2,200 instructions of a delivery's 420,000
/// (benches/callgrind), this takes 650 with reading the clock.
struct Stamp;

thread_local! {
    /// The second last formatted on this thread (since the epoch), and its text up to the `.`.
    static SECOND: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
}

impl FormatTime for Stamp {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        write_stamp(chrono::Utc::now(), w)
    }
}

/// Writes `at` as [`Stamp`] does.
fn write_stamp(at: chrono::DateTime<chrono::Utc>, out: &mut impl fmt::Write) -> fmt::Result {
    let (second, micros) = (at.timestamp(), at.timestamp_subsec_micros().min(999_999));
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second {
            *cached = (second, at.format("%Y-%m-%dT%H:%M:%S.").to_string());
        }
        out.write_str(&cached.1)
    })?;
    write!(out, "{micros:06}Z")
}

#[cfg(test)]
mod tests {
    use chrono::{SecondsFormat, TimeZone, Utc};

    #[test]
    fn a_stamp_reads_as_rfc3339_with_microseconds_in_utc() {
        let instants = [
            Utc.timestamp_opt(1_796_000_000, 0).unwrap(),
            Utc.timestamp_opt(1_796_000_000, 7_000).unwrap(),
            Utc.timestamp_opt(1_796_000_000, 999_999_999).unwrap(),
            Utc.timestamp_opt(1_796_000_001, 123_456_789).unwrap(),
            Utc.timestamp_opt(0, 1_000).unwrap(),
            Utc.timestamp_opt(1_796_000_000, 500_000_000).unwrap(),
        ];
        // The same second twice (its cached text), another second, and back.
        for at in instants {
            let mut text = String::new();
            super::write_stamp(at, &mut text).unwrap();
            assert_eq!(text, at.to_rfc3339_opts(SecondsFormat::Micros, true), "{at:?}");
        }
    }
}
