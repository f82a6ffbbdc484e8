//! Hostile input: streams chosen to break the quit rule's line handling: a
//! long stream without a newline, a huge line starting with `qui`, every
//! byte value (also at a line start), `quit` and `quix` split at every
//! position into segments the server reads one by one, clients that stop
//! after `q`, `qu` or `qui`, and a client that floods on after its quit line.
//! Asserts each echo is exactly what the quit rule says, held-back bytes are
//! neither echoed nor dropped before the decision, and the flood after a
//! quit line ends in EOF at once and a drop after about 2 s.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::drivers::exchange;
use crate::common::*;
use crate::{ms, KIB, MIB};

fn check_case(server: &ServerProcess, name: &str, input: &[u8], total: &mut u64) {
    let (expected, _) = quit_reference(input);
    let got = exchange(server.addr, input);
    *total += input.len() as u64;
    if got != expected {
        let first = got.iter().zip(&expected).position(|(a, b)| a != b);
        panic!(
            "hostile case {name}: sent {} bytes, got {} expected {} (first difference at {first:?})",
            input.len(),
            got.len(),
            expected.len()
        );
    }
}

/// Wait until the server has read `target` bytes in total (stats bytes_in).
fn wait_bytes_in(server: &ServerProcess, target: u64) {
    let ok = wait_until(Duration::from_secs(10), Duration::from_millis(2), || {
        server.stats().get("bytes_in") >= target
    });
    assert!(ok, "server never read up to byte {target}");
}

