//! End-to-end tests of what a task delivers: the diff event, GetDiff, the commit on the task's
//! branch in the clone, and the push to the repository. Real agent-service binary, real git on
//! local bare repositories (pushed to over file://), the real Claude Code CLI editing files
//! through its Bash tool; only the model API is fake (`support/fake_model_api.rs`).

use std::{collections::BTreeMap, path::PathBuf};

use autopilot_contract::v1::{
    event::Payload, CancelRequest, DeliveryOptions, Diff, Event, FileChangeStatus, GetDiffRequest, StartRequest,
    StatusRequest, Task, TaskState,
};
use autopilot_tests::{
    events::{finished, first_tool_result, kind, stream_all},
    fake_model_api::FakeModelApi,
    git_fixture::{git, GitFixture},
    grpc_web::grpc_web_client,
    service::{claude_cli, Service, ServiceFixture, ServiceOptions, CANARY_API_KEY},
};
use tonic::Code;

fn request(repo: &GitFixture, prompt: &str, delivery: Option<DeliveryOptions>) -> StartRequest {
    StartRequest { repository_url: repo.url(), prompt: prompt.into(), delivery, ..Default::default() }
}

fn push() -> Option<DeliveryOptions> {
    Some(DeliveryOptions { push: true, ..Default::default() })
}

/// Runs a task to its end: its id, every event, and its final Status.
async fn run(setup: &ServiceFixture, request: StartRequest) -> (String, Vec<Event>, Task) {
    let mut client = setup.service.client().await;
    let id = client.start(request).await.unwrap().into_inner().task_id;
    let events = stream_all(&mut client, &id, 1).await;
    let task = client.status(StatusRequest { task_id: id.clone() }).await.unwrap().into_inner().task.unwrap();
    (id, events, task)
}

/// The milestones of a task: every event kind but clone progress, usage and tool calls.
fn milestones(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(kind)
        .filter(|k| k != "git_progress" && k != "usage" && !k.starts_with("tool_"))
        .skip_while(|k| k != "agent_text")
        .collect()
}

fn diff_event(events: &[Event]) -> Diff {
    events
        .iter()
        .find_map(|e| match &e.payload {
            Some(Payload::Diff(diff)) => Some(diff.clone()),
            _ => None,
        })
        .expect("a diff event")
}

/// Each file of `diff` as path -> (status, insertions, deletions, old path).
fn files(diff: &Diff) -> BTreeMap<String, (FileChangeStatus, u32, u32, String)> {
    diff.files.iter().map(|f| (f.path.clone(), (f.status(), f.insertions, f.deletions, f.old_path.clone()))).collect()
}

fn clone_dir(setup: &ServiceFixture, task_id: &str) -> PathBuf {
    setup.service.work_dir.join("tasks").join(task_id).join("repo")
}

