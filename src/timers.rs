//! A timing wheel: O(1) to arm or cancel a deadline, O(expired) to collect
//! the due ones.
//!
//! Deadlines are rounded up to a tick of 1/64 of the longest deadline the
//! wheel is built for, so a timer fires never early and at most one tick late.
//! Each armed item has a `TimerHandle`; cancelling it may move another item
//! within its slot, and `cancel` returns that item's new handle so the owner
//! can note it. Without cancelling, every closed connection would leave an
//! entry behind until its deadline: memory growing with connection rate.

use std::time::{Duration, Instant};

const TICKS_PER_HORIZON: u32 = 64;

/// Where an armed item sits: valid until it fires or is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerHandle {
    slot: u32,
    index: u32,
}

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
    /// Bit `s` is set while slot `s` holds items, so finding the next
    /// deadline is a bit scan, not a walk over empty slots (the loop asks
    /// every turn).
    occupied: u128,
}

impl<T: Copy> Wheel<T> {
    /// A wheel for deadlines at most `horizon` after the moment they are armed.
    pub fn new(horizon: Duration, now: Instant) -> Self {
        let tick = (horizon / TICKS_PER_HORIZON).max(Duration::from_millis(1));
        let slot_count = (TICKS_PER_HORIZON + 2) as usize;
        const { assert!(TICKS_PER_HORIZON + 2 <= u128::BITS) };
        Wheel {
            tick,
            origin: now,
            slots: (0..slot_count).map(|_| Vec::new()).collect(),
            next_tick: 0,
            len: 0,
            occupied: 0,
        }
    }

    /// Arms `item` for `deadline`. The wheel reaches one horizon ahead of
    /// where it last collected (`expire`), so a turn collects first, then
    /// arms. A deadline beyond that reach is armed at the last tick the wheel
    /// reaches: it fires early, and the owner, which knows the real deadline,
    /// re-arms it then (`Deadlines` does). A deadline already past fires on
    /// the next `expire`.
    pub fn insert(&mut self, deadline: Instant, item: T) -> TimerHandle {
        let last = self.next_tick + self.slots.len() as u64 - 1;
        let tick = self.ticks_until(deadline, true).clamp(self.next_tick, last);
        let slot = (tick % self.slots.len() as u64) as usize;
        self.slots[slot].push(item);
        self.len += 1;
        self.occupied |= 1 << slot;
        TimerHandle {
            slot: slot as u32,
            index: (self.slots[slot].len() - 1) as u32,
        }
    }

    /// Disarms the item at `handle`. The last item of its slot takes its
    /// place; that item and its new handle are returned, if there was one.
    pub fn cancel(&mut self, handle: TimerHandle) -> Option<(T, TimerHandle)> {
        let slot = &mut self.slots[handle.slot as usize];
        slot.swap_remove(handle.index as usize);
        self.len -= 1;
        if slot.is_empty() {
            self.occupied &= !(1 << handle.slot);
        }
        slot.get(handle.index as usize)
            .map(|&moved| (moved, handle))
    }

    /// Moves every item due by `now` into `due`.
    pub fn expire(&mut self, now: Instant, due: &mut Vec<T>) {
        let current = self.ticks_until(now, false);
        while self.len > 0 && self.next_tick <= current {
            let slot = (self.next_tick % self.slots.len() as u64) as usize;
            // Taking the Vec also gives its memory back after a burst.
            let items = std::mem::take(&mut self.slots[slot]);
            self.len -= items.len();
            self.occupied &= !(1 << slot);
            due.extend(items);
            self.next_tick += 1;
        }
        // Nothing is armed before `current`: skip the empty slots at once.
        self.next_tick = self.next_tick.max(current + 1);
    }

    /// When the earliest armed item falls due.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.occupied == 0 {
            return None;
        }
        // Every item lies within one turn of the wheel from `next_tick`:
        // rotate the slot bits so that bit 0 is `next_tick`'s slot.
        let n = self.slots.len() as u32;
        let start = (self.next_tick % u64::from(n)) as u32;
        let all = (1u128 << n) - 1;
        let rotated = ((self.occupied >> start) | (self.occupied << (n - start))) & all;
        let tick = self.next_tick + u64::from(rotated.trailing_zeros());
        Some(self.origin + Duration::from_nanos(self.tick.as_nanos() as u64 * tick))
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
    fn cancelled_items_never_fire_and_moved_items_keep_working() {
        let start = Instant::now();
        let mut wheel = Wheel::new(Duration::from_millis(640), start);
        let deadline = start + Duration::from_millis(100);
        let a = wheel.insert(deadline, 'a');
        let _b = wheel.insert(deadline, 'b');
        let c = wheel.insert(deadline, 'c');
        // Cancelling `a` moves `c` into its place.
        let (moved, c_now) = wheel.cancel(a).unwrap();
        assert_eq!(moved, 'c');
        assert_ne!(c_now, c);
        // Cancelling `c` in turn moves `b` into the same place.
        assert_eq!(wheel.cancel(c_now), Some(('b', c_now)));
        let mut due = Vec::new();
        wheel.expire(start + Duration::from_secs(1), &mut due);
        assert_eq!(due, ['b']);
        assert_eq!(wheel.next_deadline(), None);
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

    #[test]
    fn a_deadline_beyond_reach_fires_at_the_edge_of_the_wheel() {
        let start = Instant::now();
        let mut wheel = Wheel::new(Duration::from_millis(640), start);
        wheel.insert(start + Duration::from_secs(3600), 'x');
        let edge = wheel.next_deadline().unwrap();
        assert!(edge > start + Duration::from_millis(640));
        assert!(edge <= start + Duration::from_millis(700));
        let mut due = Vec::new();
        wheel.expire(edge, &mut due);
        assert_eq!(due, ['x'], "fired early, for its owner to re-arm");
    }

    #[test]
    fn the_next_deadline_is_the_earliest_item_across_the_wrap() {
        let start = Instant::now();
        let tick = Duration::from_millis(10);
        let mut due = Vec::new();
        // Every position of the wheel, more than once around: arm a few
        // items at assorted distances and compare with the earliest.
        for step in 0..200u32 {
            let mut wheel = Wheel::new(tick * TICKS_PER_HORIZON, start);
            let now = start + tick * step;
            wheel.expire(now, &mut due);
            let distances = [64, 3 + step % 50, 1 + step % 7];
            for distance in distances {
                wheel.insert(now + tick * distance, step);
            }
            let earliest = now + tick * distances.into_iter().min().unwrap();
            let next = wheel.next_deadline().unwrap();
            assert!(next >= earliest && next < earliest + tick, "step {step}");
        }
    }
}
