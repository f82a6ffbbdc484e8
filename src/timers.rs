//! A timing wheel: O(1) to arm a deadline, O(expired) to collect the due ones.
//!
//! Deadlines are rounded up to a tick of 1/64 of the longest deadline the
//! wheel is built for, so a timer fires never early and at most one tick late.
//! Timers are never cancelled: the owner checks, when one fires, whether it
//! still matters (the connection may be gone, or active again).

use std::time::{Duration, Instant};

const TICKS_PER_HORIZON: u32 = 64;

pub struct Wheel<T> {
    /// Width of one slot.
    tick: Duration,
    /// The instant tick 0 starts at.
    origin: Instant,
    /// Slot `k % len` holds the items due at tick `k`. There are more slots
    /// than ticks in the horizon, so a slot never mixes two turns of the wheel.
    slots: Vec<Vec<T>>,
    /// The first tick whose slot has not been collected yet.
    next_tick: u64,
    /// Items in all slots: lets an empty wheel skip its work.
    len: usize,
}

impl<T> Wheel<T> {
    /// A wheel for deadlines at most `horizon` after the moment they are armed.
    pub fn new(horizon: Duration, now: Instant) -> Self {
        let tick = (horizon / TICKS_PER_HORIZON).max(Duration::from_millis(1));
        let slot_count = (TICKS_PER_HORIZON + 2) as usize;
        Wheel {
            tick,
            origin: now,
            slots: (0..slot_count).map(|_| Vec::new()).collect(),
            next_tick: 0,
            len: 0,
        }
    }

    pub fn insert(&mut self, deadline: Instant, item: T) {
        let last = self.next_tick + self.slots.len() as u64 - 1;
        let tick = self.ticks_until(deadline, true).clamp(self.next_tick, last);
        let slot = (tick % self.slots.len() as u64) as usize;
        self.slots[slot].push(item);
        self.len += 1;
    }

    /// Moves every item due by `now` into `due`.
    pub fn expire(&mut self, now: Instant, due: &mut Vec<T>) {
        let current = self.ticks_until(now, false);
        while self.len > 0 && self.next_tick <= current {
            let slot = (self.next_tick % self.slots.len() as u64) as usize;
            self.len -= self.slots[slot].len();
            due.append(&mut self.slots[slot]);
            self.next_tick += 1;
        }
        // Nothing is armed before `current`: skip the empty slots at once.
        self.next_tick = self.next_tick.max(current + 1);
    }

    /// When the earliest armed item falls due.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        (self.next_tick..self.next_tick + self.slots.len() as u64)
            .find(|&tick| !self.slots[(tick % self.slots.len() as u64) as usize].is_empty())
            .map(|tick| self.origin + Duration::from_nanos(self.tick.as_nanos() as u64 * tick))
    }

    /// Whole ticks from the origin to `t`, rounded up or down.
    fn ticks_until(&self, t: Instant, round_up: bool) -> u64 {
        // u64 nanoseconds last 584 years, and divide faster than u128.
        let elapsed = t.saturating_duration_since(self.origin).as_nanos() as u64;
        let tick = self.tick.as_nanos() as u64;
        if round_up {
            elapsed.div_ceil(tick)
        } else {
            elapsed / tick
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_never_early_and_at_most_one_tick_late() {
        let start = Instant::now();
        let mut wheel = Wheel::new(Duration::from_millis(640), start);
        wheel.insert(start + Duration::from_millis(95), "a");
        wheel.insert(start + Duration::from_millis(300), "b");
        let mut due = Vec::new();
        wheel.expire(start + Duration::from_millis(94), &mut due);
        assert!(due.is_empty());
        let next = wheel.next_deadline().unwrap();
        assert!(next >= start + Duration::from_millis(95));
        assert!(next <= start + Duration::from_millis(105));
        wheel.expire(next, &mut due);
        assert_eq!(due, ["a"]);
        wheel.expire(start + Duration::from_millis(310), &mut due);
        assert_eq!(due, ["a", "b"]);
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn long_quiet_spells_and_rearming_keep_working() {
        let start = Instant::now();
        let mut wheel = Wheel::new(Duration::from_millis(64), start);
        let mut due = Vec::new();
        wheel.expire(start + Duration::from_secs(3600), &mut due);
        let later = start + Duration::from_secs(3600);
        wheel.insert(later + Duration::from_millis(64), 1);
        wheel.insert(later + Duration::from_millis(1), 2);
        wheel.expire(later + Duration::from_millis(10), &mut due);
        assert_eq!(due, [2]);
        wheel.expire(later + Duration::from_millis(70), &mut due);
        assert_eq!(due, [2, 1]);
    }

    #[test]
    fn a_deadline_in_the_past_fires_on_the_next_expiry() {
        let start = Instant::now();
        let mut wheel = Wheel::new(Duration::from_secs(1), start);
        let mut due = Vec::new();
        wheel.expire(start + Duration::from_secs(5), &mut due);
        wheel.insert(start + Duration::from_secs(2), 7);
        wheel.expire(start + Duration::from_secs(6), &mut due);
        assert_eq!(due, [7]);
    }
}
