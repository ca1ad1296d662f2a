//! The lifecycle of a user's container, as the Durable Object sees it: one state with one writer.
//! Each start gets a generation number, so news about an old container (its exit, a late ready)
//! cannot overwrite the state of a newer one (compare-and-set on the generation).

use serde::{Deserialize, Serialize};

/// Where the container is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// Not running; the next request starts it.
    Stopped,
    /// Started, not yet answering /ping.
    Starting { generation: u32, since_ms: u64 },
    /// Answering requests.
    Ready { generation: u32, since_ms: u64 },
    /// Exited or failed to start; the next request starts a fresh one.
    Failed { reason: String, at_ms: u64 },
}

/// The container's state and its generation counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    pub state: ContainerState,
    pub generation: u32,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle { state: ContainerState::Stopped, generation: 0 }
    }
}

impl Lifecycle {
    /// Begins a start unless one is under way or done; returns the new generation.
    pub fn begin_start(&mut self, now_ms: u64) -> Option<u32> {
        match self.state {
            ContainerState::Starting { .. } | ContainerState::Ready { .. } => None,
            ContainerState::Stopped | ContainerState::Failed { .. } => {
                self.generation += 1;
                self.state = ContainerState::Starting { generation: self.generation, since_ms: now_ms };
                Some(self.generation)
            }
        }
    }

    /// The start of `generation` answered /ping. Stale generations are ignored.
    pub fn mark_ready(&mut self, generation: u32) -> bool {
        match self.state {
            ContainerState::Starting { generation: current, since_ms } if current == generation => {
                self.state = ContainerState::Ready { generation, since_ms };
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
        self.state = ContainerState::Failed { reason: reason.into(), at_ms: now_ms };
        true
    }

    /// The container was stopped on purpose (idle).
    pub fn mark_stopped(&mut self) {
        self.state = ContainerState::Stopped;
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
        assert!(life.mark_ready(generation));
        assert_eq!(life.begin_start(102), None);
        assert_eq!(life.state, ContainerState::Ready { generation, since_ms: 100 });
    }

    #[test]
    fn a_stale_exit_cannot_overwrite_a_newer_container() {
        let mut life = Lifecycle::default();
        let first = life.begin_start(1).unwrap();
        life.mark_ready(first);
        assert!(life.mark_failed(first, "exit code 1", 5));
        let second = life.begin_start(6).unwrap();
        assert!(!life.mark_failed(first, "late news of the first", 7));
        assert!(!life.mark_ready(first));
        assert!(life.mark_ready(second));
        assert!(life.is_ready());
    }

    #[test]
    fn a_failed_or_stopped_container_starts_fresh() {
        let mut life = Lifecycle::default();
        let first = life.begin_start(1).unwrap();
        life.mark_failed(first, "did not answer /ping within 30s", 31);
        assert!(matches!(life.state, ContainerState::Failed { .. }));
        assert_eq!(life.begin_start(40), Some(first + 1));
        life.mark_stopped();
        assert_eq!((life.state.clone(), life.current_generation()), (ContainerState::Stopped, None));
    }
}
