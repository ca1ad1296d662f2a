//! Environments (`StartRequest.environment`): the setup phase between the clone and the agent,
//! run for real with bash on the real service. A setup that prepares the workspace the agent
//! then works in; one that fails, one past its time limit, one cancelled, one whose service is
//! killed (no process of any survives); secrets that the setup reads and the agent never gets,
//! masked in everything the task shows, and a diff holding one refused; prepared workspaces
//! (the second task of a repository and environment starts from the first's setup and runs the
//! maintenance script; a changed variable starts afresh); and what Start refuses of an
//! environment.

use std::{path::Path, time::Duration};

use autopilot_contract::v1::{
    event::Payload, CancelRequest, Environment, Event, PreparedStore, SetupFinished, SetupStarted, StartRequest,
    StatusRequest, Task, TaskState, WorkspaceOrigin,
};
use autopilot_tests::{
    events::{finished, first_tool_result, kind, milestones, setup_lines, stream_all},
    processes::processes_under,
    service::{ServiceFixture, ServiceOptions},
};
use tonic::Code;

use crate::{start_request, wait_for_kind};

/// The environment the tests use, named `web`, with `setup_script`.
fn environment(setup_script: &str) -> Environment {
    Environment { name: "web".into(), setup_script: setup_script.into(), ..Default::default() }
}

/// A Start with `prompt` on the fixture's repository in `environment`.
fn request_in(setup: &ServiceFixture, prompt: &str, environment: Environment) -> StartRequest {
    StartRequest { environment: Some(environment), ..start_request(&setup.repo, prompt) }
}

/// Runs `request` to its end: its events and its Status.
async fn run(setup: &ServiceFixture, request: StartRequest) -> (Vec<Event>, Task) {
    let mut client = setup.service.client().await;
    let started = client.start(request).await.unwrap().into_inner();
    let events = stream_all(&mut client, &started.task_id, 1).await;
    let task = client.status(StatusRequest { task_id: started.task_id }).await.unwrap().into_inner().task.unwrap();
    (events, task)
}

fn setup_started(events: &[Event]) -> SetupStarted {
    events
        .iter()
        .find_map(|event| match &event.payload {
            Some(Payload::SetupStarted(started)) => Some(started.clone()),
            _ => None,
        })
        .expect("a setup_started event")
}

fn setup_finished(events: &[Event]) -> SetupFinished {
    events
        .iter()
        .find_map(|event| match &event.payload {
            Some(Payload::SetupFinished(ended)) => Some(*ended),
            _ => None,
        })
        .expect("a setup_finished event")
}

/// The milestones of `events` without the script's lines, whose number varies.
fn steps(events: &[Event]) -> Vec<String> {
    milestones(events).into_iter().filter(|k| k != "setup_output").collect()
}

/// The task's workspace.
fn repo_dir(setup: &ServiceFixture, task: &Task) -> std::path::PathBuf {
    setup.service.work_dir.join("tasks").join(&task.task_id).join("repo")
}

