//! The container image, proven by running it: the podman stand-in of the Dockerfile's runtime
//! stage (tests/container/Containerfile, built by `make image` around the static musl service and
//! the CLI's musl build) runs the end-to-end flow against the real CLI and real git, as a non-root
//! user, with the fake model API on the host. Also checks that the Dockerfile and its stand-in
//! agree, that the Dockerfile pins the CLI the tests use, and what the build context holds.
//!
//! Without podman the container tests skip with a loud message; `make test` installs podman and
//! sets AUTOPILOT_REQUIRE_PODMAN, so in CI they always run.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use autopilot_contract::v1::{CancelRequest, StartRequest, StatusRequest, StreamEventsRequest, TaskState};
use autopilot_tests::{
    container::{podman, podman_available, podman_ok, Container, IMAGE_UID},
    events::{collect, finished, first_tool_result, kind, milestones, stream_all, LIST_FILES_MILESTONES},
    fake_model_api::FakeModelApi,
    git_fixture::GitFixture,
    service::{repo_root, CANARY_API_KEY},
};

/// The fake model API, a repository readable from inside the container, and the running image.
struct Setup {
    _model_api: FakeModelApi,
    repo: GitFixture,
    /// The commit `main` names (read before the repository changes owner).
    main_commit: String,
    container: Container,
}

async fn setup() -> Setup {
    let model_api = FakeModelApi::start().await.unwrap();
    let repo = GitFixture::new();
    // The repository is served by mounting its folder read-only; it belongs to the image's user,
    // as git refuses to serve a repository of another owner ("dubious ownership").
    let main_commit = repo.rev_parse("main");
    let folder = fixture_folder(&repo);
    let chown = std::process::Command::new("chown")
        .args(["-R", &format!("{IMAGE_UID}:{IMAGE_UID}")])
        .arg(&folder)
        .status()
        .unwrap();
    assert!(chown.success());
    let container = Container::start(&model_api, &[&folder]).await;
    Setup { _model_api: model_api, repo, main_commit, container }
}

/// The temporary folder holding the fixture's bare repository.
fn fixture_folder(repo: &GitFixture) -> PathBuf {
    let url = repo.url();
    let bare = Path::new(url.strip_prefix("file://").expect("a file:// URL"));
    bare.parent().unwrap().to_path_buf()
}

fn start_request(repo: &GitFixture, prompt: &str) -> StartRequest {
    StartRequest { repository_url: repo.url(), prompt: prompt.into(), ..Default::default() }
}

/// Waits until the task has recorded an event of `wanted` kind (prefix match).
async fn wait_for_kind(container: &Container, task_id: &str, wanted: &str) {
    let mut client = container.client().await;
    let mut stream =
        client.stream_events(StreamEventsRequest { task_id: task_id.into(), from_seq: 1 }).await.unwrap().into_inner();
    let wait = async {
        while let Some(item) = stream.message().await.unwrap() {
            if kind(&item.event.unwrap()).starts_with(wanted) {
                return;
            }
        }
        panic!("the stream ended before a {wanted} event");
    };
    tokio::time::timeout(Duration::from_secs(60), wait).await.expect("waiting for an event");
}

/// The command lines of the container's processes that run the agent CLI.
fn agent_processes(container: &Container) -> Vec<String> {
    container.processes().into_iter().map(|(_, _, args)| args).filter(|args| args.contains("claude")).collect()
}

/// The text of `file` from its first line starting with `marker` to the end.
fn tail_from(file: &str, marker: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
    let start = text.lines().position(|l| l.starts_with(marker)).unwrap_or_else(|| panic!("{file} has no {marker}"));
    text.lines().skip(start).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_dockerfile_pins_the_cli_version_the_tests_use() {
    let package: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("tools/package.json")).unwrap()).unwrap();
    let pin = package["dependencies"]["@anthropic-ai/claude-code"].as_str().expect("the CLI is pinned").to_string();
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("tools/package-lock.json")).unwrap()).unwrap();
    let musl = &lock["packages"]["node_modules/@anthropic-ai/claude-code-linux-x64-musl"];
    assert_eq!(musl["version"], pin.as_str(), "the lockfile holds the musl build the image installs, at the pin");
    assert!(musl["integrity"].as_str().is_some_and(|i| i.starts_with("sha512-")), "and its checksum: {musl}");
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains(&format!("CLAUDE_CODE_VERSION={pin} ")), "the Dockerfile expects CLI {pin}");
    assert!(dockerfile.contains("COPY tools/package.json tools/package-lock.json"), "the CLI comes from the lockfile");
}

