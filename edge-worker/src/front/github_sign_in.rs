//! Sign in with GitHub, the Worker's half: `GET /auth/github` sends the browser to GitHub's
//! authorize page with a single-use `state` that a cookie binds to this browser; `GET
//! /auth/github/callback` checks that state, exchanges GitHub's code for the user's grant, reads
//! who they are, signs the browser in (the same session cookie as an API token's sign-in), and
//! hands the grant to the user's container object, which keeps it sealed (see
//! `container/github_link.rs`). A GitHub account is an account of its own here, keyed by
//! GitHub's numeric id and created on its first sign-in with `SIGNUP_CREDITS`; a user already
//! signed in connects GitHub to their account instead.

use serde::{Deserialize, Serialize};
use worker::{Date, Env, Headers, Method, Request, RequestInit, Response};

use crate::{
    api_error::error_response,
    entropy::random_bytes,
    front::{
        auth::{authenticate, kv_error, open_session, KV_BINDING},
        credentials::{constant_time_eq, cookie, format_secret, secret_hash},
        forward,
        internal::public_origin,
        route::{Backend, Internal},
        site::site_origin,
    },
    github::{
        client::{Account, GitHub},
        oauth::{
            account_for, authorize_url, clear_state_cookie, safe_return_path, state_cookie, Grant, PendingSignIn,
            STATE_COOKIE, STATE_TTL_SECONDS,
        },
    },
    grpc_web::{Code, GrpcStatus},
};

/// What the Worker hands the user's object when GitHub is connected.
#[derive(Debug, Serialize, Deserialize)]
pub struct Link {
    pub account: Account,
    pub grant: Grant,
}

fn pending_key(state: &str) -> String {
    format!("github-state:{}", secret_hash(state))
}

fn account_key(github_id: u64) -> String {
    format!("github-account:{github_id}")
}

/// Where GitHub sends the browser back: the callback on the site's origin (the redirect URI the
/// code is exchanged with must be the one the authorize URL named).
fn callback_url(env: &Env, request_url: &worker::Url) -> Result<String, GrpcStatus> {
    site_origin(public_origin(env).as_deref(), request_url.as_ref())
        .map(|origin| format!("{origin}/auth/github/callback"))
        .map_err(|message| GrpcStatus::new(Code::FailedPrecondition, message))
}

/// `GET /auth/github[?returnTo=/path]`.
pub async fn sign_in(req: Request, env: &Env) -> worker::Result<Response> {
    let github = match GitHub::from_env(env) {
        Ok(github) => github,
        Err(status) => return error_response(&status),
    };
    let redirect_uri = match callback_url(env, &req.url()?) {
        Ok(url) => url,
        Err(status) => return error_response(&status),
    };
    let url = req.url()?;
    let return_to = url.query_pairs().find(|(k, _)| k == "returnTo").map(|(_, v)| v.into_owned());
    let connect_to = authenticate(&req, env).await?.map(|(user, _)| user);
    let pending = PendingSignIn { connect_to, return_to: safe_return_path(return_to.as_deref()) };
    let state = format_secret("", &random_bytes(32)?);
    env.kv(KV_BINDING)?
        .put(&pending_key(&state), serde_json::to_string(&pending)?)
        .map_err(kv_error)?
        .expiration_ttl(STATE_TTL_SECONDS)
        .execute()
        .await
        .map_err(kv_error)?;
    let headers = Headers::new();
    headers.set("location", &authorize_url(&github.url, &github.client_id, &redirect_uri, &state))?;
    headers.set("set-cookie", &state_cookie(&state))?;
    Ok(Response::empty()?.with_status(302).with_headers(headers))
}

/// `GET /auth/github/callback?code=&state=`.
pub async fn callback(req: Request, env: &Env) -> worker::Result<Response> {
    match signed_in(&req, env).await? {
        Ok((set_session, return_to)) => {
            let headers = Headers::new();
            headers.set("location", &return_to)?;
            headers.append("set-cookie", &set_session)?;
            headers.append("set-cookie", &clear_state_cookie())?;
            Ok(Response::empty()?.with_status(302).with_headers(headers))
        }
        Err(refusal) => {
            let mut response = error_response(&refusal)?;
            response.headers_mut().append("set-cookie", &clear_state_cookie())?;
            Ok(response)
        }
    }
}

