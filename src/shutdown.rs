//! Serving, or shutting down: what SIGINT, SIGTERM and SIGHUP ask for, and
//! the deadlines of a graceful shutdown.
//!
//! A shutdown has two stages. Draining: new clients are refused, and every
//! connection is echoed until its client closes its side, sends a quit line
//! or fails. Nothing else proves that a client has sent its last byte (TCP
//! may retransmit it after any quiet spell), so a client that stays
//! connected holds the drain until `--shutdown-timeout`. Closing: at that
//! deadline what is left stops echoing, flushes, shuts its write side and
//! lingers (at most `linger`) so that closing sends FIN, not RST.

use std::time::{Duration, Instant};

/// Signals this close together are one request: Ctrl-C reaches every
/// process of the terminal's group, and a wrapper script or systemd's
/// `KillMode=control-group` may send SIGTERM right after it.
pub const SAME_REQUEST: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Serving,
    /// Echoing until every client is done, or `until`.
    Draining {
        until: Instant,
    },
    /// Lingering what is left, then exit at `until`.
    Closing {
        until: Instant,
    },
}

/// What a stop signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// The first: begin draining.
    Drain,
    /// Part of the request already being served: nothing new.
    Same,
    /// A deliberate second request: close everything now.
    ExitNow,
}

pub struct Shutdown {
    mode: Mode,
    /// When the first stop signal arrived.
    requested_at: Option<Instant>,
    drain_timeout: Duration,
    linger: Duration,
}

impl Shutdown {
    pub fn new(drain_timeout: Duration, linger: Duration) -> Self {
        Shutdown {
            mode: Mode::Serving,
            requested_at: None,
            drain_timeout,
            linger,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// `--shutdown-timeout`.
    pub fn drain_timeout(&self) -> Duration {
        self.drain_timeout
    }

    /// A stop signal arrived at `now`.
    pub fn request(&mut self, now: Instant) -> Request {
        match self.requested_at {
            None => {
                self.requested_at = Some(now);
                self.mode = Mode::Draining {
                    until: now + self.drain_timeout,
                };
                Request::Drain
            }
            Some(first) if now.saturating_duration_since(first) < SAME_REQUEST => Request::Same,
            Some(_) => Request::ExitNow,
        }
    }

    /// Moves from draining to closing once the drain deadline passed; true
    /// when that happened now, so the caller closes what is left.
    pub fn drain_expired(&mut self, now: Instant) -> bool {
        match self.mode {
            Mode::Draining { until } if now >= until => {
                // From the deadline, not from the turn that noticed it: the
                // exit comes at most `drain_timeout + linger` after the signal.
                self.mode = Mode::Closing {
                    until: until + self.linger,
                };
                true
            }
            _ => false,
        }
    }

    /// The next moment the mode needs a look, for the poll timeout.
    pub fn deadline(&self) -> Option<Instant> {
        match self.mode {
            Mode::Serving => None,
            Mode::Draining { until } | Mode::Closing { until } => Some(until),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn signals_together_are_one_request_and_a_later_one_exits() {
        let start = Instant::now();
        let mut shutdown = Shutdown::new(5 * SECOND, 2 * SECOND);
        assert_eq!(shutdown.request(start), Request::Drain);
        assert_eq!(shutdown.request(start), Request::Same);
        assert_eq!(shutdown.request(start + SAME_REQUEST / 2), Request::Same);
        assert_eq!(shutdown.request(start + SAME_REQUEST), Request::ExitNow);
    }

    #[test]
    fn the_drain_turns_into_closing_at_its_deadline() {
        let start = Instant::now();
        let mut shutdown = Shutdown::new(5 * SECOND, 2 * SECOND);
        shutdown.request(start);
        assert!(!shutdown.drain_expired(start + 4 * SECOND));
        // Noticed a little late, as a busy turn may.
        assert!(shutdown.drain_expired(start + 5 * SECOND + SECOND / 10));
        assert!(!shutdown.drain_expired(start + 6 * SECOND));
        assert_eq!(
            shutdown.mode(),
            Mode::Closing {
                until: start + 7 * SECOND
            }
        );
    }
}
