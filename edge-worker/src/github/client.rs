//! Calls to GitHub from the edge: its OAuth token endpoint (code exchange, renewal, revocation)
//! and its REST API, each with what GitHub requires of a caller (a `User-Agent`, its media type
//! and API version). Where GitHub is comes from `GITHUB_URL` and `GITHUB_API_URL`, so GitHub
//! Enterprise Server, or a loopback stand-in in tests, works by setting both.

use base64::{engine::general_purpose::STANDARD, Engine};
use serde::{Deserialize, Serialize};
use worker::{Env, Fetch, Headers, Method, Request, RequestInit, Response};

use super::oauth::{next_page, read_grant, url_form, Grant, Refused};
use crate::grpc_web::{Code, GrpcStatus};

/// GitHub refuses API calls without a User-Agent.
const USER_AGENT: &str = "autopilot-edge";
const MEDIA_TYPE: &str = "application/vnd.github+json";
const API_VERSION: &str = "2022-11-28";

/// The GitHub App the edge signs users in with, and where GitHub is.
pub struct GitHub {
    pub url: String,
    pub api_url: String,
    pub client_id: String,
    client_secret: String,
}

/// A GitHub account, as `GET /user` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: u64,
    pub login: String,
}

/// A repository the user's token reaches, as the page's picker shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Repository {
    pub full_name: String,
    pub private: bool,
    pub default_branch: String,
    pub clone_url: String,
}

