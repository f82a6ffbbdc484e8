//! Ending a session over a lossy slow link: a `quit` line split across
//! segments (the server holds a possible `quit` at a line start until the
//! next segment decides, which under loss may come a retransmission later),
//! lines that start like `quit` but are not, and a half-close after data.

use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{figure, qfree_fill, scale, show, try_connect, try_read_to_eof, Rng};
use crate::common::{ServerProcess, IO_TIMEOUT};
use crate::netns::Netns;

const KIB: usize = 1024;

/// Between two pieces of a script: long enough that each piece leaves as a
/// segment of its own (TCP_NODELAY), so the server sees the split.
const PIECE_GAP: Duration = Duration::from_millis(30);

/// What one client writes, piece by piece, and must get back.
struct Script {
    kind: &'static str,
    pieces: Vec<Vec<u8>>,
    /// Index of the first piece written after the quit line ended the
    /// session (the server may be gone by then: write errors are fine).
    after_quit: Option<usize>,
    shut_write: bool,
    expect: Vec<u8>,
}

/// q-free random bytes with no newline at either end.
fn text(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    qfree_fill(rng, &mut out);
    let last = len.saturating_sub(1);
    for at in [0, last] {
        if out.get(at) == Some(&b'\n') {
            out[at] = b'.';
        }
    }
    out
}

/// `i` picks the kind of client and where its line is split.
fn script(i: usize, prefix: usize, bulk: usize) -> Script {
    let mut rng = Rng::new(0xc105_e000 + i as u64);
    let split = (i / 3) % 6;
    match i % 3 {
        // Data, then "\nquit\n" split at `split` (0: the newline before
        // `quit` already went with the data), then more that must not come
        // back.
        0 => {
            let data = text(&mut rng, prefix);
            let line = b"\nquit now\n";
            let mut expect = data.clone();
            expect.push(b'\n');
            let pieces = vec![
                data,
                line[..split].to_vec(),
                line[split..].to_vec(),
                b"after quit: never echoed\n".to_vec(),
            ];
            Script {
                kind: "split quit",
                pieces,
                after_quit: Some(3),
                shut_write: false,
                expect,
            }
        }
        // Lines that start like `quit` and are not, split inside the held
        // prefix; echoed whole, then the half-close ends the session.
        1 => {
            let pairs = [
                ("q", "ueue\n"),
                ("qu", "ick\n"),
                ("qui", "et\n"),
                ("qui", "\n"),
            ];
            let mut pieces = Vec::new();
            for k in 0..pairs.len() {
                let (head, tail) = pairs[(k + split) % pairs.len()];
                let mut first = text(&mut rng, prefix / 4);
                first.push(b'\n');
                first.extend_from_slice(head.as_bytes());
                pieces.push(first);
                pieces.push(tail.as_bytes().to_vec());
            }
            Script {
                kind: "near quit",
                expect: pieces.concat(),
                pieces,
                after_quit: None,
                shut_write: true,
            }
        }
        _ => {
            let data = text(&mut rng, bulk);
            Script {
                kind: "half-close",
                expect: data.clone(),
                pieces: vec![data],
                after_quit: None,
                shut_write: true,
            }
        }
    }
}

/// Plays `script` against `addr`: a reader thread takes the echo to EOF
/// while this thread writes the pieces. The time it took, or what was wrong.
fn play(addr: SocketAddr, script: &Script) -> Result<Duration, String> {
    let t0 = Instant::now();
    let mut stream = try_connect(addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    let mut reading = stream.try_clone().map_err(|e| format!("clone: {e}"))?;
    let reader = thread::spawn(move || try_read_to_eof(&mut reading));
    let mut write_err = None;
    for (k, piece) in script.pieces.iter().enumerate() {
        if k > 0 {
            // Pacing, not synchronisation: the gap makes the split.
            thread::sleep(PIECE_GAP);
        }
        if piece.is_empty() {
            continue;
        }
        if let Err(e) = stream.write_all(piece) {
            if script.after_quit.is_none_or(|q| k < q) {
                write_err = Some(format!("write piece {k}: {e}"));
            }
            break;
        }
    }
    if script.shut_write && write_err.is_none() {
        stream
            .shutdown(Shutdown::Write)
            .map_err(|e| format!("shutdown(Write): {e}"))?;
    }
    let got = reader
        .join()
        .map_err(|_| "reader panicked".to_string())?
        .map_err(|(e, got)| format!("no clean EOF: {e} after {} bytes", got.len()))?;
    if let Some(e) = write_err {
        return Err(e);
    }
    if got != script.expect {
        let at = got
            .iter()
            .zip(&script.expect)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(script.expect.len()));
        return Err(format!(
            "echo of {} bytes, expected {}; first difference at {at}: {:?}",
            got.len(),
            script.expect.len(),
            show(&got[at.min(got.len())..])
        ));
    }
    Ok(t0.elapsed())
}

pub fn quit_split_half_close(ns: &mut Netns) {
    ns.slow_link();
    ns.set_loss(2);
    let n = scale(12, 48);
    let (prefix, bulk) = (scale(16, 64) * KIB, scale(64, 256) * KIB);
    let server = ServerProcess::start(&[]);
    let addr = server.addr;
    let scripts: Vec<Script> = (0..n).map(|i| script(i, prefix, bulk)).collect();
    let quits = scripts.iter().filter(|s| s.after_quit.is_some()).count() as u64;
    let results: Vec<Result<Duration, String>> = thread::scope(|scope| {
        let handles: Vec<_> = scripts
            .iter()
            .map(|s| scope.spawn(move || play(addr, s)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("client panicked".into())))
            .collect()
    });
    let st = server.stats_until(Duration::from_secs(10), |st| st.get("active") == 0);
    let slowest = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .max()
        .copied()
        .unwrap_or_default();
    let failures: Vec<String> = results
        .iter()
        .zip(&scripts)
        .enumerate()
        .filter_map(|(i, (r, s))| r.as_ref().err().map(|e| format!("#{i} {}: {e}", s.kind)))
        .collect();
    figure(
        "faults-quit-split",
        &format!(
            "{n} clients over {}: {quits} split `quit` lines (split at every point) echoed their {} KiB before it exactly and nothing after, {} near-`quit` lines echoed whole, {} half-closes of {} KiB echoed whole then EOF; {} failed; slowest client {:.2} s; server closed_quit={} closed_client={}; {}",
            ns.describe(),
            prefix / KIB,
            scripts.iter().filter(|s| s.kind == "near quit").count(),
            scripts.iter().filter(|s| s.kind == "half-close").count(),
            bulk / KIB,
            failures.len(),
            slowest.as_secs_f64(),
            st.get("closed_quit"),
            st.get("closed_client"),
            ns.describe_drops(),
        ),
    );
    assert!(failures.is_empty(), "failed clients: {failures:#?}");
    assert_eq!(st.get("closed_quit"), quits, "sessions ended by quit");
    assert_eq!(st.get("closed_error"), 0, "sessions ended by an error");
}