/// Waits (a few seconds at most) until no process runs inside `dir`.
async fn no_process_left_under(dir: &Path) {
    for _ in 0..50 {
        if processes_under(dir).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("processes survived under {}: {:?}", dir.display(), processes_under(dir));
}

#[tokio::test]
async fn a_setup_prepares_the_workspace_the_agent_then_works_in() {
    let setup = ServiceFixture::start().await;
    let script = "echo \"setting up for $MODE\"\necho 'a warning' >&2\n\
                  printf 'done\\n' > SETUP_DONE.txt\nprintf 'progress 10%%\\rprogress 100%%\\n'\necho finished";
    let environment =
        Environment { variables: [("MODE".to_string(), "tests".to_string())].into(), ..environment(script) };
    let (events, task) = run(&setup, request_in(&setup, "SCENARIO:list-files", environment)).await;
    assert_eq!(task.state(), TaskState::Succeeded, "{}", task.error);
    let steps = steps(&events);
    assert_eq!(
        steps[..9],
        [
            "state:PENDING",
            "state:CLONING",
            "repository_ready",
            "state:SETTING_UP",
            "setup_started",
            "setup_finished",
            "state:RUNNING",
            "agent_started",
            "tool_started:Bash"
        ]
    );
    let first_line = events.iter().position(|e| kind(e) == "setup_output").unwrap();
    let started_at = events.iter().position(|e| kind(e) == "setup_started").unwrap();
    let finished_at = events.iter().position(|e| kind(e) == "setup_finished").unwrap();
    assert!(started_at < first_line && first_line < finished_at);
    // stdout and stderr in the order written; a carriage return starts its line over.
    assert_eq!(setup_lines(&events), ["setting up for tests", "a warning", "progress 100%", "finished"]);
    let started = setup_started(&events);
    assert_eq!(
        (started.environment_name.as_str(), started.maintenance, started.workspace_origin()),
        ("web", false, WorkspaceOrigin::Fresh)
    );
    let ended = setup_finished(&events);
    assert_eq!((ended.exit_code, ended.timed_out), (0, false));
    assert!(ended.duration.unwrap().seconds < 10);

    // The agent ran in the workspace the setup left.
    let listed = first_tool_result(&events).output;
    assert!(listed.lines().any(|l| l == "SETUP_DONE.txt"), "{listed}");
    assert_eq!((task.environment_name.as_str(), task.workspace_origin()), ("web", WorkspaceOrigin::Fresh));
    // The script lives beside the task, not in the workspace.
    assert!(!repo_dir(&setup, &task).join("setup.sh").exists());
    let delivered = task.delivery.unwrap().stats.unwrap();
    assert_eq!(delivered.files_changed, 1, "the setup's file is the only change");

    // A task without an environment has a fresh workspace and no setup.
    let (events, task) = run(&setup, start_request(&setup.repo, "SCENARIO:answer")).await;
    assert!(!events.iter().any(|e| kind(e).starts_with("setup") || kind(e) == "state:SETTING_UP"));
    assert_eq!((task.environment_name.as_str(), task.workspace_origin()), ("", WorkspaceOrigin::Fresh));
}

#[tokio::test]
async fn a_failing_setup_fails_the_task_with_its_code_and_last_lines() {
    let setup = ServiceFixture::start().await;
    let script = "echo 'installing dependencies'\necho 'error: no such package' >&2\nexit 3\necho never";
    let (events, task) = run(&setup, request_in(&setup, "SCENARIO:list-files", environment(script))).await;
    assert_eq!(task.state(), TaskState::Failed);
    assert!(
        task.error.starts_with("the setup script of environment web exited with code 3 after ")
            && task.error.ends_with(" s; its last lines:\ninstalling dependencies\nerror: no such package"),
        "{}",
        task.error
    );
    assert_eq!(finished(&events).error, task.error);
    assert_eq!(setup_finished(&events).exit_code, 3);
    assert!(!events.iter().any(|e| kind(e) == "agent_started"), "the agent never starts");
    assert_eq!(steps(&events)[4..], ["setup_started", "setup_finished", "state:FAILED", "task_finished:FAILED"]);

    // errexit, nounset and pipefail are on.
    for (script, code, last_line) in [
        ("false\necho after", 1, None),
        ("echo \"$NOT_SET\"", 1, Some("NOT_SET: unbound variable")),
        ("false | true\necho after", 1, None),
    ] {
        let (events, task) = run(&setup, request_in(&setup, "SCENARIO:answer", environment(script))).await;
        assert_eq!(task.state(), TaskState::Failed, "{script}");
        assert_eq!(setup_finished(&events).exit_code, code, "{script}");
        assert!(!setup_lines(&events).contains(&"after".to_string()), "{script}");
        if let Some(last_line) = last_line {
            assert!(task.error.ends_with(last_line), "{script}: {}", task.error);
        }
    }
}

#[tokio::test]
async fn a_setup_past_its_time_limit_is_killed_and_fails_the_task() {
    let setup = ServiceFixture::start().await;
    let environment = Environment {
        setup_timeout: Some(pbjson_types::Duration { seconds: 1, nanos: 0 }),
        ..environment("echo 'waiting for the database'\nsleep 30 &\nsleep 30")
    };
    let (events, task) = run(&setup, request_in(&setup, "SCENARIO:list-files", environment)).await;
    assert_eq!(task.state(), TaskState::Failed);
    assert_eq!(
        task.error,
        "the setup script of environment web ran past its time limit of 1s and was killed; its last lines:\n\
         waiting for the database"
    );
    let ended = setup_finished(&events);
    assert_eq!((ended.exit_code, ended.timed_out), (-1, true));
    let ran_for = ended.duration.unwrap().seconds;
    assert!((1..10).contains(&ran_for), "{ran_for}s");
    no_process_left_under(&repo_dir(&setup, &task)).await;
}

#[tokio::test]
async fn cancel_during_setup_kills_the_script_and_all_it_started() {
    let setup = ServiceFixture::start().await;
    let mut client = setup.service.client().await;
    let script = "echo started\nsleep 300 &\nsetsid sleep 301 &\nsleep 302";
    let started = client.start(request_in(&setup, "SCENARIO:list-files", environment(script))).await.unwrap();
    let id = started.into_inner().task_id;
    wait_for_kind(&setup, &id, "setup_output").await;
    let repo = setup.service.work_dir.join("tasks").join(&id).join("repo");
    let sleeping = || processes_under(&repo).iter().filter(|(_, cmd)| cmd.starts_with("sleep 30")).count();
    for _ in 0..100 {
        if sleeping() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sleeping(), 3, "{:?}", processes_under(&repo));

    let cancelled = client.cancel(CancelRequest { task_id: id.clone(), ..Default::default() }).await.unwrap();
    assert_eq!(cancelled.into_inner().state(), TaskState::Cancelled);
    let events = stream_all(&mut client, &id, 1).await;
    assert_eq!(finished(&events).error, "cancelled by request");
    let ended = setup_finished(&events);
    assert_eq!((ended.exit_code, ended.timed_out), (-1, false));
    assert!(!events.iter().any(|e| kind(e) == "agent_started"));
    no_process_left_under(&repo).await;
}

#[tokio::test]
async fn a_killed_service_leaves_no_setup_running() {
    let options = ServiceOptions::default();
    let mut setup = ServiceFixture::start_with(options.clone()).await;
    let mut client = setup.service.client().await;
    let script = "echo started\nsleep 300 &\nsleep 301";
    let started = client.start(request_in(&setup, "SCENARIO:list-files", environment(script))).await.unwrap();
    let id = started.into_inner().task_id;
    wait_for_kind(&setup, &id, "setup_output").await;
    let repo = setup.service.work_dir.join("tasks").join(&id).join("repo");
    assert!(!processes_under(&repo).is_empty());

    setup.service.restart_after_crash(&setup.model_api, &options).await;
    no_process_left_under(&repo).await;
    let mut client = setup.service.client().await;
    let task = client.status(StatusRequest { task_id: id }).await.unwrap().into_inner().task.unwrap();
    assert_eq!(
        (task.state(), task.error.as_str()),
        (TaskState::Failed, "the service stopped while the task was running")
    );
}

/// A secret long enough to be found anywhere it leaks.
const SECRET: &str = "env-secret-6f1d2c9a8b7e";

fn with_secret(script: &str) -> Environment {
    Environment {
        variables: [("MODE".to_string(), "visible-variable-value".to_string())].into(),
        secrets: [("TOKEN".to_string(), SECRET.to_string())].into(),
        ..environment(script)
    }
}

/// Every file under `dir` but the workspace, as text.
fn files_beside_the_workspace(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|name| name == "repo") {
            continue;
        }
        if path.is_dir() {
            found.extend(files_beside_the_workspace(&path));
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            found.push((path.display().to_string(), text));
        }
    }
    found
}

