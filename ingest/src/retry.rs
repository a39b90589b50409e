//! The one retry engine: classifies a failed attempt and decides, from a bounded
//! budget (attempts and total time), whether and when to try again. Pure: the
//! caller sleeps and retries; every connector goes through this.

use std::time::Duration;

use govledger_proto::v1::ErrorClass;
use govledger_stream::backoff::Backoff;

pub const DEFAULT_ATTEMPTS_MAX: u32 = 5;
pub const DEFAULT_BUDGET_MS: u64 = 60_000;

/// How hard to try one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub attempts_max: u32,
    /// Total time one request may take across its attempts and waits.
    pub budget: Duration,
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts_max: DEFAULT_ATTEMPTS_MAX,
            budget: Duration::from_millis(DEFAULT_BUDGET_MS),
            backoff: Backoff::default(),
        }
    }
}

/// A failed attempt, as the engine saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: ErrorClass,
    pub http_status: u16,
    /// What the server asked us to wait (Retry-After, rate-limit reset).
    pub retry_after: Option<Duration>,
    /// Secret-free description.
    pub message: String,
}

/// Whether a failure of this class can succeed on a later attempt.
pub fn retriable(class: ErrorClass) -> bool {
    matches!(
        class,
        ErrorClass::Timeout
            | ErrorClass::RateLimited
            | ErrorClass::ServerError
            | ErrorClass::Connect
            | ErrorClass::Parse
    )
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Wait this long, then try again.
    Retry(Duration),
    /// Stop: not retriable, attempts spent, or the wait would overrun the budget.
    GiveUp,
}

/// Decides after failed attempt number `attempt` (1-based), `elapsed` into the
/// request's budget. A server's wait hint is honoured (never shortened); when it
/// does not fit in the remaining budget the request gives up instead of ignoring it.
pub fn decide(
    policy: &RetryPolicy,
    attempt: u32,
    elapsed: Duration,
    failure: &Failure,
    jitter: &mut impl rand::Rng,
) -> Decision {
    if !retriable(failure.class) || attempt >= policy.attempts_max {
        return Decision::GiveUp;
    }
    let backoff = policy.backoff.delay(attempt.saturating_sub(1), jitter);
    let wait = match failure.retry_after {
        Some(hint) => hint.max(backoff),
        None => backoff,
    };
    if elapsed.saturating_add(wait) > policy.budget {
        return Decision::GiveUp;
    }
    Decision::Retry(wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng as _, SeedableRng, rngs::StdRng};

    fn failure(class: ErrorClass, retry_after_ms: Option<u64>) -> Failure {
        Failure {
            class,
            http_status: 0,
            retry_after: retry_after_ms.map(Duration::from_millis),
            message: String::new(),
        }
    }

    fn policy(attempts: u32, budget_ms: u64) -> RetryPolicy {
        RetryPolicy {
            attempts_max: attempts,
            budget: Duration::from_millis(budget_ms),
            backoff: Backoff::new(Duration::from_millis(10), Duration::from_millis(100), 0.5)
                .unwrap(),
        }
    }

    #[test]
    fn classes() {
        for c in [
            ErrorClass::Timeout,
            ErrorClass::RateLimited,
            ErrorClass::ServerError,
            ErrorClass::Connect,
            ErrorClass::Parse,
        ] {
            assert!(retriable(c), "{c:?}");
        }
        for c in [
            ErrorClass::Auth,
            ErrorClass::ClientError,
            ErrorClass::NotFound,
        ] {
            assert!(!retriable(c), "{c:?}");
        }
    }

    #[test]
    fn gives_up_when_not_retriable_or_spent() {
        let mut rng = StdRng::seed_from_u64(1);
        let p = policy(3, 10_000);
        let auth = failure(ErrorClass::Auth, None);
        assert_eq!(
            decide(&p, 1, Duration::ZERO, &auth, &mut rng),
            Decision::GiveUp
        );
        let s = failure(ErrorClass::ServerError, None);
        assert!(matches!(
            decide(&p, 2, Duration::ZERO, &s, &mut rng),
            Decision::Retry(_)
        ));
        assert_eq!(
            decide(&p, 3, Duration::ZERO, &s, &mut rng),
            Decision::GiveUp
        );
    }

    #[test]
    fn retry_after_is_honoured_or_the_request_gives_up() {
        let mut rng = StdRng::seed_from_u64(2);
        let p = policy(5, 5_000);
        let hint = failure(ErrorClass::RateLimited, Some(2_000));
        assert_eq!(
            decide(&p, 1, Duration::ZERO, &hint, &mut rng),
            Decision::Retry(Duration::from_millis(2_000))
        );
        // The hint does not fit in what is left of the budget.
        assert_eq!(
            decide(&p, 1, Duration::from_millis(3_500), &hint, &mut rng),
            Decision::GiveUp
        );
    }

    /// Property: over random policies and failures, a retry never exceeds the
    /// budget, never undercuts a server hint, and attempts are bounded.
    #[test]
    fn decisions_respect_bounds() {
        let mut rng = StdRng::seed_from_u64(0xfeed);
        for _ in 0..5_000 {
            let p = policy(rng.random_range(1..8), rng.random_range(1..20_000));
            let attempt = rng.random_range(1..10);
            let elapsed = Duration::from_millis(rng.random_range(0..25_000));
            let hint = rng.random_bool(0.5).then(|| rng.random_range(0..10_000));
            let f = failure(ErrorClass::RateLimited, hint);
            match decide(&p, attempt, elapsed, &f, &mut rng) {
                Decision::Retry(d) => {
                    assert!(attempt < p.attempts_max);
                    assert!(elapsed + d <= p.budget);
                    if let Some(h) = hint {
                        assert!(d >= Duration::from_millis(h));
                    }
                }
                Decision::GiveUp => {}
            }
        }
    }
}
