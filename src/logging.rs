//! Where the log goes and how it looks. A person at a terminal gets colour; a pipe, a file or
//! `journalctl` gets plain text (escape codes there read as "[blob data]"). Under systemd
//! (`JOURNAL_STREAM` names our stderr) each line carries the journal's own priority prefix
//! (`<3>` error ... `<7>` debug, as sd-daemon(3) describes) and no timestamp: the journal
//! stamps lines itself, and `journalctl -p warning` then finds the warnings.

use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, time::SystemTime};
use tracing_subscriber::registry::LookupSpan;

/// Install the process-wide subscriber (once, from `main`).
pub fn init() {
    let journal = stderr_is_journal();
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter());
    if journal {
        registry.with(layer.with_ansi(false).event_format(Priority(format().without_time()))).init();
    } else {
        registry.with(layer.with_ansi(std::io::stderr().is_terminal())).init();
    }
}

fn format() -> format::Format<format::Full, SystemTime> {
    format::Format::default().with_ansi(false).with_target(false)
}

/// WANWATCH_LOG (default "info"; "debug", "wanwatch=debug,warn", ...: a level, and levels per
/// module), with tract held at warnings unless named: its debug output is thousands of lines per
/// model load, enough to fill a pipe and stall whoever logs next. A setting that does not parse
/// is reported and "info" used.
fn filter() -> tracing_subscriber::filter::Targets {
    let mut f = std::env::var("WANWATCH_LOG").unwrap_or_else(|_| "info".into());
    if !f.contains("tract") {
        f.push_str(",tract_hir=warn,tract_core=warn,tract_onnx=warn,tract_onnx_opl=warn,tract_linalg=warn");
    }
    f.parse().unwrap_or_else(|e| {
        eprintln!("WANWATCH_LOG={f:?} is not a log filter ({e}); logging at info");
        tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO)
    })
}

/// True when systemd connected our stderr to the journal: `JOURNAL_STREAM` is "DEV:INODE" of
/// that stream (a child that inherited the variable but not the stream must not use it).
pub fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = v.split_once(':') else { return false };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else { return false };
    // /proc/self/fd/2 resolves to the stream itself, pipe or socket alike.
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else { return false };
    use std::os::unix::fs::MetadataExt;
    meta.dev() == dev && meta.ino() == ino
}

/// The journal's priority for a level.
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Prefixes each line with `<N>`, then formats as `F` does.
struct Priority<F>(F);

impl<S, N, F> FormatEvent<S, N> for Priority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}
