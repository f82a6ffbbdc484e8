//! Logging never blocks the server's one thread: when nobody reads stderr (a
//! pipe, a socket, a terminal) and its buffer is full, log lines are dropped
//! and counted, and a notice says how many once it is read again. A regular
//! file loses nothing; every line that arrives is whole. The real binary
//! with real sockets (the sink alone: `log_sink.rs`).

mod common;

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read};
use std::net::{Shutdown, SocketAddr};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

// ---------------------------------------------------------------------------
// The real binary

/// How long a client may wait for its echo and EOF (a stalled server: forever).
const PROMPT: Duration = Duration::from_secs(5);

/// The server (or script(1) running it), killed on drop.
struct Server {
    child: Child,
    pid: u32,
    addr: SocketAddr,
}

impl Server {
    /// With `RUST_LOG=debug` and stderr as the test sets it up; stdout is
    /// read for the `listening on` line.
    fn debug(stderr: Stdio) -> Server {
        Server::debug_with(stderr, &[])
    }

    /// `debug` with more flags.
    fn debug_with(stderr: Stdio, args: &[&str]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "debug")
            .env_remove("RUST_LOG_STYLE")
            .env_remove("CLICOLOR_FORCE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut server = Server::new(cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}")));
        let stdout = Log::follow(server.child.stdout.take().unwrap());
        let first = stdout.wait_nth(1, |_| true, START_TIMEOUT);
        let addr = first.as_deref().and_then(parse_listening_line);
        server.addr = addr.unwrap_or_else(|| panic!("no `listening on` line: {first:?}"));
        server
    }

    /// Killed on drop; `pid` and `addr` are filled in once known.
    fn new(child: Child) -> Server {
        let (pid, addr) = (child.id(), ([127, 0, 0, 1], 0).into());
        Server { child, pid, addr }
    }

    /// Stops the server with SIGTERM and waits (bounded) for exit status 0.
    fn terminate(&mut self) {
        send_signal(self.pid, "TERM");
        let mut status = None;
        let exited = wait_until(IO_TIMEOUT, Duration::from_millis(5), || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        assert!(exited, "still running {IO_TIMEOUT:?} after SIGTERM");
        assert!(status.unwrap().success(), "exit {status:?}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clients one after another, each: connect, echo a line, half-close, EOF.
/// Each logs at least its open and its close. Panics when one takes longer
/// than `PROMPT`. Returns the clients' addresses and the slowest round trip.
fn clients(addr: SocketAddr, n: usize) -> (Vec<SocketAddr>, Duration) {
    let mut slowest = Duration::ZERO;
    let mut ours = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        let mut c = try_connect(addr, PROMPT).unwrap_or_else(|e| panic!("client {i}: {e}"));
        c.set_read_timeout(Some(PROMPT)).unwrap();
        let stalled = |what: &str, err: &dyn std::fmt::Debug| -> ! {
            panic!("client {i}: {what} within {PROMPT:?} ({err:?}): the server stalled")
        };
        if let Err(e) = try_echo(&mut c, format!("client {i}\n").as_bytes()) {
            stalled("no echo", &e);
        }
        c.shutdown(Shutdown::Write).unwrap();
        match try_read_to_eof(&mut c) {
            Ok(rest) if rest.is_empty() => {}
            other => stalled("no clean EOF", &other.map_err(|(e, _)| e)),
        }
        ours.push(c.local_addr().unwrap());
        slowest = slowest.max(t0.elapsed());
        assert!(slowest < PROMPT, "client {i} took {slowest:?}");
    }
    (ours, slowest)
}

fn notice_count(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("echo-reactor: ")?;
    let (n, why) = rest.split_once(" log line")?;
    why.contains(" dropped: ").then(|| n.parse().ok())?
}

/// `[TIME LEVEL TARGET] message` as env_logger formats it (colours removed),
/// with no second record glued on; or the notice of dropped lines.
fn is_whole_line(line: &str) -> bool {
    let line = strip_colours(line);
    if notice_count(&line).is_some() {
        return true;
    }
    let Some((head, message)) = line.strip_prefix('[').and_then(|r| r.split_once("] ")) else {
        return false;
    };
    let words: Vec<&str> = head.split_whitespace().collect();
    let levels = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];
    words.len() == 3
        && words[0].ends_with('Z')
        && levels.contains(&words[1])
        && !message.contains("[20")
        && !message.contains("echo-reactor: ")
}

/// Without env_logger's colours (`ESC [ ... m`).
fn strip_colours(line: &str) -> String {
    let mut parts = line.split('\x1b');
    let plain = parts.next().unwrap_or_default().to_string();
    parts.fold(plain, |out, p| out + p.split_once('m').map_or(p, |r| r.1))
}

fn assert_whole_lines(lines: &[String]) {
    let bad: Vec<&String> = lines.iter().filter(|l| !is_whole_line(l)).collect();
    let some = &bad[..bad.len().min(5)];
    assert!(bad.is_empty(), "{} broken lines, e.g. {some:?}", bad.len());
}

/// O_NONBLOCK belongs to the open file description, which fd 2 shares with
/// whoever started the server: it must stay as it was (blocking).
fn assert_fd2_untouched(pid: u32) {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/2")).unwrap();
    let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap();
    let flags = u32::from_str_radix(flags.trim(), 8).unwrap();
    assert_eq!(flags & libc::O_NONBLOCK as u32, 0, "fd 2 made non-blocking");
}

/// Socket addresses named anywhere in the log.
fn addresses(lines: &[String]) -> HashSet<SocketAddr> {
    let words = lines.iter().flat_map(|l| l.split_whitespace());
    words.filter_map(|w| w.parse().ok()).collect()
}

/// With stderr read again (`log` follows it), asks for stats until a
/// `stats:` line gets through: the first ones may still meet a full buffer.
fn stats_get_through(pid: u32, log: &Log) -> String {
    for _ in 0..100 {
        send_signal(pid, "USR1");
        if let Some(line) = log.wait_nth(1, is_stats_line, Duration::from_millis(500)) {
            return line;
        }
    }
    panic!("no `stats:` line got through; log:\n{}", log.tail(20));
}

/// Clients while nobody reads stderr, then stderr read again: every client
/// was served promptly, and the log says how many lines it lost.
fn unread_stderr(what: &str, server: &mut Server, stderr: impl Read + Send + 'static) -> String {
    let n = scale(3000, 20000);
    let t0 = Instant::now();
    let (_, slowest) = clients(server.addr, n);
    let took = t0.elapsed();
    assert_fd2_untouched(server.pid);
    let log = Log::follow(stderr);
    let stats = stats_get_through(server.pid, &log);
    server.terminate();
    assert!(log.wait_eof(IO_TIMEOUT), "stderr still open after the exit");

    let lines = log.lines();
    assert_whole_lines(&lines);
    let notices: Vec<(usize, u64)> = (lines.iter().enumerate())
        .filter_map(|(i, l)| Some((i, notice_count(l)?)))
        .collect();
    let dropped: u64 = notices.iter().map(|(_, n)| n).sum();
    let stats_at = lines.iter().position(|l| *l == stats).unwrap();
    assert!(
        notices.first().is_some_and(|(at, _)| *at < stats_at) && dropped > 0,
        "no notice of dropped lines before `{stats}`; log:\n{}",
        log.tail(20)
    );
    let (kept, n) = (lines.len() as u64, n as u64);
    let counts = format!("{kept} lines, {dropped} dropped, {n} clients");
    assert!(kept + dropped >= n, "{counts}");
    let last = log.wait_nth(1, is_final_stats_line, IO_TIMEOUT).unwrap();
    assert_eq!(Stats::parse(&last)["accepted"], n, "{last}");
    let times = notices.len();
    let text = format!("{n} clients in {took:.2?}, slowest {slowest:.2?}; {kept} log lines");
    let text = format!("{text}, {dropped} dropped ({times} notices)");
    figure(&format!("unread {what}"), &text);
    log.text()
}

#[test]
fn a_pipe_nobody_reads_does_not_stall_clients() {
    let mut server = Server::debug(Stdio::piped());
    let stderr = server.child.stderr.take().unwrap();
    let log = unread_stderr("pipe", &mut server, stderr);
    assert!(log.contains("stderr is a pipe, reopened non-blocking"));
}

#[test]
fn a_socket_nobody_reads_does_not_stall_clients() {
    // As systemd's journal stream: stderr is a Unix stream socket.
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut server = Server::debug(Stdio::from(std::os::fd::OwnedFd::from(theirs)));
    let log = unread_stderr("socket", &mut server, ours);
    assert!(log.contains("stderr is a socket"));
}

#[test]
fn a_terminal_nobody_reads_does_not_stall_clients() {
    // script(1) runs the server on a pseudo-terminal and copies it to its
    // stdout, our pipe: once the test stops reading, the terminal fills.
    let mut cmd = Command::new("script");
    let line = format!("exec {BIN} --listen 127.0.0.1:0");
    cmd.args(["-q", "-e", "-c", &line, "/dev/null"])
        .env("RUST_LOG", "debug")
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("script(1) from util-linux runs this test: {e}"));
    // Killing script hangs up the terminal, which ends the server.
    let mut server = Server::new(child);
    // The terminal is followed only up to `listening on` (log lines from
    // the start come first): the reader thread hands the rest back, unread.
    let (tx, rx) = mpsc::channel();
    let mut reader = BufReader::new(server.child.stdout.take().unwrap());
    let listening = |text: &str| text.lines().last().and_then(parse_listening_line);
    std::thread::spawn(move || {
        let mut before = String::new();
        while before.len() < 64 * 1024 && reader.read_line(&mut before).unwrap_or(0) > 0 {
            if listening(&before).is_some() {
                break;
            }
        }
        let _ = tx.send((before, reader));
    });
    let (before, reader) = rx.recv_timeout(START_TIMEOUT).expect("`listening on` line");
    server.addr = listening(&before).unwrap_or_else(|| panic!("not listening: {before:?}"));
    let children = format!("/proc/{0}/task/{0}/children", server.child.id());
    let pid = std::fs::read_to_string(&children).unwrap();
    server.pid = pid.trim().parse().expect("script's one child");
    let log = unread_stderr("terminal", &mut server, reader);
    let how = "stderr is a terminal, reopened non-blocking";
    assert!(before.contains(how), "{before:?}");
    assert!(log.contains("\x1b["), "no colours on a terminal");
}

