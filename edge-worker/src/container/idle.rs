//! The idle policy and the heartbeat that applies it. A container costs its user while it runs,
//! so the object stops it once nothing has used it for `IDLE_TIMEOUT_SECONDS`; the alarm is that
//! heartbeat: it charges container time, stops the container when credits run out or the idle
//! period passed, prunes lapsed tickets and sessions, and re-arms itself while there is anything
//! to watch. The decisions (busy or not, stop or wait, when to run next) are pure and tested
//! here; the glue around them is the object's alarm.

use std::time::Duration;

use autopilot_contract::v1::{StatusRequest, StatusResponse, TaskState};
use worker::Response;

use super::{
    history::{complete_end, complete_ends},
    loss::forgotten_by_service,
    now_ms, AutopilotContainer,
};
use crate::{container::agent_client::AgentClient, front::task_routes::TaskHome, grpc_web::Code};

/// The shortest wait before the next heartbeat (a deadline already past still waits this long).
const MIN_ALARM_DELAY: Duration = Duration::from_millis(100);

/// What keeps a container from being idle right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Use {
    /// Subscriptions streaming events to sockets.
    pub streams: u32,
    /// Requests and frames for the container being handled.
    pub requests: u32,
    /// Browser sockets open on the object.
    pub sockets: usize,
    pub task_running: bool,
    pub start_in_flight: bool,
}

impl Use {
    /// Busy containers are never stopped for idleness: an open socket, a stream, a request in
    /// flight, a running task or a start under way all count.
    pub fn busy(&self) -> bool {
        self.streams > 0 || self.requests > 0 || self.sockets > 0 || self.task_running || self.start_in_flight
    }
}

/// What a heartbeat does about idleness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// In use: the idle period starts again.
    Busy,
    /// Unused, but not for long enough yet.
    Waiting,
    /// Unused for the whole idle period while it runs: stop it.
    Stop,
    /// Nothing runs.
    Idle,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Busy => "busy",
            Verdict::Waiting => "waiting",
            Verdict::Stop => "stopped",
            Verdict::Idle => "idle",
        }
    }
}

/// Whether the container should be stopped, having been unused for `idle_for`.
pub fn verdict(busy: bool, idle_for: Duration, idle_timeout: Duration, run_open: bool) -> Verdict {
    match (busy, idle_for >= idle_timeout, run_open) {
        (true, _, _) => Verdict::Busy,
        (false, false, _) => Verdict::Waiting,
        (false, true, true) => Verdict::Stop,
        (false, true, false) => Verdict::Idle,
    }
}

/// When the heartbeat should next run: at the next metering while the container runs (or when
/// the idle period ends, if sooner), the idle period from now while something is busy, and not
/// at all when nothing runs and nothing waits.
pub fn next_alarm(
    busy: bool,
    idle_for: Duration,
    run_open: bool,
    idle_timeout: Duration,
    meter_interval: Duration,
) -> Option<Duration> {
    let until_idle = if busy { idle_timeout } else { idle_timeout.saturating_sub(idle_for) };
    match (run_open, busy) {
        (true, _) => Some(until_idle.min(meter_interval).max(MIN_ALARM_DELAY)),
        (false, true) => Some(idle_timeout),
        (false, false) => None,
    }
}

/// Whether an alarm at `scheduled_ms` (none: `None`) runs by `due_ms`. A later one would not: an
/// alarm set for a ticket's expiry must not put off the idle stop, nor the other way round.
pub fn alarm_due_by(scheduled_ms: Option<u64>, due_ms: u64) -> bool {
    scheduled_ms.is_some_and(|at| at <= due_ms)
}

