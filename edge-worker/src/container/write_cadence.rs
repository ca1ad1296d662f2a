//! When a task's follow writes the events it holds to the archive, in one go, as plain Rust with
//! the clock a parameter: once the task's stream has paused for [`ARCHIVE_IDLE`], once it holds
//! [`ARCHIVE_HELD_BYTES`] of events (about 18 MB in memory for small events), at the latest
//! [`ARCHIVE_EVERY`] after its last write, and at the task's end.
//!
//! Each write holds back every message the object sends until it is committed (workerd's output
//! gate), and a busy object's commit waits: written every 4096 events, a burst's sends spent the
//! rest of the burst behind the gate, and the archive cost a first pass a quarter of its
//! throughput. So writes wait for a pause, which a real task's bursts of events leave within a
//! tenth of a second; a write in the middle of a burst is waited for before the next events are
//! read, rather than every send after it waiting. Holding events longer loses nothing: they are
//! served to subscribers from memory, written on a loss and before a stop, and an evicted
//! follower resumes from the archive's last seq while the service still has them.

use std::time::Duration;

pub const ARCHIVE_IDLE: Duration = Duration::from_millis(100);
pub const ARCHIVE_HELD_BYTES: usize = 4 << 20;
pub const ARCHIVE_EVERY: Duration = Duration::from_secs(5);

/// A follow's writing state: when it last wrote, and when the events it holds last came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    written_at_ms: u64,
    /// When the latest held events came; `None` while nothing is held.
    last_events_ms: Option<u64>,
}

impl Cadence {
    /// A follow that starts at `now_ms`, holding nothing.
    pub fn new(now_ms: u64) -> Cadence {
        Cadence { written_at_ms: now_ms, last_events_ms: None }
    }

    /// Whether events are held (a pause is being timed).
    pub fn holding(&self) -> bool {
        self.last_events_ms.is_some()
    }

    /// Events came at `now_ms`, and `held_bytes` are held now: whether to write in the middle of
    /// the burst (too much held, or too long since the last write).
    pub fn received(&mut self, now_ms: u64, held_bytes: usize) -> bool {
        self.last_events_ms = Some(now_ms);
        held_bytes >= ARCHIVE_HELD_BYTES || now_ms >= self.written_at_ms + ARCHIVE_EVERY.as_millis() as u64
    }

    /// The pause timer fired at `now_ms`: how much longer the stream must stay quiet before the
    /// held events are written; `None`: write them now.
    pub fn quiet_left(&self, now_ms: u64) -> Option<Duration> {
        let last = self.last_events_ms?;
        let quiet = Duration::from_millis(now_ms.saturating_sub(last));
        ARCHIVE_IDLE.checked_sub(quiet).filter(|left| !left.is_zero())
    }

    /// What was held was written at `now_ms`.
    pub fn written(&mut self, now_ms: u64) {
        (self.written_at_ms, self.last_events_ms) = (now_ms, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_events_are_written_once_the_stream_is_quiet_for_the_idle_time() {
        let mut cadence = Cadence::new(0);
        assert!(!cadence.holding());
        assert!(!cadence.received(1_000, 10), "a small burst is not written mid-stream");
        assert!(cadence.holding());
        assert_eq!(cadence.quiet_left(1_040), Some(Duration::from_millis(60)), "events came 40 ms ago");
        assert_eq!(cadence.quiet_left(1_100), None, "quiet for 100 ms: write");
        cadence.written(1_100);
        assert!(!cadence.holding());
        assert_eq!(cadence.quiet_left(5_000), None, "nothing held, nothing to wait for");
    }

    #[test]
    fn a_burst_is_written_in_the_middle_when_it_holds_too_much_or_ran_too_long() {
        let mut cadence = Cadence::new(0);
        assert!(cadence.received(10, ARCHIVE_HELD_BYTES), "4 MiB held");
        cadence.written(10);
        assert!(!cadence.received(4_000, 100));
        assert!(cadence.received(5_010, 100), "5 s since the last write");
        cadence.written(5_010);
        assert!(!cadence.received(5_020, 100), "the 5 s count from the last write");
    }

    #[test]
    fn each_burst_restarts_the_pause() {
        let mut cadence = Cadence::new(0);
        cadence.received(1_000, 10);
        cadence.received(1_090, 10);
        assert_eq!(cadence.quiet_left(1_100), Some(Duration::from_millis(90)), "timed from the latest events");
    }
}
