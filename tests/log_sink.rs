//! The log sink and the warning limiter alone: `LineSink` against a
//! scripted stream (whole lines, dropped lines counted and reported, a line
//! taken in part finished first) and `warn_limited!` against a capturing
//! logger. The real binary's logging is in `logging.rs`.

use std::cell::Cell;
use std::io::{self, ErrorKind, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use echo_reactor::logging::{LineSink, TryWrite, WarnLimiter};
use echo_reactor::warn_limited;

/// Takes `room` more bytes, then answers WouldBlock; or fails with `fail`.
#[derive(Default)]
struct Scripted {
    taken: Vec<u8>,
    room: usize,
    fail: Option<ErrorKind>,
}

impl TryWrite for Scripted {
    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match (self.fail, self.room) {
            (Some(kind), _) => Err(kind.into()),
            (None, 0) => Err(ErrorKind::WouldBlock.into()),
            (None, room) => {
                let n = buf.len().min(room);
                self.room -= n;
                self.taken.extend_from_slice(&buf[..n]);
                Ok(n)
            }
        }
    }
}

fn sink(room: usize) -> LineSink<Scripted> {
    let mut sink = LineSink::new(Scripted::default());
    sink.get_mut().room = room;
    sink
}

/// env_logger's way: one `write_all` and one `flush` per record.
fn record(sink: &mut LineSink<Scripted>, line: &str) {
    sink.write_all(line.as_bytes()).unwrap();
    sink.flush().unwrap();
}

fn taken(sink: &LineSink<Scripted>) -> String {
    String::from_utf8(sink.get_ref().taken.clone()).unwrap()
}

const NOT_READ: &str = "stderr was not being read";

#[test]
fn lines_pass_whole_and_pieces_wait_for_their_newline() {
    let mut s = sink(usize::MAX);
    record(&mut s, "one\n");
    record(&mut s, "two\nthree\n");
    s.write_all(b"fo").unwrap();
    s.write_all(b"ur\nfi").unwrap();
    assert_eq!(taken(&s), "one\ntwo\nthree\nfour\n");
    s.flush().unwrap();
    assert_eq!(taken(&s), "one\ntwo\nthree\nfour\nfi");
    assert_eq!(s.dropped(), 0);
}

#[test]
fn a_full_stream_drops_lines_and_the_next_line_says_how_many() {
    let mut s = sink(0);
    for i in 0..5 {
        record(&mut s, &format!("lost {i}\n"));
    }
    assert_eq!((taken(&s).as_str(), s.dropped()), ("", 5));
    s.get_mut().room = usize::MAX;
    record(&mut s, "back\n");
    let expected = format!("echo-reactor: 5 log lines dropped: {NOT_READ}\nback\n");
    assert_eq!(taken(&s), expected);
    record(&mut s, "and on\n");
    let expected = expected + "and on\n";
    assert_eq!(taken(&s), expected, "one notice per drop");
    // A failure other than a full buffer is named.
    s.get_mut().fail = Some(ErrorKind::BrokenPipe);
    record(&mut s, "lost\n");
    s.get_mut().fail = None;
    record(&mut s, "back\n");
    let failed = "echo-reactor: 1 log line dropped: writing to stderr failed: ";
    assert!(taken(&s).contains(failed), "{}", taken(&s));
}

#[test]
fn a_line_taken_in_part_is_finished_before_anything_else() {
    let mut s = sink(6);
    record(&mut s, "first line\n");
    assert_eq!(taken(&s), "first ");
    record(&mut s, "second line\n"); // no room: dropped, not glued on
    assert_eq!(s.dropped(), 1);
    // Room for the rest of the first line and part of the notice.
    s.get_mut().room = 5 + 20;
    record(&mut s, "third line\n");
    let notice = format!("echo-reactor: 1 log line dropped: {NOT_READ}\n");
    assert_eq!(taken(&s), format!("first line\n{}", &notice[..20]));
    assert_eq!(s.dropped(), 1, "the third line waited behind the notice");
    s.get_mut().room = usize::MAX;
    record(&mut s, "fourth line\n");
    let expected = format!("first line\n{notice}{notice}fourth line\n");
    assert_eq!(taken(&s), expected);
}

/// Keeps what this test process logs (at the level `max_level` lets by).
struct Capture(Mutex<Vec<(String, String)>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let entry = (record.target().to_string(), record.args().to_string());
        self.0.lock().unwrap().push(entry);
    }
    fn flush(&self) {}
}

/// Counts how often it is formatted.
struct Costly<'a>(&'a Cell<u32>);

impl std::fmt::Display for Costly<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.set(self.0.get() + 1);
        f.write_str("costly")
    }
}

#[test]
fn warn_limited_formats_only_what_goes_out() {
    static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));
    log::set_logger(&CAPTURE).expect("the only logger of this test binary");
    log::set_max_level(log::LevelFilter::Warn);
    let formatted = Cell::new(0);
    let (t0, mut limiter) = (Instant::now(), WarnLimiter::default());
    for ms in [0, 10, 20, 1000, 1001] {
        let now = t0 + Duration::from_millis(ms);
        warn_limited!(limiter, now, "marker {}", Costly(&formatted));
    }
    assert_eq!(formatted.get(), 2, "formatted although suppressed");
    let logged = CAPTURE.0.lock().unwrap().clone();
    let suppressed = "marker costly (2 similar warnings suppressed)";
    let expected =
        ["marker costly", suppressed].map(|m| (module_path!().to_string(), m.to_string()));
    assert_eq!(logged, expected, "(target, message): the caller's module");
}
