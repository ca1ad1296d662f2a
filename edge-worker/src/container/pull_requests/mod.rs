//! Pull requests, opened by the user's object with their connected GitHub account once a task on
//! a GitHub repository that asked for one (`delivery.pullRequest.open`) has succeeded and pushed
//! its branch. The pull request already open for the branch is adopted and commented on, never
//! duplicated: a follow-up turn pushes to its conversation's branch and comments there, and a
//! pull request a person opened for the branch is used as it is. The outcome (the pull request,
//! or GitHub's words when it refused) is recorded on the task in the archive, so Status, the task
//! list and the page show it; the task itself still succeeded, and
//! `POST /api/tasks/{id}/pull-request` tries again (or opens one for a task that did not ask).

mod asked;
pub mod auto_fix;
pub mod mention_store;
pub mod mentions;

use autopilot_contract::v1::{PullRequest, PullRequestOptions, StartRequest, TaskState};
use serde_json::json;
use worker::{Env, Response};

pub use self::asked::{Asked, AskedPullRequests};
use super::{git_gateway::github_task::GitHubTask, live::Live, AutopilotContainer};
use crate::{
    api_error::error_response,
    container::git_gateway::repository::github_repository,
    github::{
        client::GitHub,
        oauth::url_form,
        pull_request::{cut, description, follow_up_comment, mask, title, TaskReport},
    },
    grpc_web::{Code, GrpcStatus},
};

/// Most bytes of a prompt kept for its pull request's description.
const PROMPT_KEPT_BYTES: usize = 16_000;

/// The object's pull requests: what tasks asked for, and what a description may show.
pub struct PullRequests {
    pub asked: Option<AskedPullRequests>,
    /// The pull-request loop's storage ([`mentions`]).
    pub mentions: Option<mention_store::MentionStore>,
    /// For the index of pull requests to users (KV) and the object's call to itself.
    pub env: Env,
    /// `PUBLIC_ORIGIN`, for the link to a task's timeline.
    pub public_origin: Option<String>,
    /// The model key the edge holds, masked in every description.
    model_key: Option<String>,
}

impl PullRequests {
    /// Over the object's SQLite; without it (logged), no pull requests are opened.
    pub fn open(sql: worker::SqlStorage, env: &Env) -> PullRequests {
        let sql: std::rc::Rc<dyn crate::archive::sql::Sql> = std::rc::Rc::new(sql);
        let asked = AskedPullRequests::open(std::rc::Rc::clone(&sql))
            .map_err(|e| worker::console_error!("the asked-for pull requests could not be opened: {e}"))
            .ok();
        let mentions = mention_store::MentionStore::open(sql)
            .map_err(|e| worker::console_error!("the pull-request loop's tables could not be opened: {e}"))
            .ok();
        let var = |name: &str| env.var(name).ok().map(|v| v.to_string()).filter(|v| !v.trim().is_empty());
        PullRequests {
            asked,
            mentions,
            env: env.clone(),
            public_origin: var("PUBLIC_ORIGIN").map(|o| o.trim().trim_end_matches('/').to_string()),
            model_key: env.secret("ANTHROPIC_API_KEY").ok().map(|k| k.to_string()),
        }
    }

    /// The secrets a description masks: the model key and `more`.
    fn secrets<'a>(&'a self, more: &[&'a str]) -> Vec<&'a str> {
        self.model_key.iter().map(String::as_str).chain(more.iter().copied()).collect()
    }

    fn asked(&self) -> Result<&AskedPullRequests, GrpcStatus> {
        self.asked.as_ref().ok_or_else(|| GrpcStatus::new(Code::Unavailable, "the pull requests' storage is not open"))
    }
}

impl AutopilotContainer {
    /// A follow-up that sets no delivery of its own inherits its parent's (its branch, push and
    /// pull request), as the parent's archived Task ran with it.
    pub(in crate::container) fn inherit_delivery(&self, request: &mut StartRequest) {
        if request.parent_task_id.is_empty() || request.delivery.is_some() {
            return;
        }
        let parent = self.live.archive.ended(&request.parent_task_id).and_then(|entry| entry.task);
        request.delivery = parent.and_then(|task| task.delivery_options);
    }

    /// The Start of `task_id` on GitHub answered: the pull request it asks for is remembered
    /// until the task ends.
    pub(in crate::container) fn remember_pull_request(
        &self,
        github_task: &GitHubTask,
        request: &StartRequest,
        task_id: &str,
    ) {
        let Some(delivery) = &request.delivery else { return };
        let Some(options) = delivery.pull_request.clone().filter(|pull| pull.open && delivery.push) else { return };
        let asked = Asked {
            repository: github_task.full_name.clone(),
            branch: github_task.branch_of(task_id),
            prompt: cut(&mask(&request.prompt, &self.live.pull_requests.secrets(&[])), PROMPT_KEPT_BYTES).to_string(),
            parent_task_id: request.parent_task_id.clone(),
            options,
            outcome: None,
        };
        let remembered = self
            .live
            .pull_requests
            .asked()
            .map_err(|s| s.message)
            .and_then(|asked_for| asked_for.ask(task_id, &asked).map_err(|e| e.to_string()));
        if let Err(e) = remembered {
            worker::console_warn!("remembering the pull request of task {task_id} failed: {e}");
        }
    }

