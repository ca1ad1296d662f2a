//! Prints what an environment's prepared workspace saves a task's start (issue 28), side by side
//! in one run (not a pass/fail test): Start -> the agent running (the `agent_started` event) for
//! (1) the first task of a repository and environment (a fresh clone, then the setup script);
//! (2) a second task on the same repository and environment in the same service, which starts
//! from a copy of the workspace the first one's setup left (`<work_dir>/prepared/<key>/`, copied
//! with `cp -a`), fetches its ref on it and runs the maintenance script; and (3) a third in a new
//! container, a service with an empty work directory, which restores the prepared workspace the
//! first task sent to the edge's store (R2), then copies it, fetches and runs the maintenance
//! script as (2) does. The issue's targets: the warm start (2) within 1 s plus the fetch; the
//! restore (3) at least 5x faster than the setup it replaces (1).
//!
//! - The edge and the service: the real `wrangler dev` edge (the built Worker; its R2 bucket is
//!   wrangler's local one, on this machine's disk) with `ENVIRONMENT_SECRETS_KEY` and
//!   `PREPARED_STORE_URL` set, in front of the release agent-service (`cargo build --release -p
//!   agent-service`, as `make bench` does), with the real Claude Code CLI against the fake model
//!   API. Tasks are started through the edge (`POST /api/container/start` naming the environment
//!   saved there, `PUT /api/environments/bench`): only then does a first turn's environment carry
//!   the prepared store. Their Status is the edge's; their events are read from the service over
//!   gRPC. The prompt is `SCENARIO:answer`, so the agent answers at once and does nothing heavy.
//! - The new container: the service killed and started again on the same address with an empty
//!   work directory, as `Service::replace_with_empty_work_dir` does, but the old directory is kept
//!   to the end of the run (deleting its tens of thousands of files would slow the restore, see
//!   below). Its HOME and the machine's page cache (the CLI's files) are the same: unlike a real
//!   new container's, the agent's launch is warm.
//! - The repository: a small project (`package.json`, `src/`, a `.gitignore` naming
//!   `node_modules/`) in a local bare repository (file://), so the clone and the fetch are
//!   local and small: what is measured is the setup against the copy and the restore.
//! - The setup script: an offline, deterministic "install": 400 packages of 50 modules (~2.5 KB
//!   of generated source each, by one awk; 20,000 files, ~50 MB) under the ignored
//!   `node_modules/`, each package's modules bundled and gzipped, and a SHA-256 lock of every
//!   module (real CPU work, a few seconds). The maintenance script checks the lock is there.
//! - `ROUNDS` (default 3) rounds, each on a new environment revision (the environment saved
//!   again: a new key, so the first task sets up afresh; the edge drops the last revision's
//!   objects from its store), each the three tasks in turn; medians are printed, and `SAMPLES=1`
//!   prints every round. One untimed task runs first through the edge (the Worker and the CLI's
//!   files warm); the machine's dirty pages are written out (`sync`) before each timed task.
//! - From the task's events, by their recorded times: the Start's way (sent to the edge ->
//!   CLONING: the Worker, the user's Durable Object opening the environment, the gRPC Start),
//!   the clone (CLONING -> `repository_ready`), the setup script's own duration
//!   (`setup_finished.duration`), the copy the first task keeps (`setup_finished` -> RUNNING:
//!   the workspace copied into `prepared/`), the second task's copy out (CLONING -> the "started
//!   from the workspace ... prepared" note) and fetch (that note -> `repository_ready`: a new git
//!   config, the fetch and checkout of the ref), its maintenance script, and the agent's launch
//!   (RUNNING -> `agent_started`: the CLI starting until its first message). The third task's
//!   restore is the "looking for the workspace ... in the edge's store" note -> the "restored it
//!   from the edge's store: <X> MB in <Y> s" note (R2's object streamed into `tar -x`, placed
//!   among the prepared workspaces), then its copy out, fetch, maintenance and launch as the
//!   second's. The restore's MB are the note's (the tar stream's bytes), over the restore by the
//!   events' times and over the note's own seconds. The first task's upload to the store (while
//!   its agent works; the task's end waits for it) is given by its note's figures. The prepared
//!   copy's size is measured on disk (regular files, their bytes) and the copy's MB/s is that
//!   size over the copy out; the restored copy is checked to hold as many files.
//! - The copies create 20,000 files each (the restore twice: `tar -x`, then `cp -a`), so they
//!   cost what the file system charges to create a file. On an ext4 without a journal (this
//!   machine's), a new inode skips any deleted in the last minute (six while its inode table
//!   block is not written back), so right after many files were deleted (a test suite's or a
//!   previous run's temporary directories) the kernel spends its time checking inodes
//!   (`recently_deleted`) and a copy takes 2.4-4.6 s instead of 0.3-0.5 s: run it on a machine
//!   where nothing deleted many files in the last minutes.
//!
//! Run with `make bench`, or `cargo bench -p autopilot-tests --bench environments` once the
//! release agent-service and the Worker (`make worker`) are built.