#[tokio::test]
async fn secrets_reach_the_setup_but_never_the_agent_or_anything_the_task_shows() {
    let setup = ServiceFixture::start().await;
    let script = "echo \"token length ${#TOKEN}\"\necho \"token is $TOKEN\"\necho \"mode is $MODE\"\n\
                  env | grep -c '^ANTHROPIC_API_KEY=' || true";
    let (events, task) = run(&setup, request_in(&setup, "SCENARIO:print-env", with_secret(script))).await;
    assert_eq!(task.state(), TaskState::Succeeded, "{}", task.error);
    assert_eq!(
        setup_lines(&events),
        ["token length 23", "token is ***", "mode is visible-variable-value", "0"],
        "the setup has the secret (masked when printed) and the variable, and no model key"
    );

    let environment = first_tool_result(&events).output;
    assert!(environment.lines().any(|l| l == "MODE=visible-variable-value"), "{environment}");
    assert!(!environment.lines().any(|l| l.starts_with("TOKEN=")), "the agent has no secret: {environment}");
    assert!(environment.lines().any(|l| l.starts_with("ANTHROPIC_API_KEY=")), "{environment}");

    let mut client = setup.service.client().await;
    let status = client.status(StatusRequest { task_id: task.task_id.clone() }).await.unwrap().into_inner();
    let mut everything: Vec<String> = events.iter().map(|e| format!("{e:?}")).collect();
    everything.push(format!("{status:?}"));
    everything.extend(setup.service.logs());
    let task_dir = setup.service.work_dir.join("tasks").join(&task.task_id);
    everything.extend(files_beside_the_workspace(&task_dir).into_iter().map(|(path, text)| format!("{path}: {text}")));
    let leaks: Vec<&String> = everything.iter().filter(|text| text.contains(SECRET)).collect();
    assert!(leaks.is_empty(), "the secret leaked: {leaks:?}");
}

