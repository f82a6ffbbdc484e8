//! Warnings that could repeat every loop turn, one per interval, with a
//! count of the ones held back.

use std::fmt;
use std::time::{Duration, Instant};

/// Lets one warning through per interval and counts the others; the next
/// one that gets through says how many were suppressed. Under pressure the
/// same warning comes every loop turn, and the log must not become the next
/// thing to fill up.
///
/// ```
/// # let err = "Too many open files";
/// let mut accept_warnings = echo_reactor::logging::WarnLimiter::default();
/// let now = std::time::Instant::now();
/// echo_reactor::warn_limited!(accept_warnings, now, "accept: {err}");
/// ```
#[derive(Debug, Clone)]
pub struct WarnLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    /// The default interval: one warning of a kind per second.
    pub const INTERVAL: Duration = Duration::from_secs(1);

    pub const fn new(interval: Duration) -> WarnLimiter {
        WarnLimiter {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some` if a warning may go out at `now`, carrying the suffix that
    /// reports the ones suppressed since the last; `None` (and counted) if
    /// not. Format the message only on `Some` (see [`crate::warn_limited!`]).
    pub fn admit(&mut self, now: Instant) -> Option<Suppressed> {
        // A `now` before the last warning (a caller's stale turn time)
        // counts as within the interval.
        let recent = self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.interval);
        if recent {
            self.suppressed = self.suppressed.saturating_add(1);
            return None;
        }
        self.last = Some(now);
        Some(Suppressed(std::mem::take(&mut self.suppressed)))
    }

    /// Warnings suppressed since the last one that went out.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

impl Default for WarnLimiter {
    fn default() -> WarnLimiter {
        WarnLimiter::new(WarnLimiter::INTERVAL)
    }
}

/// How many warnings were suppressed before this one; displays as
/// ` (N similar warnings suppressed)`, or nothing when none were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suppressed(pub u64);

impl fmt::Display for Suppressed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(f, " ({n} similar warnings suppressed)"),
        }
    }
}

/// `warn!` through a [`WarnLimiter`]: `warn_limited!(limiter, now, "fmt",
/// args..)`. The message is formatted only if it goes out, under the caller's
/// module as target, with the suppressed count appended.
#[macro_export]
macro_rules! warn_limited {
    ($limiter:expr, $now:expr, $($arg:tt)+) => {
        if let ::std::option::Option::Some(suppressed) = $limiter.admit($now) {
            ::log::warn!("{}{}", ::std::format_args!($($arg)+), suppressed);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_first_warning_goes_out_with_no_suffix() {
        let mut limiter = WarnLimiter::default();
        let got = limiter.admit(Instant::now());
        assert_eq!(got, Some(Suppressed(0)));
        assert_eq!(got.unwrap().to_string(), "");
        let mut unlimited = WarnLimiter::new(Duration::ZERO);
        let t0 = Instant::now();
        assert!((0..3).all(|_| unlimited.admit(t0) == Some(Suppressed(0))));
    }

    #[test]
    fn one_warning_per_interval_and_the_next_counts_the_rest() {
        let t0 = Instant::now();
        let mut limiter = WarnLimiter::new(SECOND);
        assert!(limiter.admit(t0).is_some());
        for ms in [0, 1, 500, 999] {
            assert_eq!(
                limiter.admit(t0 + Duration::from_millis(ms)),
                None,
                "{ms} ms"
            );
        }
        assert_eq!(limiter.suppressed(), 4);
        let next = limiter.admit(t0 + SECOND).expect("one interval later");
        assert_eq!(next, Suppressed(4));
        assert_eq!(next.to_string(), " (4 similar warnings suppressed)");
        assert_eq!(limiter.suppressed(), 0);
        // The interval runs from the warning that went out, not from t0.
        assert_eq!(limiter.admit(t0 + SECOND + SECOND / 2), None);
        let later = limiter.admit(t0 + 2 * SECOND).expect("two intervals later");
        assert_eq!(later.to_string(), " (1 similar warnings suppressed)");
        // A quiet spell resets nothing but lets the next one through bare.
        let quiet = limiter.admit(t0 + 60 * SECOND);
        assert_eq!(quiet, Some(Suppressed(0)));
    }

    #[test]
    fn a_time_before_the_last_warning_is_within_the_interval() {
        let t0 = Instant::now() + SECOND;
        let mut limiter = WarnLimiter::new(SECOND);
        assert!(limiter.admit(t0).is_some());
        assert_eq!(limiter.admit(t0 - SECOND / 2), None);
        assert_eq!(limiter.suppressed(), 1);
    }
}
