//! Reset storm: many clients each send 64 KiB and close with an RST
//! (SO_LINGER 0) without reading anything. Asserts the server survives and
//! still echoes, accepted every connection, and has no connection and no
//! extra fd left afterwards.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use socket2::SockRef;

use crate::common::*;
use crate::ms;

#[test]
fn reset_storm() {
    let _g = serial();
    let n = scale(200, 2000);
    let threads = 8;
    let server = ServerProcess::start(&[]);
    let base_fds = server.fd_count();
    let t0 = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let addr = server.addr;
            let sent = sent.clone();
            let mine = n / threads + usize::from(t < n % threads);
            thread::spawn(move || {
                let payload = vec![b'r'; 64 * 1024];
                let mut left = mine;
                while left > 0 {
                    let batch = left.min(25);
                    let mut socks = Vec::new();
                    for _ in 0..batch {
                        socks.push(try_connect(addr, Duration::from_secs(20)).expect("connect"));
                    }
                    for s in socks.iter_mut() {
                        s.write_all(&payload).expect("write 64 KiB");
                        sent.fetch_add(payload.len() as u64, Ordering::Relaxed);
                    }
                    for s in socks {
                        SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
                        drop(s); // RST, nothing read
                    }
                    left -= batch;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("storm thread panicked");
    }
    let storm = t0.elapsed();
    let (st, fds, settle) = server.wait_settled(base_fds, Duration::from_secs(20));
    let alive = server.echo_check(b"after the storm\n");
    figure(
        "reset-storm",
        &format!(
            "{n} conns sent {:.0} MiB and reset in {:.2} s; server alive: {}, fds {base_fds} -> {fds}, active {} (settled {:.0} ms after), accepted={} closed_error={} closed_client={}",
            mib(sent.load(Ordering::Relaxed)),
            storm.as_secs_f64(),
            alive.is_ok(),
            st.get("active"),
            ms(settle),
            st.get("accepted"),
            st.get("closed_error"),
            st.get("closed_client"),
        ),
    );
    alive.expect("server does not echo after the storm");
    assert_eq!(fds, base_fds, "fd count not back to baseline");
    assert_eq!(st.get("active"), 0);
    assert_eq!(st.get("accepted"), n as u64);
}