impl AutopilotContainer {
    /// The alarm: charges container time, stops the container for credits or idleness, prunes
    /// lapsed tickets and sessions, and re-arms itself while anything is left to watch.
    pub(super) async fn heartbeat(&self) -> worker::Result<Response> {
        self.live.activity.alarm_at_ms.set(None);
        self.meter_now().await?;
        self.bill_model_tokens().await?;
        if self.live.run_open() && self.live.stored.account.borrow().balance <= 0 {
            self.stop_for_credits().await?;
        }
        self.refresh_task_state().await;
        self.keep_archive_following();
        let prune_due = self.sessions().prune(now_ms(), &self.live.unended_tasks()).await?;
        let idle_for = Duration::from_millis(now_ms().saturating_sub(self.live.activity.last_activity_ms.get()));
        let usage = Use {
            streams: self.live.activity.streams(),
            requests: self.live.activity.requests_in_use(),
            sockets: self.state.get_websockets().len(),
            task_running: self.live.task_running(),
            start_in_flight: self.live.watch.start_in_flight(),
        };
        let settings = &self.settings;
        let verdict = verdict(usage.busy(), idle_for, settings.idle_timeout, self.live.run_open());
        worker::console_log!("heartbeat: {} after {} ms unused ({usage:?})", verdict.as_str(), idle_for.as_millis());
        if verdict == Verdict::Stop {
            self.catch_up_archive().await;
            self.stop_container().await?;
            worker::console_log!("container stopped after the idle period");
        }
        self.persist().await?;
        let next =
            next_alarm(usage.busy(), idle_for, self.live.run_open(), settings.idle_timeout, settings.meter_interval);
        if let Some(delay) = next {
            self.schedule_alarm(delay).await?;
        }
        if let Some(due) = prune_due {
            self.alarm_by(due).await?;
        }
        Response::ok(verdict.as_str())
    }

    /// Renews the idle deadline, `IDLE_TIMEOUT_SECONDS` after this activity. Only the time is
    /// noted while an alarm is due by then: the alarm re-arms itself for the remainder when it
    /// fires early, so a busy socket costs no storage write per frame.
    pub(super) async fn touch(&self) -> worker::Result<()> {
        self.live.activity.last_activity_ms.set(now_ms());
        let settings = &self.settings;
        let delay =
            next_alarm(true, Duration::ZERO, self.live.run_open(), settings.idle_timeout, settings.meter_interval)
                .unwrap_or(settings.idle_timeout);
        if alarm_due_by(self.live.activity.alarm_at_ms.get(), now_ms() + delay.as_millis() as u64) {
            return Ok(());
        }
        self.schedule_alarm(delay).await
    }

    /// Makes sure the alarm runs by `due_ms` (an earlier one is kept): stored entries that lapse
    /// then (unused tickets, old sessions) are pruned by it.
    pub(super) async fn alarm_by(&self, due_ms: u64) -> worker::Result<()> {
        if alarm_due_by(self.live.activity.alarm_at_ms.get(), due_ms) {
            return Ok(());
        }
        // An alarm set by an evicted instance is only in storage.
        let stored = self.state.storage().get_alarm().await?.and_then(|at| u64::try_from(at).ok());
        if alarm_due_by(stored, due_ms) {
            self.live.activity.alarm_at_ms.set(stored);
            return Ok(());
        }
        self.schedule_alarm(Duration::from_millis(due_ms.saturating_sub(now_ms()))).await
    }

    async fn schedule_alarm(&self, after: Duration) -> worker::Result<()> {
        self.state.storage().set_alarm(after).await?;
        self.live.activity.alarm_at_ms.set(Some(now_ms() + after.as_millis() as u64));
        Ok(())
    }

    /// The archive follows each running task until its end is archived, even after the
    /// instance that started it was evicted or its follow broke (the service restarted under
    /// it): each heartbeat resumes the follow from the archive's last seq while the service is
    /// there.
    fn keep_archive_following(&self) {
        let ready = self.live.stored.record().lifecycle.is_ready();
        let Ok(endpoint) = self.endpoint() else { return };
        if !ready {
            return;
        }
        for task_id in self.live.unended_tasks() {
            // `follow_into_archive` does nothing for a task followed already.
            self.follow_into_archive(AgentClient::new(endpoint.clone()), task_id);
        }
    }

