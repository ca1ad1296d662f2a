//! Prints the git gateway's figures, side by side in one run (not a pass/fail test): what the
//! edge's git gateway (`{edge}/git/<owner>/<name>.git/...`: Worker -> the user's Durable Object,
//! which checks the task's git credential, and for a push every ref it updates, then relays the
//! call to GitHub with the user's token and streams the answer back) costs a clone and a push of
//! a large repository, against the same clone and push made straight to the same git server (the
//! tests' fake GitHub, whose git side is the real `git http-backend`); and the latency a pull
//! request adds to a task's end.
//!
//! - The repository: `octo/big`, private, 5,000 files of ~300 bytes in 50 directories on `main`.
//! - Each operation runs direct (a GitHub token) and through the gateway (a running task's
//!   credential), `ROUNDS` (default 5) times per path, alternating and flipping the order each
//!   round, after one warm-up each, each after a `sync`; median and min seconds, MB/s of the pack
//!   git moved, and gateway throughput / direct (the issue's target: at least 0.8x).
//! - `git ls-remote` (the refs alone: each path's cost before a pack moves); `git clone` (with
//!   its checkout, as a task clones) and `git clone --bare` (the transfer alone).
//! - `git push` of a commit changing 100 files (a task's change), then of one changing all 5,000
//!   (a whole repository's worth of new objects), direct to `bench/direct` and through the
//!   gateway to the task's own branch `autopilot/<task id>` (the only one it may push); the
//!   commit is packed before the push is timed.
//! - Pull request: tasks asking for one (`SCENARIO:write-file`, `delivery.push` and
//!   `pullRequest.open`); from the task's end (its `endTime`) to the pull request being created
//!   at GitHub, and to it being recorded on the task (Status `task.delivery.pullRequest`);
//!   `PR_TASKS` (default 3) tasks; beside GitHub's own `POST /repos/{owner}/{repo}/pulls` timed
//!   directly. `SAMPLES=1` also prints every sample.
//!
//! The credential is that of a task whose agent waits forever on its model call
//! (`SCENARIO:hang`): the service's git is the real git behind a wrapper logging its command
//! lines, so the bench reads the credential as `tests/github/` does; the task is cancelled at
//! the end. The person is signed in through GitHub, redirect by redirect.
//!
//! Run with `make bench`.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use autopilot_contract::v1::{client_frame::Request as ClientRequest, CancelRequest, ClientFrame};
use autopilot_tests::{
    bridge_client::{connect, send, Encoding},
    edge::Edge,
    fake_github::FakeGithub,
    fake_model_api::FakeModelApi,
    figures::percentile,
    git_logging::{git_credentials_used, git_logging_wrapper},
    github_sign_in::{self, session_of},
    service::{Service, ServiceOptions},
};
use reqwest::Client;
use serde_json::{json, Value};

/// Files in the repository, spread over `DIRS` directories.
mod pull_requests;

const FILES: usize = 5_000;
const DIRS: usize = 50;
/// About how many bytes each file holds.
const FILE_BYTES: usize = 300;
/// Files a pushed commit changes.
const PUSH_FILES: usize = 100;

struct World {
    edge: Edge,
    github: FakeGithub,
    /// A client that never follows redirects (the sign-in takes each hop by hand).
    http: Client,
    model_api: FakeModelApi,
    _service: Service,
    /// Where the service's git wrapper logs each command line.
    git_log: PathBuf,
    _git_wrapper: tempfile::TempDir,
}

impl World {
    async fn start() -> World {
        let github = FakeGithub::start().await.unwrap();
        github.add_user("octo", 1001);
        let model_api = FakeModelApi::start().await.unwrap();
        let (git_wrapper, git_log) = git_logging_wrapper();
        let options = ServiceOptions { path_prefix: Some(git_wrapper.path().to_path_buf()), ..Default::default() };
        let service = Service::start(&model_api, options).await;
        let mut vars = github.edge_vars().to_vec();
        vars.push(("SIGNUP_CREDITS", "500"));
        let edge = Edge::start_with_vars(&format!("http://{}", service.addr), &vars).await;
        let http = github_sign_in::browser();
        World { edge, github, http, model_api, _service: service, git_log, _git_wrapper: git_wrapper }
    }

