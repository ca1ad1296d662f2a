//! Git over smart HTTP (`/<owner>/<repo>[.git]/info/refs`, `git-upload-pack`, `git-receive-pack`),
//! served by the real `git http-backend` as a CGI after GitHub's checks: Basic credentials whose
//! password (or user name) is a live access token; none or bad ones answer 401 with
//! `WWW-Authenticate: Basic realm="GitHub"`, so git prompts or fails as against GitHub. Also the
//! git calls the fake itself makes (seeding repositories, reading refs).

use std::{
    path::Path,
    process::{Command as StdCommand, Stdio},
};

use axum::{
    body::Body,
    extract::Request,
    http::{header, HeaderValue, StatusCode},
    response::Response,
};
use futures::StreamExt;

use super::{basic_credentials, form_pairs, param, respond, Shared};
use crate::git_http_backend::{self, CgiRequest};

/// Answers one smart-HTTP request for `owner/repo` (`repo` may end in `.git`).
pub(super) async fn serve(shared: &Shared, req: Request, owner: &str, repo: &str) -> Response {
    let name = repo.strip_suffix(".git").unwrap_or(repo);
    let query = form_pairs(req.uri().query().unwrap_or("").as_bytes());
    let pushing =
        req.uri().path().ends_with("/git-receive-pack") || param(&query, "service") == Some("git-receive-pack");

    // GitHub's order: no or bad credentials answer 401 before saying whether the repository exists
    // (a public one may be fetched anonymously); then 404 for what the user cannot see, 403 for a
    // push without write access.
    let credentials = basic_credentials(req.headers());
    let (login, found) = {
        let world = shared.state.lock().unwrap();
        let login = credentials
            .as_ref()
            .and_then(|(user, password)| world.token_user(password).or_else(|| world.token_user(user)));
        let repo = world.repo(owner, name);
        let found = repo.map(|repo| {
            let (readable, writable) =
                (world.can_read(login.as_deref(), repo), login.as_deref().is_some_and(|l| world.can_write(l, repo)));
            (repo.owner.clone(), repo.name.clone(), readable, writable)
        });
        (login, found)
    };
    let public_fetch = matches!(found, Some((_, _, true, _))) && !pushing;
    if login.is_none() && !public_fetch {
        let message = if credentials.is_some() {
            "Invalid username or token. Password authentication is not supported for Git operations.\n"
        } else {
            ""
        };
        let mut response = respond(StatusCode::UNAUTHORIZED, "text/plain; charset=utf-8", message);
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"GitHub\""));
        return response;
    }
    let Some((owner, name, true, writable)) = found else {
        return respond(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "Repository not found.\n");
    };
    if pushing && !writable {
        let who = login.unwrap_or_default();
        let message = format!("Permission to {owner}/{name}.git denied to {who}.\n");
        return respond(StatusCode::FORBIDDEN, "text/plain; charset=utf-8", message);
    }
    let rest = if req.uri().path().ends_with("/info/refs") {
        "info/refs"
    } else if pushing {
        "git-receive-pack"
    } else {
        "git-upload-pack"
    };
    let path_info = format!("/{owner}/{name}.git/{rest}");
    cgi(shared, req, &path_info, login.as_deref()).await.unwrap_or_else(|err| {
        respond(StatusCode::INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", format!("git http-backend: {err}\n"))
    })
}

/// Runs `git http-backend` for `req` (see [`crate::git_http_backend`]).
async fn cgi(shared: &Shared, req: Request, path_info: &str, user: Option<&str>) -> std::io::Result<Response> {
    let (parts, body) = req.into_parts();
    let request = CgiRequest {
        root: &shared.root,
        method: parts.method.as_str(),
        path_info,
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        remote_user: user,
        remote_addr: "127.0.0.1",
    };
    let body = body
        .into_data_stream()
        .take_while(|data| std::future::ready(data.is_ok()))
        .filter_map(|data| std::future::ready(data.ok()));
    let answer = git_http_backend::run(request, body).await?;
    let mut response = Response::builder().status(answer.status);
    for (name, value) in answer.headers {
        response = response.header(name, value);
    }
    Ok(response.body(Body::from_stream(answer.body)).expect("a CGI response"))
}

/// Git with none of the caller's configuration, and a fixed identity for the fake's commits.
fn git(cwd: &Path) -> StdCommand {
    let mut cmd = StdCommand::new("git");
    cmd.current_dir(cwd)
        .env_remove("GIT_DIR")
        .envs([("GIT_CONFIG_NOSYSTEM", "1"), ("GIT_CONFIG_GLOBAL", "/dev/null")])
        .envs([("GIT_AUTHOR_NAME", "GitHub"), ("GIT_AUTHOR_EMAIL", "noreply@github.com")])
        .envs([("GIT_COMMITTER_NAME", "GitHub"), ("GIT_COMMITTER_EMAIL", "noreply@github.com")]);
    cmd
}

fn run(cwd: &Path, args: &[&str]) -> Option<String> {
    let out = git(cwd).args(args).stderr(Stdio::null()).output().expect("running git");
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Creates the bare repository `path` with one commit (a README.md) on `branch`, as GitHub's
/// "Initialize this repository with a README" does.
pub(super) fn seed_bare_repository(path: &Path, name: &str, branch: &str) {
    let work = tempfile::tempdir().expect("a work tree for the first commit");
    std::fs::write(work.path().join("README.md"), format!("# {name}\n")).expect("writing README.md");
    let path_text = path.to_str().expect("a UTF-8 repository path");
    for args in [
        &["init", "-q", "-b", branch][..],
        &["add", "README.md"],
        &["commit", "-qm", "Initial commit"],
        &["clone", "-q", "--bare", ".", path_text],
    ] {
        assert!(run(work.path(), args).is_some(), "git {args:?} failed while seeding {path_text}");
    }
}

/// The commit `rev` names in the repository at `path`, if it names one.
pub(super) fn rev_parse(path: &Path, rev: &str) -> Option<String> {
    run(path, &["rev-parse", "--verify", "-q", &format!("{rev}^{{commit}}")])
}

/// Whether `ancestor` is reachable from `descendant` (so a pull request would carry no commits).
pub(super) fn is_ancestor(path: &Path, ancestor: &str, descendant: &str) -> bool {
    git(path).args(["merge-base", "--is-ancestor", ancestor, descendant]).status().is_ok_and(|s| s.success())
}