#[tokio::test]
async fn a_two_file_change_is_diffed_committed_on_the_branch_and_kept_for_get_diff() {
    let mut setup = ServiceFixture::start().await;
    let prompt = "Say hello from main\nSCENARIO:edit-and-create";
    let (id, events, task) = run(&setup, request(&setup.repo, prompt, None)).await;
    assert_eq!(task.state(), TaskState::Succeeded, "{}", task.error);
    assert_eq!(milestones(&events), ["agent_text", "diff", "committed", "state:SUCCEEDED", "task_finished:SUCCEEDED"]);

    // The diff event: exactly the two files, with git's own counts.
    let base = setup.repo.rev_parse("main");
    let diff = diff_event(&events);
    assert_eq!(diff.base_commit, base);
    assert_eq!(
        files(&diff),
        BTreeMap::from([
            ("NOTES.md".to_string(), (FileChangeStatus::Added, 3, 0, String::new())),
            ("main.rs".to_string(), (FileChangeStatus::Modified, 3, 1, String::new())),
        ])
    );
    let stats = diff.stats.unwrap();
    assert_eq!((stats.files_changed, stats.insertions, stats.deletions), (2, 6, 1));
    assert!(!diff.truncated);
    let main_rs = diff.files.iter().find(|f| f.path == "main.rs").unwrap();
    assert!(main_rs.patch.starts_with("diff --git a/main.rs b/main.rs\n"), "{}", main_rs.patch);
    assert!(main_rs.patch.contains("\n-fn main() {}\n") && main_rs.patch.contains("\n+    println!(\"hello\");\n"));
    let notes = diff.files.iter().find(|f| f.path == "NOTES.md").unwrap();
    assert!(notes.patch.contains("new file mode 100644") && notes.patch.ends_with("+one\n+two\n+three\n"));

    // The commit: on autopilot/<task id> in the clone, the clone on that branch and clean, the
    // start commit its parent, authored by the default identity, its message from the prompt.
    let branch = format!("autopilot/{id}");
    let delivery = task.delivery.clone().unwrap();
    assert_eq!(
        (delivery.branch.as_str(), delivery.pushed, delivery.base_commit.as_str()),
        (branch.as_str(), false, base.as_str())
    );
    assert_eq!(delivery.stats, diff.stats);
    let options = task.delivery_options.clone().unwrap();
    assert_eq!((options.branch.as_str(), options.author_name.as_str()), (branch.as_str(), "Autopilot"));
    let clone = clone_dir(&setup, &id);
    assert_eq!(git(&clone, &["rev-parse", &format!("refs/heads/{branch}")]), delivery.commit);
    assert_eq!(git(&clone, &["symbolic-ref", "HEAD"]), format!("refs/heads/{branch}"));
    assert_eq!(git(&clone, &["status", "--porcelain"]), "", "everything is committed");
    assert_eq!(git(&clone, &["rev-parse", &format!("{}^", delivery.commit)]), base);
    assert_eq!(
        git(&clone, &["log", "-1", "--format=%an <%ae>|%cn", &delivery.commit]),
        "Autopilot <autopilot@localhost>|Autopilot"
    );
    let message = git(&clone, &["log", "-1", "--format=%B", &delivery.commit]);
    assert!(message.starts_with("Say hello from main\n\nPrompt:\n"), "{message}");
    assert!(
        message.contains("I edited **main.rs** and added **NOTES.md**.")
            && message.ends_with(&format!("Autopilot-Task: {id}"))
    );
    assert_eq!(git(&clone, &["show", &format!("{}:NOTES.md", delivery.commit)]), "one\ntwo\nthree");
    let Some(Payload::Committed(committed)) =
        events.iter().find(|e| kind(e) == "committed").and_then(|e| e.payload.clone())
    else {
        unreachable!()
    };
    assert_eq!((committed.branch, committed.commit), (branch.clone(), delivery.commit.clone()));
    assert!(!setup.repo.has_branch(&branch), "not pushed unless asked");

    // GetDiff, over native gRPC and gRPC-web, answers the same (whole) diff.
    let mut client = setup.service.client().await;
    let whole = client.get_diff(GetDiffRequest { task_id: id.clone() }).await.unwrap().into_inner().diff.unwrap();
    assert_eq!(whole, diff, "a small diff is whole in the event already");
    let mut web = grpc_web_client(setup.service.addr);
    assert_eq!(web.get_diff(GetDiffRequest { task_id: id.clone() }).await.unwrap().into_inner().diff.unwrap(), whole);

    // A restarted service on the same work directory still has the diff and the delivery.
    setup.service.process.terminate();
    setup.service.process.wait(std::time::Duration::from_secs(20)).await.expect("the service exits");
    let work_dir = setup.service.work_dir.clone();
    let restarted =
        Service::start(&setup.model_api, ServiceOptions { work_dir: Some(work_dir), ..Default::default() }).await;
    let mut client = restarted.client().await;
    assert_eq!(client.get_diff(GetDiffRequest::default()).await.unwrap().into_inner().diff.unwrap(), whole);
    let reloaded = client.status(StatusRequest { task_id: id }).await.unwrap().into_inner().task.unwrap();
    assert_eq!(reloaded.delivery, task.delivery);
}

