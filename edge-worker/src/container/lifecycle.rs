//! The lifecycle of a user's container, as the Durable Object sees it: one state with one writer,
//! stamped with the time of every transition. Each start gets a generation number, so news about
//! an old container (its exit, a late ready) cannot overwrite the state of a newer one
//! (compare-and-set on the generation). What the platform reports (`running()`) is applied on
//! every entry by [`Lifecycle::resync`], so a stale "running" is never trusted, and a container
//! the record gave up on is not quietly used again.

use serde::{Deserialize, Serialize};

/// Why a container the object believed in is gone, when the platform says it is not running.
pub const LOST: &str = "the container stopped unexpectedly (it was no longer running)";

/// How long a container the object stopped may take to exit; meanwhile "running" is not news.
pub const STOP_GRACE_MS: u64 = 15_000;

/// Where the container is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// Not running; the next request starts it.
    Stopped,
    /// Started, not yet answering /ping.
    Starting { generation: u32, since_ms: u64 },
    /// Answering requests. `since_ms` is when its start began, `answered_ms` when /ping first
    /// answered; the transition time ([`Lifecycle::changed_ms`]) is when the object knew it ready.
    Ready {
        generation: u32,
        since_ms: u64,
        #[serde(default)]
        answered_ms: u64,
    },
    /// Exited or failed to start; the next request starts a fresh one.
    Failed { reason: String, at_ms: u64 },
}

/// The container's state and its generation counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    pub state: ContainerState,
    pub generation: u32,
    /// When `state` last changed (ms since the epoch).
    #[serde(default)]
    pub changed_ms: u64,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle { state: ContainerState::Stopped, generation: 0, changed_ms: 0 }
    }
}

/// What [`Lifecycle::resync`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resync {
    /// The record and the platform agree.
    InStep,
    /// The container of `generation` stopped without the object stopping it; now `Failed`.
    Lost { generation: u32, was_ready: bool },
    /// A container runs that the record never knew (its storage was reset, or the platform
    /// kept the container across a restart): it should be adopted, not started again.
    Orphan,
    /// A container runs that the record gave up on (it failed to become ready, was stopped and
    /// did not go, or the platform restarted it after a crash): it must be destroyed, and the
    /// next request starts a fresh one.
    Unwanted,
}

impl Lifecycle {
    fn set(&mut self, state: ContainerState, now_ms: u64) {
        self.state = state;
        self.changed_ms = now_ms;
    }

    /// Begins a start unless one is under way or done; returns the new generation.
    pub fn begin_start(&mut self, now_ms: u64) -> Option<u32> {
        match self.state {
            ContainerState::Starting { .. } | ContainerState::Ready { .. } => None,
            ContainerState::Stopped | ContainerState::Failed { .. } => {
                self.generation += 1;
                self.set(ContainerState::Starting { generation: self.generation, since_ms: now_ms }, now_ms);
                Some(self.generation)
            }
        }
    }

    /// The start of `generation` answered /ping at `answered_ms`. Stale generations are ignored.
    pub fn mark_ready(&mut self, generation: u32, answered_ms: u64, now_ms: u64) -> bool {
        match self.state {
            ContainerState::Starting { generation: current, since_ms } if current == generation => {
                self.set(ContainerState::Ready { generation, since_ms, answered_ms }, now_ms);
                true
            }
            _ => false,
        }
    }

    /// The container of `generation` exited or failed to start. Stale generations are ignored.
    pub fn mark_failed(&mut self, generation: u32, reason: impl Into<String>, now_ms: u64) -> bool {
        if self.current_generation() != Some(generation) {
            return false;
        }
        self.set(ContainerState::Failed { reason: reason.into(), at_ms: now_ms }, now_ms);
        true
    }

    /// The container was stopped on purpose (idle, credits).
    pub fn mark_stopped(&mut self, now_ms: u64) {
        self.set(ContainerState::Stopped, now_ms);
    }

    /// Applies what the platform reports. `start_in_flight`: this instance is starting the
    /// container now, so "not running" may only mean "not running yet".
    pub fn resync(&mut self, running: bool, start_in_flight: bool, now_ms: u64) -> Resync {
        match (self.current_generation(), running) {
            (Some(generation), false) if !start_in_flight => {
                let was_ready = self.is_ready();
                self.mark_failed(generation, LOST, now_ms);
                Resync::Lost { generation, was_ready }
            }
            (None, true) if !start_in_flight && !self.is_stopping(now_ms) => {
                if self.generation == 0 {
                    Resync::Orphan
                } else {
                    Resync::Unwanted
                }
            }
            _ => Resync::InStep,
        }
    }

    /// Whether the object stopped the container less than [`STOP_GRACE_MS`] ago: it may still
    /// be on its way out, and a new start must wait for it to exit.
    pub fn is_stopping(&self, now_ms: u64) -> bool {
        self.generation > 0
            && self.state == ContainerState::Stopped
            && now_ms.saturating_sub(self.changed_ms) < STOP_GRACE_MS
    }