mod run;
mod tables;

use std::time::{Duration, Instant, SystemTime};

use autopilot_tests::{
    edge::Edge,
    events::{kind, stream_all},
    fake_model_api::FakeModelApi,
    git_fixture::git,
    service::{Service, ServiceOptions},
};
use reqwest::Method;
use run::{prepared_keys, since, size_of, sync, Run};
use serde_json::json;
use tables::{median, print_table, FIRST, SECOND, THIRD};

/// Packages the setup script installs, modules per package, and lines per module (~64 B each).
const PACKAGES: usize = 400;
const MODULES: usize = 50;
const LINES: usize = 30;

/// The setup script: `node_modules/` as an install would leave it, generated offline and
/// deterministically (awk's generator seeded), then bundled, gzipped and hashed.
fn setup_script() -> String {
    format!(
        r#"echo "installing {PACKAGES} packages"
mkdir -p node_modules/pkg-{{000..{last:03}}}/lib
awk -v packages={PACKAGES} -v modules={MODULES} -v lines={LINES} 'BEGIN {{
  srand(28)
  for (p = 0; p < packages; p++)
    for (m = 0; m < modules; m++) {{
      file = sprintf("node_modules/pkg-%03d/lib/m%02d.js", p, m)
      for (l = 0; l < lines; l++)
        printf "export const k%02d = \"%08x%08x%08x%08x\";\n", l, rand() * 4294967296, rand() * 4294967296,
          rand() * 4294967296, rand() * 4294967296 > file
      close(file)
    }}
}}'
for package in node_modules/pkg-*; do
  cat "$package"/lib/*.js | gzip -6 > "$package/bundle.js.gz"
done
find node_modules -type f -name '*.js' -print0 | sort -z | xargs -0 sha256sum > node_modules/.lock-sha256
echo "installed $(ls node_modules | wc -l) packages"
"#,
        last = PACKAGES - 1
    )
}

/// The maintenance script: the install is there.
const MAINTENANCE_SCRIPT: &str = "test -s node_modules/.lock-sha256\necho 'dependencies up to date'";

/// A small project in a bare repository; answers the directory holding it and its file:// URL.
fn project_repository() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("src")).unwrap();
    std::fs::write(work.join("README.md"), "# Demo app\n").unwrap();
    std::fs::write(work.join(".gitignore"), "node_modules/\n").unwrap();
    std::fs::write(work.join("package.json"), "{\"name\": \"demo-app\", \"version\": \"1.0.0\", \"private\": true}\n")
        .unwrap();
    std::fs::write(work.join("src/index.js"), "export const hello = () => 'hello';\n").unwrap();
    git(&work, &["init", "-q"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-qm", "first"]);
    git(dir.path(), &["clone", "-q", "--bare", "work", "repo.git"]);
    let url = format!("file://{}", dir.path().join("repo.git").display());
    (dir, url)
}

/// The note of a first task's upload to the edge's store, before its figures.
const UPLOADED: &str = "kept the workspace environment bench prepared in the edge's store, for new containers: ";
/// The notes of a restore from the edge's store: it begins, and it ended (before its figures).
const LOOKING: &str = "looking for the workspace environment bench prepared in the edge's store";
const RESTORED: &str = "restored it from the edge's store: ";

/// The edge, the service behind it, and the user and repository the tasks run for.
struct Bench {
    model_api: FakeModelApi,
    service: Service,
    edge: Edge,
    token: String,
    url: String,
    _repository: tempfile::TempDir,
    /// The work directories of the new containers' services, kept to the end of the run: the
    /// services replaced leave theirs behind too (see the module's comment).
    work_dirs: Vec<tempfile::TempDir>,
}

impl Bench {
    async fn start() -> Bench {
        let model_api = FakeModelApi::start().await.unwrap();
        // The default options allow local repositories (the file:// one).
        let service = Service::start(&model_api, ServiceOptions::default()).await;
        let vars = [
            ("ENVIRONMENT_SECRETS_KEY", "the environments benchmark's key, issue 28"),
            ("PREPARED_STORE_URL", "{edge}/cache/prepared"),
        ];
        let edge = Edge::start_with_vars(&format!("http://{}", service.addr), &vars).await;
        let token = edge.user("bench", 1_000_000).await;
        let (repository, url) = project_repository();
        Bench { model_api, service, edge, token, url, _repository: repository, work_dirs: Vec::new() }
    }

    /// Saves the environment (again): answers its revision, a new one each time (a new key, so
    /// its first task sets up afresh).
    async fn save_environment(&self) -> u64 {
        let body = json!({
            "repositories": [self.url],
            "setupScript": setup_script(),
            "maintenanceScript": MAINTENANCE_SCRIPT,
        });
        let (status, saved) = self.edge.call(Method::PUT, "/api/environments/bench", &self.token, Some(body)).await;
        assert_eq!(status, 200, "saving the environment: {saved}");
        saved["revision"].as_u64().unwrap_or_else(|| panic!("no revision: {saved}"))
    }

    /// Starts a task on the repository through the edge (in `environment`, if given) and waits
    /// for its end, which must be a success.
    async fn run_task(&self, environment: Option<&str>) -> Run {
        let mut start = json!({"repositoryUrl": self.url, "prompt": "SCENARIO:answer"});
        if let Some(name) = environment {
            start["environment"] = name.into();
        }
        let sent = SystemTime::now();
        let started = self.edge.post_json("/api/container/start", &self.token, start).await;
        let task_id = started["taskId"].as_str().unwrap_or_else(|| panic!("no task started: {started}")).to_string();
        let ended = self.edge.until_ended(&self.token, &task_id).await;
        let events = stream_all(&mut self.service.client().await, &task_id, 1).await;
        let kinds: Vec<String> = events.iter().map(kind).collect();
        assert_eq!(ended["task"]["state"], "TASK_STATE_SUCCEEDED", "{ended}\n{kinds:?}\n{}", self.edge.log());
        Run { events, ended, sent }
    }

    /// Replaces the service as a new container would: killed, then started on the same address
    /// with an empty work directory (the old one kept, unlike `replace_with_empty_work_dir`).
    async fn new_container(&mut self) {
        let work = tempfile::tempdir().unwrap();
        self.service.work_dir = work.path().to_path_buf();
        self.work_dirs.push(work);
        self.service.restart_after_crash(&self.model_api, &ServiceOptions::default()).await;
    }
}

#[tokio::main]
async fn main() {
    let rounds: u64 = std::env::var("ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let samples = std::env::var_os("SAMPLES").is_some();
    let run = Instant::now();
    let mut bench = Bench::start().await;
    // Untimed: the Worker and the CLI's files warm.
    bench.run_task(None).await;
    println!(
        "environments benchmark: {rounds} rounds, each on a new environment revision: a first task (fresh clone + \
         setup script: {PACKAGES} packages x {MODULES} modules generated into the ignored node_modules/, bundled, \
         gzipped and hashed), a second task in the same service (the prepared copy + fetch + maintenance script) and \
         a third in a new container (the service with an empty work directory: the prepared workspace restored from \
         the edge's store, then as the second); tasks started through wrangler dev's edge (its R2 local), the \
         release agent-service, the real Claude Code CLI against the fake model API (SCENARIO:answer), a local \
         file:// repository (set up in {:.1} s)",
        run.elapsed().as_secs_f64()
    );

    let (mut firsts, mut seconds, mut thirds) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ratios, mut restore_ratios, mut phase_ratios, mut warm) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let revision = bench.save_environment().await;
        let before = prepared_keys(&bench.service.work_dir);
        sync();
        let first = bench.run_task(Some("bench")).await;
        assert_eq!(first.origin(), "WORKSPACE_ORIGIN_FRESH", "revision {revision} sets up afresh");
        let kept: Vec<String> = prepared_keys(&bench.service.work_dir).difference(&before).cloned().collect();
        assert_eq!(kept.len(), 1, "the first task kept one prepared workspace: {kept:?}");
        let (files, bytes) = size_of(&bench.service.work_dir.join("prepared").join(&kept[0]));
        let mb = bytes as f64 / 1e6;

        sync();
        let second = bench.run_task(Some("bench")).await;
        assert_eq!(second.origin(), "WORKSPACE_ORIGIN_PREPARED", "the second starts from the copy");

        bench.new_container().await;
        sync();
        let third = bench.run_task(Some("bench")).await;
        assert_eq!(third.origin(), "WORKSPACE_ORIGIN_RESTORED", "the third restores it: {:?}", third.notes());
        let (restored, _) = size_of(&bench.service.work_dir.join("prepared").join(&kept[0]));
        assert_eq!(restored, files, "the restored prepared workspace holds the files kept");

        let s = |d: Duration| d.as_secs_f64();
        let (cold, start) = (s(first.to_agent()), s(first.to_first_step()));
        let (clone, setup) = (s(first.between("state:CLONING", "repository_ready")), s(first.script()));
        let keep = s(first.between("setup_finished", "state:RUNNING"));
        let launch = s(first.between("state:RUNNING", "agent_started"));
        let (up_mb, up_s) = first.note_figures(UPLOADED);
        let other = cold - start - clone - setup - keep - launch;
        firsts.push(vec![cold, start, clone, setup, keep, mb / keep, launch, other, up_s, up_mb / up_s]);

        let copied = second.copied_at();
        let (hot, start) = (s(second.to_agent()), s(second.to_first_step()));
        let copy = s(since(second.time_of_kind("state:CLONING"), copied));
        let fetch = s(since(copied, second.time_of_kind("repository_ready")));
        let (maintenance, launch) = (s(second.script()), s(second.between("state:RUNNING", "agent_started")));
        let other = hot - start - copy - fetch - maintenance - launch;
        let row =
            [hot, start, copy, fetch, maintenance, launch, other, files as f64, mb, mb / copy, mb / (hot - fetch)];
        seconds.push(row.to_vec());
        ratios.push(cold / hot);
        warm.push(hot - fetch);

        let (looked, restored_at, copied) = (third.note(LOOKING).1, third.note(RESTORED).1, third.copied_at());
        let (restored_mb, note_s) = third.note_figures(RESTORED);
        let (new, start) = (s(third.to_agent()), s(third.to_first_step()));
        let (restore, copy) = (s(since(looked, restored_at)), s(since(restored_at, copied)));
        let fetch = s(since(copied, third.time_of_kind("repository_ready")));
        let (maintenance, launch) = (s(third.script()), s(third.between("state:RUNNING", "agent_started")));
        let other = new - start - restore - copy - fetch - maintenance - launch;
        thirds.push(vec![
            new,
            start,
            restore,
            copy,
            fetch,
            maintenance,
            launch,
            other,
            restored_mb,
            restored_mb / restore,
            note_s,
            restored_mb / note_s,
        ]);
        restore_ratios.push(cold / new);
        phase_ratios.push((clone + setup) / (restore + copy + fetch + maintenance));
    }

    println!();
    let first = print_table(
        "(1) first task (fresh clone + setup script), seconds; keep = the set-up workspace copied into prepared/; \
         upload = it sent to the edge's store while the agent works (the note's figures)",
        &FIRST,
        &firsts,
        samples,
    );
    println!();
    let second = print_table(
        "(2) second task (prepared copy + fetch + maintenance script), seconds; then the prepared workspace copied",
        &SECOND,
        &seconds,
        samples,
    );
    println!();
    let third = print_table(
        "(3) third task, in a new container (restore from the edge's store + copy + fetch + maintenance script), \
         seconds; then the restore's MB (the note's: the tar stream) and MB/s (by the events' times, by the note's)",
        &THIRD,
        &thirds,
        samples,
    );
    println!(
        "(medians column by column; start = Start sent to the edge -> CLONING; other = start->agent less the phases: \
         state changes, git config, notes)"
    );

    println!();
    let (ratio, restore_ratio, phase_ratio, warm) =
        (median(ratios), median(restore_ratios), median(phase_ratios), median(warm));
    println!(
        "Start -> agent running (medians): first task {:.2} s (its setup script {:.2} s), second task {:.2} s, third \
         task in a new container {:.2} s (its restore {:.2} s); first / second {ratio:.1}x, first / third \
         {restore_ratio:.1}x (medians of the rounds' ratios)",
        first[0], first[3], second[0], third[0], third[2]
    );
    let met = if warm <= 1.0 { "met" } else { "NOT met" };
    println!(
        "target: the warm start within 1 s plus the fetch: start->agent less the fetch {warm:.2} s (median of the \
         rounds; the fetch {:.3} s, the agent's launch {:.2} s), {met}",
        second[3], second[5]
    );
    let met = if restore_ratio >= 5.0 { "met" } else { "NOT met" };
    println!(
        "target: the restore at least 5x faster than the setup it replaces: first / third start->agent \
         {restore_ratio:.1}x, {met} (the phases alone, clone + setup script against restore + copy + fetch + \
         maintenance: {phase_ratio:.1}x)"
    );
    println!(
        "the restore: {:.1} MB from the edge's store in {:.2} s by the events ({:.1} MB/s; the note's {:.2} s, {:.1} \
         MB/s), {:.0} files of {:.1} MB on disk ({:.1} MB/s of their bytes), then copied out in {:.2} s; the first \
         task's upload of it {:.2} s ({:.1} MB/s)",
        third[8],
        third[2],
        third[9],
        third[10],
        third[11],
        second[7],
        second[8],
        second[8] / third[2],
        third[3],
        first[8],
        first[9]
    );
    println!("run took {:.1} s", run.elapsed().as_secs_f64());
}
