//! The end of a connection's life: once all echo is out, shut the write
//! side and linger, dropping input until the client closes, so that the
//! close sends FIN, not an RST that could destroy echo already sent.

use std::io::{self, Read};
use std::net::Shutdown;

use super::{Connection, Next, Phase, Shared, READS_PER_TURN};

impl Connection {
    /// All echo is out and no more will be echoed.
    pub(super) fn finish_flushed(&mut self, shared: &mut Shared) -> Next {
        if self.eof {
            // The client closed its side and all its input is read: closing
            // now sends a clean FIN.
            return Next::Close(self.reason);
        }
        // The client may still send: shut our side so it sees EOF, then
        // read and drop its input until it closes.
        match self.stream.shutdown(Shutdown::Write) {
            Ok(()) => {}
            // The client already went away.
            Err(err) if err.kind() == io::ErrorKind::NotConnected => {
                return Next::Close(self.reason)
            }
            Err(err) => return self.fail(shared, &err),
        }
        self.phase = Phase::Lingering;
        self.deadline_moved = true;
        self.last_active = shared.now;
        self.discard_input(shared)
    }

    /// Lingering: reads and drops input until the client closes.
    pub(super) fn discard_input(&mut self, shared: &mut Shared) -> Next {
        let mut reads_left = READS_PER_TURN;
        let mut share_left = shared.buf.len();
        while self.readable {
            if reads_left == 0 || share_left == 0 {
                return Next::Yield;
            }
            reads_left -= 1;
            match self.stream.read(&mut shared.buf[..share_left]) {
                Ok(0) => return Next::Close(self.reason),
                Ok(n) => {
                    shared.stats.bytes_in += n as u64;
                    self.note_read(n, share_left);
                    share_left -= n;
                }
                // Drained: the next byte (or the FIN) brings a new edge.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => self.note_drained(),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                // The client reset instead of closing: our echo was already
                // flushed, and there is nothing left to protect.
                Err(_) => return Next::Close(self.reason),
            }
        }
        Next::Wait
    }
}