#[tokio::test]
async fn a_diff_holding_a_secret_is_refused() {
    let setup = ServiceFixture::start().await;
    let script = "printf 'token=%s\\n' \"$TOKEN\" > credentials.txt";
    let (events, task) = run(&setup, request_in(&setup, "SCENARIO:list-files", with_secret(script))).await;
    assert_eq!(task.state(), TaskState::Failed);
    assert!(task.error.starts_with("the changes contain a secret"), "{}", task.error);
    assert!(task.error.contains("environment's secrets"), "{}", task.error);
    let Some(Payload::Diff(diff)) = events.iter().find(|e| kind(e) == "diff").and_then(|e| e.payload.clone()) else {
        panic!("no diff event")
    };
    let file = diff.files.iter().find(|f| f.path == "credentials.txt").expect("the setup's file is in the diff");
    assert!(file.patch.contains("+token=***"), "{}", file.patch);
    assert!(!events.iter().any(|e| kind(e) == "committed"));
    assert!(!format!("{events:?}").contains(SECRET));
}

#[tokio::test]
async fn the_next_task_starts_from_the_prepared_workspace_with_the_maintenance_script() {
    let setup = ServiceFixture::start().await;
    let prepared = |mode: &str| Environment {
        maintenance_script: "echo 'maintenance ran'\ncat node_modules/dep.txt".into(),
        variables: [("MODE".to_string(), mode.to_string())].into(),
        ..environment(
            "echo \"setup ran for $MODE\"\nmkdir -p node_modules\necho installed > node_modules/dep.txt\n\
             mkdir -p .git/info\necho node_modules/ >> .git/info/exclude\ngit config core.hooksPath .husky",
        )
    };

    // The first task sets up a fresh clone; its agent then writes a file the next must not see.
    let (events, first) = run(&setup, request_in(&setup, "SCENARIO:write-file", prepared("a"))).await;
    assert_eq!(first.state(), TaskState::Succeeded, "{}", first.error);
    assert_eq!(setup_lines(&events), ["setup ran for a"]);
    assert_eq!(first.workspace_origin(), WorkspaceOrigin::Fresh);

    // An agent (the service's user) could reach the prepared workspace: a push URL rewritten
    // in its git config must not reach the next task, whose delivery trusts the config it
    // starts with. Here it would send the next fetch nowhere.
    let kept: Vec<_> =
        std::fs::read_dir(setup.service.work_dir.join("prepared")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let tampered = kept[0].join(".git/config");
    let mut config = std::fs::read_to_string(&tampered).unwrap();
    config.push_str("[url \"file:///nowhere/\"]\n\tinsteadOf = file:///\n");
    std::fs::write(&tampered, config).unwrap();

    // The second, on another ref, starts from the copy: the maintenance script runs and finds
    // what the setup installed; the ref is checked out on top.
    let request =
        StartRequest { git_ref: "feature".into(), ..request_in(&setup, "SCENARIO:list-files", prepared("a")) };
    let (events, second) = run(&setup, request).await;
    assert_eq!(second.state(), TaskState::Succeeded, "{}", second.error);
    let started = setup_started(&events);
    assert_eq!((started.maintenance, started.workspace_origin()), (true, WorkspaceOrigin::Prepared));
    assert_eq!(setup_lines(&events), ["maintenance ran", "installed"]);
    assert_eq!(
        (second.workspace_origin(), second.commit.clone()),
        (WorkspaceOrigin::Prepared, setup.repo.rev_parse("feature"))
    );
    let listed = first_tool_result(&events).output;
    assert_eq!(listed.lines().collect::<Vec<_>>(), ["FEATURE.md", "README.md", "main.rs", "node_modules"]);
    assert_eq!(second.delivery.clone().unwrap().stats.unwrap().files_changed, 0, "what the setup ignored is no change");
    let notes: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::GitProgress(p)) if p.phase == "Prepared workspace" => Some(p.message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(notes, ["started from the workspace environment web prepared; fetching the ref"]);
    // Neither what the setup nor what came after wrote in the git config was kept.
    let config = std::fs::read_to_string(repo_dir(&setup, &second).join(".git/config")).unwrap();
    assert!(!config.contains("hooksPath") && !config.contains("nowhere"), "{config}");

    // A follow-up of the first task continues its workspace (not a prepared copy) and sets it
    // up afresh.
    let follow_up = StartRequest {
        parent_task_id: first.task_id.clone(),
        ..request_in(&setup, "SCENARIO:read-and-extend", prepared("a"))
    };
    let (events, continued) = run(&setup, follow_up).await;
    assert_eq!(continued.state(), TaskState::Succeeded, "{}", continued.error);
    assert_eq!(setup_lines(&events), ["setup ran for a"]);
    assert_eq!((setup_started(&events).maintenance, continued.workspace_origin()), (false, WorkspaceOrigin::Fresh));
    assert!(first_tool_result(&events).output.contains("hello from the agent"), "the parent's work is there");

    // Another variable is another environment: a fresh clone and its setup.
    let (events, third) = run(&setup, request_in(&setup, "SCENARIO:answer", prepared("b"))).await;
    assert_eq!(third.state(), TaskState::Succeeded, "{}", third.error);
    assert_eq!(setup_lines(&events), ["setup ran for b"]);
    assert_eq!((setup_started(&events).maintenance, third.workspace_origin()), (false, WorkspaceOrigin::Fresh));
}

#[tokio::test]
async fn a_prepared_workspace_that_cannot_be_used_gives_way_to_a_fresh_clone() {
    let setup = ServiceFixture::start().await;
    let environment = Environment { maintenance_script: "echo maintenance".into(), ..environment("echo setup") };
    let (_, first) = run(&setup, request_in(&setup, "SCENARIO:answer", environment.clone())).await;
    assert_eq!(first.state(), TaskState::Succeeded, "{}", first.error);
    // Its git directory broken, the copy cannot fetch.
    let prepared_dir = setup.service.work_dir.join("prepared");
    let kept: Vec<_> = std::fs::read_dir(&prepared_dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    std::fs::write(kept[0].join(".git/HEAD"), "garbage\n").unwrap();
    std::fs::remove_dir_all(kept[0].join(".git/objects")).unwrap();

    let (events, second) = run(&setup, request_in(&setup, "SCENARIO:answer", environment)).await;
    assert_eq!(second.state(), TaskState::Succeeded, "{}", second.error);
    assert_eq!((second.workspace_origin(), setup_lines(&events)), (WorkspaceOrigin::Fresh, vec!["setup".to_string()]));
    let note = events
        .iter()
        .find_map(|e| match &e.payload {
            Some(Payload::GitProgress(p)) if p.message.contains("could not be used") => Some(p.message.clone()),
            _ => None,
        })
        .expect("a note says why the task cloned afresh");
    assert!(note.starts_with("the workspace environment web prepared could not be used ("), "{note}");
    assert!(note.ends_with("); cloning the repository afresh"), "{note}");
    assert_eq!(second.commit, setup.repo.rev_parse("main"));
}

/// A prepared store that cannot be reached (the edge's, for an operator: any URL) costs the task
/// nothing: it sets up afresh, keeps its prepared copy here, and says what failed, without the
/// store's credential.
#[tokio::test]
async fn a_store_that_cannot_be_reached_gives_way_to_a_fresh_setup() {
    let setup = ServiceFixture::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let store = PreparedStore {
        url: format!("http://{closed}/cache/prepared"),
        token: "apcc_operator_token_7f3a".into(),
        part_bytes: 16 << 20,
    };
    let environment = Environment { prepared_store: Some(store), ..environment("echo setup") };
    let (events, task) = run(&setup, request_in(&setup, "SCENARIO:answer", environment)).await;
    assert_eq!(task.state(), TaskState::Succeeded, "{}", task.error);
    assert_eq!((task.workspace_origin(), setup_lines(&events)), (WorkspaceOrigin::Fresh, vec!["setup".to_string()]));
    let notes: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::GitProgress(p)) if p.phase == "Prepared workspace" => Some(p.message.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("it could not be restored from the edge's store (the store could not be reached")),
        "{notes:?}"
    );
    assert!(notes.iter().any(|n| n.contains("could not be kept in the edge's store (")), "{notes:?}");
    assert!(!format!("{events:?}").contains("apcc_operator_token_7f3a"), "the store's credential was shown");
    assert!(!setup.service.logs().join("\n").contains("apcc_operator_token_7f3a"), "nor logged");
}

