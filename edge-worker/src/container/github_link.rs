//! The user's GitHub connection, kept by their container object: the GitHub account and its
//! grant, the tokens sealed at rest with `GITHUB_TOKEN_KEY` ([`crate::github::sealed`]), renewed
//! with the refresh token before they expire (one object per user, so two renewals never race
//! for a refresh token GitHub accepts once). What the Worker's sign-in hands over is stored here
//! ([`Internal::LinkGitHub`](crate::front::route::Internal)); the user's `/api/github` routes
//! read, list and disconnect it; the git gateway and the pull requests take its token from
//! [`GitHubLink::token`]. No token ever leaves this object in an answer.

use std::{cell::Cell, rc::Rc, time::Duration};

use serde::{Deserialize, Serialize};
use worker::{Delay, Env, Request, Response, Storage};

use super::{now_ms, AutopilotContainer};
use crate::{
    api_error::error_response,
    front::{github_sign_in::Link, route::GitHubRoute},
    github::{
        client::{Account, GitHub},
        oauth::Grant,
        sealed::TokenKey,
    },
    grpc_web::{Code, GrpcStatus},
};

/// Storage key of the connection.
const GITHUB_KEY: &str = "github";

/// The connection as stored: the grant's tokens sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredLink {
    account: Account,
    access_token: String,
    access_expires_ms: Option<u64>,
    refresh_token: Option<String>,
    refresh_expires_ms: Option<u64>,
    connected_ms: u64,
    /// When the access token was issued (its renewal is timed from it); links stored before
    /// this was kept read as issued when connected.
    #[serde(default)]
    issued_ms: Option<u64>,
}

/// Why the user must connect GitHub (again) before this works.
fn not_connected() -> GrpcStatus {
    GrpcStatus::new(Code::FailedPrecondition, "GitHub is not connected: sign in with GitHub on the page to connect it")
}

/// The user's GitHub connection in the object's storage, and the deployment's GitHub App.
pub struct GitHubLink {
    env: Env,
    storage: Storage,
    /// Set while a renewal is under way: GitHub accepts a refresh token once, so a second
    /// request needing a renewal meanwhile waits for the first's and uses its token.
    renewing: Rc<Cell<bool>>,
}

/// Clears [`GitHubLink::renewing`] however the renewal ends (a request dropped midway too).
struct Renewing(Rc<Cell<bool>>);

impl Drop for Renewing {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl GitHubLink {
    pub fn new(env: Env, storage: Storage) -> GitHubLink {
        GitHubLink { env, storage, renewing: Rc::default() }
    }

    /// The deployment's GitHub App (see [`GitHub::from_env`]).
    pub fn github(&self) -> Result<GitHub, GrpcStatus> {
        GitHub::from_env(&self.env)
    }

    fn token_key(&self) -> Result<TokenKey, GrpcStatus> {
        let secret = self.env.secret("GITHUB_TOKEN_KEY").map(|s| s.to_string()).unwrap_or_default();
        TokenKey::from_secret(&secret).ok_or_else(|| {
            GrpcStatus::new(
                Code::Unimplemented,
                "GitHub is not set up on this deployment (the secret GITHUB_TOKEN_KEY)",
            )
        })
    }

    /// Keeps `grant` for `account`, connected at `connected_ms` (`None`: now, a new connection).
    async fn store_link(&self, account: Account, grant: &Grant, connected_ms: Option<u64>) -> Result<(), GrpcStatus> {
        let key = self.token_key()?;
        let stored = StoredLink {
            account,
            access_token: seal(&key, &grant.access_token)?,
            access_expires_ms: grant.access_expires_ms,
            refresh_token: grant.refresh_token.as_deref().map(|t| seal(&key, t)).transpose()?,
            refresh_expires_ms: grant.refresh_expires_ms,
            connected_ms: connected_ms.unwrap_or_else(now_ms),
            issued_ms: Some(now_ms()),
        };
        self.storage.put(GITHUB_KEY, stored).await.map_err(storage)
    }

    async fn stored_link(&self) -> Result<Option<StoredLink>, GrpcStatus> {
        self.storage.get(GITHUB_KEY).await.map_err(storage)
    }

