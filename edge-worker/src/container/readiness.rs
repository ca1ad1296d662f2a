//! When to try again while a container comes up: polls of `GET /ping` soon at first (a warm start
//! answers in a few milliseconds), then less often, until a deadline; retries of a refused start
//! and of calls that found nothing listening, with the same doubling. Pure schedules, so the
//! numbers are tested on the host. A dozen lines of arithmetic; a backoff crate would bring its
//! own timer, which the Workers runtime does not have.

use std::time::Duration;

/// First poll delay: well under 100 ms, as a warm container answers almost at once.
pub const FIRST_POLL: Duration = Duration::from_millis(10);
/// Longest wait between polls.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long a container may take to answer /ping after start (cold starts measured ~0.25 s
/// locally; Cloudflare documents cold starts of a few seconds).
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// First wait before starting again after the platform refused a start.
pub const FIRST_START_RETRY: Duration = Duration::from_millis(250);
/// Longest wait between start attempts.
pub const MAX_START_RETRY: Duration = Duration::from_secs(4);
/// How long an idempotent call keeps being retried while nothing listens on the port.
pub const NOT_LISTENING_BUDGET: Duration = Duration::from_secs(10);

/// The delays before each poll of /ping: [`backoff`] from [`FIRST_POLL`] to [`MAX_POLL_INTERVAL`].
pub fn poll_delays(budget: Duration) -> impl Iterator<Item = Duration> {
    backoff(FIRST_POLL, MAX_POLL_INTERVAL, budget)
}

/// Delays doubling from `first` up to `max`, whose sum never exceeds `budget`.
pub fn backoff(first: Duration, max: Duration, budget: Duration) -> impl Iterator<Item = Duration> {
    let mut next = first;
    let mut spent = Duration::ZERO;
    std::iter::from_fn(move || {
        if spent >= budget {
            return None;
        }
        let delay = next.min(budget - spent);
        spent += delay;
        next = (next * 2).min(max);
        Some(delay)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_fast_grows_and_caps() {
        let delays: Vec<u64> = poll_delays(START_DEADLINE).take(8).map(|d| d.as_millis() as u64).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 500, 500]);
    }

    #[test]
    fn start_retries_back_off_to_seconds() {
        let delays: Vec<u64> =
            backoff(FIRST_START_RETRY, MAX_START_RETRY, START_DEADLINE).take(6).map(|d| d.as_millis() as u64).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 4000]);
    }

    #[test]
    fn never_waits_past_the_budget() {
        let total: Duration = poll_delays(Duration::from_millis(1234)).sum();
        assert_eq!(total, Duration::from_millis(1234));
        assert_eq!(poll_delays(START_DEADLINE).sum::<Duration>(), START_DEADLINE);
        assert_eq!(poll_delays(Duration::ZERO).count(), 0);
    }
}