/// The callback's work: the session cookie to set and where to go, or why not.
async fn signed_in(req: &Request, env: &Env) -> worker::Result<Result<(String, String), GrpcStatus>> {
    let refuse = |code: Code, message: &str| Ok(Err(GrpcStatus::new(code, message)));
    let url = req.url()?;
    let query = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    if let Some(error) = query("error") {
        let description = query("error_description").unwrap_or_default();
        return refuse(Code::PermissionDenied, &format!("GitHub did not sign you in ({error}): {description}"));
    }
    let stale = "this sign-in did not start in this browser, or took longer than 10 minutes: sign in with GitHub again";
    let Some(state) = query("state").filter(|s| !s.is_empty()) else { return refuse(Code::InvalidArgument, stale) };
    let cookies = req.headers().get("cookie")?;
    let bound = cookie(cookies.as_deref(), STATE_COOKIE).is_some_and(|kept| constant_time_eq(kept, &state));
    if !bound {
        return refuse(Code::InvalidArgument, stale);
    }
    let kv = env.kv(KV_BINDING)?;
    let pending: Option<PendingSignIn> = kv.get(&pending_key(&state)).json().await.map_err(kv_error)?;
    let Some(pending) = pending else { return refuse(Code::InvalidArgument, stale) };
    // Single use: a replayed callback finds nothing.
    kv.delete(&pending_key(&state)).await.map_err(kv_error)?;
    let Some(code) = query("code").filter(|c| !c.is_empty()) else {
        return refuse(Code::InvalidArgument, "GitHub sent no code back: sign in with GitHub again");
    };
    let github = match GitHub::from_env(env) {
        Ok(github) => github,
        Err(status) => return Ok(Err(status)),
    };
    let redirect_uri = match callback_url(env, &url) {
        Ok(url) => url,
        Err(status) => return Ok(Err(status)),
    };
    let now = Date::now().as_millis();
    let grant = match github.exchange_code(&code, &redirect_uri, now).await {
        Ok(grant) => grant,
        // GitHub refused the code the browser brought (used, expired or made up).
        Err(status) if status.code == Code::FailedPrecondition as i32 => {
            return refuse(Code::InvalidArgument, &format!("{}: sign in with GitHub again", status.message))
        }
        Err(status) => return Ok(Err(status)),
    };
    let account = match github.account(&grant.access_token).await {
        Ok(account) => account,
        Err(status) => return Ok(Err(status)),
    };
    let user = match account_user(env, &account, pending.connect_to).await? {
        Ok(user) => user,
        Err(status) => return Ok(Err(status)),
    };
    let link = serde_json::to_string(&Link { account, grant })?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(link.into()));
    let linked =
        forward(Request::new_with_init(&Internal::LinkGitHub.url(), &init)?, env, Backend::Container, &user, &[])
            .await?;
    if linked.status_code() != 200 {
        let mut linked = linked;
        let body: serde_json::Value = linked.json().await.unwrap_or_default();
        let message = body["error"]["message"].as_str().unwrap_or("the account could not keep the connection");
        return refuse(Code::Unavailable, message);
    }
    Ok(Ok((open_session(env, &user).await?, pending.return_to)))
}

/// The account `github_account` signs in to: the one it is linked to; the signed-in user's
/// (`connect_to`), linking it; or a new one, created with `SIGNUP_CREDITS`.
async fn account_user(
    env: &Env,
    github_account: &Account,
    connect_to: Option<String>,
) -> worker::Result<Result<String, GrpcStatus>> {
    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Linked {
        user_id: String,
    }
    let kv = env.kv(KV_BINDING)?;
    let key = account_key(github_account.id);
    let linked: Option<Linked> = kv.get(&key).json().await.map_err(kv_error)?;
    let user = match (linked, connect_to) {
        (Some(linked), Some(user)) if linked.user_id != user => {
            return Ok(Err(GrpcStatus::new(
                Code::AlreadyExists,
                format!("the GitHub account {} is connected to another account here", github_account.login),
            )))
        }
        (Some(linked), _) => return Ok(Ok(linked.user_id)),
        (None, Some(user)) => user,
        (None, None) => {
            let user = account_for(github_account.id);
            grant_signup_credits(env, &user).await?;
            user
        }
    };
    kv.put(&key, serde_json::to_string(&Linked { user_id: user.clone() })?)
        .map_err(kv_error)?
        .execute()
        .await
        .map_err(kv_error)?;
    Ok(Ok(user))
}

/// A new account's first credits: `SIGNUP_CREDITS` (default 0).
async fn grant_signup_credits(env: &Env, user: &str) -> worker::Result<()> {
    let credits: i64 = env.var("SIGNUP_CREDITS").ok().and_then(|v| v.to_string().trim().parse().ok()).unwrap_or(0);
    if credits <= 0 {
        return Ok(());
    }
    let body = serde_json::json!({"userId": user, "credits": credits, "note": "signed up with GitHub"});
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.to_string().into()));
    forward(Request::new_with_init(&Internal::Grant.url(), &init)?, env, Backend::Container, user, &[]).await?;
    Ok(())
}