    /// Signs `login` in through GitHub as a browser does, redirect by redirect; its session cookie.
    async fn sign_in(&self, login: &str) -> String {
        let base = &self.edge.base_url;
        let (reply, _) = github_sign_in::through_github(&self.http, base, &self.github, login, &[], "/").await;
        session_of(&reply, "/")
    }

    /// A signed-in page's call on the edge (cookie and the site's Origin), with a JSON body or none.
    async fn call(&self, method: reqwest::Method, path: &str, session: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.edge.base_url))
            .header("cookie", session)
            .header("origin", &self.edge.base_url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply = request.send().await.unwrap();
        (reply.status().as_u16(), reply.json().await.unwrap_or_default())
    }

    async fn status(&self, session: &str, task_id: &str) -> Value {
        let path = format!("/api/container/status?taskId={task_id}");
        self.call(reqwest::Method::GET, &path, session, None).await.1
    }

    /// The git gateway's URL of `repository` with `credential`.
    fn gateway(&self, repository: &str, credential: &str) -> String {
        let base = self.edge.base_url.trim_start_matches("http://");
        format!("http://x-access-token:{credential}@{base}/git/{repository}.git")
    }

    /// The fake GitHub's own URL of `repository` with `token`.
    fn direct(&self, repository: &str, token: &str) -> String {
        let base = self.github.url.trim_start_matches("http://");
        format!("http://x-access-token:{token}@{base}/{repository}.git")
    }
}

/// Runs the real git in `dir` (awaited: the fake GitHub serves from this runtime); panics
/// with what it printed unless it succeeded; answers its standard output.
async fn git(dir: &Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .envs([("GIT_AUTHOR_NAME", "Bench"), ("GIT_AUTHOR_EMAIL", "bench@example.invalid")])
        .envs([("GIT_COMMITTER_NAME", "Bench"), ("GIT_COMMITTER_EMAIL", "bench@example.invalid")])
        .output()
        .await
        .unwrap();
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "git {args:?} in {}: {printed}", dir.display());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// [`git`], timed, once what earlier steps wrote is on disk (`sync`: the git server fsyncs what a
/// push brings, which would otherwise pay for whatever the bench wrote just before).
async fn timed_git(dir: &Path, args: &[&str]) -> Duration {
    let synced = tokio::process::Command::new("sync").status().await.unwrap();
    assert!(synced.success());
    let started = Instant::now();
    git(dir, args).await;
    started.elapsed()
}

/// A small deterministic generator (xorshift64*), so the content does not compress to nothing.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// About `FILE_BYTES` of text: lines of lowercase words.
    fn text(&mut self, title: &str) -> String {
        let mut text = format!("# {title}\n");
        while text.len() < FILE_BYTES {
            let word_len = 3 + (self.next() % 7) as usize;
            text.extend((0..word_len).map(|_| (b'a' + (self.next() % 26) as u8) as char));
            text.push(if self.next() % 8 == 0 { '\n' } else { ' ' });
        }
        text.push('\n');
        text
    }
}

fn file_path(i: usize) -> String {
    format!("dir{:02}/file{:04}.txt", i % DIRS, i)
}

/// Puts `FILES` files on `main` of the bare repository at `bare` (a local push, before anything
/// is measured).
async fn fill_repository(bare: &Path) {
    let scratch = tempfile::tempdir().unwrap();
    let bare = bare.to_str().unwrap();
    git(scratch.path(), &["clone", "-q", bare, "work"]).await;
    let work = scratch.path().join("work");
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    for dir in 0..DIRS {
        std::fs::create_dir_all(work.join(format!("dir{dir:02}"))).unwrap();
    }
    for i in 0..FILES {
        std::fs::write(work.join(file_path(i)), noise.text(&file_path(i))).unwrap();
    }
    git(&work, &["add", "-A"]).await;
    git(&work, &["commit", "-qm", "5,000 files"]).await;
    git(&work, &["push", "-q", bare, "HEAD:refs/heads/main"]).await;
}