    /// Asks the service how each running task stands when nobody is following it, so a task
    /// that ended unwatched does not keep the container awake, and one the service no longer
    /// knows (it restarted with an empty disk) is archived as lost rather than running forever;
    /// and completes the ends the archive took from a final event while the service was away.
    async fn refresh_task_state(&self) {
        let ready = self.live.stored.record().lifecycle.is_ready();
        let Ok(endpoint) = self.endpoint() else { return };
        if !ready {
            return;
        }
        complete_ends(&self.live, &AgentClient::new(endpoint.clone()), self.settings.history_tasks).await;
        for task_id in self.live.unended_tasks() {
            if self.live.following.borrow().contains_key(&task_id) {
                continue;
            }
            let client = AgentClient::new(endpoint.clone());
            let request = StatusRequest { task_id: task_id.clone() };
            match client.unary::<StatusResponse>("Status", &request).await {
                Ok(status) => {
                    let Some(task) = status.task else { continue };
                    // It ended with nobody following it to the end (an evicted instance, a
                    // failed last call): the archive gets its end now, after the events it
                    // lacks (an ended task is replayed from the archive alone: an end written
                    // over a gap would lose those events for good). A follow from the archive's
                    // last seq writes both.
                    let ended = TaskState::try_from(task.state).is_ok_and(TaskState::is_final);
                    if ended && self.archived_end(&task_id).is_none() {
                        if lacks_events(self.live.archived(&task_id).map(|entry| entry.last_seq), task.last_seq) {
                            self.follow_into_archive(client, task_id);
                        } else {
                            complete_end(&self.live, &client, &task_id, self.settings.history_tasks).await;
                        }
                    }
                }
                Err(status) if status.code == Code::NotFound as i32 => {
                    forgotten_by_service(&self.live, &task_id);
                }
                Err(_) => {}
            }
        }
    }
}

/// Whether the archive, holding a task up to `archived_seq`, lacks events of the service's, which
/// holds it up to `service_last_seq` (a task the archive does not hold lacks nothing it could
/// write).
pub fn lacks_events(archived_seq: Option<u64>, service_last_seq: u64) -> bool {
    archived_seq.is_some_and(|seq| seq < service_last_seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_waits_for_the_events_the_archive_lacks() {
        assert!(lacks_events(Some(0), 57), "an adopted or evicted follow's task: its events first");
        assert!(lacks_events(Some(40), 57));
        assert!(!lacks_events(Some(57), 57), "nothing missing: the end at once");
        assert!(!lacks_events(None, 57), "not archived: nothing to write");
    }

    const IDLE: Duration = Duration::from_secs(300);
    const METER: Duration = Duration::from_secs(60);

    #[test]
    fn an_open_socket_a_stream_a_request_a_task_or_a_start_keeps_the_container() {
        assert!(!Use::default().busy());
        let each = [
            Use { streams: 1, ..Default::default() },
            Use { requests: 1, ..Default::default() },
            Use { sockets: 1, ..Default::default() },
            Use { task_running: true, ..Default::default() },
            Use { start_in_flight: true, ..Default::default() },
        ];
        assert!(each.iter().all(Use::busy));
        assert_eq!(verdict(true, IDLE * 10, IDLE, true), Verdict::Busy, "busy for any idle time");
    }

    #[test]
    fn the_alarm_stops_a_running_container_only_after_the_whole_idle_period() {
        assert_eq!(verdict(false, IDLE - Duration::from_millis(1), IDLE, true), Verdict::Waiting);
        assert_eq!(verdict(false, IDLE, IDLE, true), Verdict::Stop);
        assert_eq!(verdict(false, IDLE, IDLE, false), Verdict::Idle, "nothing runs: nothing to stop");
    }

    #[test]
    fn a_running_container_is_metered_at_least_every_interval() {
        assert_eq!(next_alarm(true, Duration::ZERO, true, IDLE, METER), Some(METER));
        let short_idle = Duration::from_secs(4);
        assert_eq!(
            next_alarm(false, Duration::ZERO, true, short_idle, METER),
            Some(short_idle),
            "the stop comes first"
        );
        assert_eq!(next_alarm(false, Duration::from_secs(3), true, short_idle, METER), Some(Duration::from_secs(1)));
        assert_eq!(
            next_alarm(false, IDLE * 2, true, IDLE, METER),
            Some(MIN_ALARM_DELAY),
            "a deadline past still waits a moment"
        );
    }

    #[test]
    fn a_later_alarm_never_stands_in_for_an_earlier_deadline() {
        // A ticket's expiry (61 s) was scheduled first; the idle stop is due in 4 s.
        assert!(!alarm_due_by(Some(61_000), 4_000), "the idle stop would wait for the ticket's alarm");
        assert!(alarm_due_by(Some(4_000), 61_000), "an earlier alarm serves a later deadline");
        assert!(!alarm_due_by(None, 61_000));
    }

    #[test]
    fn the_alarm_rearms_while_busy_and_goes_quiet_when_nothing_runs_or_waits() {
        assert_eq!(next_alarm(true, Duration::ZERO, false, IDLE, METER), Some(IDLE));
        assert_eq!(next_alarm(false, Duration::from_secs(10), false, IDLE, METER), None);
    }
}