#[test]
fn the_podman_stand_in_matches_the_dockerfiles_runtime_stage() {
    // User, workdir, environment, port, healthcheck and entrypoint are the same text.
    assert_eq!(tail_from("tests/container/Containerfile", "USER "), tail_from("Dockerfile", "USER "));
    // And both put the service and the CLI at the same paths.
    for file in ["Dockerfile", "tests/container/Containerfile"] {
        let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
        for path in ["/usr/local/bin/agent-service\n", "/usr/local/bin/claude\n", "-u 10001", "-d -o agent -g agent"] {
            assert!(text.contains(path), "{file} lacks {path:?}");
        }
    }
}

#[test]
fn the_build_context_holds_only_what_the_build_needs() {
    if !podman_available() {
        return;
    }
    // Build the context exactly as an engine would send it (.dockerignore applied) and list it.
    let folder = tempfile::tempdir().unwrap();
    let containerfile = folder.path().join("Containerfile");
    std::fs::write(&containerfile, "FROM scratch\nCOPY . /context\n").unwrap();
    let tag = format!("localhost/autopilot-context-check:{}", std::process::id());
    let root = repo_root();
    podman_ok(&["build", "--quiet", "-f", containerfile.to_str().unwrap(), "-t", &tag, root.to_str().unwrap()]);
    let mounted = podman_ok(&["image", "mount", &tag]);
    let context = Path::new(mounted.trim()).join("context");
    let mut top: Vec<String> =
        std::fs::read_dir(&context).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    top.sort();
    let mut tools: Vec<String> = std::fs::read_dir(context.join("tools"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    tools.sort();
    let size = dir_size(&context);
    let has_build_output = ["target", "node_modules", "build"].iter().any(|name| contains_named(&context, name));
    podman(&["image", "unmount", &tag]);
    podman(&["rmi", "--force", &tag]);

    assert_eq!(
        top,
        ["Cargo.lock", "Cargo.toml", "agent-service", "build.rs", "edge-worker", "proto", "src", "tests", "tools"]
    );
    assert_eq!(tools, ["package-lock.json", "package.json"]);
    assert!(!has_build_output, "no target/, node_modules/ or build/ folder is sent");
    assert!(size < 5_000_000, "the context is {size} bytes");
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                dir_size(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

fn contains_named(dir: &Path, name: &str) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let e = e.unwrap();
        e.file_name() == name || (e.metadata().unwrap().is_dir() && contains_named(&e.path(), name))
    })
}

#[tokio::test]
async fn a_task_runs_end_to_end_in_the_image_as_the_non_root_user() {
    if !podman_available() {
        return;
    }
    let setup = setup().await;
    let container = &setup.container;
    let health = container.healthcheck();
    assert!(health.status.success(), "the image's HEALTHCHECK passes: {}", String::from_utf8_lossy(&health.stderr));

    let mut client = container.client().await;
    let started = client
        .start(start_request(&setup.repo, "SCENARIO:list-files What is in this repository?"))
        .await
        .unwrap()
        .into_inner();
    let events = stream_all(&mut client, &started.task_id, 1).await;
    assert_eq!(milestones(&events), LIST_FILES_MILESTONES);
    // The CLI's Bash tool really ran in the clone inside the container.
    let tool = first_tool_result(&events);
    assert_eq!(tool.output.lines().collect::<Vec<_>>(), ["README.md", "main.rs"]);
    let task =
        client.status(StatusRequest { task_id: started.task_id.clone() }).await.unwrap().into_inner().task.unwrap();
    assert_eq!(task.commit, setup.main_commit);
    assert_eq!(finished(&events).num_turns, 2);

    // Every process runs as the image's user, on the host too, but tini (PID 1, which only
    // reaps and forwards signals). The service keeps root as its saved id alone, for setup
    // scripts; the agent's processes cannot get it back (all four ids are the user's).
    let processes = container.processes();
    assert!(processes.iter().any(|(_, _, args)| args.contains("/usr/local/bin/agent-service")), "{processes:?}");
    for (host_user, user, args) in processes.iter().filter(|(_, _, args)| !args.starts_with("/sbin/tini")) {
        assert_eq!((host_user.as_str(), user.as_str()), ("10001", "agent"), "{args}");
    }
    let ids = |name: &str| {
        let script = format!(
            "for p in /proc/[0-9]*; do grep -q '^Name:.*{name}' $p/status 2>/dev/null && grep '^Uid:' $p/status; done; true"
        );
        container.exec(&["sh", "-c", &script]).split_whitespace().skip(1).take(4).collect::<Vec<_>>().join(" ")
    };
    let user = IMAGE_UID.to_string();
    assert_eq!(ids("agent-service"), format!("{user} {user} 0 {user}"), "real, effective, saved, file system");
    // The task's clone lives in /workspace, owned by that user.
    let owner = container.exec(&["stat", "-c", "%u", &format!("/workspace/tasks/{}/repo", started.task_id)]);
    assert_eq!(owner.trim(), IMAGE_UID.to_string());
}

#[tokio::test]
async fn the_api_key_from_the_environment_stays_out_of_logs_and_events() {
    if !podman_available() {
        return;
    }
    let setup = setup().await;
    let mut client = setup.container.client().await;
    // The agent prints its whole environment, key included, through a real tool call.
    let started = client.start(start_request(&setup.repo, "SCENARIO:print-env")).await.unwrap().into_inner();
    let events = stream_all(&mut client, &started.task_id, 1).await;
    assert_eq!(finished(&events).state(), TaskState::Succeeded);
    let tool = first_tool_result(&events);
    assert!(tool.output.contains("ANTHROPIC_API_KEY=***"), "the key reached the agent, masked: {}", tool.output);

    let logs = setup.container.logs();
    assert!(logs.contains("listening"), "podman logs holds the service's log: {logs}");
    assert!(!logs.contains(CANARY_API_KEY), "the key leaked into podman logs: {logs}");
    let everything = format!("{events:?}");
    assert!(!everything.contains(CANARY_API_KEY), "the key leaked into events");
}

#[tokio::test]
async fn cancel_stops_the_agent_inside_the_container() {
    if !podman_available() {
        return;
    }
    let setup = setup().await;
    let container = &setup.container;
    let mut client = container.client().await;
    let started = client.start(start_request(&setup.repo, "SCENARIO:hang think forever")).await.unwrap().into_inner();
    wait_for_kind(container, &started.task_id, "agent_started").await;
    assert!(!agent_processes(container).is_empty(), "the CLI runs in the container: {:?}", container.processes());

    let cancelled = client
        .cancel(CancelRequest { task_id: started.task_id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.state(), TaskState::Cancelled);
    let events = stream_all(&mut client, &started.task_id, 1).await;
    let end = finished(&events);
    assert_eq!((end.state(), end.error.as_str()), (TaskState::Cancelled, "cancelled by request"));
    assert_eq!(agent_processes(container), Vec::<String>::new(), "no process of the task survives");
}

#[tokio::test]
async fn podman_stop_mid_task_delivers_the_final_event_and_the_container_exits_0() {
    if !podman_available() {
        return;
    }
    let setup = setup().await;
    let container = &setup.container;
    let mut client = container.client().await;
    let started = client.start(start_request(&setup.repo, "SCENARIO:hang")).await.unwrap().into_inner();
    wait_for_kind(container, &started.task_id, "agent_started").await;
    let stream = client
        .stream_events(StreamEventsRequest { task_id: started.task_id.clone(), from_seq: 1 })
        .await
        .unwrap()
        .into_inner();
    let follower = tokio::spawn(collect(stream));

    // SIGTERM reaches the service through tini; SIGKILL would follow only after 30 s.
    let stopping = Instant::now();
    let name = container.name.clone();
    let stop = tokio::task::spawn_blocking(move || podman(&["stop", "--time", "30", &name]));
    let events = follower.await.unwrap();
    let end = finished(&events);
    assert_eq!((end.state(), end.error.as_str()), (TaskState::Cancelled, "the service is shutting down"));
    let stopped = stop.await.unwrap();
    assert!(stopped.status.success(), "podman stop: {}", String::from_utf8_lossy(&stopped.stderr));
    assert!(stopping.elapsed() < Duration::from_secs(20), "the service exited on SIGTERM, not SIGKILL");
    assert_eq!(container.inspect("{{.State.ExitCode}}"), "0", "{}", container.logs());
}
