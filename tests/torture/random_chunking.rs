//! Random chunking: many clients each send a random amount of q-free random
//! bytes in random chunks (1 B..64 KiB) with random pauses, reading their
//! echo at the same time. Asserts every echo identical to what was sent
//! (hashes of both streams), a clean EOF on every connection, and the
//! server's byte counters equal to what the clients moved.

use std::time::Instant;

use crate::common::drivers::ChunkRun;
use crate::common::*;
use crate::{secs, KIB};

#[test]
fn random_chunking() {
    let _g = serial();
    let n = scale(100, 1000);
    let max_total = scale(128 * KIB, 1600 * KIB);
    let server = ServerProcess::start(&[]);
    let t0 = Instant::now();
    let mut run = ChunkRun::new(server.addr, n, max_total, scale(5, 20), 0x5eed_0001);
    let deadline = t0 + secs(scale(40.0, 120.0));
    run.run_until(deadline, |_| false);
    let elapsed = t0.elapsed();
    let failures = run.failures();
    let verified = run.echoed();
    let chunks: u64 = run.conns.iter().map(|c| c.chunks).sum();
    let pauses: u64 = run.conns.iter().map(|c| c.pauses).sum();
    let st = server.stats();
    figure(
        "random-chunking",
        &format!(
            "{n} conns, {:.1} MiB verified by hash, {} lost ({} failed conns), {chunks} chunks of 1 B..64 KiB, {pauses} pauses, {:.1} s ({:.0} MiB/s each way); server bytes_in={} bytes_out={}",
            mib(verified),
            run.sent() - verified.min(run.sent()),
            failures.len(),
            elapsed.as_secs_f64(),
            mib(verified) / elapsed.as_secs_f64(),
            st.get("bytes_in"),
            st.get("bytes_out"),
        ),
    );
    assert!(failures.is_empty(), "failed connections: {failures:?}");
    assert_eq!(st.get("bytes_in"), run.sent(), "server bytes_in");
    assert_eq!(st.get("bytes_out"), verified, "server bytes_out");
    assert_eq!(st.get("active"), 0);
}