    /// The generation of a starting or ready container.
    pub fn current_generation(&self) -> Option<u32> {
        match self.state {
            ContainerState::Starting { generation, .. } | ContainerState::Ready { generation, .. } => Some(generation),
            _ => None,
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.state, ContainerState::Ready { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_start_at_a_time() {
        let mut life = Lifecycle::default();
        let generation = life.begin_start(100).unwrap();
        assert_eq!(life.begin_start(101), None, "a start under way is shared, not repeated");
        assert!(life.mark_ready(generation, 350, 352));
        assert_eq!(life.begin_start(102), None);
        assert_eq!(life.state, ContainerState::Ready { generation, since_ms: 100, answered_ms: 350 });
        assert_eq!(life.changed_ms, 352);
    }

    #[test]
    fn a_container_stopped_while_it_started_is_not_made_ready_by_its_late_ping() {
        let mut life = Lifecycle::default();
        let generation = life.begin_start(100).unwrap();
        life.mark_stopped(200);
        assert!(!life.mark_ready(generation, 250, 251), "the start was overtaken: its caller fails");
        assert_eq!(life.state, ContainerState::Stopped);
        let next = life.begin_start(300).unwrap();
        assert!(next > generation, "the next start is a new generation");
    }

    #[test]
    fn every_transition_is_stamped() {
        let mut life = Lifecycle::default();
        let generation = life.begin_start(10).unwrap();
        assert_eq!(life.changed_ms, 10);
        life.mark_ready(generation, 20, 21);
        assert_eq!(life.changed_ms, 21);
        life.mark_failed(generation, "exit code 137", 30);
        assert_eq!(life.changed_ms, 30);
        life.mark_stopped(40);
        assert_eq!(life.changed_ms, 40);
    }

    #[test]
    fn a_stale_exit_cannot_overwrite_a_newer_container() {
        let mut life = Lifecycle::default();
        let first = life.begin_start(1).unwrap();
        life.mark_ready(first, 2, 2);
        assert!(life.mark_failed(first, "exit code 1", 5));
        let second = life.begin_start(6).unwrap();
        assert!(!life.mark_failed(first, "late news of the first", 7));
        assert!(!life.mark_ready(first, 8, 8));
        assert!(life.mark_ready(second, 8, 8));
        assert!(life.is_ready());
    }

    #[test]
    fn a_failed_or_stopped_container_starts_fresh() {
        let mut life = Lifecycle::default();
        let first = life.begin_start(1).unwrap();
        life.mark_failed(first, "did not answer /ping within 30s", 31);
        assert!(matches!(life.state, ContainerState::Failed { .. }));
        assert_eq!(life.begin_start(40), Some(first + 1));
        life.mark_stopped(41);
        assert_eq!((life.state.clone(), life.current_generation()), (ContainerState::Stopped, None));
    }

    #[test]
    fn a_stale_running_is_never_trusted() {
        let mut life = Lifecycle::default();
        let generation = life.begin_start(1).unwrap();
        life.mark_ready(generation, 2, 2);
        assert_eq!(life.resync(true, false, 3), Resync::InStep);
        assert_eq!(life.resync(false, false, 4), Resync::Lost { generation, was_ready: true });
        assert_eq!(life.state, ContainerState::Failed { reason: LOST.into(), at_ms: 4 });
        assert_eq!(life.begin_start(5), Some(generation + 1), "the next request starts a fresh one");
    }

    #[test]
    fn not_running_yet_is_not_lost_while_this_instance_starts_it() {
        let mut life = Lifecycle::default();
        let generation = life.begin_start(1).unwrap();
        assert_eq!(life.resync(false, true, 2), Resync::InStep);
        assert_eq!(life.state, ContainerState::Starting { generation, since_ms: 1 });
        assert_eq!(life.resync(false, false, 3), Resync::Lost { generation, was_ready: false }, "an interrupted start");
    }

    #[test]
    fn a_running_container_the_record_never_knew_is_an_orphan() {
        let mut life = Lifecycle::default();
        assert_eq!(life.resync(true, false, 1), Resync::Orphan);
        assert_eq!(life.resync(true, true, 1), Resync::InStep);
        assert_eq!(life.resync(false, false, 1), Resync::InStep);
        assert_eq!(life.state, ContainerState::Stopped);
    }

    #[test]
    fn a_running_container_the_record_gave_up_on_is_unwanted() {
        let mut life = Lifecycle::default();
        let generation = life.begin_start(1).unwrap();
        life.mark_failed(generation, "did not answer /ping within 30s", 31_000);
        assert_eq!(life.resync(true, false, 31_001), Resync::Unwanted, "not adopted again and again");
        let again = life.begin_start(40_000).unwrap();
        life.mark_ready(again, 40_300, 40_300);
        life.mark_stopped(50_000);
        assert_eq!(life.resync(true, false, 50_000 + STOP_GRACE_MS), Resync::Unwanted, "stopped, and did not go");
    }

    #[test]
    fn a_container_on_its_way_out_is_not_adopted() {
        let mut life = Lifecycle::default();
        let generation = life.begin_start(1).unwrap();
        life.mark_ready(generation, 2, 2);
        life.mark_stopped(100);
        assert!(life.is_stopping(100 + STOP_GRACE_MS - 1));
        assert_eq!(life.resync(true, false, 200), Resync::InStep, "still exiting after SIGTERM");
        assert!(!life.is_stopping(100 + STOP_GRACE_MS));
    }

    #[test]
    fn records_written_before_the_timestamps_still_load() {
        let old = r#"{"state":{"Ready":{"generation":3,"since_ms":9}},"generation":3}"#;
        let life: Lifecycle = serde_json::from_str(old).unwrap();
        assert_eq!(life.state, ContainerState::Ready { generation: 3, since_ms: 9, answered_ms: 0 });
        assert_eq!(life.changed_ms, 0);
    }
}
