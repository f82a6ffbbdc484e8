//! The first phase of a PROXY listener's connection: the header, read and
//! removed before anything is echoed.

use std::io::{self, Read};

use super::{CloseReason, Connection, Next, Phase, Shared};
use crate::proxy_header::{self, Addresses, Parsed};

impl Connection {
    /// PROXY listener: reads the header, once whole, off the stream; the
    /// client's data after it is then echoed like any other (a line starts
    /// right after it). Peeks until then, so no memory is held for a header
    /// that arrives in pieces. `None` once the header is gone.
    pub(super) fn read_header(&mut self, shared: &mut Shared) -> Option<Next> {
        if !self.readable {
            return Some(Next::Wait);
        }
        // The read buffer holds the longest header allowed.
        debug_assert!(shared.buf.len() >= proxy_header::MAX_HEADER);
        let bytes = &mut shared.buf[..proxy_header::MAX_HEADER];
        let n = match self.stream.peek(bytes) {
            // Gone before saying anything (a TCP health check, say).
            Ok(0) => return Some(Next::Close(self.reason)),
            Ok(n) => n,
            // Not all there yet: the next segment brings a new edge.
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                return Some(Next::Wait);
            }
            // Nothing was read: the next turn tries again.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => return Some(Next::Yield),
            Err(err) => return Some(self.fail(shared, &err)),
        };
        let header = match proxy_header::parse(&bytes[..n]) {
            Parsed::Complete(header) => header,
            // Linux ends every read at the urgent mark: a header with urgent
            // data inside would look incomplete until its deadline.
            Parsed::Incomplete if self.urgent => {
                return Some(self.refuse(shared, "urgent data inside the header"))
            }
            Parsed::Incomplete if !self.read_closed => {
                // The rest comes as a new segment, with a new edge.
                self.readable = false;
                return Some(Next::Wait);
            }
            Parsed::Incomplete => return Some(self.refuse(shared, "the client closed mid-header")),
            Parsed::Invalid(reason) => return Some(self.refuse(shared, &reason)),
        };
        // The bytes are queued (the peek saw them): one read takes exactly
        // the header and leaves the data.
        match self.stream.read(&mut shared.buf[..header.len]) {
            Ok(n) if n == header.len => {}
            Ok(_) => return Some(self.refuse(shared, "the header shrank between peek and read")),
            Err(err) => return Some(self.fail(shared, &err)),
        }
        shared.stats.bytes_in += header.len as u64;
        self.phase = Phase::Open;
        self.last_active = shared.now;
        // The idle timeout applies from now, not the header's deadline.
        self.deadline_moved = true;
        if log::log_enabled!(log::Level::Debug) {
            self.log_header(header);
        }
        None
    }

    /// The debug line naming the client the load balancer forwards.
    fn log_header(&self, header: proxy_header::Header) {
        let peer = self.peer();
        let (id, version) = (self.id, header.version);
        match header.addresses {
            Addresses::Proxied { source, .. } => {
                log::debug!("connection {id} from {source} via {peer} (PROXY v{version})")
            }
            Addresses::Local => log::debug!("connection {id} from {peer} (PROXY v{version} LOCAL)"),
            Addresses::Unknown => {
                log::debug!("connection {id} from {peer} (PROXY v{version} UNKNOWN)")
            }
        }
    }

    /// Not a PROXY header: closed without echoing, logged at debug only (a
    /// port scanner must not fill the log).
    fn refuse(&self, shared: &mut Shared, reason: &str) -> Next {
        shared.stats.proxy_errors += 1;
        if log::log_enabled!(log::Level::Debug) {
            let (id, peer) = (self.id, self.peer());
            log::debug!("connection {id} from {peer}: bad PROXY header: {reason}");
        }
        Next::Close(CloseReason::Error)
    }

    /// The peer's address, for a debug line (asked of the kernel: a
    /// connection does not keep it).
    pub fn peer(&self) -> String {
        self.stream
            .peer_addr()
            .map_or_else(|err| format!("? ({err})"), |addr| addr.to_string())
    }
}
