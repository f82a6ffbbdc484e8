//! Counters an operator asks for: logged on SIGUSR1 and at exit.

use std::fmt;

use crate::connection::CloseReason;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub accepted: u64,
    /// Open connections now: filled in from the slab when the stats are read.
    pub active: u64,
    pub closed_client: u64,
    pub closed_quit: u64,
    pub closed_idle: u64,
    pub closed_error: u64,
    pub closed_shutdown: u64,
    /// Bytes read from clients, including input discarded after `quit`:
    /// it can exceed `bytes_out`.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Loop turns that accepted at least one connection; with
    /// `largest_batch`, shows whether `--accept-batch` ever cuts a batch short.
    pub accept_batches: u64,
    pub largest_batch: u64,
    /// Accepting paused because the process ran out of descriptors or memory
    /// (or epoll watches).
    pub accept_pauses_fd: u64,
    /// Accepting paused because `--max-connections` were open.
    pub accept_pauses_limit: u64,
    /// Times a connection's echo buffer filled and reading from it stopped.
    pub backpressure_pauses: u64,
    /// Memory held for pending echo across all connections (what
    /// `--max-memory` bounds), now and at most.
    pub pending_bytes: u64,
    pub pending_peak: u64,
    /// Times reading from a connection stopped because the memory budget
    /// (`--max-memory`) was spent.
    pub memory_pauses: u64,
    /// Datagrams received on `--udp` sockets, and echoed back.
    pub udp_in: u64,
    pub udp_out: u64,
    /// Datagrams not echoed because the socket would block or the send
    /// failed (UDP may drop; nothing is queued).
    pub udp_dropped: u64,
    /// Datagrams from port 0 or from another always-answering UDP service
    /// (echo, daytime, qotd, chargen, time), never answered: two such
    /// services would bounce one spoofed datagram forever.
    pub udp_refused: u64,
    /// PROXY listener connections closed because their header was missing,
    /// malformed, too long or too slow.
    pub proxy_errors: u64,
    /// PROXY listener connections closed at accept: the peer is outside
    /// `--proxy-trust`.
    pub proxy_refused: u64,
}

impl Stats {
    /// A connection's pending echo went from `before` to `after` bytes.
    pub fn note_pending(&mut self, before: usize, after: usize) {
        self.pending_bytes = self.pending_bytes + after as u64 - before as u64;
        self.pending_peak = self.pending_peak.max(self.pending_bytes);
    }

    pub fn record_close(&mut self, reason: CloseReason) {
        *match reason {
            CloseReason::Client => &mut self.closed_client,
            CloseReason::Quit => &mut self.closed_quit,
            CloseReason::Idle => &mut self.closed_idle,
            CloseReason::Error => &mut self.closed_error,
            CloseReason::Shutdown => &mut self.closed_shutdown,
        } += 1;
    }
}

/// `key=value` pairs on one line, easy to grep and to parse.
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "accepted={} active={} closed_client={} closed_quit={} closed_idle={} \
             closed_error={} closed_shutdown={} bytes_in={} bytes_out={} accept_batches={} \
             largest_batch={} accept_pauses_fd={} accept_pauses_limit={} backpressure_pauses={} \
             pending_bytes={} pending_peak={} memory_pauses={} udp_in={} udp_out={} \
             udp_dropped={} udp_refused={} proxy_errors={} proxy_refused={}",
            self.accepted,
            self.active,
            self.closed_client,
            self.closed_quit,
            self.closed_idle,
            self.closed_error,
            self.closed_shutdown,
            self.bytes_in,
            self.bytes_out,
            self.accept_batches,
            self.largest_batch,
            self.accept_pauses_fd,
            self.accept_pauses_limit,
            self.backpressure_pauses,
            self.pending_bytes,
            self.pending_peak,
            self.memory_pauses,
            self.udp_in,
            self.udp_out,
            self.udp_dropped,
            self.udp_refused,
            self.proxy_errors,
            self.proxy_refused,
        )
    }
}
