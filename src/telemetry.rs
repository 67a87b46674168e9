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
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The target of the delivery lines (`[connector] METHOD URL STATUS REASON`).
pub const DELIVERY: &str = "hms_sync::delivery";

/// Installs the global subscriber once; later calls (tests start many apps) are no-ops.
pub fn init(format: &str, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
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
        SystemTime.format_time(&mut writer)?;
        write!(writer, " {:>5} ", event.metadata().level())?;
        let mut message = Message(String::new());
        event.record(&mut message);
        writeln!(writer, "{}", message.0)
    }
}

/// The `message` field of an event.
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }
}