#[test]
fn a_regular_file_gets_every_line() {
    let dir = TempDir::new("logging");
    let path = dir.0.join("stderr.log");
    std::fs::write(&path, "before the server\n").unwrap();
    // As `2>>FILE` does: the server's lines follow what the file holds.
    let file = OpenOptions::new().append(true).open(&path).unwrap();
    let mut server = Server::debug(Stdio::from(file));
    let n = scale(2000, 20000);
    let (ours, _) = clients(server.addr, n);
    server.terminate();

    let text = std::fs::read_to_string(&path).unwrap();
    let rest = text.strip_prefix("before the server\n").unwrap();
    let lines: Vec<String> = rest.lines().map(str::to_string).collect();
    assert_whole_lines(&lines);
    assert!(!text.contains(" dropped: "), "lines dropped writing a file");
    assert!(text.contains("plain writes to stderr"), "{}", lines[0]);
    let named = addresses(&lines);
    let missing: Vec<&SocketAddr> = ours.iter().filter(|a| !named.contains(a)).collect();
    assert_eq!(missing.len(), 0, "clients not in the log: {missing:?}");
    let last = lines.iter().find(|l| is_final_stats_line(l)).unwrap();
    assert_eq!(Stats::parse(last)["accepted"], n as u64, "{last}");
    let (count, bytes) = (lines.len(), rest.len());
    let text = format!("{n} clients: {count} lines, {bytes} bytes");
    figure("file log", &text);
}

