//! When each connection next needs the loop's attention without an event:
//! its idle deadline, the end of its lingering close, or (on a PROXY
//! listener) the time its header must have arrived by. The connection says
//! what its deadline is (`Connection::deadline`); this type only remembers
//! when to look, on two timing wheels (the idle timeout and the few seconds
//! of lingering or header wait need different tick sizes), with each
//! connection's timer handle kept here by slab key.
//!
//! A timer that fires is only a reason to look: the reactor asks the
//! connection for its deadline again and re-arms when it has moved (an idle
//! timer armed at accept fires for a connection that was active since). That
//! keeps the hot path free of timer work, and makes an early firing harmless.

use std::time::{Duration, Instant};

use crate::timers::{TimerHandle, Wheel};

/// Which wheel a deadline belongs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Idle,
    Linger,
    /// A PROXY header still incomplete (on the short wheel, with lingering).
    Header,
}

/// One connection's timer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Timer {
    #[default]
    Off,
    Armed(Kind, TimerHandle),
    /// Collected from its wheel this turn, not yet acted on.
    Due(Kind),
}

pub struct Deadlines {
    /// `None` when `--idle-timeout` is 0.
    idle: Option<Wheel<usize>>,
    /// Lingering and header deadlines: a few seconds ahead.
    short: Wheel<usize>,
    /// By slab key. A closed connection's entry is `Off`, so a key that is
    /// reused never inherits a timer.
    timers: Vec<Timer>,
    /// Keys collected at the start of the turn, acted on after its events.
    due: Vec<(usize, Kind)>,
    /// Scratch for collecting one wheel.
    expired: Vec<usize>,
}

impl Deadlines {
    /// `short`: the reach of the short wheel, the longest of the linger
    /// time and the header wait (a deadline beyond a wheel's reach is
    /// clamped, and fires early).
    pub fn new(idle_timeout: Option<Duration>, short: Duration, now: Instant) -> Self {
        Deadlines {
            idle: idle_timeout.map(|timeout| Wheel::new(timeout, now)),
            short: Wheel::new(short, now),
            timers: Vec::new(),
            due: Vec::new(),
            expired: Vec::new(),
        }
    }

    /// Moves the wheels up to `now` and takes out what fell due. First in a
    /// turn: a wheel reaches one horizon ahead of where it last collected,
    /// so whatever the turn arms afterwards is within reach.
    pub fn collect(&mut self, now: Instant) {
        if let Some(idle) = &mut self.idle {
            idle.expire(now, &mut self.expired);
            self.note_due(Kind::Idle);
        }
        self.short.expire(now, &mut self.expired);
        for key in self.expired.drain(..) {
            // The wheel is shared: the key's timer says which kind fired.
            if let Timer::Armed(kind, _) = self.timers[key] {
                self.timers[key] = Timer::Due(kind);
                self.due.push((key, kind));
            }
        }
    }

    fn note_due(&mut self, kind: Kind) {
        for key in self.expired.drain(..) {
            self.timers[key] = Timer::Due(kind);
            self.due.push((key, kind));
        }
    }

    /// The next collected timer whose connection is still open (closing
    /// turns its timer `Off`).
    pub fn pop_due(&mut self) -> Option<(usize, Kind)> {
        while let Some((key, kind)) = self.due.pop() {
            if self.timers[key] == Timer::Due(kind) {
                self.timers[key] = Timer::Off;
                return Some((key, kind));
            }
        }
        None
    }

    /// Sets connection `key`'s timer to `deadline` on `kind`'s wheel (none
    /// when `deadline` is `None`), replacing the timer it had. A timer
    /// already on that wheel, armed or due, is left alone: the reactor looks
    /// again when it fires. (Re-arming a due one would put it off by a turn,
    /// and a connection served every turn would never see it fire.)
    pub fn set(&mut self, key: usize, deadline: Option<(Instant, Kind)>) {
        if key >= self.timers.len() {
            self.timers.resize(key + 1, Timer::Off);
        }
        if self.has_timer(key, deadline.map(|(_, kind)| kind)) {
            return;
        }
        self.cancel(key);
        if let Some((at, kind)) = deadline {
            if let Some(wheel) = self.wheel(kind) {
                let handle = wheel.insert(at, key);
                self.timers[key] = Timer::Armed(kind, handle);
            }
        }
    }

