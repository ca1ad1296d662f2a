//! Sign in with GitHub, end to end: the real edge (`wrangler dev`) against the fake GitHub
//! (`support::fake_github`, GitHub's OAuth endpoints and REST API on a loopback port, as GitHub
//! Enterprise Server would be configured). A browser's path is followed by hand, redirect by
//! redirect, with its cookies: the edge's authorize redirect, GitHub's approval, the callback
//! that signs the browser in; then what a user does with the connection (list repositories,
//! run tasks on a private repository through the edge's git gateway, disconnect), an account
//! that connects GitHub, and what a hostile or stale callback gets. The service's git is the
//! real git behind a wrapper that logs its command lines, so the test can hold a task's git
//! credential as the container's git does and try what the gateway must refuse.

use std::{path::Path, time::Duration};

use autopilot_contract::v1::{client_frame::Request as ClientRequest, CancelRequest, ClientFrame};
use autopilot_tests::{
    bridge_client::{connect, send, Encoding},
    browser_script::run_browser_script,
    edge::Edge,
    fake_github::FakeGithub,
    fake_model_api::FakeModelApi,
    git_logging::{git_credentials_used, git_logging_wrapper},
    github_sign_in::{self, cookies, location, session_of},
    service::{Service, ServiceOptions},
};
use reqwest::{Client, Response};
use serde_json::{json, Value};

mod mentions;
mod pull_requests;

const SIGNUP_CREDITS: &str = "500";

/// The edge configured for the fake GitHub, and the fake with its people and repositories.
struct World {
    edge: Edge,
    github: FakeGithub,
    /// A client that never follows redirects: each hop is checked.
    http: Client,
    service: Service,
    _model_api: FakeModelApi,
    /// Where the service's git wrapper logs each command line.
    git_log: std::path::PathBuf,
    _git_wrapper: tempfile::TempDir,
}

impl World {
    async fn start() -> World {
        let github = FakeGithub::start().await.unwrap();
        github.add_user("octo", 1001);
        github.add_user("hubber", 1002);
        github.add_repo("octo", "private-app", true, "main");
        github.grant("octo", "octo/private-app");
        github.add_repo("octo", "other-app", true, "main");
        github.grant("octo", "octo/other-app");
        github.add_repo("hubber", "secret", true, "main");
        github.grant("hubber", "hubber/secret");
        let model_api = FakeModelApi::start().await.unwrap();
        let (git_wrapper, git_log) = git_logging_wrapper();
        let options = ServiceOptions { path_prefix: Some(git_wrapper.path().to_path_buf()), ..Default::default() };
        let service = Service::start(&model_api, options).await;
        let mut vars = github.edge_vars().to_vec();
        vars.push(("SIGNUP_CREDITS", SIGNUP_CREDITS));
        let edge = Edge::start_with_vars(&format!("http://{}", service.addr), &vars).await;
        let http = github_sign_in::browser();
        World { edge, github, http, service, _model_api: model_api, git_log, _git_wrapper: git_wrapper }
    }

    /// A browser's sign-in through GitHub as `login` (see [`github_sign_in::through_github`]).
    async fn through_github(&self, login: &str, cookies_in: &[String], return_to: &str) -> (Response, Vec<String>) {
        github_sign_in::through_github(&self.http, &self.edge.base_url, &self.github, login, cookies_in, return_to)
            .await
    }

    async fn get(&self, url: &str, cookies: &[String]) -> Response {
        self.http.get(url).header("cookie", cookies.join("; ")).send().await.unwrap()
    }

    /// A signed-in browser's call on the edge (cookie and the site's Origin, as a page sends).
    async fn call(&self, method: reqwest::Method, path: &str, session: &str) -> (u16, Value) {
        let reply = self
            .http
            .request(method, format!("{}{path}", self.edge.base_url))
            .header("cookie", session)
            .header("origin", &self.edge.base_url)
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        (reply.status().as_u16(), reply.json().await.unwrap_or_default())
    }

