//! Connections and UDP sockets that used their share of a turn with work
//! left: served next turn without waiting for an event (edge-triggered
//! polling will not report input that is already there again). And the
//! connections that stopped reading for the memory budget, waiting for it
//! to free.
//!
//! Each is in the queue at most once (its `queued` flag), and what is queued
//! during a turn is served in the next one, never the same: so none gets
//! more than one share between two polls.

use std::collections::VecDeque;

use slab::Slab;

use crate::connection::Connection;
use crate::udp::UdpEcho;

/// A connection as the queue names it: slab key plus id, since a key is
/// reused once its connection closes.
pub type ConnRef = (usize, u64);

/// What the run queue holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Connection(ConnRef),
    /// A UDP socket, by its index among the UDP sockets.
    Udp(usize),
}

#[derive(Debug, Default)]
pub struct RunQueue {
    /// Queued this turn, for the next.
    next: Vec<Entry>,
    /// Queued last turn, being served in this one.
    current: Vec<Entry>,
}

impl RunQueue {
    /// Queues connection `key` for the next turn, unless it already is.
    pub fn push(&mut self, key: usize, connection: &mut Connection) {
        if !connection.queued {
            connection.queued = true;
            self.next.push(Entry::Connection((key, connection.id)));
        }
    }

    /// Queues UDP socket `index` for the next turn, unless it already is.
    pub fn push_udp(&mut self, index: usize, socket: &mut UdpEcho) {
        if !socket.queued {
            socket.queued = true;
            self.next.push(Entry::Udp(index));
        }
    }

    /// Begins a turn: what was queued in the last one is now due.
    pub fn start_turn(&mut self) {
        debug_assert!(self.current.is_empty());
        std::mem::swap(&mut self.next, &mut self.current);
    }

    /// This turn's connections, to serve; hand the vector back with
    /// `finish_turn` so its memory is reused.
    pub fn take_current(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.current)
    }

    pub fn finish_turn(&mut self, mut served: Vec<Entry>) {
        served.clear();
        self.current = served;
    }

    /// Connections waiting for the next turn.
    pub fn len(&self) -> usize {
        self.next.len()
    }

    /// True when the next turn has no work unless an event brings some: the
    /// poll may block.
    pub fn is_empty(&self) -> bool {
        self.next.is_empty()
    }
}

/// Connections that stopped reading because the memory budget was spent,
/// oldest first. No event of theirs says when the budget frees, so the loop
/// wakes them. Each is in it at most once (`Connection::awaiting_memory`).
#[derive(Debug, Default)]
pub struct MemoryWaiters {
    waiting: VecDeque<ConnRef>,
}

impl MemoryWaiters {
    pub fn push(&mut self, key: usize, connection: &mut Connection) {
        if !connection.awaiting_memory {
            connection.awaiting_memory = true;
            self.waiting.push_back((key, connection.id));
        }
    }

    /// Queues waiters for the next turn, oldest first, as many as `room`
    /// bytes of budget could serve a `share` each.
    pub fn wake(
        &mut self,
        mut room: u64,
        share: u64,
        connections: &mut Slab<Connection>,
        run_queue: &mut RunQueue,
    ) {
        while room > 0 {
            let Some((key, id)) = self.waiting.pop_front() else {
                break;
            };
            // It may have closed since.
            let Some(connection) = connections.get_mut(key).filter(|c| c.id == id) else {
                continue;
            };
            connection.awaiting_memory = false;
            run_queue.push(key, connection);
            room = room.saturating_sub(share);
        }
    }
}