/// Changes `count` files of the work tree at `work` (spread over the tree), commits them and packs
/// the new objects; the size of the pack a push of that commit sends.
async fn commit_changes(work: &Path, noise: &mut Noise, count: usize, round: usize) -> u64 {
    for k in 0..count {
        let i = (k * (FILES / count) + round) % FILES;
        std::fs::write(work.join(file_path(i)), noise.text(&format!("{} round {round}", file_path(i)))).unwrap();
    }
    git(work, &["commit", "-qam", &format!("change {count} files, round {round}")]).await;
    // Packed before the push (untimed), so the push times the transfer and the server's side,
    // not this work tree compressing thousands of loose objects.
    git(work, &["repack", "-q", "-d"]).await;
    let out = tokio::process::Command::new("sh")
        .args(["-c", "git rev-list --objects HEAD~1..HEAD | git pack-objects -q --stdout | wc -c"])
        .current_dir(work)
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The size of the packs in the repository at `git_dir`.
fn pack_bytes(git_dir: &Path) -> u64 {
    let packs = std::fs::read_dir(git_dir.join("objects/pack")).unwrap();
    packs
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Direct and gateway samples of one operation, and the bytes it moves.
struct Row {
    what: String,
    bytes: u64,
    direct: Vec<Duration>,
    gateway: Vec<Duration>,
}

impl Row {
    fn print(&mut self) -> f64 {
        if std::env::var_os("SAMPLES").is_some() {
            let secs = |v: &[Duration]| v.iter().map(|d| format!("{:.3}", d.as_secs_f64())).collect::<Vec<_>>();
            println!("  {}: direct {:?}, gateway {:?}", self.what, secs(&self.direct), secs(&self.gateway));
        }
        let mb = self.bytes as f64 / 1e6;
        let (d50, g50) = (percentile(&mut self.direct, 0.5), percentile(&mut self.gateway, 0.5));
        let (dmin, gmin) = (self.direct[0], self.gateway[0]);
        let s = |d: Duration| d.as_secs_f64();
        let ratio = s(d50) / s(g50);
        println!(
            "{:<34} {:>6.2} | {:>6.3} {:>6.3} {:>6.1} | {:>6.3} {:>6.3} {:>6.1} | {:>5.2}x {:>5.2}x",
            self.what,
            mb,
            s(d50),
            s(dmin),
            mb / s(d50),
            s(g50),
            s(gmin),
            mb / s(g50),
            ratio,
            s(dmin) / s(gmin),
        );
        ratio
    }
}

/// An RFC 3339 UTC time (`2026-12-06T06:15:46.123456Z` or `...+00:00`, as Status writes one).
fn parse_time(text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z').or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = text.split_once('T')?;
    let mut date = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, d) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut hms = hms.split(':').map(|p| p.parse::<u64>());
    let (hh, mm, ss) = (hms.next()?.ok()?, hms.next()?.ok()?, hms.next()?.ok()?);
    let nanos: u32 = if frac.is_empty() { 0 } else { format!("{frac:0<9}")[..9].parse().ok()? };
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe - 719_468) as u64;
    Some(UNIX_EPOCH + Duration::new(days * 86_400 + hh * 3600 + mm * 60 + ss, nanos))
}

