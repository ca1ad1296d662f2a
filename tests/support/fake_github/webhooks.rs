//! The pull-request loop's side of the fake: what a person's comment on a pull request becomes
//! (the comment, and the `issue_comment` webhook delivery GitHub would send for it, signed as
//! GitHub signs them), the collaborator permission autopilot asks before it acts on a mention,
//! and the reactions it leaves.

use axum::{http::StatusCode, response::Response};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::{
    api::{account_json, comment_json, error, json_response},
    github_formats::{node_id, timestamp},
    Comment, FakeGithub, Shared,
};

const PERMISSION_DOCS: &str =
    "https://docs.github.com/rest/collaborators/collaborators#get-repository-permissions-for-a-user";
const REACTION_DOCS: &str = "https://docs.github.com/rest/reactions/reactions#create-reaction-for-an-issue-comment";
const CHECK_RUNS_DOCS: &str = "https://docs.github.com/rest/checks/runs#list-check-runs-in-a-check-suite";
const REACTIONS: [&str; 8] = ["+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"];

/// `GET /repos/{owner}/{repo}/collaborators/{username}/permission`: the owner is an admin,
/// users granted the repository write, other users read (none on a private one).
pub(super) fn permission(shared: &Shared, caller: Option<String>, owner: &str, name: &str, login: &str) -> Response {
    let world = shared.state.lock().unwrap();
    let Some(repo) = world.repo(owner, name).filter(|repo| world.can_read(caller.as_deref(), repo)) else {
        return error(StatusCode::NOT_FOUND, "Not Found", PERMISSION_DOCS);
    };
    let Some(user) = world.user(login) else {
        return error(StatusCode::NOT_FOUND, &format!("{login} is not a user"), PERMISSION_DOCS);
    };
    let permission = match () {
        () if repo.owner.eq_ignore_ascii_case(&user.login) => "admin",
        () if world.can_write(&user.login, repo) => "write",
        () if repo.private => "none",
        () => "read",
    };
    let account = account_json(shared, &world, &user.login);
    json_response(StatusCode::OK, json!({"permission": permission, "role_name": permission, "user": account}))
}

/// `POST /repos/{owner}/{repo}/{issues,pulls}/comments/{id}/reactions`.
pub(super) fn react(
    shared: &Shared,
    caller: Option<String>,
    owner: &str,
    name: &str,
    id: &str,
    body: &[u8],
) -> Response {
    let mut world = shared.state.lock().unwrap();
    let Some(login) = caller else { return error(StatusCode::UNAUTHORIZED, "Requires authentication", REACTION_DOCS) };
    let found = world.repo(owner, name).filter(|repo| world.can_read(Some(&login), repo)).and_then(|repo| {
        let id = id.parse::<u64>().ok()?;
        repo.comments.iter().any(|c| c.id == id).then_some(id)
    });
    let Some(id) = found else { return error(StatusCode::NOT_FOUND, "Not Found", REACTION_DOCS) };
    let content = serde_json::from_slice::<Value>(body).ok().and_then(|b| b["content"].as_str().map(str::to_string));
    let Some(content) = content.filter(|c| REACTIONS.contains(&c.as_str())) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed", REACTION_DOCS);
    };
    let reaction_id = world.next_id();
    world.repo_mut(owner, name).expect("found above").reactions.push((id, content.clone(), login.clone()));
    let user = account_json(shared, &world, &login);
    let reaction = json!({"id": reaction_id, "node_id": node_id("Reaction", reaction_id), "user": user,
        "content": content, "created_at": timestamp()});
    json_response(StatusCode::CREATED, reaction)
}

/// `GET /repos/{owner}/{repo}/check-suites/{id}/check-runs`.
pub(super) fn check_runs(shared: &Shared, caller: Option<String>, owner: &str, name: &str, id: &str) -> Response {
    let world = shared.state.lock().unwrap();
    let readable = world.repo(owner, name).is_some_and(|repo| world.can_read(caller.as_deref(), repo));
    let runs = id.parse::<u64>().ok().and_then(|id| world.check_suites.get(&id)).filter(|_| readable);
    match runs {
        Some(runs) => json_response(StatusCode::OK, json!({"total_count": runs.len(), "check_runs": runs})),
        None => error(StatusCode::NOT_FOUND, "Not Found", CHECK_RUNS_DOCS),
    }
}

