//! A task run to its end through the edge, and what its events tell: when each phase began and
//! ended by the events' recorded times, the setup script's own duration, and the figures the
//! prepared-workspace notes give. Also the machine's side: `sync`, and the prepared copies on disk.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use autopilot_contract::v1::{event::Payload, Event};
use autopilot_tests::events::kind;
use serde_json::Value;

/// The phase of the service's `git_progress` notes about prepared workspaces.
const PREPARED_PHASE: &str = "Prepared workspace";

/// A task run to its end: its events (read from the service), its Status (from the edge), and
/// when its Start was sent to the edge.
pub struct Run {
    pub events: Vec<Event>,
    pub ended: Value,
    pub sent: SystemTime,
}

impl Run {
    /// Where the task's workspace came from, as its Status says (`WORKSPACE_ORIGIN_...`).
    pub fn origin(&self) -> &str {
        self.ended["task"]["workspaceOrigin"].as_str().unwrap_or_default()
    }

    /// When the first event that `wanted` picks was recorded.
    pub fn time_of(&self, what: &str, wanted: impl Fn(&Event) -> bool) -> SystemTime {
        let event =
            self.events.iter().find(|e| wanted(e)).unwrap_or_else(|| panic!("no {what} event: {}", self.kinds()));
        let time = event.time.as_ref().expect("an event's time");
        UNIX_EPOCH + Duration::new(time.seconds as u64, time.nanos as u32)
    }

    /// When the first event of `wanted` kind (exactly) was recorded.
    pub fn time_of_kind(&self, wanted: &str) -> SystemTime {
        self.time_of(wanted, |e| kind(e) == wanted)
    }

    /// The time from `from` to `to`, two events' kinds.
    pub fn between(&self, from: &str, to: &str) -> Duration {
        since(self.time_of_kind(from), self.time_of_kind(to))
    }

    /// Start sent (to the edge) -> `agent_started` recorded.
    pub fn to_agent(&self) -> Duration {
        since(self.sent, self.time_of_kind("agent_started"))
    }

    /// Start sent (to the edge) -> the task's first step (`state:CLONING`) recorded: the Start's
    /// way through the Worker, the user's Durable Object (the environment opened) and gRPC.
    pub fn to_first_step(&self) -> Duration {
        since(self.sent, self.time_of_kind("state:CLONING"))
    }

    /// The script's own duration, as `setup_finished` reports it.
    pub fn script(&self) -> Duration {
        let ended = self
            .events
            .iter()
            .find_map(|e| match &e.payload {
                Some(Payload::SetupFinished(ended)) => Some(*ended),
                _ => None,
            })
            .expect("a setup_finished event");
        assert_eq!(ended.exit_code, 0, "the script succeeded");
        let duration = ended.duration.expect("its duration");
        Duration::new(duration.seconds as u64, duration.nanos as u32)
    }

    /// The first prepared-workspace note starting with `prefix`: its message, and when it was
    /// recorded.
    pub fn note(&self, prefix: &str) -> (&str, SystemTime) {
        let found = self.events.iter().find_map(|e| match &e.payload {
            Some(Payload::GitProgress(p)) if p.phase == PREPARED_PHASE && p.message.starts_with(prefix) => {
                Some(p.message.as_str())
            }
            _ => None,
        });
        let message = found.unwrap_or_else(|| panic!("no note \"{prefix}...\": {:?}", self.notes()));
        (message, self.time_of(prefix, |e| matches!(&e.payload, Some(Payload::GitProgress(p)) if p.message == message)))
    }

    /// The figures of the note starting with `prefix` and going on "<X> MB in <Y> s": X and Y.
    pub fn note_figures(&self, prefix: &str) -> (f64, f64) {
        let (message, _) = self.note(prefix);
        let figures = message[prefix.len()..].trim_end_matches(" s");
        let (megabytes, seconds) = figures.split_once(" MB in ").unwrap_or_else(|| panic!("no figures: {message}"));
        let number = |text: &str| text.parse::<f64>().unwrap_or_else(|_| panic!("not a number: {text} in {message}"));
        (number(megabytes), number(seconds))
    }

    /// When the note that the task started from a prepared workspace was recorded.
    pub fn copied_at(&self) -> SystemTime {
        self.note("started from the workspace").1
    }

    fn kinds(&self) -> String {
        format!("{:?}", self.events.iter().map(kind).collect::<Vec<_>>())
    }

    /// Every prepared-workspace note, for a failure's message.
    pub fn notes(&self) -> Vec<&str> {
        let notes = self.events.iter().filter_map(|e| match &e.payload {
            Some(Payload::GitProgress(p)) if p.phase == PREPARED_PHASE => Some(p.message.as_str()),
            _ => None,
        });
        notes.collect()
    }
}

pub fn since(from: SystemTime, to: SystemTime) -> Duration {
    to.duration_since(from).unwrap_or_default()
}

/// Writes the machine's dirty pages out, so a task does not pay for the last one's.
pub fn sync() {
    let status = std::process::Command::new("sync").status().expect("running sync");
    assert!(status.success(), "sync failed");
}

/// The prepared workspaces' keys (directory names) under the service's work directory.
pub fn prepared_keys(work_dir: &Path) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(work_dir.join("prepared")) else { return BTreeSet::new() };
    entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect()
}

/// The regular files under `dir` and their bytes (symbolic links not followed).
pub fn size_of(dir: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    let mut pending: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.path().symlink_metadata().unwrap();
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    (files, bytes)
}
