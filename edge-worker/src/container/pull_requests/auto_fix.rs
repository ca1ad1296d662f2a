//! Failing checks fixed by the agent: with `pullRequest.autoFix`, a check suite that fails on
//! one of the user's pull requests (`/internal/github-checks`, handed on by the Worker's webhook
//! route) starts a follow-up turn of the pull request's conversation whose prompt names the
//! failing checks and carries their summaries ([`crate::github::webhook::fix_prompt`]), as a
//! mention would ([`super::mentions`]: once per delivery, one turn at a time). At most
//! [`MAX_FIX_TURNS`] in a row: then a comment says autopilot stopped, and a person's mention
//! goes on (it counts from 0 again).

use serde::Deserialize;
use serde_json::json;
use worker::{Request, Response};

use crate::{
    api_error::error_response,
    container::{now_ms, AutopilotContainer},
    github::webhook::fix_prompt,
    grpc_web::{Code, GrpcStatus},
};

use super::mentions::{comment, outcome};

/// Most turns in a row that fix failing checks on one pull request.
pub const MAX_FIX_TURNS: u64 = 3;

/// A failed check suite as the Worker hands it on.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HandedChecks {
    delivery: String,
    repository: String,
    number: u64,
    suite_id: u64,
    head_sha: String,
}

impl AutopilotContainer {
    /// `/internal/github-checks`.
    pub(in crate::container) async fn github_checks_route(&self, mut req: Request) -> worker::Result<Response> {
        let checks: HandedChecks = match serde_json::from_slice(&req.bytes().await?) {
            Ok(checks) => checks,
            Err(e) => {
                return error_response(&GrpcStatus::new(Code::InvalidArgument, format!("not a check suite: {e}")))
            }
        };
        let Some(store) = self.live.pull_requests.mentions.clone() else {
            return error_response(&GrpcStatus::new(Code::Unavailable, "the pull-request loop's storage is not open"));
        };
        if !store.first_delivery(&checks.delivery, now_ms())? {
            return outcome("ignored", json!("a delivery already acted on"));
        }
        let (repository, number) = (checks.repository.as_str(), checks.number);
        let Some(turn) = store.turn(repository, number)? else {
            return outcome("ignored", json!("not a pull request autopilot opened"));
        };
        let asked = self.live.pull_requests.asked.as_ref().and_then(|asked| asked.get(&turn).ok().flatten());
        if !asked.is_some_and(|asked| asked.options.auto_fix) {
            return outcome("ignored", json!("autoFix is off for this pull request"));
        }
        let (Ok(github), fixes) = (self.live.github.github(), store.fix_turns(repository, number)?) else {
            return outcome("ignored", json!("GitHub is not set up on this deployment"));
        };
        let token = match self.live.github.token(&github).await {
            Ok((token, _)) => token,
            Err(status) => return outcome("ignored", json!(status.message)),
        };
        if fixes >= MAX_FIX_TURNS {
            if fixes == MAX_FIX_TURNS {
                let body = format!(
                    "Autopilot stopped fixing the failing checks after {MAX_FIX_TURNS} turns in a row. Mention \
                     @autopilot to ask for more."
                );
                comment(&github, &token, repository, number, &body).await;
                store.set_fix_turns(repository, number, fixes + 1)?;
            }
            return outcome("ignored", json!(format!("{MAX_FIX_TURNS} turns in a row fixed checks already")));
        }
        let path = format!("/repos/{repository}/check-suites/{}/check-runs?per_page=100", checks.suite_id);
        let runs = match github.get(&token, &path).await {
            Ok((answer, _)) => answer["check_runs"].as_array().cloned().unwrap_or_default(),
            Err(status) => {
                return outcome("ignored", json!(format!("the check runs could not be read: {}", status.message)))
            }
        };
        let prompt = fix_prompt(&checks.head_sha, &runs);
        store.set_fix_turns(repository, number, fixes + 1)?;
        if self.archived_end(&turn).is_none() && self.owns_task(&turn) {
            store.queue(repository, number, 0, &prompt, now_ms())?;
            return outcome("queued", json!({"behind": turn}));
        }
        self.start_turn(&store, &github, &token, repository, number, &turn, &prompt).await
    }
}
