//! The swarm driver: many nonblocking clients on one mio poll that connect
//! at once, send one line, read its echo and close, or hold the connection
//! until released (to keep the server at a limit: fds, connections).

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

struct SwarmClient {
    stream: Option<MioStream>,
    msg: Vec<u8>,
    written: usize,
    got: Vec<u8>,
    connected: bool,
    echoed: bool,
    err: Option<String>,
}

/// Many nonblocking clients on one mio poll that connect, send one line,
/// read its echo and close, or hold the connection until `release`.
pub struct Swarm {
    poll: Poll,
    events: Events,
    clients: Vec<SwarmClient>,
    hold: bool,
    /// Clients that got their whole echo, and clients that failed.
    pub echoed: usize,
    pub failed: usize,
}

impl Swarm {
    /// Starts `n` nonblocking connects at once; with `hold`, clients keep
    /// their connection open after the echo.
    pub fn new(addr: SocketAddr, n: usize, hold: bool) -> Swarm {
        let poll = Poll::new().unwrap();
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            let mut s = MioStream::connect(addr).expect("nonblocking connect");
            poll.registry()
                .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)
                .unwrap();
            clients.push(SwarmClient {
                stream: Some(s),
                msg: format!("swarm client {i:05} says hello\n").into_bytes(),
                written: 0,
                got: Vec::new(),
                connected: false,
                echoed: false,
                err: None,
            });
        }
        Swarm {
            poll,
            events: Events::with_capacity(1024),
            clients,
            hold,
            echoed: 0,
            failed: 0,
        }
    }

    fn close(&mut self, i: usize) {
        if let Some(mut s) = self.clients[i].stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
    }

    fn fail(&mut self, i: usize, e: String) {
        self.clients[i].err = Some(e);
        self.failed += 1;
        self.close(i);
    }

    fn service(&mut self, i: usize) {
        if self.clients[i].stream.is_none() || self.clients[i].echoed {
            return;
        }
        if !self.clients[i].connected {
            let s = self.clients[i].stream.as_ref().unwrap();
            match s.take_error() {
                Ok(Some(e)) | Err(e) => return self.fail(i, format!("connect: {e}")),
                Ok(None) => {}
            }
            match s.peer_addr() {
                Ok(_) => self.clients[i].connected = true,
                Err(e) if e.kind() == ErrorKind::NotConnected => return,
                Err(e) => return self.fail(i, format!("connect: {e}")),
            }
        }
        // Write what is left of the line.
        loop {
            let c = &mut self.clients[i];
            if c.written == c.msg.len() {
                break;
            }
            match c.stream.as_mut().unwrap().write(&c.msg[c.written..]) {
                Ok(n) => c.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.fail(i, format!("write: {e}")),
            }
        }
        // Read the echo.
        let mut buf = [0u8; 256];
        loop {
            let c = &mut self.clients[i];
            match c.stream.as_mut().unwrap().read(&mut buf) {
                Ok(0) => {
                    let got = c.got.len();
                    return self.fail(i, format!("EOF after {got} echo bytes"));
                }
                Ok(n) => {
                    c.got.extend_from_slice(&buf[..n]);
                    if c.got.len() >= c.msg.len() {
                        if c.got != c.msg {
                            return self.fail(i, "echo differs".to_string());
                        }
                        c.echoed = true;
                        self.echoed += 1;
                        if !self.hold {
                            self.close(i);
                        }
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.fail(i, format!("read: {e}")),
            }
        }
    }

    /// One poll round: serves every client that became ready.
    pub fn step(&mut self, wait: Duration) {
        match self.poll.poll(&mut self.events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("poll: {e}"),
        }
        let ready: Vec<usize> = self.events.iter().map(|e| e.token().0).collect();
        for i in ready {
            self.service(i);
        }
    }

    /// Every client either echoed or failed.
    pub fn settled(&self) -> bool {
        self.echoed + self.failed == self.clients.len()
    }

    /// Close every held connection that got its echo; later ones close at once.
    pub fn release(&mut self) {
        self.hold = false;
        for i in 0..self.clients.len() {
            if self.clients[i].echoed {
                self.close(i);
            }
        }
    }

    /// The first `max` client errors, for assertion messages.
    pub fn errors(&self, max: usize) -> Vec<String> {
        self.clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.err.as_ref().map(|e| format!("#{i}: {e}")))
            .take(max)
            .collect()
    }
}