    /// `POST /api/tasks/{id}/pull-request`: opens (or adopts) the pull request of an ended task
    /// that pushed its branch to GitHub, whether or not it asked for one; one already opened is
    /// answered as it is.
    pub(super) async fn pull_request_route(&self, task_id: &str) -> worker::Result<Response> {
        if !self.owns_task(task_id) {
            return error_response(&crate::archive::task_scope::unknown_task(task_id));
        }
        let delivered = match self.ask_again(task_id) {
            Ok(asked) => deliver(&self.live, task_id, asked).await,
            Err(status) => Err(status),
        };
        match delivered {
            Ok(pull) => Response::from_json(&pull_json(&pull)),
            Err(status) => error_response(&status),
        }
    }

    /// The pull request `task_id` asked for; made from its archived end if it did not ask at
    /// its Start.
    fn ask_again(&self, task_id: &str) -> Result<Asked, GrpcStatus> {
        let asked_for = self.live.pull_requests.asked()?;
        if let Some(asked) = asked_for.get(task_id).map_err(storage)? {
            return Ok(asked);
        }
        let entry = self.live.archive.ended(task_id).ok_or_else(|| not_ended(task_id))?;
        let task = entry.task.unwrap_or_default();
        let github = self.live.github.github()?;
        let repository = github_repository(&task.repository_url, &github.url).ok_or_else(|| {
            GrpcStatus::new(
                Code::FailedPrecondition,
                format!(
                    "task {task_id} did not run on a GitHub repository: there is nothing to open a pull request on"
                ),
            )
        })?;
        let delivery = task.delivery.clone().unwrap_or_default();
        let asked = Asked {
            repository: repository.full_name(),
            branch: delivery.branch,
            prompt: entry.summary.title,
            parent_task_id: task.parent_task_id.clone(),
            options: PullRequestOptions { open: true, ..Default::default() },
            outcome: None,
        };
        asked_for.ask(task_id, &asked).map_err(storage)?;
        Ok(asked)
    }
}

/// The task ended: if it asked for a pull request, the pull request is opened now (GitHub's
/// refusal is recorded on the task, not raised); a pull request's turn that failed says so
/// there, and the next mention waiting behind it starts ([`mentions`]).
pub(in crate::container) async fn open_at_end(live: &Live, task_id: &str) {
    let asked = live.pull_requests.asked.as_ref().and_then(|asked_for| asked_for.get(task_id).ok().flatten());
    if let Some(asked) = asked.filter(|asked| !asked.done()) {
        if let Err(status) = deliver(live, task_id, asked).await {
            worker::console_log!("task {task_id}'s pull request: {}", status.message);
        }
    }
    // The pull-request loop: a failed turn says so on its pull request, and what waited behind
    // it starts.
    mentions::report_failed_turn(live, task_id).await;
    let waiting = live.pull_requests.mentions.as_ref().and_then(|store| store.waiting().ok()).unwrap_or_default();
    if !waiting.is_empty() {
        mentions::poke(live).await;
    }
}

/// Opens or adopts the pull request `task_id` asked for (`asked`), and records the outcome.
///
/// # Errors
/// FAILED_PRECONDITION when the task did not succeed or pushed nothing (nothing recorded then);
/// GitHub's refusal, in its words (recorded on the task).
async fn deliver(live: &Live, task_id: &str, asked: Asked) -> Result<PullRequest, GrpcStatus> {
    if asked.done() {
        return Ok(asked.outcome.unwrap_or_default());
    }
    let asked_for = live.pull_requests.asked()?;
    let entry = live.archive.ended(task_id).ok_or_else(|| not_ended(task_id))?;
    let task = entry.task.unwrap_or_default();
    let pushed = task.delivery.as_ref().is_some_and(|d| d.pushed);
    if task.state != TaskState::Succeeded as i32 || !pushed || asked.branch.is_empty() {
        return Err(GrpcStatus::new(
            Code::FailedPrecondition,
            format!(
                "task {task_id} pushed no branch (it did not succeed, or changed nothing): there is nothing to propose"
            ),
        ));
    }
    let diff = live.archive.diff(task_id).ok().flatten();
    let opened = async {
        let github = live.github.github()?;
        let (token, _) = live.github.token(&github).await?;
        let secrets = live.pull_requests.secrets(&[token.as_str()]);
        let report = TaskReport {
            task_id,
            prompt: &asked.prompt,
            result: &task.result,
            diff: diff.as_ref(),
            timeline_url: live.pull_requests.public_origin.as_ref().map(|origin| format!("{origin}/tasks/{task_id}")),
            secrets: &secrets,
        };
        open_or_adopt(&github, &token, &asked, &report).await
    };
    let outcome = opened.await;
    let recorded = match &outcome {
        Ok(pull) => pull.clone(),
        Err(status) => PullRequest { error: status.message.clone(), ..Default::default() },
    };
    let kept = asked_for.settle(task_id, &recorded).and_then(|()| live.archive.record_pull_request(task_id, &recorded));
    if let Err(e) = kept {
        worker::console_warn!("recording task {task_id}'s pull request failed: {e}");
    }
    if let Ok(pull) = &outcome {
        index_turn(live, &asked.repository, u64::from(pull.number), task_id).await;
    }
    outcome
}

/// Records `task_id` as the latest turn of the pull request, and the pull request as this user's
/// (the KV index the webhook route finds its object by,
/// [`crate::github::webhook::pull_request_key`]).
async fn index_turn(live: &Live, repository: &str, number: u64, task_id: &str) {
    if let Some(store) = &live.pull_requests.mentions {
        if let Err(e) = store.set_turn(repository, number, task_id) {
            worker::console_warn!("recording the turn of {repository}#{number} failed: {e}");
        }
    }
    let user = live.stored.user_id();
    let env = &live.pull_requests.env;
    let put = async {
        let kv = env.kv(crate::front::auth::KV_BINDING)?;
        kv.put(&crate::github::webhook::pull_request_key(repository, number), user)
            .map_err(crate::front::auth::kv_error)?
            .execute()
            .await
            .map_err(crate::front::auth::kv_error)
    };
    if let Err(e) = put.await {
        worker::console_warn!("indexing {repository}#{number} failed: {e}");
    }
}

/// The pull request open for the task's branch, commented on; else a new one.
async fn open_or_adopt(
    github: &GitHub,
    token: &str,
    asked: &Asked,
    report: &TaskReport<'_>,
) -> Result<PullRequest, GrpcStatus> {
    if let Some(open) = open_pull(github, token, asked).await? {
        return adopt(github, token, asked, open, report).await;
    }
    let base = match asked.options.base.as_str() {
        "" => {
            let (repository, _) = github.get(token, &format!("/repos/{}", asked.repository)).await?;
            repository["default_branch"].as_str().unwrap_or("main").to_string()
        }
        base => base.to_string(),
    };
    let request = json!({
        "title": title(&asked.options.title, &asked.prompt, report.secrets),
        "head": asked.branch,
        "base": base,
        "body": description(report),
        "draft": !asked.options.ready,
        "maintainer_can_modify": true,
    });
    match github.post(token, &format!("/repos/{}/pulls", asked.repository), &request).await {
        Ok(created) => Ok(pull_request(&created, false)),
        // Opened meanwhile (by a person, or a retry racing this one): adopted.
        Err(status) if status.message.contains("already exists") => match open_pull(github, token, asked).await? {
            Some(open) => adopt(github, token, asked, open, report).await,
            None => Err(status),
        },
        Err(status) => Err(status),
    }
}

/// The open pull request whose head is the task's branch, if any.
async fn open_pull(github: &GitHub, token: &str, asked: &Asked) -> Result<Option<serde_json::Value>, GrpcStatus> {
    let owner = asked.repository.split('/').next().unwrap_or_default();
    let head = format!("{owner}:{}", asked.branch);
    let query = url_form(&[("state", "open"), ("head", &head), ("per_page", "1")]);
    let path = format!("/repos/{}/pulls?{query}", asked.repository);
    let (pulls, _) = github.get(token, &path).await?;
    Ok(pulls.as_array().and_then(|pulls| pulls.first().cloned()))
}

/// Comments on `open` with what this turn was asked and changed.
async fn adopt(
    github: &GitHub,
    token: &str,
    asked: &Asked,
    open: serde_json::Value,
    report: &TaskReport<'_>,
) -> Result<PullRequest, GrpcStatus> {
    let pull = pull_request(&open, true);
    let body = match asked.parent_task_id.is_empty() {
        true => description(report),
        false => follow_up_comment(report),
    };
    let path = format!("/repos/{}/issues/{}/comments", asked.repository, pull.number);
    github.post(token, &path, &json!({"body": body})).await?;
    Ok(pull)
}

/// GitHub's pull request object as ours.
fn pull_request(pull: &serde_json::Value, adopted: bool) -> PullRequest {
    PullRequest {
        number: pull["number"].as_u64().unwrap_or_default() as u32,
        url: pull["html_url"].as_str().unwrap_or_default().to_string(),
        draft: pull["draft"].as_bool().unwrap_or(false),
        error: String::new(),
        adopted,
    }
}

/// The pull request as the JSON routes show it (the contract's JSON mapping).
pub fn pull_json(pull: &PullRequest) -> serde_json::Value {
    serde_json::to_value(pull).unwrap_or_default()
}

fn not_ended(task_id: &str) -> GrpcStatus {
    GrpcStatus::new(Code::FailedPrecondition, format!("task {task_id} has not ended: its branch is not pushed yet"))
}

fn storage(e: worker::Error) -> GrpcStatus {
    GrpcStatus::new(Code::Unavailable, format!("the pull requests' storage: {e}"))
}