    /// Disarms connection `key`'s timer: it closed.
    pub fn cancel(&mut self, key: usize) {
        let Some(&timer) = self.timers.get(key) else {
            return;
        };
        self.timers[key] = Timer::Off;
        let Timer::Armed(kind, handle) = timer else {
            return;
        };
        let wheel = self.wheel(kind).expect("armed on a wheel that exists");
        // The wheel fills the hole with another connection's timer: note
        // where that one is now.
        if let Some((moved, handle)) = wheel.cancel(handle) {
            self.timers[moved] = Timer::Armed(kind, handle);
        }
    }

    /// Whether connection `key` has a timer on `kind`'s wheel, armed or due
    /// this turn (`None`: no timer at all).
    pub fn has_timer(&self, key: usize, kind: Option<Kind>) -> bool {
        match self.timers.get(key).copied().unwrap_or_default() {
            Timer::Off => kind.is_none(),
            Timer::Armed(armed, _) | Timer::Due(armed) => kind == Some(armed),
        }
    }

    /// When the earliest timer fires.
    pub fn next_deadline(&self) -> Option<Instant> {
        let idle = self.idle.as_ref().and_then(Wheel::next_deadline);
        let short = self.short.next_deadline();
        idle.into_iter().chain(short).min()
    }

    fn wheel(&mut self, kind: Kind) -> Option<&mut Wheel<usize>> {
        match kind {
            Kind::Idle => self.idle.as_mut(),
            Kind::Linger | Kind::Header => Some(&mut self.short),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn due(deadlines: &mut Deadlines) -> Vec<(usize, Kind)> {
        std::iter::from_fn(|| deadlines.pop_due()).collect()
    }

    #[test]
    fn a_timer_moved_by_a_cancel_still_fires_and_cancels() {
        let start = Instant::now();
        let mut deadlines = Deadlines::new(Some(10 * SECOND), 2 * SECOND, start);
        for key in 0..3 {
            deadlines.set(key, Some((start + 5 * SECOND, Kind::Idle)));
        }
        // Key 2's entry moves into key 0's place...
        deadlines.cancel(0);
        // ...and can still be cancelled from there.
        deadlines.cancel(2);
        deadlines.collect(start + 6 * SECOND);
        assert_eq!(due(&mut deadlines), [(1, Kind::Idle)]);
        assert_eq!(deadlines.next_deadline(), None);
    }

    #[test]
    fn a_connection_closed_after_collection_is_not_reported() {
        let start = Instant::now();
        let mut deadlines = Deadlines::new(None, 2 * SECOND, start);
        deadlines.set(4, Some((start + SECOND, Kind::Linger)));
        deadlines.set(7, Some((start + SECOND, Kind::Linger)));
        deadlines.collect(start + 3 * SECOND);
        deadlines.cancel(4);
        assert_eq!(due(&mut deadlines), [(7, Kind::Linger)]);
    }

    #[test]
    fn switching_wheels_disarms_the_old_timer() {
        let start = Instant::now();
        let mut deadlines = Deadlines::new(Some(10 * SECOND), 2 * SECOND, start);
        deadlines.set(0, Some((start + 10 * SECOND, Kind::Idle)));
        deadlines.set(0, Some((start + 2 * SECOND, Kind::Linger)));
        assert!(deadlines.has_timer(0, Some(Kind::Linger)));
        deadlines.collect(start + 11 * SECOND);
        assert_eq!(due(&mut deadlines), [(0, Kind::Linger)]);
    }

    #[test]
    fn a_due_timer_is_not_put_off_by_setting_it_again() {
        let start = Instant::now();
        let mut deadlines = Deadlines::new(None, 2 * SECOND, start);
        deadlines.set(0, Some((start + SECOND, Kind::Linger)));
        deadlines.collect(start + 3 * SECOND);
        // Served in the same turn before the due timers are acted on.
        deadlines.set(0, Some((start + SECOND, Kind::Linger)));
        assert_eq!(due(&mut deadlines), [(0, Kind::Linger)]);
    }

    #[test]
    fn without_an_idle_timeout_idle_deadlines_are_not_armed() {
        let start = Instant::now();
        let mut deadlines = Deadlines::new(None, 2 * SECOND, start);
        deadlines.set(0, Some((start + SECOND, Kind::Idle)));
        assert!(!deadlines.has_timer(0, Some(Kind::Idle)));
        assert_eq!(deadlines.next_deadline(), None);
    }
}
