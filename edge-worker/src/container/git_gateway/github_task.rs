//! A task on a GitHub repository, at its Start: the repository must be one the user's connected
//! GitHub account reaches; the Start's repository URL becomes the gateway's, carrying a git
//! credential minted for this task alone (so the container's git reaches GitHub only through the
//! edge, and never holds a GitHub token); once the Start answered, the credential is bound to the
//! task and may push the task's branch (the one the request named, its conversation's for a
//! follow-up, else `autopilot/<task id>`), or is revoked.

use autopilot_contract::v1::{DeliveryOptions, StartRequest};

use super::{
    repository::{gateway_url, github_repository, Repository},
    targets::Target,
};
use crate::{
    container::{now_ms, task_credential, AutopilotContainer},
    entropy::random_bytes,
    grpc_web::{Code, GrpcStatus},
};

/// The git credential minted for a Start, until the Start answers.
pub struct GitHubTask {
    hash: String,
    /// The repository on GitHub, as a person names it (`GITHUB_URL/owner/name`).
    pub repository_url: String,
    /// `owner/name`.
    pub full_name: String,
    /// The branch the request or its conversation named; `None`: `autopilot/<task id>`.
    branch: Option<String>,
}

impl GitHubTask {
    /// The branch task `task_id` commits on and may push.
    pub fn branch_of(&self, task_id: &str) -> String {
        self.branch.clone().unwrap_or_else(|| format!("autopilot/{task_id}"))
    }
}

impl AutopilotContainer {
    /// Points `request` at the git gateway when its repository is on GitHub (or, for a
    /// follow-up naming none, its conversation's was); `None` and `request` unchanged otherwise,
    /// or when this deployment has no GitHub App.
    ///
    /// # Errors
    /// FAILED_PRECONDITION when GitHub is not connected; NOT_FOUND when the user's GitHub account
    /// does not reach the repository; INTERNAL when the edge knows no URL of its git gateway.
    pub(in crate::container) async fn route_through_git_gateway(
        &self,
        request: &mut StartRequest,
    ) -> Result<Option<GitHubTask>, GrpcStatus> {
        let (Ok(github), Some(targets)) = (self.live.github.github(), self.live.gateway.git_targets.clone()) else {
            return Ok(None);
        };
        let parent = request.parent_task_id.as_str();
        let conversation: Option<Target> =
            if parent.is_empty() { None } else { targets.of_task(parent).map_err(unavailable)? };
        let repository = match (request.repository_url.as_str(), &conversation) {
            ("", Some(target)) => match target.repository.split_once('/') {
                Some((owner, name)) => Repository { owner: owner.into(), name: name.into() },
                None => return Ok(None),
            },
            (url, _) => match github_repository(url, &github.url) {
                Some(repository) => repository,
                None => return Ok(None),
            },
        };
        let (token, _) = self.live.github.token(&github).await?;
        if let Err(status) = github.get(&token, &format!("/repos/{}", repository.full_name())).await {
            return Err(match status.code == Code::NotFound as i32 {
                true => GrpcStatus::new(
                    Code::NotFound,
                    format!(
                        "GitHub has no repository {} that your GitHub account reaches (is the GitHub App installed \
                         on it?)",
                        repository.full_name()
                    ),
                ),
                false => status,
            });
        }
        let Some(base) = self.settings.git_gateway_url.clone() else {
            return Err(GrpcStatus::new(
                Code::Internal,
                "the edge knows no URL its git gateway is reached at: set GIT_GATEWAY_URL or PUBLIC_ORIGIN",
            ));
        };
        let Some(grants) = self.live.gateway.grants.clone() else { return Err(unavailable("no credential store")) };
        let random = random_bytes(32).map_err(|e| GrpcStatus::new(Code::Internal, e.to_string()))?;
        let credential = task_credential::mint(task_credential::Gateway::Git, &self.state.id().to_string(), &random);
        let hash = task_credential::hash(&credential);
        grants.mint(&hash, now_ms()).map_err(unavailable)?;
        targets.add(&hash, &repository.full_name()).map_err(unavailable)?;
        request.repository_url = gateway_url(&base, &repository, &credential)
            .ok_or_else(|| GrpcStatus::new(Code::Internal, format!("GIT_GATEWAY_URL ({base}) is not a URL")))?;
        let named = request.delivery.as_ref().map(|d| d.branch.clone()).filter(|b| !b.is_empty());
        let branch = named.or_else(|| conversation.map(|target| target.branch));
        if let Some(branch) = &branch {
            // The service commits on the branch the gateway lets it push.
            let delivery = request.delivery.get_or_insert_with(DeliveryOptions::default);
            delivery.branch = branch.clone();
        }
        let repository_url = format!("{}/{}", github.url, repository.full_name());
        Ok(Some(GitHubTask { hash, repository_url, full_name: repository.full_name(), branch }))
    }

    /// The Start `task` was minted for answered: its credential is bound to the task it created
    /// and may push that task's branch; or, without one, revoked.
    pub(in crate::container) fn settle_git_access(&self, task: &GitHubTask, task_id: Option<&str>) {
        let (Some(grants), Some(targets)) = (&self.live.gateway.grants, &self.live.gateway.git_targets) else { return };
        let settled = match task_id {
            Some(task_id) => {
                let branch = task.branch_of(task_id);
                grants.bind(&task.hash, task_id).and_then(|()| targets.set_branch(&task.hash, &branch))
            }
            None => grants.revoke(&task.hash, now_ms()),
        };
        if let Err(e) = settled {
            worker::console_warn!("recording a git credential failed: {e}");
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> GrpcStatus {
    GrpcStatus::new(Code::Unavailable, format!("the task credentials' storage: {e}"))
}