#[tokio::test]
async fn the_agents_own_commits_and_every_kind_of_change_reach_the_pushed_branch() {
    let setup = ServiceFixture::start().await;
    let delivery = DeliveryOptions {
        branch: "work/tidy-up".into(),
        push: true,
        author_name: "Ada Lovelace".into(),
        author_email: "ada@example.com".into(),
        ..Default::default()
    };
    let (id, events, task) =
        run(&setup, request(&setup.repo, "Tidy up\nSCENARIO:commit-and-edit", Some(delivery))).await;
    assert_eq!(task.state(), TaskState::Succeeded, "{}", task.error);
    assert_eq!(
        milestones(&events),
        ["agent_text", "diff", "committed", "branch_pushed", "state:SUCCEEDED", "task_finished:SUCCEEDED"]
    );

    // Committed by the agent, staged, unstaged and untracked alike; .gitignore respected.
    let diff = diff_event(&events);
    assert_eq!(
        files(&diff),
        BTreeMap::from([
            (".gitignore".to_string(), (FileChangeStatus::Added, 1, 0, String::new())),
            ("COMMITTED.md".to_string(), (FileChangeStatus::Added, 1, 0, String::new())),
            ("README.txt".to_string(), (FileChangeStatus::Renamed, 0, 0, "README.md".to_string())),
            ("UNCOMMITTED.md".to_string(), (FileChangeStatus::Added, 1, 0, String::new())),
            ("main.rs".to_string(), (FileChangeStatus::Deleted, 0, 1, String::new())),
        ])
    );

    // The branch holds the agent's commit and the service's on top, and reached the remote.
    let delivery = task.delivery.unwrap();
    assert_eq!((delivery.branch.as_str(), delivery.pushed), ("work/tidy-up", true));
    assert!(setup.repo.has_branch("work/tidy-up"));
    assert_eq!(setup.repo.rev_parse("refs/heads/work/tidy-up"), delivery.commit);
    let bare = setup.repo.bare_dir();
    let base = setup.repo.rev_parse("main");
    assert_eq!(
        git(&bare, &["log", "--format=%s|%an <%ae>", &format!("{base}..work/tidy-up")]),
        "Tidy up|Ada Lovelace <ada@example.com>\nagent commit|Agent <agent@example.invalid>"
    );
    assert_eq!(
        git(&bare, &["ls-tree", "--name-only", "work/tidy-up"]),
        ".gitignore\nCOMMITTED.md\nREADME.txt\nUNCOMMITTED.md"
    );
    let Some(Payload::BranchPushed(pushed)) =
        events.iter().find(|e| kind(e) == "branch_pushed").and_then(|e| e.payload.clone())
    else {
        unreachable!()
    };
    assert_eq!(
        (pushed.branch.as_str(), pushed.commit.as_str(), pushed.remote_url.as_str()),
        ("work/tidy-up", delivery.commit.as_str(), setup.repo.url().as_str())
    );
    let clone = clone_dir(&setup, &id);
    assert_eq!(git(&clone, &["status", "--porcelain", "--ignored"]), "!! build/", "the ignored file stays out");
}

