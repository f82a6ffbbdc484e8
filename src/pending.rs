//! Echo a socket has not taken yet: the one buffer a connection owns, and
//! only while its client reads slower than it writes.

use std::io::{self, IoSlice, Write};

#[derive(Debug, Default)]
pub struct PendingEcho {
    /// `None`, with nothing allocated, while the socket takes every write:
    /// most connections never queue, and behind a pointer the queue costs
    /// an idle connection 8 bytes instead of 32. Never `Some` and empty.
    queue: Option<Box<Queue>>,
}

#[derive(Debug, Default)]
struct Queue {
    bytes: Vec<u8>,
    /// How much of `bytes` is already written: a partial write moves this
    /// mark instead of moving bytes.
    sent: usize,
}

impl PendingEcho {
    /// Bytes owed to the socket.
    pub fn len(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.bytes.len() - q.sent)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_none()
    }

    /// Memory held for it: what a budget across connections must count.
    pub fn footprint(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.bytes.capacity())
    }

    /// Sends `first` then `second` (the quit rule's released bytes and the
    /// echo) to `socket`, keeping whatever it does not take now, in at most
    /// `limit` bytes of memory unless it needs more. Returns how many bytes
    /// the socket took.
    pub fn send(
        &mut self,
        socket: &mut impl Write,
        first: &[u8],
        second: &[u8],
        limit: usize,
    ) -> io::Result<usize> {
        if first.is_empty() && second.is_empty() {
            return Ok(0);
        }
        if let Some(queue) = &mut self.queue {
            // The socket is full (or this would overtake queued bytes).
            queue.push(first, second, limit);
            return Ok(0);
        }
        let written = loop {
            let result = if first.is_empty() {
                socket.write(second)
            } else {
                socket.write_vectored(&[IoSlice::new(first), IoSlice::new(second)])
            };
            match result {
                Ok(n) => break n,
                // Full: the writable edge will flush the queue.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break 0,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        };
        // A short write means the socket buffer is full; retrying now would
        // only return WouldBlock.
        if written < first.len() + second.len() {
            let (first, second) = if written < first.len() {
                (&first[written..], second)
            } else {
                (&b""[..], &second[written - first.len()..])
            };
            let mut queue = Box::<Queue>::default();
            queue.push(first, second, limit);
            self.queue = Some(queue);
        }
        Ok(written)
    }

    /// Writes what is owed until it is all out or the socket is full.
    /// Returns how many bytes the socket took.
    pub fn flush(&mut self, socket: &mut impl Write) -> io::Result<usize> {
        let Some(queue) = &mut self.queue else {
            return Ok(0);
        };
        let mut written = 0;
        while queue.sent < queue.bytes.len() {
            match socket.write(&queue.bytes[queue.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written += n;
                    queue.sent += n;
                    if queue.sent < queue.bytes.len() {
                        // Short write: the socket is full again.
                        break;
                    }
                }
                // Full: wait for the next writable edge.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        if queue.sent == queue.bytes.len() {
            // Give the memory back: an idle connection should cost no buffer.
            self.queue = None;
        }
        Ok(written)
    }
}

impl Queue {
    fn push(&mut self, first: &[u8], second: &[u8], limit: usize) {
        if self.sent > 0 {
            // Reclaim the written prefix so the buffer stays within bounds.
            self.bytes.drain(..self.sent);
            self.sent = 0;
        }
        let needed = self.bytes.len() + first.len() + second.len();
        if needed > self.bytes.capacity() {
            // Double, as a Vec would, but not past `limit`: the memory held
            // is what the budget counts.
            let grown = (self.bytes.capacity() * 2).min(limit).max(needed);
            self.bytes.reserve_exact(grown - self.bytes.len());
        }
        self.bytes.extend_from_slice(first);
        self.bytes.extend_from_slice(second);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes at most `room` more bytes, then says WouldBlock.
    #[derive(Default)]
    struct Socket {
        taken: Vec<u8>,
        room: usize,
    }

    impl Write for Socket {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.taken.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn what_the_socket_refuses_waits_in_order_and_goes_out_on_flush() {
        let mut socket = Socket {
            room: 3,
            ..Socket::default()
        };
        let mut pending = PendingEcho::default();
        // (This socket's vectored write takes the first slice only.)
        assert_eq!(pending.send(&mut socket, b"ab", b"cdef", 64).unwrap(), 2);
        assert_eq!(pending.len(), 4);
        // Later echo queues behind, never overtakes.
        assert_eq!(pending.send(&mut socket, b"", b"gh", 64).unwrap(), 0);
        socket.room = 5;
        assert_eq!(pending.flush(&mut socket).unwrap(), 5);
        assert_eq!(pending.len(), 1);
        socket.room = 10;
        assert_eq!(pending.flush(&mut socket).unwrap(), 1);
        assert_eq!(socket.taken, b"abcdefgh");
        assert!(pending.is_empty());
        assert_eq!(pending.footprint(), 0, "memory kept after draining");
    }

    #[test]
    fn a_socket_that_takes_everything_leaves_nothing_allocated() {
        let mut socket = Socket {
            room: 100,
            ..Socket::default()
        };
        let mut pending = PendingEcho::default();
        assert_eq!(pending.send(&mut socket, b"", b"hello", 64).unwrap(), 5);
        assert!(pending.is_empty());
        assert_eq!(pending.footprint(), 0);
    }

    #[test]
    fn the_memory_held_grows_by_doubling_but_not_past_the_limit() {
        let mut socket = Socket::default();
        let mut pending = PendingEcho::default();
        for _ in 0..5 {
            pending.send(&mut socket, b"", &[0; 1000], 4096).unwrap();
        }
        assert_eq!(pending.len(), 5000);
        assert_eq!(
            pending.footprint(),
            5000,
            "past the limit: only what it needs"
        );
        let mut pending = PendingEcho::default();
        for _ in 0..3 {
            pending.send(&mut socket, b"", &[0; 1000], 4096).unwrap();
        }
        assert_eq!(
            pending.footprint(),
            4000,
            "doubled from 2000, capped at 4096"
        );
    }
}