#[test]
fn read_normally_the_default_log_is_unchanged() {
    let mut server = ServerProcess::start(&[]);
    server.echo_check(b"hello\n").unwrap();
    server.signal("TERM");
    server.expect_exit(IO_TIMEOUT);
    let text = server.log.text();
    assert_whole_lines(&server.log.lines());
    assert!(!text.contains('\x1b'), "colours on a pipe: {text:?}");
    let unexpected = [" DEBUG ", " dropped: ", "listening on"];
    assert!(!unexpected.iter().any(|u| text.contains(u)), "{text}");
    assert_eq!(server.final_stats()["accepted"], 1, "{text}");
}

/// At exit the loop no longer runs, so the log may wait for stderr: the
/// `final stats:` line and the notice of what was dropped come out even when
/// stderr was full, as soon as somebody reads it (here: slowly).
#[test]
fn final_stats_survive_a_full_stderr_at_exit() {
    rlimit::increase_nofile_limit(4096).unwrap();
    let mut server = Server::debug_with(Stdio::piped(), &["--shutdown-timeout", "0"]);
    let mut stderr = server.child.stderr.take().unwrap();
    // Each logs a line when it opens and another when the shutdown closes
    // it, all at once at exit: far more than the pipe holds.
    let held: Vec<_> = (0..1500).map(|_| connect(server.addr)).collect();
    send_signal(server.pid, "TERM");
    // A slow reader, from the signal on: 4 KiB every 2 ms (the pace is the
    // scenario).
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let mut buf = [0; 4096];
        loop {
            match stderr.read(&mut buf) {
                Ok(0) | Err(_) => return String::from_utf8_lossy(&text).into_owned(),
                Ok(n) => text.extend_from_slice(&buf[..n]),
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let mut status = None;
    let exited = wait_until(IO_TIMEOUT, Duration::from_millis(5), || {
        status = server.child.try_wait().unwrap();
        status.is_some()
    });
    assert!(exited && status.unwrap().success(), "exit {status:?}");
    drop(held);
    let log = reader.join().unwrap();
    let lines: Vec<String> = log.lines().map(str::to_string).collect();
    assert_whole_lines(&lines);
    let last = lines.last().map(String::as_str).unwrap_or_default();
    assert!(is_final_stats_line(last), "last line: {last:?}");
    assert!(
        lines.iter().any(|l| notice_count(l).is_some()),
        "no notice of the dropped lines"
    );
}