/// `make dev` runs the service with `--work-dir .dev/work`: git, which runs inside the clone,
/// must still find the commit message the delivery writes under it, and a relative agent CLI
/// path must still name the CLI.
#[tokio::test]
async fn a_service_given_relative_paths_from_another_directory_commits_and_pushes() {
    let start_dir = tempfile::tempdir().unwrap();
    // The CLI, named relative to the directory the service starts in.
    let up = "../".repeat(start_dir.path().components().count() - 1);
    let claude = PathBuf::from(up).join(claude_cli().strip_prefix("/").unwrap());
    let model_api = FakeModelApi::start().await.unwrap();
    let options = ServiceOptions {
        current_dir: Some(start_dir.path().to_path_buf()),
        work_dir: Some(".dev/work".into()),
        claude_path: Some(claude),
        ..Default::default()
    };
    let service = Service::start(&model_api, options).await;
    assert_eq!(service.work_dir, start_dir.path().join(".dev/work"));
    let setup = ServiceFixture { model_api, repo: GitFixture::new(), service };

    let (id, events, task) = run(&setup, request(&setup.repo, "Say hello\nSCENARIO:edit-and-create", push())).await;
    assert_eq!(task.state(), TaskState::Succeeded, "{}", task.error);
    assert_eq!(
        milestones(&events),
        ["agent_text", "diff", "committed", "branch_pushed", "state:SUCCEEDED", "task_finished:SUCCEEDED"]
    );
    let delivery = task.delivery.unwrap();
    assert!(delivery.pushed);
    assert_eq!(setup.repo.rev_parse(&format!("refs/heads/autopilot/{id}")), delivery.commit);
    let message = git(&clone_dir(&setup, &id), &["log", "-1", "--format=%s", &delivery.commit]);
    assert_eq!(message, "Say hello");
}

#[tokio::test]
async fn a_refused_push_fails_the_task_with_gits_reason_and_keeps_the_diff_and_commit() {
    let setup = ServiceFixture::start().await;
    setup.repo.install_hook("pre-receive", "echo 'pushes are closed today' >&2; exit 1");
    let (id, events, task) = run(&setup, request(&setup.repo, "SCENARIO:edit-and-create", push())).await;
    assert_eq!(task.state(), TaskState::Failed);
    assert_eq!(milestones(&events), ["agent_text", "diff", "committed", "state:FAILED", "task_finished:FAILED"]);
    let branch = format!("autopilot/{id}");
    let expected = format!("could not push branch {branch} to {}: git push failed: ", setup.repo.url());
    assert!(task.error.starts_with(&expected), "{}", task.error);
    assert!(
        task.error.contains("remote: pushes are closed today") && task.error.contains("pre-receive hook declined"),
        "{}",
        task.error
    );
    assert_eq!(finished(&events).error, task.error);

    // The work is not lost: the commit is on the branch in the clone, the diff retrievable.
    let delivery = task.delivery.unwrap();
    assert!(!delivery.pushed && !delivery.commit.is_empty());
    assert_eq!(git(&clone_dir(&setup, &id), &["rev-parse", &format!("refs/heads/{branch}")]), delivery.commit);
    assert!(!setup.repo.has_branch(&branch));
    let mut client = setup.service.client().await;
    let whole = client.get_diff(GetDiffRequest { task_id: id }).await.unwrap().into_inner().diff.unwrap();
    assert_eq!(whole.files.len(), 2);
}

#[tokio::test]
async fn an_agent_that_changes_nothing_delivers_an_empty_diff_and_no_commit() {
    let setup = ServiceFixture::start().await;
    let (id, events, task) = run(&setup, request(&setup.repo, "SCENARIO:list-files", push())).await;
    assert_eq!(task.state(), TaskState::Succeeded, "{}", task.error);
    assert_eq!(milestones(&events), ["agent_text", "diff", "state:SUCCEEDED", "task_finished:SUCCEEDED"]);
    let diff = diff_event(&events);
    assert!(diff.files.is_empty() && !diff.truncated);
    assert_eq!(diff.stats.unwrap().files_changed, 0);
    let delivery = task.delivery.unwrap();
    assert_eq!((delivery.commit.as_str(), delivery.branch.as_str(), delivery.pushed), ("", "", false));
    let branch = format!("autopilot/{id}");
    let clone = clone_dir(&setup, &id);
    assert_eq!(git(&clone, &["for-each-ref", "refs/heads"]), "", "no branch, no commit");
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]), setup.repo.rev_parse("main"));
    assert!(!setup.repo.has_branch(&branch));
    let mut client = setup.service.client().await;
    assert_eq!(client.get_diff(GetDiffRequest { task_id: id }).await.unwrap().into_inner().diff.unwrap(), diff);
}

