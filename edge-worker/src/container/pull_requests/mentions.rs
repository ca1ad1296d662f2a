//! The pull-request loop in the user's object: a mention of autopilot on one of the user's pull
//! requests (`/internal/github-mention`, handed on by the Worker's webhook route once GitHub's
//! signature checked out) starts a follow-up turn of that pull request's conversation. The turn
//! continues the pull request's latest task, so it commits on the pull request's branch and its
//! end comments on the same pull request (see [`super::deliver`]); it is never a new branch or a
//! second pull request.
//!
//! - A delivery GitHub sends again starts nothing (each `X-GitHub-Delivery` once).
//! - Only people with write access to the repository start a turn (GitHub's collaborator
//!   permission, asked with the user's token); anyone else gets a reply saying so. The turn is
//!   the pull request owner's, billed to them.
//! - Autopilot reacts (👀) on the comment when it takes it.
//! - One turn at a time per pull request: a mention while a turn runs waits in the queue, and
//!   the end of that turn starts the next (`/internal/next-mention`, which the object asks of
//!   itself from the end of a task, [`poke`]).

use autopilot_contract::v1::StartRequest;
use serde::Deserialize;
use serde_json::json;
use worker::{Method, Request, RequestInit, Response};

use super::{mention_store::MentionStore, Live};
use crate::{
    api_error::error_response,
    container::{now_ms, AutopilotContainer},
    front::route::{Backend, Internal},
    github::client::GitHub,
    grpc_web::{Code, GrpcStatus},
};

/// A mention as the Worker hands it on.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandedMention {
    pub delivery: String,
    pub repository: String,
    pub number: u64,
    pub comment_id: u64,
    /// `conversation`, `review` or `line`.
    pub kind: String,
    pub author: String,
    pub prompt: String,
}

/// What became of a mention, for the webhook's answer.
pub(super) fn outcome(what: &str, detail: serde_json::Value) -> worker::Result<Response> {
    Response::from_json(&json!({ what: detail }))
}

impl AutopilotContainer {
    /// `/internal/github-mention`.
    pub(in crate::container) async fn github_mention_route(&self, mut req: Request) -> worker::Result<Response> {
        let mention: HandedMention = match serde_json::from_slice(&req.bytes().await?) {
            Ok(mention) => mention,
            Err(e) => return error_response(&GrpcStatus::new(Code::InvalidArgument, format!("not a mention: {e}"))),
        };
        let Some(store) = self.live.pull_requests.mentions.clone() else {
            return error_response(&GrpcStatus::new(Code::Unavailable, "the pull-request loop's storage is not open"));
        };
        if !store.first_delivery(&mention.delivery, now_ms())? {
            return outcome("ignored", json!("a delivery already acted on"));
        }
        let Some(turn) = store.turn(&mention.repository, mention.number)? else {
            return outcome("ignored", json!("not a pull request autopilot opened"));
        };
        let github = match self.live.github.github() {
            Ok(github) => github,
            Err(status) => return outcome("ignored", json!(status.message)),
        };
        let token = match self.live.github.token(&github).await {
            Ok((token, _)) => token,
            Err(status) => return outcome("ignored", json!(status.message)),
        };
        let repository = &mention.repository;
        if !can_write(&github, &token, repository, &mention.author).await {
            let body = format!(
                "@{} only people with write access to {repository} can ask autopilot for changes here; nothing was \
                 started.",
                mention.author
            );
            comment(&github, &token, repository, mention.number, &body).await;
            return outcome("refused", json!("no write access"));
        }
        react(&github, &token, &mention).await;
        // A person asked: turns that fix failing checks count from 0 again.
        store.set_fix_turns(repository, mention.number, 0)?;
        if self.archived_end(&turn).is_none() && self.owns_task(&turn) {
            store.queue(repository, mention.number, mention.comment_id, &mention.prompt, now_ms())?;
            return outcome("queued", json!({"behind": turn}));
        }
        self.start_turn(&store, &github, &token, repository, mention.number, &turn, &mention.prompt).await
    }

    /// `/internal/next-mention`: starts the next queued mention of each pull request whose turn
    /// has ended.
    pub(in crate::container) async fn next_mention_route(&self) -> worker::Result<Response> {
        let Some(store) = self.live.pull_requests.mentions.clone() else { return Response::ok("") };
        let (Ok(github), waiting) = (self.live.github.github(), store.waiting()?) else { return Response::ok("") };
        let mut started = Vec::new();
        for (repository, number) in waiting {
            let Some(turn) = store.turn(&repository, number)? else { continue };
            if self.archived_end(&turn).is_none() {
                continue;
            }
            let Some(next) = store.take_next(&repository, number)? else { continue };
            let Ok((token, _)) = self.live.github.token(&github).await else { continue };
            started.push(self.start_turn(&store, &github, &token, &repository, number, &turn, &next.prompt).await?);
        }
        Response::from_json(&json!({"started": started.len()}))
    }