#[test]
fn hostile_input() {
    let _g = serial();
    let server = ServerProcess::start(&[]);
    let mut rng = Rng::new(0x5eed_0005);
    let mut total = 0u64;
    let mut cases = 0;

    // 1. A long stream without any newline (quit bytes anywhere but at the start).
    let big = scale(MIB, 10 * MIB) as usize;
    let mut data = vec![0u8; big];
    rng.fill(&mut data);
    for b in data.iter_mut() {
        if *b == b'\n' {
            *b = b' ';
        }
    }
    data[0] = b'x';
    check_case(&server, "no-newline", &data, &mut total);
    cases += 1;

    // 2. A 1 MiB line starting with `qui` then `x`, then a real quit line.
    let line_len = scale(256 * KIB, MIB) as usize;
    let mut line = b"quix".to_vec();
    let mut filler = vec![0u8; line_len - 5];
    rng.fill(&mut filler);
    for b in filler.iter_mut() {
        if *b == b'\n' {
            *b = b'q';
        }
    }
    line.extend_from_slice(&filler);
    line.push(b'\n');
    let mut input = line.clone();
    input.extend_from_slice(b"quit\nnever echoed\n");
    assert_eq!(quit_reference(&input).0, line);
    check_case(&server, "qui-x-line", &input, &mut total);
    cases += 1;

    // 3. Every byte value, up and down; then every byte value at a line start
    //    followed by `uit` (only `q` quits).
    let mut all: Vec<u8> = (0..=255u8).collect();
    all.extend((0..=255u8).rev());
    check_case(&server, "all-bytes", &all, &mut total);
    cases += 1;
    let mut starts = Vec::new();
    for b in 0..=255u8 {
        starts.push(b);
        starts.extend_from_slice(b"uit\n");
    }
    check_case(&server, "all-bytes-at-line-start", &starts, &mut total);
    cases += 1;

    // 4. `quit` (and `quix`) split at every position into separate segments,
    //    each segment read by the server before the next is sent.
    let mut split_cases = 0;
    for word in [&b"quit"[..], &b"quix"[..]] {
        for prefix in [&b""[..], &b"hello\n"[..], &b"\r\n"[..]] {
            for mask in 0u8..8 {
                let mut segs: Vec<Vec<u8>> = vec![prefix.to_vec()];
                let mut cur = Vec::new();
                for (k, &b) in word.iter().enumerate() {
                    cur.push(b);
                    if k < 3 && mask & (1 << k) != 0 {
                        segs.push(std::mem::take(&mut cur));
                    }
                }
                cur.extend_from_slice(b"\n");
                segs.push(cur);
                segs.push(b"tail bytes\n".to_vec());
                segs.retain(|s| !s.is_empty());
                let whole: Vec<u8> = segs.concat();
                let (expected, quit) = quit_reference(&whole);
                let mut s = server.connect();
                let mut base = server.stats().get("bytes_in");
                let last = segs.len() - 1;
                for (k, seg) in segs.iter().enumerate() {
                    if s.write_all(seg).is_err() {
                        assert!(quit, "write failed without a quit line");
                        break;
                    }
                    base += seg.len() as u64;
                    // Each segment is read by the server before the next one
                    // is sent (the tail after a quit may be discarded unread).
                    if k < last {
                        wait_bytes_in(&server, base);
                    }
                }
                let _ = s.shutdown(Shutdown::Write);
                let mut got = Vec::new();
                s.read_to_end(&mut got)
                    .unwrap_or_else(|e| panic!("split {segs:?}: read: {e}"));
                assert_eq!(
                    got,
                    expected,
                    "split {:?}: got {:?}",
                    segs.iter()
                        .map(|s| String::from_utf8_lossy(s))
                        .collect::<Vec<_>>(),
                    String::from_utf8_lossy(&got)
                );
                total += whole.len() as u64;
                split_cases += 1;
            }
        }
    }
    cases += split_cases;

    // 5. A client that sends only `q` and waits: nothing comes back, the
    //    connection stays open; at EOF the `q` is echoed. Same after a line.
    let wait = Duration::from_millis(scale(300, 1000));
    for (prefix, held) in [
        (&b""[..], &b"q"[..]),
        (&b"hello\n"[..], &b"qu"[..]),
        (&b"x\r\n"[..], &b"qui"[..]),
    ] {
        let mut s = server.connect();
        let st0 = server.stats();
        let mut input = prefix.to_vec();
        input.extend_from_slice(held);
        s.write_all(&input).unwrap();
        wait_bytes_in(&server, st0.get("bytes_in") + input.len() as u64);
        let mut got = vec![0u8; prefix.len()];
        s.read_exact(&mut got).expect("line before the held bytes");
        assert_eq!(got, prefix);
        s.set_read_timeout(Some(wait)).unwrap();
        let mut one = [0u8; 1];
        match s.read(&mut one) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Ok(0) => panic!("server closed while {held:?} held back"),
            Ok(_) => panic!("server echoed held-back {held:?} before deciding"),
            Err(e) => panic!("read: {e}"),
        }
        let st1 = server.stats();
        assert_eq!(
            st1.get("bytes_out") - st0.get("bytes_out"),
            prefix.len() as u64,
            "bytes_out while {held:?} held back"
        );
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, held, "held-back bytes at EOF");
        total += input.len() as u64;
        cases += 1;
    }
    // 6. After a quit line the client floods on without closing: the echo ends
    //    before the quit line (EOF at once) and the server drops the
    //    connection after about 2 s of discarding.
    let mut s = server.connect();
    s.write_all(b"before\nquit now\n").unwrap();
    let t_quit = Instant::now();
    let mut r = s.try_clone().unwrap();
    let reader = thread::spawn(move || {
        let mut v = Vec::new();
        let res = r.read_to_end(&mut v);
        (v, res.map_err(|e| e.to_string()), t_quit.elapsed())
    });
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let flood = vec![b'f'; 16 * 1024];
    let mut flooded = 0u64;
    let dropped_after = loop {
        assert!(
            t_quit.elapsed() < Duration::from_secs(10),
            "server still takes bytes 10 s after quit ({flooded} flooded)"
        );
        match s.write(&flood) {
            Ok(n) => flooded += n as u64,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break t_quit.elapsed(),
        }
    };
    let (echo, res, eof_after) = reader.join().unwrap();
    assert_eq!(echo, b"before\n", "echo after quit + flood ({res:?})");
    assert!(res.is_ok(), "no clean EOF after quit: {res:?}");
    assert!(
        eof_after < Duration::from_secs(1),
        "EOF only {eof_after:?} after quit"
    );
    assert!(
        dropped_after >= Duration::from_millis(1500) && dropped_after <= Duration::from_secs(4),
        "connection dropped {dropped_after:?} after quit (expected ~2 s)"
    );
    total += 16;
    cases += 1;

    let mut server = server;
    assert!(server.is_running());
    figure(
        "hostile-input",
        &format!(
            "{cases} cases ({split_cases} splits of quit/quix at every position), {:.1} MiB sent, every case echoed exactly as the quit rule says; quit then flood: EOF after {:.0} ms, dropped after {:.2} s ({:.1} MiB discarded); server alive",
            mib(total),
            ms(eof_after),
            dropped_after.as_secs_f64(),
            mib(flooded)
        ),
    );
}
