//! Per-source rate limiting: a token bucket, plus pauses the server asks for
//! (429 Retry-After, `X-RateLimit-*` / `RateLimit-*` headers). Uses tokio's clock,
//! so tests can pause time.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    /// Tokens added per second; 0 = unlimited.
    rate_per_s: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
}

impl RateLimiter {
    /// `rate_per_s` requests per second with bursts of `burst` (0 rate = no limit).
    pub fn new(rate_per_s: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate_per_s: rate_per_s.max(0.0),
            burst,
            tokens: burst,
            last: Instant::now(),
            paused_until: None,
        }
    }

    /// No request before `until` (server hint). Later hints extend, earlier ones don't shorten.
    pub fn pause_until(&mut self, until: Instant) {
        self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
    }

    /// How long the next request must wait, taking its token if none.
    pub fn reserve(&mut self) -> Duration {
        let now = Instant::now();
        let mut wait = Duration::ZERO;
        if let Some(p) = self.paused_until {
            if p > now {
                wait = p - now;
            } else {
                self.paused_until = None;
            }
        }
        if self.rate_per_s == 0.0 {
            return wait;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate_per_s).min(self.burst);
        self.tokens -= 1.0;
        if self.tokens < 0.0 {
            wait = wait.max(Duration::from_secs_f64(-self.tokens / self.rate_per_s));
        }
        wait
    }

    /// Waits until a request may go.
    pub async fn acquire(&mut self) {
        let wait = self.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The remaining-requests headers: GitHub's and most APIs' `X-RateLimit-*`,
/// Okta's `X-Rate-Limit-*` (a dash more), the IETF draft's `RateLimit-*`.
const REMAINING: [&str; 3] = [
    "x-ratelimit-remaining",
    "x-rate-limit-remaining",
    "ratelimit-remaining",
];
/// The reset headers, in the same order.
const RESET: [&str; 3] = ["x-ratelimit-reset", "x-rate-limit-reset", "ratelimit-reset"];

/// Reads how long a server asks us to wait from `Retry-After` (delta-seconds or
/// an HTTP-date) and, when no requests remain, `X-RateLimit-Reset` /
/// `X-Rate-Limit-Reset` / `RateLimit-Reset` (seconds; values above 10^9 are
/// taken as epoch seconds).
pub fn wait_hint(
    headers: &reqwest::header::HeaderMap,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(v) = get("retry-after") {
        return parse_retry_after(v, now);
    }
    let remaining = REMAINING.iter().find_map(|h| get(h));
    if remaining.and_then(|r| r.parse::<u64>().ok()) == Some(0) {
        let reset = RESET.iter().find_map(|h| get(h))?;
        let n: u64 = reset.parse().ok()?;
        if n > 1_000_000_000 {
            let secs = n as i64 - now.timestamp();
            return Some(Duration::from_secs(secs.max(0) as u64));
        }
        return Some(Duration::from_secs(n));
    }
    None
}

/// A 403 that is a rate limit, not a refusal (GitHub's primary and secondary
/// limits): `X-RateLimit-Remaining: 0` (or `X-Rate-Limit-Remaining: 0`,
/// `RateLimit-Remaining: 0`), a
/// `Retry-After`, or a body that says "rate limit".
pub fn is_rate_limit_403(headers: &reqwest::header::HeaderMap, body: &[u8]) -> bool {
    let zero = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "0")
    };
    REMAINING.iter().any(|h| zero(h))
        || headers.contains_key("retry-after")
        || String::from_utf8_lossy(body)
            .to_ascii_lowercase()
            .contains("rate limit")
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2026 07:28:00 GMT`.
pub fn parse_retry_after(v: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let ms = (at.with_timezone(&chrono::Utc) - now).num_milliseconds();
    Some(Duration::from_millis(ms.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_both_forms() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-10-21T07:27:30Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn rate_limit_headers() {
        let now = chrono::Utc::now();
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("x-ratelimit-remaining", "5".parse().unwrap());
        h.insert("x-ratelimit-reset", "7".parse().unwrap());
        assert_eq!(wait_hint(&h, now), None);
        h.insert("x-ratelimit-remaining", "0".parse().unwrap());
        assert_eq!(wait_hint(&h, now), Some(Duration::from_secs(7)));
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("ratelimit-remaining", "0".parse().unwrap());
        h.insert(
            "ratelimit-reset",
            (now.timestamp() + 3).to_string().parse().unwrap(),
        );
        let d = wait_hint(&h, now).unwrap();
        assert!(
            d <= Duration::from_secs(3) && d >= Duration::from_secs(2),
            "{d:?}"
        );
    }

    #[test]
    fn okta_rate_limit_headers_have_a_dash_more() {
        let now = chrono::Utc::now();
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("x-rate-limit-remaining", "0".parse().unwrap());
        h.insert(
            "x-rate-limit-reset",
            (now.timestamp() + 30).to_string().parse().unwrap(),
        );
        let d = wait_hint(&h, now).unwrap();
        assert!(d >= Duration::from_secs(29), "{d:?}");
        assert!(is_rate_limit_403(&h, b"forbidden"));
        h.insert("x-rate-limit-remaining", "9".parse().unwrap());
        assert_eq!(wait_hint(&h, now), None);
        assert!(!is_rate_limit_403(&h, b"forbidden"));
    }

    #[test]
    fn github_403_rate_limits() {
        let mut h = reqwest::header::HeaderMap::new();
        assert!(!is_rate_limit_403(&h, br#"{"message":"Bad credentials"}"#));
        assert!(is_rate_limit_403(
            &h,
            br#"{"message":"API rate limit exceeded for user ID 1."}"#
        ));
        assert!(is_rate_limit_403(
            &h,
            b"You have exceeded a secondary Rate Limit."
        ));
        h.insert("x-ratelimit-remaining", "12".parse().unwrap());
        assert!(!is_rate_limit_403(&h, b"forbidden"));
        h.insert("x-ratelimit-remaining", "0".parse().unwrap());
        assert!(is_rate_limit_403(&h, b"forbidden"));
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "60".parse().unwrap());
        assert!(is_rate_limit_403(&h, b""));
    }

    #[tokio::test(start_paused = true)]
    async fn token_bucket_spaces_requests() {
        let mut rl = RateLimiter::new(10.0, 2);
        let start = Instant::now();
        for _ in 0..12 {
            rl.acquire().await;
        }
        // 2 from the burst, then 10 at 10/s.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(990) && took <= Duration::from_millis(1_100),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn server_pause_is_honoured() {
        let mut rl = RateLimiter::new(0.0, 1);
        let start = Instant::now();
        rl.pause_until(start + Duration::from_secs(3));
        rl.pause_until(start + Duration::from_secs(1)); // never shortens
        rl.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        rl.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }
}