    /// [`World::call`] with a JSON body.
    async fn send_json(&self, path: &str, session: &str, body: Value) -> (u16, Value) {
        let reply = self
            .http
            .post(format!("{}{path}", self.edge.base_url))
            .header("cookie", session)
            .header("origin", &self.edge.base_url)
            .json(&body)
            .send()
            .await
            .unwrap();
        (reply.status().as_u16(), reply.json().await.unwrap_or_default())
    }

    /// Waits (up to 120 s) until the task ended; answers its Status.
    async fn until_ended(&self, session: &str, task_id: &str) -> Value {
        for _ in 0..600 {
            let (_, status) =
                self.call(reqwest::Method::GET, &format!("/api/container/status?taskId={task_id}"), session).await;
            let state = status["task"]["state"].as_str().unwrap_or_default().to_string();
            if ["TASK_STATE_SUCCEEDED", "TASK_STATE_FAILED", "TASK_STATE_CANCELLED"].contains(&state.as_str()) {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("task {task_id} did not end");
    }

    /// Waits (up to 30 s) until the ended task's pull request is recorded; answers its Status.
    async fn until_pull_request(&self, session: &str, task_id: &str) -> Value {
        for _ in 0..150 {
            let (_, status) =
                self.call(reqwest::Method::GET, &format!("/api/container/status?taskId={task_id}"), session).await;
            if !status["task"]["delivery"]["pullRequest"].is_null() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("task {task_id}'s pull request was not recorded\n--- edge ---\n{}", self.edge.log());
    }

    /// The git gateway's URL of `repository` with `credential`.
    fn gateway(&self, repository: &str, credential: &str) -> String {
        let base = self.edge.base_url.trim_start_matches("http://");
        format!("http://x-access-token:{credential}@{base}/git/{repository}.git")
    }
}

/// Runs the real git in `dir`; answers whether it succeeded and what it printed. (Awaited: the
/// fake GitHub serves from this test's own runtime.)
async fn git(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .await
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn people_sign_in_with_github_connect_it_and_disconnect_it() {
    let world = World::start().await;

    // A first sign-in creates the account, with the sign-up credits, and lands where it began.
    let (reply, _) = world.through_github("octo", &[], "/tasks/abc").await;
    let octo = session_of(&reply, "/tasks/abc");
    let (status, me) = world.call(reqwest::Method::GET, "/api/github", &octo).await;
    assert_eq!((status, &me["connected"], &me["login"]), (200, &Value::Bool(true), &Value::from("octo")), "{me}");
    let (_, balance) = world.call(reqwest::Method::GET, "/api/billing/balance", &octo).await;
    assert_eq!(balance["balance"].to_string(), SIGNUP_CREDITS, "{balance}");

    // Its token reaches the private repository; the page's picker lists it.
    let (status, page) = world.call(reqwest::Method::GET, "/api/github/repositories", &octo).await;
    assert_eq!(status, 200, "{page}");
    let listed = page["repositories"].as_array().unwrap().iter().find(|r| r["fullName"] == "octo/private-app");
    assert_eq!(listed.map(|r| &r["private"]), Some(&Value::Bool(true)), "{page}");
    let (status, refused) = world.call(reqwest::Method::GET, "/api/github/repositories?pageToken=x", &octo).await;
    assert_eq!(status, 400, "{refused}");

    tasks_on_a_private_repository_go_through_the_git_gateway(&world, &octo).await;
    pull_requests::a_conversation_opens_one_draft_pull_request_and_comments_on_it(&world, &octo).await;
    mentions::a_mention_on_the_pull_request_continues_its_conversation(&world, &octo).await;
    mentions::failing_checks_are_fixed_at_most_three_times_in_a_row(&world, &octo).await;
    pull_requests::githubs_refusal_of_a_pull_request_is_shown_and_asked_again(&world, &octo).await;
    a_person_signs_in_with_github_and_opens_a_pull_request_in_chromium(&world).await;

    // Signing in again is the same account (no second sign-up grant).
    let (reply, _) = world.through_github("octo", &[], "/").await;
    let again = session_of(&reply, "/");
    let (_, balance) = world.call(reqwest::Method::GET, "/api/billing/balance", &again).await;
    assert_eq!(balance["balance"].to_string(), SIGNUP_CREDITS, "{balance}");

    // Every call to GitHub's API said who it is and which API it speaks.
    let api_calls: Vec<_> = world.github.requests().into_iter().filter(|r| r.path.starts_with("/api/v3")).collect();
    assert!(!api_calls.is_empty());
    for call in &api_calls {
        let header = |name: &str| call.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        assert!(!header("user-agent").is_empty(), "{} {}", call.method, call.path);
        assert_eq!(header("accept"), "application/vnd.github+json", "{}", call.path);
        assert_eq!(header("x-github-api-version"), "2022-11-28", "{}", call.path);
    }

    // A token about to expire (a short-lived one: past half its life) is renewed with its
    // refresh token before it is used.
    world.github.set_token_lifetime(Duration::from_secs(12));
    let (reply, _) = world.through_github("octo", &[], "/").await;
    let short_lived = session_of(&reply, "/");
    let renewals_before = renewals(&world.github);
    let (status, _) = world.call(reqwest::Method::GET, "/api/github/repositories", &short_lived).await;
    assert_eq!((status, renewals(&world.github)), (200, renewals_before), "a fresh token is used as it is");
    tokio::time::sleep(Duration::from_millis(6_300)).await;
    // Four requests at once need the renewal: one renews (GitHub takes a refresh token once),
    // the others wait for it and use its token.
    let call = || world.call(reqwest::Method::GET, "/api/github/repositories", &short_lived);
    let answers = futures::future::join_all([call(), call(), call(), call()]).await;
    for (status, page) in &answers {
        assert_eq!(*status, 200, "{page}");
    }
    let page = answers[0].1.clone();
    assert_eq!(renewals(&world.github), renewals_before + 1, "renewed once, then used");
    world.github.set_token_lifetime(autopilot_tests::fake_github::ACCESS_TOKEN_LIFETIME);

    // No GitHub token is in any answer, or in the edge's log.
    let live = world.github.live_tokens();
    assert!(!live.is_empty());
    let log = world.edge.log();
    for token in &live {
        assert!(!me.to_string().contains(token) && !page.to_string().contains(token) && !log.contains(token));
    }

    // Disconnecting deletes the connection and revokes the token at GitHub; GitHub-only calls
    // then say to connect it.
    let (status, gone) = world.call(reqwest::Method::DELETE, "/api/github", &octo).await;
    assert_eq!((status, &gone["connected"]), (200, &Value::Bool(false)), "{gone}");
    assert!(world.github.revoked_tokens().iter().any(|t| live.contains(t)), "revoked at GitHub");
    let (status, refused) = world.call(reqwest::Method::GET, "/api/github/repositories", &octo).await;
    assert_eq!(status, 409, "FAILED_PRECONDITION: {refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("GitHub is not connected"), "{refused}");
    let start = json!({"repositoryUrl": format!("{}/octo/private-app", world.github.url), "prompt": "SCENARIO:answer"});
    let (status, refused) = world.send_json("/api/container/start", &octo, start).await;
    assert_eq!(status, 409, "a task on GitHub needs GitHub connected: {refused}");

    // An account signed in with an API token connects GitHub to itself; that GitHub account
    // cannot then be connected to another account.
    let alice_token = world.edge.user("alice", 0).await;
    let signed_in = world
        .http
        .post(format!("{}/api/auth/signin", world.edge.base_url))
        .bearer_auth(&alice_token)
        .send()
        .await
        .unwrap();
    let alice = cookies(signed_in.headers()).into_iter().find(|c| c.starts_with("autopilot_session=")).unwrap();
    let (reply, _) = world.through_github("hubber", std::slice::from_ref(&alice), "/").await;
    let connected = session_of(&reply, "/");
    let (_, me) = world.call(reqwest::Method::GET, "/api/github", &connected).await;
    assert_eq!(me["login"], "hubber", "{me}");
    let (_, balance) = world.call(reqwest::Method::GET, "/api/billing/balance", &connected).await;
    assert_eq!(balance["balance"], 0, "a connected account gets no sign-up credits: {balance}");
    let (reply, _) = world.through_github("octo", std::slice::from_ref(&alice), "/").await;
    assert_eq!(reply.status(), 409, "octo's GitHub is another account's");

    stale_and_hostile_callbacks_are_refused_in_words(&world).await;
}

/// How many times the edge renewed a token at the fake's token endpoint.
fn renewals(github: &FakeGithub) -> usize {
    github.requests().iter().filter(|r| r.path.contains("access_token") && r.body.contains("refresh_token")).count()
}

async fn stale_and_hostile_callbacks_are_refused_in_words(world: &World) {
    let callback = |query: &str| format!("{}/auth/github/callback?{query}", world.edge.base_url);
    // A callback replayed (its state was used) or from another browser (no state cookie).
    world.github.approve_as("octo");
    let start = world.get(&format!("{}/auth/github", world.edge.base_url), &[]).await;
    let state_cookies = cookies(start.headers());
    let approved = world.get(&location(&start), &[]).await;
    let back = location(&approved);
    let other_browser = world.get(&back, &[]).await;
    assert_eq!(other_browser.status(), 400, "no state cookie");
    let first = world.get(&back, &state_cookies).await;
    assert_eq!(first.status(), 302, "the right browser, once");
    let replayed = world.get(&back, &state_cookies).await;
    assert_eq!(replayed.status(), 400, "a state is single use");
    let body: Value = replayed.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("sign in with GitHub again"), "{body}");
    // A forged state, a callback without a code, GitHub's own refusal.
    let forged = world.get(&callback("code=x&state=forged"), &["ap_github_state=forged".into()]).await;
    assert_eq!(forged.status(), 400);
    let (state, state_cookies) = begun_sign_in(world).await;
    let no_code = world.get(&callback(&format!("state={state}")), &state_cookies).await;
    assert_eq!(no_code.status(), 400);
    let body: Value = no_code.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("no code"), "{body}");
    let denied = world.get(&callback("error=access_denied&error_description=The+user+denied"), &[]).await;
    assert_eq!(denied.status(), 403);
    // A code GitHub does not know (used, or made up): GitHub's words.
    let (state, state_cookies) = begun_sign_in(world).await;
    let made_up = world.get(&callback(&format!("code=made-up&state={state}")), &state_cookies).await;
    assert_eq!(made_up.status(), 400);
    let body: Value = made_up.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("bad_verification_code"), "{body}");
    // The edge keeps serving.
    let health = world.http.get(format!("{}/health", world.edge.base_url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

/// A sign-in begun at the edge (not taken to GitHub): its state, and the cookies that bind it.
async fn begun_sign_in(world: &World) -> (String, Vec<String>) {
    let start = world.get(&format!("{}/auth/github", world.edge.base_url), &[]).await;
    let state_cookies = cookies(start.headers());
    let state = state_cookies[0].trim_start_matches("ap_github_state=").to_string();
    (state, state_cookies)
}

/// A task on the private repository clones and pushes its branch through the gateway with a
/// credential of its own; that credential reaches only its repository and branch, and dies with
/// the task; no GitHub token reaches the service.
async fn tasks_on_a_private_repository_go_through_the_git_gateway(world: &World, octo: &str) {
    let repository_url = format!("{}/octo/private-app", world.github.url);
    let start = json!({"repositoryUrl": repository_url, "prompt": "SCENARIO:edit-and-create add two files",
        "delivery": {"push": true}});
    let (status, started) = world.send_json("/api/container/start", octo, start).await;
    assert_eq!(status, 200, "{started}");
    let task_id = started["taskId"].as_str().unwrap().to_string();
    let ended = world.until_ended(octo, &task_id).await;
    assert_eq!(ended["task"]["state"], "TASK_STATE_SUCCEEDED", "{ended}\n--- edge ---\n{}", world.edge.log());
    let branch = format!("refs/heads/autopilot/{task_id}");
    assert!(world.github.rev_parse("octo", "private-app", &branch).is_some(), "the branch is on GitHub: {ended}");
    let (_, list) = world.call(reqwest::Method::GET, "/api/tasks", octo).await;
    assert_eq!(list["tasks"][0]["repositoryUrl"], repository_url.as_str(), "the list shows the user's URL: {list}");
    let used = git_credentials_used(&world.git_log);
    assert!(!used.is_empty(), "the service's git used a task credential");
    let logged = std::fs::read_to_string(&world.git_log).unwrap();
    let service_log = world.service.logs().join("\n");
    for token in world.github.live_tokens() {
        assert!(!logged.contains(&token) && !service_log.contains(&token), "a GitHub token reached the service");
        assert!(!ended.to_string().contains(&token));
    }

    // While a task runs, its credential fetches its repository, and pushes nothing but its branch.
    let start = json!({"repositoryUrl": repository_url, "prompt": "SCENARIO:slow-tools:400 take your time"});
    let (status, started) = world.send_json("/api/container/start", octo, start).await;
    assert_eq!(status, 200, "{started}");
    let running = started["taskId"].as_str().unwrap().to_string();
    let mut socket = connect(started["websocketUrl"].as_str().unwrap()).await;
    let mut credential = None;
    for _ in 0..300 {
        credential = git_credentials_used(&world.git_log).into_iter().find(|c| !used.contains(c));
        if credential.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let credential = credential.expect("the running task's git used a credential of its own");
    let scratch = tempfile::tempdir().unwrap();
    let own = world.gateway("octo/private-app", &credential);
    let (cloned, out) = git(scratch.path(), &["clone", "--quiet", &own, "work"]).await;
    assert!(cloned, "its own repository: {out}");
    let work = scratch.path().join("work");
    git(&work, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "--allow-empty", "-m", "try"]).await;
    let (pushed, out) = git(&work, &["push", &own, "HEAD:refs/heads/main"]).await;
    assert!(!pushed && out.contains(&format!("autopilot pushes only to autopilot/{running}")), "{out}");
    let (pushed, out) = git(&work, &["push", &own, "HEAD:refs/tags/v9"]).await;
    assert!(!pushed && out.contains("autopilot does not push tags"), "{out}");
    let (pushed, out) = git(&work, &["push", &own, &format!(":refs/heads/autopilot/{task_id}")]).await;
    assert!(!pushed && out.contains("autopilot does not delete branches"), "{out}");
    assert_eq!(world.github.rev_parse("octo", "private-app", "refs/tags/v9"), None, "nothing reached GitHub");
    let (listed, out) = git(scratch.path(), &["ls-remote", &world.gateway("octo/other-app", &credential)]).await;
    assert!(!listed && out.contains("not found"), "another repository is as good as absent: {out}");
    let (listed, out) = git(scratch.path(), &["ls-remote", &world.gateway("hubber/secret", &credential)]).await;
    assert!(!listed && out.contains("not found"), "{out}");
    hostile_git_requests_get_clear_refusals(world, &credential, &running).await;
    let made_up = format!("apgc_{}_{}", "0".repeat(64), "1".repeat(64));
    let (listed, out) = git(scratch.path(), &["ls-remote", &world.gateway("octo/private-app", &made_up)]).await;
    assert!(!listed, "a made-up credential: {out}");

    // Its task ended: the credential is refused.
    let cancel = ClientFrame {
        request_id: "cancel".into(),
        request: Some(ClientRequest::Cancel(CancelRequest { task_id: running.clone(), ..Default::default() })),
    };
    send(&mut socket, &cancel, Encoding::Binary).await;
    let ended = world.until_ended(octo, &running).await;
    assert_eq!(ended["task"]["state"], "TASK_STATE_CANCELLED", "{ended}");
    let (listed, out) = git(scratch.path(), &["ls-remote", &own]).await;
    assert!(!listed && out.contains("Authentication failed"), "a dead task's credential: {out}");

    // A repository the user's GitHub account does not reach is refused at the Start.
    let start = json!({"repositoryUrl": format!("{}/hubber/secret", world.github.url), "prompt": "SCENARIO:answer"});
    let (status, refused) = world.send_json("/api/container/start", octo, start).await;
    assert_eq!(status, 404, "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("hubber/secret"), "{refused}");
}

/// The page, in Chromium (`web/tests/github.e2e.mjs`): the GitHub sign-in, the repository picker
/// and a task whose heading links to its draft pull request.
async fn a_person_signs_in_with_github_and_opens_a_pull_request_in_chromium(world: &World) {
    world.github.approve_as("octo");
    let repository = format!("{}/octo/private-app.git", world.github.url);
    let vars = [("GITHUB_URL", world.github.url.as_str()), ("GITHUB_LOGIN", "octo"), ("REPO_URL", &repository)];
    let report = run_browser_script("tests/github.e2e.mjs", &world.edge, &vars).await;
    let url = report
        .lines()
        .find_map(|line| line.trim().trim_start_matches("# ").strip_prefix("PULL_REQUEST_URL="))
        .expect("the link's URL");
    let pull =
        world.github.pulls("octo", "private-app").into_iter().find(|p| url.ends_with(&format!("/pull/{}", p.number)));
    let pull = pull.unwrap_or_else(|| panic!("{url} is no pull request of octo/private-app"));
    assert!(pull.draft && pull.title == "Add notes from the page", "{} (draft: {})", pull.title, pull.draft);
}

/// What no git client sends, with a live credential: each a clear 4xx in words, nothing relayed,
/// and the gateway serves on.
async fn hostile_git_requests_get_clear_refusals(world: &World, credential: &str, task_id: &str) {
    let base = format!("{}/git/octo/private-app.git", world.edge.base_url);
    let post = |body: Vec<u8>| {
        world
            .http
            .post(format!("{base}/git-receive-pack"))
            .basic_auth("x-access-token", Some(credential))
            .header("content-type", "application/x-git-receive-pack-request")
            .body(body)
            .send()
    };
    let pkt = |line: &str| format!("{:04x}{line}", line.len() + 4);
    let zero = "0".repeat(40);
    let one = "1".repeat(40);
    let mut many = String::new();
    for i in 0..1_000 {
        let capabilities = if i == 0 { "\0report-status side-band-64k" } else { "" };
        many.push_str(&pkt(&format!("{zero} {one} refs/heads/autopilot/{task_id}-{i}{capabilities}\n")));
    }
    many.push_str("0000");
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("a malformed pkt-line", b"zzzz0000".to_vec(), ""),
        ("1,000 ref updates", many.into_bytes(), "at most 32 refs"),
        ("an oversized pkt-line", b"ffff".iter().copied().chain([b'x'; 70_000]).collect(), ""),
        ("commands that never end", pkt(&format!("{zero} {one} refs/heads/x\0report-status\n")).into_bytes(), "ends"),
    ];
    for (what, body, words) in cases {
        let reply = post(body).await.unwrap();
        let status = reply.status().as_u16();
        let text = reply.text().await.unwrap();
        assert_eq!(status, 400, "{what}: {text}\n--- edge ---\n{}", world.edge.log());
        assert!(text.contains(words), "{what}: {text}");
    }
    for path in
        ["/git/octo/%2e%2e/hubber/secret.git/info/refs", "/git/octo/private-app.git/../../hubber/secret.git/info/refs"]
    {
        let reply = world
            .http
            .get(format!("{}{path}?service=git-upload-pack", world.edge.base_url))
            .basic_auth("x-access-token", Some(credential))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status().as_u16(), 404, "{path}: {}", reply.text().await.unwrap());
    }
    let refs = world
        .http
        .get(format!("{base}/info/refs?service=git-upload-pack"))
        .basic_auth("x-access-token", Some(credential))
        .send()
        .await
        .unwrap();
    assert_eq!(refs.status().as_u16(), 200, "the gateway serves on");
}
