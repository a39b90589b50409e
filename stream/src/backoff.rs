//! The one backoff policy: jittered exponential delays with validated bounds.
//!
//! Every retry loop in govledger (publishing, and every connector later) takes its
//! delays from a [`Backoff`]. Delay for attempt `n` (0-based) is
//! `base = min(min_delay * 2^n, max_delay)`, then jittered down by up to
//! `jitter * base`, so the result always lies in `[base * (1 - jitter), base]`.

use std::time::Duration;

use rand::Rng;

/// Defaults used by the publisher.
pub const DEFAULT_MIN_DELAY_MS: u64 = 50;
pub const DEFAULT_MAX_DELAY_MS: u64 = 5_000;
pub const DEFAULT_JITTER: f64 = 0.5;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackoffError {
    #[error("min_delay_ms must be > 0")]
    MinZero,
    #[error("max_delay_ms ({max_ms}) must be >= min_delay_ms ({min_ms})")]
    MaxBelowMin { min_ms: u64, max_ms: u64 },
    #[error("jitter must be within 0.0..=1.0, got {0}")]
    JitterRange(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    jitter: f64,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration, jitter: f64) -> Result<Self, BackoffError> {
        if min.is_zero() {
            return Err(BackoffError::MinZero);
        }
        if max < min {
            return Err(BackoffError::MaxBelowMin {
                min_ms: min.as_millis() as u64,
                max_ms: max.as_millis() as u64,
            });
        }
        if !(0.0..=1.0).contains(&jitter) {
            return Err(BackoffError::JitterRange(jitter));
        }
        Ok(Self { min, max, jitter })
    }

    /// The un-jittered delay for attempt `n` (0-based): `min * 2^n`, capped at `max`.
    pub fn base(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The jittered delay for attempt `n` (0-based).
    pub fn delay<R: Rng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        let base = self.base(attempt);
        if self.jitter == 0.0 {
            return base;
        }
        let cut = rng.random_range(0.0..=self.jitter);
        base.mul_f64(1.0 - cut)
    }

    pub fn min(&self) -> Duration {
        self.min
    }
    pub fn max(&self) -> Duration {
        self.max
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            min: Duration::from_millis(DEFAULT_MIN_DELAY_MS),
            max: Duration::from_millis(DEFAULT_MAX_DELAY_MS),
            jitter: DEFAULT_JITTER,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};

    #[test]
    fn rejects_bad_parameters() {
        let ms = Duration::from_millis;
        assert_eq!(Backoff::new(ms(0), ms(1), 0.1), Err(BackoffError::MinZero));
        assert!(matches!(
            Backoff::new(ms(10), ms(5), 0.1),
            Err(BackoffError::MaxBelowMin { .. })
        ));
        assert!(matches!(
            Backoff::new(ms(1), ms(5), 1.5),
            Err(BackoffError::JitterRange(_))
        ));
        assert!(matches!(
            Backoff::new(ms(1), ms(5), -0.1),
            Err(BackoffError::JitterRange(_))
        ));
    }

    #[test]
    fn base_doubles_then_caps() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 0.0).unwrap();
        let got: Vec<u128> = (0..6).map(|n| b.base(n).as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
        // Huge attempt numbers never overflow.
        assert_eq!(b.base(u32::MAX), Duration::from_secs(1));
    }

    /// Property: for many random parameter sets and attempts, the delay lies in
    /// [base * (1 - jitter), base], never exceeds max, and bases never decrease.
    #[test]
    fn jitter_bounds_hold_for_random_parameters() {
        let mut rng = StdRng::seed_from_u64(0x9e37_79b9);
        for _case in 0..2_000 {
            let min_ms = rng.random_range(1..5_000u64);
            let max_ms = rng.random_range(min_ms..=min_ms * 1_000);
            let jitter: f64 = rng.random_range(0.0..=1.0);
            let b = Backoff::new(
                Duration::from_millis(min_ms),
                Duration::from_millis(max_ms),
                jitter,
            )
            .unwrap();
            let mut prev = Duration::ZERO;
            for attempt in 0..40 {
                let base = b.base(attempt);
                assert!(base >= prev, "base must not decrease");
                assert!(base <= b.max());
                prev = base;
                let d = b.delay(attempt, &mut rng);
                assert!(d <= base, "{d:?} > {base:?}");
                let floor = base.mul_f64(1.0 - jitter);
                // mul_f64 rounds to nanoseconds; allow 1 ns.
                assert!(d + Duration::from_nanos(1) >= floor, "{d:?} < {floor:?}");
            }
        }
    }

    #[test]
    fn jitter_actually_spreads_delays() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10), 0.5).unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        let ds: std::collections::BTreeSet<Duration> =
            (0..100).map(|_| b.delay(3, &mut rng)).collect();
        assert!(ds.len() > 50, "only {} distinct delays", ds.len());
    }
}