#[tokio::test]
async fn hostile_branch_names_and_identities_are_refused_before_git_runs() {
    let setup = ServiceFixture::start().await;
    let mut client = setup.service.client().await;
    let mut web = grpc_web_client(setup.service.addr);
    let branch = |name: &str| DeliveryOptions { branch: name.into(), push: true, ..Default::default() };
    let cases = [
        (branch("-x"), "delivery.branch \"-x\" is not a usable branch name: it starts with '-'"),
        (branch("--force"), "delivery.branch"),
        (branch("a..b"), "delivery.branch \"a..b\" is not a usable branch name: it contains \"..\""),
        (branch("refs/../x"), "delivery.branch"),
        (branch("x.lock"), "delivery.branch"),
        (branch("a b"), "delivery.branch"),
        (branch("main@{1}"), "delivery.branch"),
        (branch("HEAD"), "delivery.branch"),
        (branch("x\n--upload-pack=evil"), "delivery.branch"),
        // Git accepts a bidi override, but it makes the name read as another in every UI.
        (
            branch("main\u{202e}txt.exe"),
            r#"delivery.branch "main\u{202e}txt.exe" is not a usable branch name: it contains '\u{202e}', an invisible formatting character"#,
        ),
        (DeliveryOptions { author_name: "Eve\nSigned-off-by: x".into(), ..Default::default() }, "delivery.author_name"),
        (DeliveryOptions { author_email: "eve@x> <y".into(), ..Default::default() }, "delivery.author_email"),
    ];
    for (delivery, expected) in cases {
        let start = request(&setup.repo, "SCENARIO:edit-and-create", Some(delivery.clone()));
        let native = client.start(start.clone()).await.unwrap_err();
        assert_eq!(native.code(), Code::InvalidArgument, "{delivery:?}: {native:?}");
        assert!(native.message().starts_with(expected), "{delivery:?}: {}", native.message());
        let over_web = web.start(start).await.unwrap_err();
        assert_eq!((over_web.code(), over_web.message()), (Code::InvalidArgument, native.message()));
    }
    // No task was created: nothing was cloned, no git ran.
    assert_eq!(client.status(StatusRequest::default()).await.unwrap_err().code(), Code::NotFound);
    let tasks = std::fs::read_dir(setup.service.work_dir.join("tasks")).unwrap().count();
    assert_eq!(tasks, 0);
}

#[tokio::test]
async fn changes_holding_a_secret_of_the_service_are_neither_committed_nor_shown() {
    let setup = ServiceFixture::start().await;
    let (id, events, task) = run(&setup, request(&setup.repo, "SCENARIO:write-env", push())).await;
    assert_eq!(task.state(), TaskState::Failed);
    assert!(task.error.starts_with("the changes contain a secret of the agent-service"), "{}", task.error);
    assert_eq!(milestones(&events), ["agent_text", "diff", "state:FAILED", "task_finished:FAILED"]);
    let mut client = setup.service.client().await;
    let whole = client.get_diff(GetDiffRequest { task_id: id.clone() }).await.unwrap().into_inner().diff.unwrap();
    assert_eq!(whole.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["ENV.txt"]);
    assert!(whole.files[0].patch.contains("+ANTHROPIC_API_KEY=***"), "{}", whole.files[0].patch);
    let shown = format!("{events:?}{whole:?}{task:?}");
    assert!(!shown.contains(CANARY_API_KEY));
    assert!(task.delivery.unwrap().commit.is_empty());
    assert!(!setup.repo.has_branch(&format!("autopilot/{id}")));
}