    /// A live access token of the user's GitHub account, renewed first if it is about to
    /// expire, with the account.
    ///
    /// # Errors
    /// FAILED_PRECONDITION, saying to connect GitHub (again), when it is not connected or GitHub
    /// refused to renew it.
    pub async fn token(&self, github: &GitHub) -> Result<(String, Account), GrpcStatus> {
        while self.renewing.get() {
            Delay::from(Duration::from_millis(20)).await;
        }
        let key = self.token_key()?;
        let stored = self.stored_link().await?.ok_or_else(not_connected)?;
        let open = |sealed: &str| {
            key.open(sealed).map_err(|_| {
                GrpcStatus::new(
                    Code::FailedPrecondition,
                    "the stored GitHub connection cannot be read (GITHUB_TOKEN_KEY changed): connect GitHub again",
                )
            })
        };
        let grant = Grant {
            access_token: open(&stored.access_token)?,
            access_expires_ms: stored.access_expires_ms,
            refresh_token: stored.refresh_token.as_deref().map(open).transpose()?,
            refresh_expires_ms: stored.refresh_expires_ms,
        };
        if !grant.needs_renewal(now_ms(), stored.issued_ms.unwrap_or(stored.connected_ms)) {
            return Ok((grant.access_token, stored.account));
        }
        if self.renewing.get() {
            // Another request began renewing while this one read the grant: its token is used.
            return Box::pin(self.token(github)).await;
        }
        // Nothing is awaited between that check and this, so no other renewal begins between.
        self.renewing.set(true);
        let _renewing = Renewing(Rc::clone(&self.renewing));
        let renewal = match (&grant.refresh_token, grant.renewable(now_ms())) {
            (Some(refresh), true) => github.renew(refresh, now_ms()).await,
            _ => Err(GrpcStatus::new(Code::FailedPrecondition, "GitHub's access expired")),
        };
        match renewal {
            Ok(renewed) => {
                self.store_link(stored.account.clone(), &renewed, Some(stored.connected_ms)).await?;
                Ok((renewed.access_token, stored.account))
            }
            Err(status) => Err(GrpcStatus::new(
                Code::FailedPrecondition,
                format!("{}: connect GitHub again to renew access", status.message),
            )),
        }
    }

    async fn connection(&self) -> Result<serde_json::Value, GrpcStatus> {
        Ok(match self.stored_link().await? {
            Some(stored) => serde_json::json!({
                "connected": true,
                "login": stored.account.login,
                "githubId": stored.account.id,
                "connectedMs": stored.connected_ms,
            }),
            None => serde_json::json!({"connected": false}),
        })
    }

    async fn disconnect(&self) -> Result<serde_json::Value, GrpcStatus> {
        let Some(stored) = self.stored_link().await? else { return Ok(serde_json::json!({"connected": false})) };
        // Revoked at GitHub where it can be (a token that cannot be opened is gone with its key).
        if let (Ok(github), Ok(key)) = (self.github(), self.token_key()) {
            if let Ok(token) = key.open(&stored.access_token) {
                github.revoke(&token).await;
            }
        }
        self.storage.delete(GITHUB_KEY).await.map_err(storage)?;
        Ok(serde_json::json!({"connected": false, "disconnected": stored.account.login}))
    }

    async fn repositories(&self, page_token: &str) -> Result<serde_json::Value, GrpcStatus> {
        let page = match page_token {
            "" => 1,
            token => token.parse::<u32>().ok().filter(|page| *page >= 1 && *page <= 10_000).ok_or_else(|| {
                GrpcStatus::new(Code::InvalidArgument, "pageToken is the nextPageToken of an earlier page")
            })?,
        };
        let github = self.github()?;
        let (token, _) = self.token(&github).await?;
        let (repositories, next) = github.repositories(&token, page).await?;
        Ok(serde_json::json!({
            "repositories": repositories,
            "nextPageToken": next.map(|n| n.to_string()).unwrap_or_default(),
        }))
    }
}

impl AutopilotContainer {
    /// `POST /internal/link-github` (from the Worker's sign-in): keeps the user's grant.
    pub(super) async fn link_github_route(&self, mut req: Request) -> worker::Result<Response> {
        let link: Link = match req.json().await {
            Ok(link) => link,
            Err(e) => return error_response(&GrpcStatus::new(Code::InvalidArgument, format!("a GitHub link: {e}"))),
        };
        match self.live.github.store_link(link.account, &link.grant, None).await {
            Ok(()) => Response::from_json(&serde_json::json!({"linked": true})),
            Err(status) => error_response(&status),
        }
    }

    /// `GET|DELETE /api/github`, `GET /api/github/repositories?pageToken=`.
    pub(super) async fn github_route(&self, req: &Request, route: GitHubRoute) -> worker::Result<Response> {
        let github = &self.live.github;
        let answer = match route {
            GitHubRoute::Connection => github.connection().await,
            GitHubRoute::Disconnect => github.disconnect().await,
            GitHubRoute::Repositories => {
                let url = req.url()?;
                let page_token = url.query_pairs().find(|(k, _)| k == "pageToken").map(|(_, v)| v.into_owned());
                github.repositories(page_token.as_deref().unwrap_or_default()).await
            }
        };
        match answer {
            Ok(body) => Response::from_json(&body),
            Err(status) => error_response(&status),
        }
    }
}

fn seal(key: &TokenKey, token: &str) -> Result<String, GrpcStatus> {
    key.seal_fresh(token).map_err(|e| GrpcStatus::new(Code::Internal, e.to_string()))
}

fn storage(e: worker::Error) -> GrpcStatus {
    GrpcStatus::new(Code::Unavailable, format!("the account's storage: {e}"))
}
