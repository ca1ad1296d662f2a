//! When to poll a starting container's `GET /ping`: soon at first (a warm start answers in a few
//! milliseconds), then less often, until a deadline. A pure schedule, so the numbers are tested
//! on the host. It is a dozen lines of arithmetic; a backoff crate would bring its own timer,
//! which the Workers runtime does not have.

use std::time::Duration;

/// First poll delay: well under 100 ms, as a warm container answers almost at once.
pub const FIRST_POLL: Duration = Duration::from_millis(10);
/// Longest wait between polls.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long a container may take to answer /ping after start (cold starts measured ~0.25 s
/// locally; Cloudflare documents cold starts of a few seconds).
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// The delays before each poll, doubling from [`FIRST_POLL`] up to [`MAX_POLL_INTERVAL`], whose
/// sum never exceeds `budget`.
pub fn poll_delays(budget: Duration) -> impl Iterator<Item = Duration> {
    let mut next = FIRST_POLL;
    let mut spent = Duration::ZERO;
    std::iter::from_fn(move || {
        if spent >= budget {
            return None;
        }
        let delay = next.min(budget - spent);
        spent += delay;
        next = (next * 2).min(MAX_POLL_INTERVAL);
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
    fn never_waits_past_the_budget() {
        let total: Duration = poll_delays(Duration::from_millis(1234)).sum();
        assert_eq!(total, Duration::from_millis(1234));
        assert_eq!(poll_delays(START_DEADLINE).sum::<Duration>(), START_DEADLINE);
        assert_eq!(poll_delays(Duration::ZERO).count(), 0);
    }
}
