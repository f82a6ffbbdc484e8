//! Logging that never blocks the reactor's thread, and a rate limiter for
//! warnings that repeat.
//!
//! env_logger writes each record to stderr with a blocking `write_all`: when
//! nobody reads the pipe or terminal, the thread stops in `write` once the
//! kernel's buffer is full, and every client stops with it. [`init`] sets up
//! env_logger as before (`RUST_LOG`, default `info`, same format) but hands
//! each record to a [`LineSink`] on stderr: what stderr cannot take at once
//! is dropped and counted, and the next line that gets through follows
//! `echo-reactor: N log lines dropped: stderr was not being read`.
//!
//! O_NONBLOCK belongs to the open file description, which fd 2 shares with
//! the shell and whoever else writes there: setting it on fd 2 would make
//! their writes fail with EAGAIN. So fd 2 is never changed; by its type:
//! - a socket (systemd's journal stream): each `send` carries MSG_DONTWAIT;
//! - a pipe, FIFO or terminal: `/proc/self/fd/N` opened anew with O_NONBLOCK,
//!   a new open file description of the same pipe or terminal;
//! - a regular file, /dev/null or another device: plain writes, which wait
//!   for no reader (reopening a file would lose O_APPEND and the offset it
//!   shares with the shell);
//! - not open: nothing is written (fd 2 may later be a client's socket).

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::time::{Duration, Instant};

use env_logger::WriteStyle;

mod limiter;
mod requested;
pub use limiter::{Suppressed, WarnLimiter};
pub use requested::{flush_at_exit, log_requested};

/// Installs env_logger writing to a [`LineSink`] on stderr; logs at debug
/// level how stderr is written (and if not without waiting, why). Lines an
/// operator asked for go to the same sink unfiltered ([`log_requested`]).
pub fn init() {
    let (stderr, terminal, how) = open_stderr();
    let sink = requested::shared(LineSink::new(stderr), write_style(terminal));
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .write_style(write_style(terminal))
        .target(env_logger::Target::Pipe(Box::new(sink)))
        .init();
    log::debug!("log output: {how}");
}

/// env_logger decides colours from the stream only for its own stderr
/// target, and never colours a pipe target: decide as it would (`RUST_LOG_
/// STYLE`, then NO_COLOR, CLICOLOR_FORCE, CLICOLOR, a terminal and `TERM`).
fn write_style(terminal: bool) -> WriteStyle {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    match std::env::var("RUST_LOG_STYLE").as_deref() {
        Ok("always") => return WriteStyle::Always,
        Ok("never") => return WriteStyle::Never,
        _ => {}
    }
    let clicolor = var("CLICOLOR");
    let colour = if var("NO_COLOR").is_some() {
        false
    } else if var("CLICOLOR_FORCE").is_some() {
        true
    } else if clicolor.as_deref().is_some_and(|v| v == "0") {
        false
    } else {
        terminal && (var("TERM").is_some_and(|t| t != "dumb") || clicolor.is_some())
    };
    if colour {
        WriteStyle::Always
    } else {
        WriteStyle::Never
    }
}

/// One write that does not wait: `Ok(n)` may be short, `WouldBlock` means
/// nothing fits now.
pub trait TryWrite {
    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize>;
}

/// fd 2 as [`init`] found it (see the module documentation).
enum Stderr {
    Socket(OwnedFd),
    File(File),
    Closed,
}

impl TryWrite for Stderr {
    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            // MSG_NOSIGNAL: a journal that went away is an error, not SIGPIPE.
            Stderr::Socket(fd) => socket2::SockRef::from(&*fd)
                .send_with_flags(buf, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL),
            Stderr::File(file) => file.write(buf),
            Stderr::Closed => Ok(buf.len()),
        }
    }
}

fn open_stderr() -> (Stderr, bool, String) {
    // A duplicate: what is inspected and written is what fd 2 is now.
    let file = match io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => File::from(fd),
        Err(err) => {
            return (
                Stderr::Closed,
                false,
                format!("none: stderr is closed ({err})"),
            )
        }
    };
    let file_type = match file.metadata() {
        Ok(meta) => meta.file_type(),
        Err(err) => {
            let how = format!("plain writes to stderr, its type is unknown ({err})");
            return (Stderr::File(file), false, how);
        }
    };
    if file_type.is_socket() {
        let how = "stderr is a socket: sends that do not wait".to_string();
        return (Stderr::Socket(file.into()), false, how);
    }
    let terminal = file.is_terminal();
    if !(terminal || file_type.is_fifo()) {
        let how = "plain writes to stderr (a file or device: no reader to wait for)";
        return (Stderr::File(file), false, how.to_string());
    }
    let what = if terminal { "a terminal" } else { "a pipe" };
    // O_NOCTTY: opening a terminal must not make it our controlling one.
    let reopened = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()));
    match reopened {
        Ok(reopened) => {
            let how = format!("stderr is {what}, reopened non-blocking");
            (Stderr::File(reopened), terminal, how)
        }
        Err(err) => {
            let how = format!(
                "stderr is {what} that cannot be reopened non-blocking ({err}): \
                 plain writes, which wait while nobody reads"
            );
            (Stderr::File(file), terminal, how)
        }
    }
}

