//! Real HAProxy in front of a PROXY listener: one backend with
//! `send-proxy` (v1), one with `send-proxy-v2`. Echo through it is exact
//! and the server's debug log names the client HAProxy saw.
//!
//! HAProxy must be installed (Debian: `apt-get install haproxy`; `make
//! test-deps`). A missing haproxy fails this test; it does not skip it.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use super::{binary, proxy_server, wait_connection_line};
use crate::common::*;

/// A running haproxy (foreground, `-db`) with one frontend per backend
/// line; killed on drop.
struct Haproxy {
    child: Child,
    frontends: Vec<SocketAddr>,
    log: Arc<Log>,
    _dir: TempDir,
}

impl Haproxy {
    /// One frontend on a free loopback port for each `server` line.
    fn start(servers: &[String]) -> Haproxy {
        let dir = TempDir::new("haproxy-proxy");
        let frontends: Vec<SocketAddr> = servers
            .iter()
            .map(|_| format!("127.0.0.1:{}", free_port()).parse().unwrap())
            .collect();
        let mut config = String::from(
            "defaults\n    mode tcp\n    timeout connect 2s\n    \
             timeout client 30s\n    timeout server 30s\n",
        );
        for (i, (frontend, server)) in frontends.iter().zip(servers).enumerate() {
            config += &format!(
                "frontend f{i}\n    bind {frontend}\n    default_backend b{i}\n\
                 backend b{i}\n    {server}\n"
            );
        }
        let (child, log) = start_haproxy(&dir.0, &config);
        Haproxy {
            child,
            frontends,
            log,
            _dir: dir,
        }
    }

    /// A client of frontend `i`: connecting is retried while HAProxy is
    /// still starting (refused), for at most 10 s.
    fn connect(&mut self, i: usize) -> TcpStream {
        let mut stream = None;
        let up = wait_until(Duration::from_secs(10), Duration::from_millis(10), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("haproxy exited: {status}\n{}", self.log.dump());
            }
            stream = try_connect(self.frontends[i], IO_TIMEOUT).ok();
            stream.is_some()
        });
        assert!(
            up,
            "haproxy's frontend {} never accepted",
            self.frontends[i]
        );
        stream.unwrap()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `data` from a thread, half-closes, and reads everything back until
/// EOF (the echo may need to be read before the sending can finish).
fn echo_all(stream: TcpStream, data: Arc<Vec<u8>>) -> Vec<u8> {
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        writer.write_all(&data).expect("write through haproxy");
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    let mut reader = stream;
    reader
        .read_to_end(&mut got)
        .expect("read the echo through haproxy");
    sender.join().unwrap();
    got
}

#[test]
fn haproxy_send_proxy_v1_and_v2_echo_exactly_and_name_the_client() {
    let (server, addr) = proxy_server(&[]);
    let mut haproxy = Haproxy::start(&[
        format!("server v1 {addr} send-proxy"),
        format!("server v2 {addr} send-proxy-v2"),
    ]);
    let data = Arc::new(binary(1024 * 1024, 42));
    for (i, version) in ["v1", "v2"].iter().enumerate() {
        let stream = haproxy.connect(i);
        let client = stream.local_addr().unwrap();
        let got = echo_all(stream, Arc::clone(&data));
        assert_eq!(got.len(), data.len(), "{version}: echo length");
        assert!(
            got == *data,
            "{version}: the echo differs from what was sent"
        );
        // HAProxy's own address to the server is `via`; the header names
        // the test client as HAProxy saw it.
        let line = wait_connection_line(&server, &format!(" from {client} via 127.0.0.1:"));
        assert!(
            line.ends_with(&format!("(PROXY {version})")),
            "{version}: {line}"
        );
    }
    let stats = server.stats_until(Duration::from_secs(10), |s| s.get("active") == 0);
    assert_eq!(stats.get("proxy_errors"), 0, "{stats:?}");
    assert_eq!(stats.get("bytes_out"), 2 * data.len() as u64, "{stats:?}");
}
