//! The fake GitHub (`support/fake_github/`), driven the way the product and git drive GitHub:
//! the OAuth round trip and its errors, token refresh, expiry and revocation, the REST API's
//! rules (User-Agent, credentials, pagination, pull request validation) and real `git` clones
//! and pushes against a private repository.

use std::{path::Path, time::Duration};

use autopilot_tests::{
    fake_github::{FakeGithub, CLIENT_ID, CLIENT_SECRET},
    git_fixture::git,
};
use base64::{engine::general_purpose::STANDARD as BASE64, Engine};
use reqwest::{redirect, Client, Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use tokio::process::Command;

const CALLBACK: &str = "http://app.invalid/oauth/callback";

/// A client that, like a browser handing the redirect to the app, does not follow redirects and
/// sends no User-Agent unless asked to.
fn client() -> Client {
    Client::builder().redirect(redirect::Policy::none()).build().unwrap()
}

/// An API request as a well-behaved GitHub client makes it.
fn api(fake: &FakeGithub, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
    let request = client()
        .request(method, format!("{}{path}", fake.api_url))
        .header("user-agent", "autopilot-tests")
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28");
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

async fn json_of(request: RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Walks the authorization page as the approving user; returns the code the app gets back.
async fn authorize(fake: &FakeGithub, state: &str) -> String {
    let url = format!("{}/login/oauth/authorize", fake.url);
    let query = [("client_id", CLIENT_ID), ("redirect_uri", CALLBACK), ("state", state)];
    let response = client().get(url).query(&query).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let query = location.strip_prefix(&format!("{CALLBACK}?")).unwrap_or_else(|| panic!("redirected to {location}"));
    let params: Vec<(String, String)> =
        form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    assert_eq!(params.iter().find(|(k, _)| k == "state").map(|(_, v)| v.as_str()), Some(state));
    params.into_iter().find(|(k, _)| k == "code").map(|(_, v)| v).expect("a code")
}

/// `POST /login/oauth/access_token` with form parameters, asking for JSON.
async fn exchange(fake: &FakeGithub, params: &[(&str, &str)]) -> Value {
    let response = client()
        .post(format!("{}/login/oauth/access_token", fake.url))
        .header("accept", "application/json")
        .form(params)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the exchange answers 200, errors too");
    response.json().await.unwrap()
}

async fn exchange_code(fake: &FakeGithub, code: &str) -> Value {
    exchange(fake, &[("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET), ("code", code)]).await
}

#[tokio::test]
async fn the_oauth_round_trip_gives_tokens_that_refresh_expire_and_revoke() {
    let fake = FakeGithub::start().await.unwrap();
    fake.add_user("octocat", 583231);
    fake.add_user("hubot", 2);

    let wrong_app = format!("{}/login/oauth/authorize?client_id=Iv1.nope&redirect_uri={CALLBACK}", fake.url);
    assert_eq!(client().get(wrong_app).send().await.unwrap().status(), StatusCode::NOT_FOUND);

    let code = authorize(&fake, "s1").await;
    let tokens = exchange_code(&fake, &code).await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    assert!(access.starts_with("ghu_") && access.len() == 40, "{access}");
    assert!(refresh.starts_with("ghr_"), "{refresh}");
    assert_eq!(
        (&tokens["expires_in"], &tokens["refresh_token_expires_in"], &tokens["token_type"], &tokens["scope"]),
        (&json!(28800), &json!(15811200), &json!("bearer"), &json!(""))
    );

    let (status, user) = json_of(api(&fake, Method::GET, "/user", Some(&access))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((&user["login"], &user["id"], &user["type"]), (&json!("octocat"), &json!(583231), &json!("User")));
    assert_eq!(user["html_url"], format!("{}/octocat", fake.url));
    let by_token_scheme = api(&fake, Method::GET, "/user", None).header("authorization", format!("token {access}"));
    assert_eq!(json_of(by_token_scheme).await.1["login"], "octocat");

    // A code works once; a wrong secret is refused before anything else.
    assert_eq!(
        exchange_code(&fake, &code).await,
        json!({"error": "bad_verification_code", "error_description": "The code passed is incorrect or expired.",
            "error_uri": "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#bad-verification-code"})
    );
    let fresh = authorize(&fake, "s2").await;
    let wrong_secret = exchange(&fake, &[("client_id", CLIENT_ID), ("client_secret", "nope"), ("code", &fresh)]).await;
    assert_eq!(wrong_secret["error"], "incorrect_client_credentials");

    // Without Accept: application/json the answer is form-encoded, as GitHub's default.
    fake.approve_as("hubot");
    let code = authorize(&fake, "s3").await;
    let response = client()
        .post(format!("{}/login/oauth/access_token", fake.url))
        .form(&[("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET), ("code", code.as_str())])
        .send()
        .await
        .unwrap();
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/x-www-form-urlencoded"));
    let form = response.text().await.unwrap();
    assert!(form.starts_with("access_token=ghu_") && form.contains("&token_type=bearer&scope="), "{form}");
    let hubots = form_urlencoded::parse(form.as_bytes()).find(|(k, _)| k == "access_token").unwrap().1.into_owned();
    assert_eq!(json_of(api(&fake, Method::GET, "/user", Some(&hubots))).await.1["login"], "hubot");

    // Refreshing gives a new pair; the old refresh and access tokens stop working.
    let refresh_with = |token: String| {
        let fake = &fake;
        async move {
            let params = [
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
            ];
            exchange(fake, &params).await
        }
    };
    // JSON bodies are read as well as forms.
    let renewed = client()
        .post(format!("{}/login/oauth/access_token", fake.url))
        .header("accept", "application/json")
        .json(&json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "grant_type": "refresh_token",
            "refresh_token": refresh}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let new_access = renewed["access_token"].as_str().unwrap().to_string();
    assert!(new_access.starts_with("ghu_") && new_access != access);
    assert!(renewed["refresh_token"].as_str().unwrap() != refresh);
    assert_eq!(refresh_with(refresh).await["error"], "bad_refresh_token");
    assert_eq!(json_of(api(&fake, Method::GET, "/user", Some(&access))).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(api(&fake, Method::GET, "/user", Some(&new_access))).await.1["login"], "octocat");
    assert!(fake.live_tokens().contains(&new_access) && !fake.live_tokens().contains(&access));

    // A token outlives its lifetime: the API refuses it as GitHub does.
    fake.set_token_lifetime(Duration::from_millis(300));
    let short = exchange_code(&fake, &authorize(&fake, "s4").await).await;
    let short = short["access_token"].as_str().unwrap().to_string();
    assert_eq!(json_of(api(&fake, Method::GET, "/user", Some(&short))).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        json_of(api(&fake, Method::GET, "/user", Some(&short))).await,
        (
            StatusCode::UNAUTHORIZED,
            json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"})
        )
    );

    // Revocation needs the app's own Basic credentials.
    let revoke = |user: &str, password: &str| {
        api(&fake, Method::DELETE, &format!("/applications/{CLIENT_ID}/token"), None)
            .basic_auth(user, Some(password))
            .json(&json!({"access_token": new_access}))
    };
    assert_eq!(revoke(CLIENT_ID, "wrong").send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(revoke(CLIENT_ID, CLIENT_SECRET).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(json_of(api(&fake, Method::GET, "/user", Some(&new_access))).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(fake.revoked_tokens(), std::slice::from_ref(&new_access));
    assert!(!fake.live_tokens().contains(&new_access));
}

#[tokio::test]
async fn the_api_wants_a_user_agent_and_credentials_and_records_headers() {
    let fake = FakeGithub::start().await.unwrap();
    fake.add_user("octocat", 1);
    let token = fake.issue_token("octocat");

    let bare = client().get(format!("{}/user", fake.api_url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(bare.status(), StatusCode::FORBIDDEN);
    let text = bare.text().await.unwrap();
    assert!(
        text.starts_with(
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header"
        ),
        "{text}"
    );

    let (status, body) = json_of(api(&fake, Method::GET, "/user", Some("ghu_not-a-token"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["message"], "Bad credentials");
    let (status, body) = json_of(api(&fake, Method::GET, "/user", None)).await;
    assert_eq!(
        (status, &body["message"], &body["status"]),
        (StatusCode::UNAUTHORIZED, &json!("Requires authentication"), &json!("401"))
    );

    assert_eq!(json_of(api(&fake, Method::GET, "/user", Some(&token))).await.0, StatusCode::OK);
    let seen = fake.requests();
    let last = seen.last().unwrap();
    assert_eq!((last.method.as_str(), last.path.as_str()), ("GET", "/api/v3/user"));
    assert_eq!(last.headers["accept"], "application/vnd.github+json");
    assert_eq!(last.headers["x-github-api-version"], "2022-11-28");
    assert_eq!(last.headers["authorization"], format!("Bearer {token}"));
}

#[tokio::test]
async fn repositories_page_with_githubs_link_header_and_hide_what_the_user_cannot_see() {
    let fake = FakeGithub::start().await.unwrap();
    fake.add_user("octocat", 1);
    fake.add_user("hubot", 2);
    for name in ["e", "d", "c", "b", "a"] {
        fake.add_repo("octocat", name, true, "main");
    }
    fake.add_repo("hubot", "secret", true, "trunk");
    fake.add_repo("acme", "shared", false, "main");
    fake.grant("octocat", "acme/shared");
    let token = fake.issue_token("octocat");

    let response = api(&fake, Method::GET, "/user/repos?per_page=2", Some(&token)).send().await.unwrap();
    let link = response.headers()["link"].to_str().unwrap().to_string();
    let base = format!("{}/user/repos", fake.api_url);
    assert_eq!(link, format!("<{base}?per_page=2&page=2>; rel=\"next\", <{base}?per_page=2&page=3>; rel=\"last\""));
    let page: Value = response.json().await.unwrap();
    let names: Vec<&str> = page.as_array().unwrap().iter().map(|r| r["full_name"].as_str().unwrap()).collect();
    assert_eq!(names, ["acme/shared", "octocat/a"]);
    assert_eq!(page[1]["clone_url"], fake.clone_url("octocat", "a"));
    assert_eq!((&page[1]["private"], &page[1]["owner"]["login"]), (&json!(true), &json!("octocat")));

    let response = api(&fake, Method::GET, "/user/repos?per_page=2&page=3", Some(&token)).send().await.unwrap();
    let link = response.headers()["link"].to_str().unwrap().to_string();
    assert_eq!(link, format!("<{base}?per_page=2&page=2>; rel=\"prev\", <{base}?per_page=2&page=1>; rel=\"first\""));
    assert_eq!(response.json::<Value>().await.unwrap().as_array().unwrap().len(), 2);

    let (status, repo) = json_of(api(&fake, Method::GET, "/repos/octocat/a", Some(&token))).await;
    assert_eq!(
        (status, &repo["default_branch"], &repo["permissions"]["push"]),
        (StatusCode::OK, &json!("main"), &json!(true))
    );
    assert_eq!(
        json_of(api(&fake, Method::GET, "/repos/hubot/secret", Some(&token))).await,
        (
            StatusCode::NOT_FOUND,
            json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest/repos/repos#get-a-repository",
                "status": "404"})
        )
    );
    // A public repository is anyone's to read, anonymously too.
    assert_eq!(json_of(api(&fake, Method::GET, "/repos/acme/shared", None)).await.0, StatusCode::OK);
}

/// Git with none of the machine's configuration, never prompting.
fn git_cmd(cwd: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("git");
    cmd.args(["-c", "user.name=Test", "-c", "user.email=test@example.invalid"])
        .args(args)
        .current_dir(cwd)
        .envs([("GIT_CONFIG_GLOBAL", "/dev/null"), ("GIT_CONFIG_NOSYSTEM", "1"), ("GIT_TERMINAL_PROMPT", "0")])
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS");
    cmd
}

async fn git_ok(cwd: &Path, args: &[&str]) -> String {
    let out = git_cmd(cwd, args).output().await.unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn git_fails(cwd: &Path, args: &[&str]) -> String {
    let out = git_cmd(cwd, args).output().await.unwrap();
    assert!(!out.status.success(), "git {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn git_clones_and_pushes_a_private_repository_with_a_token_and_pull_requests_follow() {
    let fake = FakeGithub::start().await.unwrap();
    fake.add_user("alice", 10);
    fake.add_user("mallory", 11);
    let bare = fake.add_repo("alice", "widgets", true, "main");
    let token = fake.issue_token("alice");
    let dir = tempfile::tempdir().unwrap();
    let url = fake.clone_url("alice", "widgets");

    // Anonymous: git asks for a username (GitHub's 401 and Basic challenge) and cannot.
    let stderr = git_fails(dir.path(), &["clone", "-q", &url, "anonymous"]).await;
    assert!(stderr.contains("could not read Username"), "{stderr}");
    let bad = url.replacen("http://", "http://x-access-token:ghu_wrong@", 1);
    let stderr = git_fails(dir.path(), &["clone", "-q", &bad, "bad"]).await;
    assert!(stderr.contains("Authentication failed"), "{stderr}");
    let mallory = fake.issue_token("mallory");
    let mallorys = url.replacen("http://", &format!("http://x-access-token:{mallory}@"), 1);
    let stderr = git_fails(dir.path(), &["clone", "-q", &mallorys, "mallory"]).await;
    assert!(stderr.contains("remote: Repository not found."), "{stderr}");
    // A public repository: anyone fetches, only those with write access push.
    fake.add_repo("alice", "open", false, "main");
    let open = fake.clone_url("alice", "open");
    git_ok(dir.path(), &["clone", "-q", &open, "open"]).await;
    let open_as_mallory = open.replacen("http://", &format!("http://x-access-token:{mallory}@"), 1);
    let stderr = git_fails(&dir.path().join("open"), &["push", "-q", &open_as_mallory, "HEAD:refs/heads/x"]).await;
    assert!(stderr.contains("remote: Permission to alice/open.git denied to mallory."), "{stderr}");

    // Credentials in the URL.
    let with_token = url.replacen("http://", &format!("http://x-access-token:{token}@"), 1);
    git_ok(dir.path(), &["clone", "-q", &with_token, "clone"]).await;
    let clone = dir.path().join("clone");
    assert_eq!(std::fs::read_to_string(clone.join("README.md")).unwrap(), "# widgets\n");

    // Git gzips a fetch request over 1 KiB: wanting 40 new branches makes one.
    let mut newest = String::new();
    for i in 0..40 {
        newest = git(&bare, &["commit-tree", "-p", "main", "-m", &format!("commit {i}"), "main^{tree}"]);
        git(&bare, &["branch", &format!("wanted-{i}"), &newest]);
    }
    let out = git_cmd(&clone, &["fetch", "origin", "+refs/heads/*:refs/remotes/origin/*"])
        .envs([("GIT_TRACE_CURL", "1"), ("GIT_TRACE_CURL_NO_DATA", "1")])
        .output()
        .await
        .unwrap();
    let trace = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && trace.contains("Content-Encoding: gzip"), "{trace}");
    assert_eq!(git(&clone, &["rev-parse", "origin/wanted-39"]), newest);

    // A push with the token in http.extraHeader, as actions/checkout does, to a URL without it.
    std::fs::write(clone.join("FEATURE.md"), "work\n").unwrap();
    git(&clone, &["checkout", "-qb", "feature"]);
    git(&clone, &["add", "."]);
    git(&clone, &["commit", "-qm", "feature work"]);
    let basic = BASE64.encode(format!("x-access-token:{token}"));
    let header = format!("http.extraHeader=Authorization: Basic {basic}");
    git_ok(&clone, &["-c", &header, "push", "-q", &url, "feature"]).await;
    assert_eq!(fake.rev_parse("alice", "widgets", "feature"), Some(git(&clone, &["rev-parse", "HEAD"])));

    // A pull request from the pushed branch, and GitHub's refusals around it.
    let create = |head: &str| {
        api(&fake, Method::POST, "/repos/alice/widgets/pulls", Some(&token))
            .json(&json!({"title": "Feature", "head": head, "base": "main", "body": "Adds FEATURE.md", "draft": true}))
    };
    let (status, pull) = json_of(create("feature")).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!((&pull["number"], &pull["state"], &pull["draft"]), (&json!(1), &json!("open"), &json!(true)));
    assert_eq!(pull["html_url"], format!("{}/alice/widgets/pull/1", fake.url));
    assert_eq!((&pull["head"]["ref"], &pull["base"]["ref"]), (&json!("feature"), &json!("main")));
    assert_eq!(pull["head"]["sha"], git(&clone, &["rev-parse", "HEAD"]));
    assert_eq!(
        json_of(create("alice:feature")).await,
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "custom",
                "message": "A pull request already exists for alice:feature."}],
                "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request", "status": "422"})
        )
    );
    let (status, body) = json_of(create("no-such-branch")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"], json!([{"resource": "PullRequest", "field": "head", "code": "invalid"}]));
    fake.refuse_pull_creation(true);
    let (status, body) = json_of(create("wanted-1")).await;
    assert_eq!((status, &body["message"]), (StatusCode::FORBIDDEN, &json!("Resource not accessible by integration")));
    fake.refuse_pull_creation(false);

    let (status, open) =
        json_of(api(&fake, Method::GET, "/repos/alice/widgets/pulls?head=alice:feature&state=open", Some(&token)))
            .await;
    assert_eq!((status, open.as_array().unwrap().len()), (StatusCode::OK, 1));
    let (_, none) = json_of(api(&fake, Method::GET, "/repos/alice/widgets/pulls?head=alice:other", Some(&token))).await;
    assert_eq!(none, json!([]));

    let comment = api(&fake, Method::POST, "/repos/alice/widgets/issues/1/comments", Some(&token))
        .json(&json!({"body": "Ready for review"}));
    let (status, comment) = json_of(comment).await;
    assert_eq!(
        (status, &comment["body"], &comment["user"]["login"]),
        (StatusCode::CREATED, &json!("Ready for review"), &json!("alice"))
    );
    let (_, listed) = json_of(api(&fake, Method::GET, "/repos/alice/widgets/issues/1/comments", Some(&token))).await;
    assert_eq!(listed[0]["id"], comment["id"]);
    assert_eq!(fake.pulls("alice", "widgets")[0].head, "feature");
    assert_eq!(fake.comments("alice", "widgets", 1)[0].body, "Ready for review");
}