impl FakeGithub {
    /// A check suite that failed on pull request `number`'s head (one failing run named `name`
    /// with `summary`, one that passed): answers the `check_suite` delivery GitHub sends.
    pub fn failed_check_suite(&self, owner: &str, repo: &str, number: u64, name: &str, summary: &str) -> Value {
        let mut world = self.shared.state.lock().unwrap();
        let suite_id = world.next_id() + 5_000_000;
        let head =
            world.repo(owner, repo).and_then(|r| r.pulls.iter().find(|p| p.number == number)).map(|p| p.head.clone());
        let head_sha = head
            .and_then(|head| {
                world.repo(owner, repo).and_then(|r| super::git::rev_parse(&r.path, &format!("refs/heads/{head}")))
            })
            .unwrap_or_default();
        let runs = vec![
            json!({"id": suite_id + 1, "name": name, "status": "completed", "conclusion": "failure", "head_sha": head_sha,
                   "output": {"title": format!("{name} failed"), "summary": summary}}),
            json!({"id": suite_id + 2, "name": "lint", "status": "completed", "conclusion": "success", "head_sha": head_sha,
                   "output": {"title": "lint passed", "summary": ""}}),
        ];
        world.check_suites.insert(suite_id, runs);
        json!({
            "action": "completed",
            "check_suite": {"id": suite_id, "head_sha": head_sha, "status": "completed", "conclusion": "failure",
                            "pull_requests": [{"number": number}]},
            "repository": {"full_name": format!("{owner}/{repo}")},
        })
    }

    /// `login` comments `body` on pull request `number`, in the browser (not through an App):
    /// answers the comment as GitHub's API shows it.
    pub fn comment_as(&self, login: &str, owner: &str, name: &str, number: u64, body: &str) -> Value {
        let mut world = self.shared.state.lock().unwrap();
        let id = world.next_id() + 2_000_000;
        let comment =
            Comment { id, number, body: body.into(), user: login.into(), created_at: timestamp(), via_app: false };
        world.repo_mut(owner, name).expect("a repository of the fake").comments.push(comment.clone());
        let repo = world.repo(owner, name).expect("the repository");
        comment_json(&self.shared, &world, repo, &comment)
    }

    /// The `issue_comment` delivery GitHub sends when `comment` (as [`FakeGithub::comment_as`]
    /// or the API answered it) is made on pull request `number`.
    pub fn issue_comment_event(&self, owner: &str, name: &str, number: u64, comment: &Value) -> Value {
        let world = self.shared.state.lock().unwrap();
        let full_name = format!("{owner}/{name}");
        let api = format!("{}/repos/{full_name}", self.shared.api_url);
        json!({
            "action": "created",
            "issue": {
                "number": number,
                "html_url": format!("{}/{full_name}/pull/{number}", self.shared.url),
                "pull_request": {"url": format!("{api}/pulls/{number}")},
            },
            "comment": comment,
            "repository": {"full_name": full_name, "private": world.repo(owner, name).is_some_and(|r| r.private)},
            "sender": comment["user"],
        })
    }

    /// The reactions left on the repository's comments: (comment id, content, who).
    pub fn reactions(&self, owner: &str, name: &str) -> Vec<(u64, String, String)> {
        let world = self.shared.state.lock().unwrap();
        world.repo(owner, name).map(|repo| repo.reactions.clone()).unwrap_or_default()
    }
}

/// Sends a webhook delivery to `url` as GitHub does: `X-GitHub-Event`, `X-GitHub-Delivery` and
/// `X-Hub-Signature-256` (HMAC-SHA256 of the body with `secret`). Answers the status and body.
pub async fn deliver(url: &str, secret: &str, event: &str, delivery: &str, payload: &Value) -> (u16, String) {
    let body = payload.to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body.as_bytes());
    let signature: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let reply = reqwest::Client::new()
        .post(url)
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", format!("sha256={signature}"))
        .header("user-agent", "GitHub-Hookshot/fake")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the edge answers");
    let status = reply.status().as_u16();
    (status, reply.text().await.unwrap_or_default())
}