/// A `Write` that passes whole lines to a [`TryWrite`] without waiting.
///
/// Bytes are held until a newline (or `flush`), then written at once. What
/// the stream does not take is dropped and counted, except the rest of a line
/// it took part of: that rest is owed, and goes first next time, so a line is
/// never cut short or glued onto another. Before the next line after a drop,
/// a notice says how many lines were lost.
pub struct LineSink<W> {
    out: W,
    /// What `write` got after its last newline.
    pending: Vec<u8>,
    /// The rest of the lines the stream took only part of.
    owed: Vec<u8>,
    dropped: u64,
    /// Why the last write failed, for the notice.
    cause: Option<io::Error>,
    /// Until then a full stream is waited for instead of dropped: set once
    /// the loop is over (`flush_at_exit`), when waiting blocks nobody.
    patience: Option<Instant>,
}

impl<W: TryWrite> LineSink<W> {
    pub fn new(out: W) -> LineSink<W> {
        LineSink {
            out,
            pending: Vec::new(),
            owed: Vec::new(),
            dropped: 0,
            cause: None,
            patience: None,
        }
    }

    /// From now on, waits for a full stream until `deadline`, and writes
    /// what is owed and the notice of dropped lines.
    pub fn wait_until(&mut self, deadline: Instant) {
        self.patience = Some(deadline);
        let _ = self.pay_owed() && self.report_dropped();
    }

    /// Lines dropped since the last notice.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The stream written to.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Writes `lines`, or drops and counts them if what is owed or the
    /// notice cannot go out first.
    fn emit(&mut self, lines: &[u8]) {
        if !self.pay_owed() || !self.report_dropped() {
            self.drop_lines(lines);
            return;
        }
        let sent = self.send(lines);
        if sent == 0 {
            self.drop_lines(lines);
        } else {
            self.owed.extend_from_slice(&lines[sent..]);
        }
    }

    /// Writes what is owed; true once nothing is.
    fn pay_owed(&mut self) -> bool {
        if !self.owed.is_empty() {
            let owed = std::mem::take(&mut self.owed);
            let sent = self.send(&owed);
            self.owed = owed;
            self.owed.drain(..sent);
        }
        self.owed.is_empty()
    }

    /// Writes the notice of dropped lines, if any; true if the line after it
    /// may follow. A notice the stream takes part of is owed like any line.
    fn report_dropped(&mut self) -> bool {
        if self.dropped == 0 {
            return true;
        }
        let s = if self.dropped == 1 { "" } else { "s" };
        let notice = match &self.cause {
            Some(err) if err.kind() != io::ErrorKind::WouldBlock => {
                format!("writing to stderr failed: {err}")
            }
            _ => "stderr was not being read".to_string(),
        };
        let notice = format!(
            "echo-reactor: {} log line{s} dropped: {notice}\n",
            self.dropped
        );
        let sent = self.send(notice.as_bytes());
        if sent == 0 {
            return false;
        }
        self.dropped = 0;
        self.owed.extend_from_slice(&notice.as_bytes()[sent..]);
        self.owed.is_empty()
    }

    fn drop_lines(&mut self, lines: &[u8]) {
        let n = memchr::memchr_iter(b'\n', lines).count().max(1);
        self.dropped = self.dropped.saturating_add(n as u64);
    }

    /// Writes as much of `buf` as the stream takes now; how much that was.
    fn send(&mut self, buf: &[u8]) -> usize {
        const MAX_INTERRUPTS: u32 = 8;
        let mut sent = 0;
        let mut interrupts = 0;
        // Each pass either makes progress or ends the loop (interruptions
        // are bounded): at most `buf.len()` passes.
        while sent < buf.len() {
            match self.out.try_write(&buf[sent..]) {
                Ok(0) => {
                    self.cause = Some(io::ErrorKind::WriteZero.into());
                    break;
                }
                Ok(n) => sent += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {
                    interrupts += 1;
                    if interrupts > MAX_INTERRUPTS {
                        self.cause = Some(err);
                        break;
                    }
                }
                Err(err)
                    if err.kind() == io::ErrorKind::WouldBlock
                        && self.patience.is_some_and(|until| Instant::now() < until) =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(err) => {
                    self.cause = Some(err);
                    break;
                }
            }
        }
        sent
    }
}

impl<W: TryWrite> Write for LineSink<W> {
    /// Takes all of `buf`; writes up to its last newline now.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match memchr::memrchr(b'\n', buf) {
            // env_logger's case: one whole record per call, nothing held.
            Some(last) if self.pending.is_empty() && last + 1 == buf.len() => self.emit(buf),
            Some(last) => {
                let mut lines = std::mem::take(&mut self.pending);
                lines.extend_from_slice(&buf[..=last]);
                self.emit(&lines);
                lines.clear();
                lines.extend_from_slice(&buf[last + 1..]);
                self.pending = lines;
            }
            None => self.pending.extend_from_slice(buf),
        }
        Ok(buf.len())
    }

    /// Writes what is held even without a newline; never fails (a failure
    /// is counted as dropped lines instead).
    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let held = std::mem::take(&mut self.pending);
            self.emit(&held);
        }
        Ok(())
    }
}