/// The median of `samples`, in ms (NaN for none).
fn median_ms(samples: &mut [Duration]) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    percentile(samples, 0.5).as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let env = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (rounds, pr_tasks) = (env("ROUNDS", 5), env("PR_TASKS", 3));
    let run = Instant::now();
    let world = World::start().await;
    let bare = world.github.add_repo("octo", "big", true, "main");
    world.github.grant("octo", "octo/big");
    fill_repository(&bare).await;
    let session = world.sign_in("octo").await;
    let token = world.github.issue_token("octo");
    let repository_url = format!("{}/octo/big", world.github.url);

    // A task whose agent stays in its first model call: its git credential lives as long as needed.
    let start = json!({"repositoryUrl": repository_url, "prompt": "SCENARIO:hang keep the credential"});
    let (status, started) = world.call(reqwest::Method::POST, "/api/container/start", &session, Some(start)).await;
    assert_eq!(status, 200, "{started}");
    let task_id = started["taskId"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    while world.model_api.requests_containing("keep the credential").is_empty() {
        assert!(Instant::now() < deadline, "the task never reached its agent:\n{}", world.edge.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let credential = git_credentials_used(&world.git_log).pop().expect("the task's git used a credential");
    let branch = format!("autopilot/{task_id}");
    let (direct_url, gateway_url) = (world.direct("octo/big", &token), world.gateway("octo/big", &credential));
    println!(
        "git gateway benchmark: {FILES} files of ~{FILE_BYTES} B in {DIRS} directories; {rounds} rounds per path, \
         alternating direct/gateway after a warm-up each; git server: the fake GitHub (git http-backend); \
         edge: workerd via wrangler dev (set up in {:.1} s)",
        run.elapsed().as_secs_f64()
    );

    // The refs alone (`git ls-remote`): what each path costs before any pack moves.
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let mut refs = Row { what: "ls-remote (refs only, no pack)".into(), bytes: 0, direct: vec![], gateway: vec![] };
    for round in 0..=rounds {
        let (d, g) = (["ls-remote", &direct_url], ["ls-remote", &gateway_url]);
        let (d, g) = if round % 2 == 0 {
            (timed_git(s, &d).await, timed_git(s, &g).await)
        } else {
            let g = timed_git(s, &g).await;
            (timed_git(s, &d).await, g)
        };
        if round > 0 {
            refs.direct.push(d);
            refs.gateway.push(g);
        }
    }
    let mut rows = vec![refs];

    // Clones: with a checkout (as a task clones) and bare (the transfer alone).
    for (what, bare_clone) in [("clone (with checkout)", false), ("clone --bare (transfer only)", true)] {
        let mut row = Row { what: what.into(), bytes: 0, direct: Vec::new(), gateway: Vec::new() };
        let clone = |url: String, dir: String| async move {
            let mut args = vec!["clone", "-q"];
            if bare_clone {
                args.push("--bare");
            }
            let time = timed_git(s, &[&args[..], &[url.as_str(), dir.as_str()]].concat()).await;
            let git_dir = if bare_clone { s.join(&dir) } else { s.join(&dir).join(".git") };
            let (bytes, head) = (pack_bytes(&git_dir), git(&git_dir, &["rev-parse", "HEAD"]).await);
            tokio::fs::remove_dir_all(s.join(&dir)).await.unwrap();
            (time, bytes, head)
        };
        clone(direct_url.clone(), "warm-d".into()).await;
        clone(gateway_url.clone(), "warm-g".into()).await;
        for round in 0..rounds {
            let d = || clone(direct_url.clone(), format!("d{round}"));
            let g = || clone(gateway_url.clone(), format!("g{round}"));
            let (d, g) = if round % 2 == 0 { (d().await, g().await) } else { (g().await, d().await) };
            let (d, g) = if round % 2 == 0 { (d, g) } else { (g, d) };
            assert_eq!(d.2, g.2, "both paths clone the same commit");
            row.bytes = d.1;
            row.direct.push(d.0);
            row.gateway.push(g.0);
        }
        rows.push(row);
    }

    // Pushes: each path's work tree commits changes to some files each round and pushes them
    // (direct to a branch of its own, through the gateway to the task's branch): 100 files (a
    // task's change) and all 5,000 (the whole repository's worth of new objects).
    git(s, &["clone", "-q", &direct_url, "push-d"]).await;
    git(s, &["clone", "-q", &gateway_url, "push-g"]).await;
    let (work_d, work_g) = (s.join("push-d"), s.join("push-g"));
    // No `gc --auto` after each commit of 5,000 files: detached, it would run during the pushes.
    for work in [&work_d, &work_g] {
        git(work, &["config", "gc.auto", "0"]).await;
    }
    let gateway_ref = format!("HEAD:refs/heads/{branch}");
    let (mut noise_d, mut noise_g) = (Noise(7), Noise(11));
    let mut round = 0;
    for (what, count) in
        [(format!("push ({PUSH_FILES} files changed)"), PUSH_FILES), ("push (all 5,000 files changed)".into(), FILES)]
    {
        let mut push = Row { what, bytes: 0, direct: vec![], gateway: vec![] };
        // The first is a warm-up (and creates both branches); the measured ones flip the order.
        for measured in std::iter::once(false).chain(std::iter::repeat_n(true, rounds)) {
            round += 1;
            let bytes = commit_changes(&work_d, &mut noise_d, count, round).await;
            commit_changes(&work_g, &mut noise_g, count, round).await;
            let (d_args, g_args) = (
                ["push", "-q", &direct_url, "HEAD:refs/heads/bench/direct"],
                ["push", "-q", &gateway_url, &gateway_ref],
            );
            let d = || timed_git(&work_d, &d_args);
            let g = || timed_git(&work_g, &g_args);
            let (d, g) = if round % 2 == 0 {
                (d().await, g().await)
            } else {
                let g = g().await;
                (d().await, g)
            };
            let pushed = world.github.rev_parse("octo", "big", &format!("refs/heads/{branch}"));
            assert_eq!(pushed, Some(git(&work_g, &["rev-parse", "HEAD"]).await), "the gateway's push reached GitHub");
            if measured {
                push.bytes = bytes;
                push.direct.push(d);
                push.gateway.push(g);
            }
        }
        rows.push(push);
    }

    println!(
        "{:<34} {:>6} | {:^20} | {:^20} | {:^13}",
        "operation", "MB", "direct med min MB/s", "gateway med min MB/s", "ratio med min"
    );
    // The target is about throughput: the rows that move a pack.
    let mut ratios = Vec::new();
    for row in &mut rows {
        let ratio = row.print();
        if row.bytes > 0 {
            ratios.push((row.what.clone(), ratio));
        }
    }
    println!(
        "(seconds per operation; MB = the pack git moved; MB/s at the median; ratio = gateway throughput / direct \
         = direct time / gateway time, at the median and at the min)"
    );
    for (what, ratio) in &ratios {
        let met = if *ratio >= 0.8 { "met" } else { "NOT met" };
        println!("target >= 0.80x direct throughput, {what}: {ratio:.2}x, {met}");
    }

    // Pull requests: the edge's, after a task's end, and GitHub's own call made directly.
    pull_requests::time_pull_requests(&world, &session, &repository_url, &token, pr_tasks, &work_d, &direct_url).await;

    // The credential's task, cancelled (over a socket opened now: one left unread all along
    // would have missed the edge's pings and been closed).
    let body = json!({"taskId": task_id});
    let (_, ticket) = world.call(reqwest::Method::POST, "/api/container/ws-ticket", &session, Some(body)).await;
    let mut socket = connect(ticket["websocketUrl"].as_str().unwrap_or_else(|| panic!("a ticket: {ticket}"))).await;
    let cancel = ClientFrame {
        request_id: "cancel".into(),
        request: Some(ClientRequest::Cancel(CancelRequest { task_id: task_id.clone(), ..Default::default() })),
    };
    send(&mut socket, &cancel, Encoding::Binary).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while world.status(&session, &task_id).await["task"]["state"] != "TASK_STATE_CANCELLED" {
        assert!(Instant::now() < deadline, "the credential's task was not cancelled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("run took {:.1} s", run.elapsed().as_secs_f64());
}
