//! The archive's cost on a task's first pass: recorded tasks streamed through an edge without an
//! archive and through one whose object follows each into its archive while streaming it, in
//! pairs, each pair's order the other way round from the last, both edges warmed up first. The
//! cost is the median of the pairs' ratios (rates drift by 2x within a run here, and a pair's two
//! passes drift together), and of the CPU each edge's workerd spent per event.

use std::time::Duration;

use autopilot_tests::{
    edge::Edge,
    isolate_profile::{self, Hot},
};

use super::{adopt, stream_recorded_task, WARM_UP_EVENTS, WARM_UP_TASK};

/// An edge, the bench user's token on it, and a session to open the bridge with.
pub type Side<'a> = (&'a Edge, &'a str, &'a str);

/// A bridge URL on `side`.
async fn url((edge, token, session): Side<'_>) -> String {
    edge.ws_ticket_url(token, session).await
}

/// Compares first passes through `on` (the archive on) and `off`; prints the figures.
pub async fn compare(on: Side<'_>, off: Side<'_>, events: u64) {
    for (edge, token, session) in [on, off] {
        adopt(edge, WARM_UP_TASK).await;
        stream_recorded_task(&edge.ws_ticket_url(token, session).await, WARM_UP_TASK, WARM_UP_EVENTS).await;
    }
    if profiling() {
        profile_first_passes([off, on], events).await;
    }
    let mut pairs = Vec::new();
    for (i, task_id) in compared_tasks().iter().enumerate() {
        let (off_url, on_url) = (url(off).await, url(on).await);
        let (off, on) = if i % 2 == 0 {
            let off = first_pass(off.0, off_url, task_id, events).await;
            (off, first_pass(on.0, on_url, task_id, events).await)
        } else {
            let on = first_pass(on.0, on_url, task_id, events).await;
            (first_pass(off.0, off_url, task_id, events).await, on)
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

/// Recorded tasks that each edge streams for the first time, archive off and on in pairs (`PAIRS`,
/// default 30): the archive's cost is the median of the pairs' ratios (one pair is too noisy here).
fn compared_tasks() -> Vec<String> {
    let pairs: usize = std::env::var("PAIRS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    (0..pairs).map(|i| format!("00000000-0000-4000-8000-0000000c{i:04x}")).collect()
}

/// Streams the recorded task `task_id` through the bridge socket at `url` of `edge` (made the
/// user's there first): events/s, and the CPU time the edge's workerd used for it (its work
/// after the last frame included).
async fn first_pass(edge: &Edge, url: String, task_id: &str, events: u64) -> (f64, Duration) {
    adopt(edge, task_id).await;
    let cpu = edge.workerd_cpu();
    let rate = stream_recorded_task(&url, task_id, events).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    (rate, edge.workerd_cpu() - cpu)
}

/// `PROFILE=1`: where each edge's isolate spends a first pass of a recorded task (archive off,
/// then on), by the functions' own samples.
async fn profile_first_passes(edges: [Side<'_>; 2], events: u64) {
    for ((edge, token, session), archive) in edges.into_iter().zip(["off", "on"]) {
        let url = edge.ws_ticket_url(token, session).await;
        adopt(edge, PROFILED_TASK).await;
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