#[tokio::test]
async fn git_settings_and_hooks_the_agent_planted_do_not_steer_the_delivery() {
    let setup = ServiceFixture::start().await;
    let (id, events, task) = run(&setup, request(&setup.repo, "SCENARIO:tamper-git", push())).await;
    // The agent really did tamper: its command succeeded and printed the redirect it set.
    let tool = first_tool_result(&events);
    assert_eq!((tool.is_error, tool.output.trim()), (false, "file:///"), "{}", tool.output);
    // Yet the push went to the repository the request named, and no hook ran.
    assert_eq!(task.state(), TaskState::Succeeded, "{}", task.error);
    let delivery = task.delivery.unwrap();
    assert!(delivery.pushed);
    assert_eq!(setup.repo.rev_parse(&format!("refs/heads/autopilot/{id}")), delivery.commit);
    assert_eq!(files(&diff_event(&events)).keys().collect::<Vec<_>>(), ["CHANGED.md"]);
    assert!(!setup.service.work_dir.join("tasks").join(&id).join("hook-ran").exists(), "a planted hook ran");
}

#[tokio::test]
async fn a_diff_over_the_event_cap_is_flagged_and_whole_in_get_diff() {
    let setup = ServiceFixture::start().await;
    let (id, events, task) = run(&setup, request(&setup.repo, "SCENARIO:big-change", None)).await;
    assert_eq!(task.state(), TaskState::Succeeded, "{}", task.error);
    let event = diff_event(&events);
    assert!(event.truncated, "BIG.txt's patch is over the event's 256 KiB");
    let big = event.files.iter().find(|f| f.path == "BIG.txt").unwrap();
    assert!(big.patch_omitted && big.patch.is_empty());
    assert_eq!((big.insertions, big.deletions), (60_000, 0), "counts are kept when the patch is not");
    let small = event.files.iter().find(|f| f.path == "SMALL.txt").unwrap();
    assert!(!small.patch_omitted && small.patch.ends_with("+small\n"), "a patch that fits is kept");
    assert_eq!(event.stats.unwrap().insertions, 60_001);

    let mut client = setup.service.client().await;
    let whole = client.get_diff(GetDiffRequest { task_id: id }).await.unwrap().into_inner().diff.unwrap();
    assert!(!whole.truncated);
    let big = whole.files.iter().find(|f| f.path == "BIG.txt").unwrap();
    assert!(!big.patch_omitted);
    let added: Vec<&str> =
        big.patch.lines().filter_map(|l| l.strip_prefix('+')).filter(|l| !l.starts_with("++")).collect();
    assert_eq!(added.len(), 60_000);
    assert_eq!((added[0], added[59_999]), ("1", "60000"));
    assert_eq!(whole.stats, event.stats);
}

#[tokio::test]
async fn get_diff_says_why_there_is_no_diff() {
    let setup = ServiceFixture::start().await;
    let mut client = setup.service.client().await;
    let unknown = client.get_diff(GetDiffRequest { task_id: "7d3c0c1e-0000-4000-8000-000000000000".into() }).await;
    assert_eq!(unknown.unwrap_err().code(), Code::NotFound);
    let id = client.start(request(&setup.repo, "SCENARIO:hang", None)).await.unwrap().into_inner().task_id;
    let running = client.get_diff(GetDiffRequest { task_id: id.clone() }).await.unwrap_err();
    assert_eq!(running.code(), Code::FailedPrecondition, "{running:?}");
    assert!(running.message().contains("no diff yet"), "{}", running.message());
    client.cancel(CancelRequest { task_id: id.clone(), ..Default::default() }).await.unwrap();
    let ended = client.get_diff(GetDiffRequest { task_id: id.clone() }).await.unwrap_err();
    assert_eq!(ended.code(), Code::NotFound);
    assert_eq!(
        ended.message(),
        format!("task {id} has no diff: it ended CANCELLED before its agent's work was delivered")
    );
}
