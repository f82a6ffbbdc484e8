//! Lines an operator asked for (SIGUSR1's `stats:`, the `final stats:` at
//! exit) are printed whatever `RUST_LOG` filters: they were asked for. They
//! go through a second env_logger with no filter, to the same [`LineSink`],
//! so they look like every other line and never block either.

use std::fmt;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use env_logger::WriteStyle;

use super::{LineSink, TryWrite};

/// The unfiltered logger, set by [`crate::logging::init`].
static REQUESTED: OnceLock<env_logger::Logger> = OnceLock::new();

/// Lets the shared sink wait for stderr until the given time.
type Patience = Box<dyn Fn(Instant) + Send + Sync>;
static AT_EXIT: OnceLock<Patience> = OnceLock::new();

/// Installs the unfiltered logger on `sink`; returns the writer the
/// filtered logger shares it through.
pub(super) fn shared<W: TryWrite + Send + 'static>(
    sink: LineSink<W>,
    style: WriteStyle,
) -> impl Write + Send + 'static {
    let sink = Arc::new(Mutex::new(sink));
    let unfiltered = env_logger::Builder::new()
        .filter_level(log::LevelFilter::Trace)
        .write_style(style)
        .target(env_logger::Target::Pipe(Box::new(SharedSink(Arc::clone(
            &sink,
        )))))
        .build();
    let _ = REQUESTED.set(unfiltered);
    let patient = Arc::clone(&sink);
    let _ = AT_EXIT.set(Box::new(move |deadline| {
        patient
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .wait_until(deadline)
    }));
    SharedSink(sink)
}

/// Once the loop is over: the log may wait up to `timeout` for stderr, so
/// that what is owed, the notice of dropped lines and the last lines (the
/// `final stats:`) are written rather than dropped.
pub fn flush_at_exit(timeout: Duration) {
    if let Some(wait_until) = AT_EXIT.get() {
        wait_until(Instant::now() + timeout);
    }
}

/// Logs an info line under `target` whatever `RUST_LOG` filters; before
/// `init`, through the global logger as usual. Use [`crate::info_requested!`].
pub fn log_requested(target: &str, args: fmt::Arguments<'_>) {
    let record = log::Record::builder()
        .level(log::Level::Info)
        .target(target)
        .args(args)
        .build();
    match REQUESTED.get() {
        Some(logger) => log::Log::log(logger, &record),
        None => log::logger().log(&record),
    }
}

/// `info!` that no `RUST_LOG` filter hides, under the caller's module:
/// `info_requested!("stats: {stats}")`.
#[macro_export]
macro_rules! info_requested {
    ($($arg:tt)+) => {
        $crate::logging::log_requested(::std::module_path!(), ::std::format_args!($($arg)+))
    };
}

/// One [`LineSink`] for both loggers: whole lines, in the order logged.
struct SharedSink<W>(Arc<Mutex<LineSink<W>>>);

impl<W: TryWrite> Write for SharedSink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut sink = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        sink.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut sink = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        sink.flush()
    }
}