    /// Starts the pull request's next turn after `turn`, or says on the pull request why not.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn start_turn(
        &self,
        store: &MentionStore,
        github: &GitHub,
        token: &str,
        repository: &str,
        number: u64,
        turn: &str,
        prompt: &str,
    ) -> worker::Result<Response> {
        let request =
            StartRequest { parent_task_id: turn.to_string(), prompt: prompt.to_string(), ..Default::default() };
        match self.start_task(&request).await {
            Ok(started) => {
                store.set_turn(repository, number, &started.task_id)?;
                outcome("started", json!({"taskId": started.task_id}))
            }
            Err(status) => {
                let body = format!("autopilot could not start the turn you asked for: {}", status.message);
                comment(github, token, repository, number, &body).await;
                outcome("refused", json!(status.message))
            }
        }
    }
}

/// Whether `login` may push to `repository`, by GitHub's collaborator permission.
async fn can_write(github: &GitHub, token: &str, repository: &str, login: &str) -> bool {
    let path = format!("/repos/{repository}/collaborators/{login}/permission");
    match github.get(token, &path).await {
        Ok((answer, _)) => matches!(answer["permission"].as_str(), Some("admin" | "maintain" | "write")),
        Err(status) => {
            worker::console_warn!("asking {login}'s permission on {repository} failed: {}", status.message);
            false
        }
    }
}

/// 👀 on the comment that was taken (a review's body has no reactions).
async fn react(github: &GitHub, token: &str, mention: &HandedMention) {
    let kind = match mention.kind.as_str() {
        "conversation" => "issues",
        "line" => "pulls",
        _ => return,
    };
    let path = format!("/repos/{}/{kind}/comments/{}/reactions", mention.repository, mention.comment_id);
    if let Err(status) = github.post(token, &path, &json!({"content": "eyes"})).await {
        worker::console_warn!("reacting on a mention failed: {}", status.message);
    }
}

/// A comment on the pull request. Best effort (logged).
pub(super) async fn comment(github: &GitHub, token: &str, repository: &str, number: u64, body: &str) {
    let path = format!("/repos/{repository}/issues/{number}/comments");
    if let Err(status) = github.post(token, &path, &json!({ "body": body })).await {
        worker::console_warn!("commenting on {repository}#{number} failed: {}", status.message);
    }
}

/// A pull request's turn (`task_id`) that did not succeed says so on the pull request, in words
/// (a turn that succeeded says what it did there itself: [`super::deliver`]'s comment).
pub async fn report_failed_turn(live: &Live, task_id: &str) {
    let Some(store) = &live.pull_requests.mentions else { return };
    let Ok(Some((repository, number))) = store.pull_request_of(task_id) else { return };
    let Some(task) = live.archive.ended(task_id).and_then(|entry| entry.task) else { return };
    if task.state == autopilot_contract::v1::TaskState::Succeeded as i32 {
        return;
    }
    let Ok(github) = live.github.github() else { return };
    let Ok((token, _)) = live.github.token(&github).await else { return };
    let state = autopilot_contract::v1::TaskState::try_from(task.state)
        .map(|state| state.as_str_name().trim_start_matches("TASK_STATE_").to_ascii_lowercase())
        .unwrap_or_else(|_| "ended".into());
    let origin = live.pull_requests.public_origin.as_ref();
    let link = origin.map(|origin| format!(" Its timeline: {origin}/tasks/{task_id}")).unwrap_or_default();
    let body = format!("The turn you asked for {state}: {}.{link}", task.error.trim_end_matches('.'));
    comment(&github, &token, &repository, number, &body).await;
}

/// Asks the object `live` belongs to to start what waits behind a turn that ended.
pub async fn poke(live: &Live) {
    let env = &live.pull_requests.env;
    let asked = async {
        let namespace = env.durable_object(Backend::Container.binding())?;
        let stub = namespace.id_from_string(&live.object_id)?.get_stub()?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post);
        stub.fetch_with_request(Request::new_with_init(&Internal::NextMention.url(), &init)?).await
    };
    if let Err(e) = asked.await {
        worker::console_warn!("starting the next queued mention failed: {e}");
    }
}