impl GitHub {
    /// The configured App.
    ///
    /// # Errors
    /// UNIMPLEMENTED, naming what to set, when this deployment has no GitHub App configured.
    pub fn from_env(env: &Env) -> Result<GitHub, GrpcStatus> {
        let var = |name: &str| env.var(name).ok().map(|v| v.to_string()).filter(|v| !v.trim().is_empty());
        let secret = env.secret("GITHUB_CLIENT_SECRET").ok().map(|v| v.to_string()).filter(|v| !v.is_empty());
        let (Some(client_id), Some(client_secret)) = (var("GITHUB_CLIENT_ID"), secret) else {
            return Err(GrpcStatus::new(
                Code::Unimplemented,
                "GitHub is not set up on this deployment (GITHUB_CLIENT_ID and the secret GITHUB_CLIENT_SECRET)",
            ));
        };
        let url = var("GITHUB_URL").unwrap_or_else(|| "https://github.com".into());
        let api_url = var("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into());
        Ok(GitHub {
            url: url.trim_end_matches('/').to_string(),
            api_url: api_url.trim_end_matches('/').to_string(),
            client_id,
            client_secret,
        })
    }

    /// Exchanges a callback's `code` for a grant.
    pub async fn exchange_code(&self, code: &str, redirect_uri: &str, now_ms: u64) -> Result<Grant, GrpcStatus> {
        let form = [
            ("client_id", self.client_id.as_str()),
            ("client_secret", &self.client_secret),
            ("code", code),
            ("redirect_uri", redirect_uri),
        ];
        self.token_endpoint(&form, now_ms).await
    }

    /// Renews a grant with its refresh token.
    pub async fn renew(&self, refresh_token: &str, now_ms: u64) -> Result<Grant, GrpcStatus> {
        let form = [
            ("client_id", self.client_id.as_str()),
            ("client_secret", &self.client_secret),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        self.token_endpoint(&form, now_ms).await
    }

    async fn token_endpoint(&self, form: &[(&str, &str)], now_ms: u64) -> Result<Grant, GrpcStatus> {
        let headers = Headers::new();
        let set = |name: &str, value: &str| headers.set(name, value).map_err(unreachable);
        set("accept", "application/json")?;
        set("content-type", "application/x-www-form-urlencoded")?;
        set("user-agent", USER_AGENT)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_headers(headers.clone()).with_body(Some(url_form(form).into()));
        let url = format!("{}/login/oauth/access_token", self.url);
        let mut answer = send(&url, &init).await?;
        let body = answer.text().await.map_err(unreachable)?;
        read_grant(&body, now_ms)
            .map_err(|refused: Refused| GrpcStatus::new(Code::FailedPrecondition, refused.to_string()))
    }

    /// Revokes `access_token` at GitHub (a disconnect); GitHub's refusal is only logged.
    pub async fn revoke(&self, access_token: &str) {
        let revoke = async {
            let headers = api_headers(None).map_err(unreachable)?;
            let basic = STANDARD.encode(format!("{}:{}", self.client_id, self.client_secret));
            headers.set("authorization", &format!("Basic {basic}")).map_err(unreachable)?;
            let body = serde_json::json!({"access_token": access_token}).to_string();
            let mut init = RequestInit::new();
            init.with_method(Method::Delete).with_headers(headers).with_body(Some(body.into()));
            let url = format!("{}/applications/{}/token", self.api_url, self.client_id);
            let answer = send(&url, &init).await?;
            match answer.status_code() {
                204 | 404 => Ok(()),
                status => Err(GrpcStatus::new(Code::Unknown, format!("GitHub answered {status}"))),
            }
        };
        if let Err(e) = revoke.await {
            worker::console_warn!("revoking a GitHub token at GitHub failed: {}", e.message);
        }
    }

    /// `GET path` of the API with `token`: the answer's JSON and its `Link` header.
    ///
    /// # Errors
    /// GitHub's refusal in its words: FAILED_PRECONDITION for a token GitHub no longer accepts
    /// (connect again), NOT_FOUND / PERMISSION_DENIED as GitHub answered, UNAVAILABLE when GitHub
    /// cannot be reached.
    pub async fn get(&self, token: &str, path: &str) -> Result<(serde_json::Value, Option<String>), GrpcStatus> {
        self.call(Method::Get, token, path, None).await
    }

    /// `POST path` of the API with `token` and the JSON `body`: the answer's JSON (errors as
    /// [`GitHub::get`]'s).
    pub async fn post(
        &self,
        token: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, GrpcStatus> {
        self.call(Method::Post, token, path, Some(body.to_string())).await.map(|(answer, _)| answer)
    }

    async fn call(
        &self,
        method: Method,
        token: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<(serde_json::Value, Option<String>), GrpcStatus> {
        let headers = api_headers(Some(token)).map_err(unreachable)?;
        let mut init = RequestInit::new();
        init.with_method(method).with_headers(headers).with_body(body.map(Into::into));
        let mut answer = send(&format!("{}{path}", self.api_url), &init).await?;
        let status = answer.status_code();
        let link = answer.headers().get("link").ok().flatten();
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        match status {
            200..=299 => Ok((body, link)),
            status => Err(github_refusal(status, &body)),
        }
    }

    /// The account `token` belongs to.
    pub async fn account(&self, token: &str) -> Result<Account, GrpcStatus> {
        let (body, _) = self.get(token, "/user").await?;
        serde_json::from_value(body).map_err(|e| GrpcStatus::new(Code::Unknown, format!("GitHub's /user: {e}")))
    }

    /// One page (from 1) of the repositories `token` reaches, and the next page's number.
    pub async fn repositories(&self, token: &str, page: u32) -> Result<(Vec<Repository>, Option<u32>), GrpcStatus> {
        let path = format!("/user/repos?per_page=50&sort=pushed&page={page}");
        let (body, link) = self.get(token, &path).await?;
        let repositories = serde_json::from_value::<Vec<serde_json::Value>>(body)
            .unwrap_or_default()
            .into_iter()
            .map(|repo| Repository {
                full_name: repo["full_name"].as_str().unwrap_or_default().to_string(),
                private: repo["private"].as_bool().unwrap_or(false),
                default_branch: repo["default_branch"].as_str().unwrap_or_default().to_string(),
                clone_url: repo["clone_url"].as_str().unwrap_or_default().to_string(),
            })
            .collect();
        Ok((repositories, next_page(link.as_deref())))
    }
}

/// The headers of an API call, with `token` if given.
fn api_headers(token: Option<&str>) -> worker::Result<Headers> {
    let headers = Headers::new();
    headers.set("accept", MEDIA_TYPE)?;
    headers.set("x-github-api-version", API_VERSION)?;
    headers.set("user-agent", USER_AGENT)?;
    headers.set("content-type", "application/json")?;
    if let Some(token) = token {
        headers.set("authorization", &format!("Bearer {token}"))?;
    }
    Ok(headers)
}

async fn send(url: &str, init: &RequestInit) -> Result<Response, GrpcStatus> {
    let request = Request::new_with_init(url, init).map_err(unreachable)?;
    Fetch::Request(request).send().await.map_err(unreachable)
}

fn unreachable(e: worker::Error) -> GrpcStatus {
    GrpcStatus::new(Code::Unavailable, format!("GitHub could not be reached: {e}"))
}

/// GitHub's answer `status` with `body` as a status of ours, its message quoted (with the
/// reasons a 422 lists, e.g. "Validation Failed: A pull request already exists for o:b.").
pub fn github_refusal(status: u16, body: &serde_json::Value) -> GrpcStatus {
    let mut message = body["message"].as_str().unwrap_or("no message").to_string();
    let reasons: Vec<&str> = body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|error| error["message"].as_str().or_else(|| error["code"].as_str()))
        .collect();
    if !reasons.is_empty() {
        message = format!("{message}: {}", reasons.join("; "));
    }
    match status {
        401 => GrpcStatus::new(
            Code::FailedPrecondition,
            format!("GitHub no longer accepts this account's connection ({message}): connect GitHub again"),
        ),
        403 => GrpcStatus::new(Code::PermissionDenied, format!("GitHub refused: {message}")),
        404 => GrpcStatus::new(Code::NotFound, format!("GitHub: {message}")),
        422 => GrpcStatus::new(Code::FailedPrecondition, format!("GitHub refused: {message}")),
        status => GrpcStatus::new(Code::Unavailable, format!("GitHub answered {status}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn githubs_refusals_keep_its_words_and_map_to_what_the_user_can_do() {
        let body =
            serde_json::json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"});
        let expired = github_refusal(401, &body);
        assert_eq!(expired.code, Code::FailedPrecondition as i32);
        assert!(expired.message.contains("Bad credentials") && expired.message.contains("connect GitHub again"));
        assert_eq!(github_refusal(404, &serde_json::json!({"message": "Not Found"})).code, Code::NotFound as i32);
        assert_eq!(github_refusal(502, &serde_json::Value::Null).code, Code::Unavailable as i32);
        let exists = serde_json::json!({"message": "Validation Failed", "errors": [
            {"resource": "PullRequest", "code": "custom", "message": "A pull request already exists for o:b."}]});
        assert_eq!(
            github_refusal(422, &exists).message,
            "GitHub refused: Validation Failed: A pull request already exists for o:b."
        );
    }
}
