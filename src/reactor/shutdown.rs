//! The loop's shutdown steps: a stop signal starts the drain (step 3), the
//! drain's deadline ends the echo and the closing stage ends the loop (step 8).
//! What each stage means lives in `crate::shutdown`.

use super::*;

impl Reactor {
    /// Stops accepting and lets every connection finish what it was sent.
    pub(super) fn begin_shutdown(&mut self, now: Instant) {
        // Clients whose handshake the kernel has completed think they are
        // connected and may have sent data: closing the listener would
        // reset them. Take them in to be drained, then refuse the rest.
        self.accept(now, true);
        self.acceptor.close();
        // Datagrams are answered or not, never half done: nothing to drain.
        self.udp.clear();
        info!(
            "shutting down: draining {} (at most {}s)",
            crate::connections(self.connections.len()),
            self.shutdown.drain_timeout().as_secs_f64()
        );
        for (_, connection) in self.connections.iter_mut() {
            connection.begin_shutdown();
        }
    }

    /// Step 8.
    pub(super) fn poll_shutdown(&mut self, now: Instant) -> Option<Stats> {
        if self.shutdown.drain_expired(now) {
            info!(
                "shutdown timeout: closing {} that did not finish",
                crate::connections(self.connections.len())
            );
            // Each is served next turn, in step 5, like any queued
            // connection: none gets a second share in this turn.
            let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
            for key in keys {
                let connection = &mut self.connections[key];
                match connection.end_input(&mut self.shared) {
                    Some(next) => self.after_serving(key, next),
                    None => self.run_queue.push(key, connection),
                }
            }
        }
        match self.shutdown.mode() {
            Mode::Serving => None,
            _ if self.connections.is_empty() => Some(self.finish()),
            Mode::Closing { until } if now >= until => Some(self.finish()),
            Mode::Draining { .. } | Mode::Closing { .. } => None,
        }
    }

    /// Closes what is left and returns the totals.
    pub(super) fn finish(&mut self) -> Stats {
        let keys: Vec<usize> = self.connections.iter().map(|(key, _)| key).collect();
        for key in keys {
            // One that was lingering had already ended for its own reason.
            let connection = &self.connections[key];
            let reason = match connection.is_lingering() {
                true => connection.close_reason(),
                false => CloseReason::Shutdown,
            };
            self.close(key, reason);
        }
        self.stats()
    }
}