#[tokio::test]
async fn a_bad_environment_is_refused_naming_the_entry() {
    let setup = ServiceFixture::start().await;
    let mut client = setup.service.client().await;
    let cases = [
        (
            Environment { variables: [("PATH".to_string(), "/opt".to_string())].into(), ..environment("true") },
            "environment.variables[\"PATH\"] shadows what the service relies on",
        ),
        (
            Environment { secrets: [("GIT_TOKEN".to_string(), SECRET.to_string())].into(), ..environment("true") },
            "environment.secrets[\"GIT_TOKEN\"] shadows what the service relies on",
        ),
        (
            Environment { name: "no spaces".into(), ..environment("true") },
            "environment.name contains ' '; use A-Z a-z 0-9 . _ -",
        ),
        (
            Environment {
                setup_timeout: Some(pbjson_types::Duration { seconds: 7200, nanos: 0 }),
                ..environment("true")
            },
            "environment.setup_timeout must be between 1s and 1h (unset: 10 minutes)",
        ),
    ];
    for (environment, message) in cases {
        let refused = client.start(request_in(&setup, "hi", environment)).await.unwrap_err();
        assert_eq!((refused.code(), refused.message()), (Code::InvalidArgument, message));
        assert!(!refused.message().contains(SECRET));
    }
}
