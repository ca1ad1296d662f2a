//! The archive's cost on a task's first pass: recorded tasks streamed through the bench's archive
//! baseline (`/bench/stream`, an object that streams a task from the service to a socket with no
//! archive) and through the user's object, which follows each into its archive while streaming
//! it, in pairs, each on an edge (a workerd) of its own, each pair's order the other way round from the last, both edges warmed up first. The
//! cost is the median of the pairs' ratios (rates drift by 2x within a run here, and a pair's two
//! passes drift together), and of the CPU each edge's workerd spent per event.

use std::time::Duration;

use autopilot_tests::{
    edge::Edge,
    isolate_profile::{self, Hot},
};

use super::{adopt, stream_recorded_task, WARM_UP_EVENTS, WARM_UP_TASK};

/// Where a first pass streams: the user's object (the bench user's token and a session to open
/// the bridge with), or the archive baseline.
#[derive(Clone, Copy)]
pub enum Side<'a> {
    Archived(&'a Edge, &'a str, &'a str),
    Baseline(&'a Edge),
}

impl Side<'_> {
    fn edge(&self) -> &Edge {
        match self {
            Side::Archived(edge, ..) | Side::Baseline(edge) => edge,
        }
    }

    /// A socket URL on this side, for a pass of `task_id` (made the user's first on the
    /// archived side, which serves a user only their tasks).
    async fn url(&self, task_id: &str) -> String {
        match self {
            Side::Archived(edge, token, session) => {
                adopt(edge, task_id).await;
                edge.ws_ticket_url(token, session).await
            }
            Side::Baseline(edge) => format!("{}/bench/stream", edge.ws_base()),
        }
    }
}

/// Compares first passes through `on` (the archive on) and `off` (the baseline); prints the figures.
pub async fn compare(on: Side<'_>, off: Side<'_>, events: u64) {
    for side in [on, off] {
        stream_recorded_task(&side.url(WARM_UP_TASK).await, WARM_UP_TASK, WARM_UP_EVENTS).await;
    }
    if profiling() {
        profile_first_passes([off, on], events).await;
    }
    let mut pairs = Vec::new();
    for (i, task_id) in compared_tasks().iter().enumerate() {
        let (off_url, on_url) = (off.url(task_id).await, on.url(task_id).await);
        let (off, on) = if i % 2 == 0 {
            let off = first_pass(off.edge(), off_url, task_id, events).await;
            (off, first_pass(on.edge(), on_url, task_id, events).await)
        } else {
            let on = first_pass(on.edge(), on_url, task_id, events).await;
            (first_pass(off.edge(), off_url, task_id, events).await, on)
        };
        pairs.push((off, on));
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        (values[values.len() / 2] + values[(values.len() - 1) / 2]) / 2.0
    };
    let rate_ratio = median(pairs.iter().map(|(off, on)| on.0 / off.0).collect());
    let cpu_per_event = |pass: &(f64, Duration)| pass.1.as_secs_f64() * 1e6 / events as f64;
    let (cpu_off, cpu_on) = (
        median(pairs.iter().map(|(off, _)| cpu_per_event(off)).collect()),
        median(pairs.iter().map(|(_, on)| cpu_per_event(on)).collect()),
    );
    let shown: Vec<String> = pairs.iter().map(|(off, on)| format!("{:.0}/{:.0}", off.0, on.0)).collect();
    let cpu_shown: Vec<String> =
        pairs.iter().map(|(off, on)| format!("{:.2}/{:.2}", cpu_per_event(off), cpu_per_event(on))).collect();
    println!(
        "archive off vs on (first pass of {} tasks of {events} events, in pairs): off/on events/s {}; median \
         on/off {rate_ratio:.3}: the archive costs {:.1}% of throughput",
        compared_tasks().len(),
        shown.join(", "),
        100.0 * (1.0 - rate_ratio)
    );
    println!(
        "archive off vs on, workerd CPU per event (the task's end included): off/on us {}; medians {cpu_off:.2} \
         vs {cpu_on:.2} us: the archive costs {:.1}% more of the edge's CPU",
        cpu_shown.join(", "),
        100.0 * (cpu_on / cpu_off - 1.0)
    );
}

/// The recorded tasks this comparison streams, each to be recorded (each edge adopts it right
/// before its first pass there).
pub fn recorded_tasks() -> Vec<String> {
    compared_tasks().into_iter().chain(profiling().then(|| PROFILED_TASK.to_string())).collect()
}

/// With `PROFILE=1`, a recorded task whose first passes (archive off, then on) are profiled.
const PROFILED_TASK: &str = "00000000-0000-4000-8000-0000000000fe";

pub fn profiling() -> bool {
    std::env::var("PROFILE").is_ok_and(|v| v == "1")
}

/// Recorded tasks that each side streams for the first time, archive off and on in pairs (`PAIRS`,
/// default 30): the archive's cost is the median of the pairs' ratios (one pair is too noisy here).
fn compared_tasks() -> Vec<String> {
    let pairs: usize = std::env::var("PAIRS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    (0..pairs).map(|i| format!("00000000-0000-4000-8000-0000000c{i:04x}")).collect()
}

/// Streams the recorded task `task_id` through the socket at `url` of `edge`: events/s, and the
/// CPU time the edge's workerd used for it (its work after the last frame included).
async fn first_pass(edge: &Edge, url: String, task_id: &str, events: u64) -> (f64, Duration) {
    let cpu = edge.workerd_cpu();
    let rate = stream_recorded_task(&url, task_id, events).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    (rate, edge.workerd_cpu() - cpu)
}

/// `PROFILE=1`: where each edge's isolate spends a first pass of a recorded task (archive off,
/// then on), by the functions' own samples.
async fn profile_first_passes(sides: [Side<'_>; 2], events: u64) {
    for (side, archive) in sides.into_iter().zip(["off", "on"]) {
        let (edge, url) = (side.edge(), side.url(PROFILED_TASK).await);
        let pass = async {
            stream_recorded_task(&url, PROFILED_TASK, events).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let ((), hot, total) = isolate_profile::profile(edge, 15, pass).await;
        println!("profile, archive {archive}: {total} samples of 200 us; by own samples:");
        for Hot { function, samples } in hot {
            println!("  {:5.1}% {function:.120}", 100.0 * samples as f64 / total as f64);
        }
    }
}
