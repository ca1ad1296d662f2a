//! Who is calling: API tokens (`Authorization: Bearer ap_...`), browser sessions (an HttpOnly
//! cookie), and the admin secret. Tokens and sessions live in the `SESSIONS` KV namespace under
//! the SHA-256 of their value, never the value itself. Also the sign-in, sign-out and admin token
//! routes.
//!
//! KV is eventually consistent: a revoked token or a signed-out session may be honoured for up
//! to KV's propagation delay (about a minute) at other locations. Single-use tickets and credits,
//! which cannot tolerate that, live in the user's Durable Object instead.

use serde::Deserialize;
use worker::{Date, Env, Headers, Request, Response};

use crate::{
    api_error::error_response,
    entropy::random_bytes,
    front::credentials::{
        bearer, constant_time_eq, cookie, format_secret, secret_hash, session_clear_cookie, session_set_cookie,
        valid_user_id, CredentialRecord, SESSION_COOKIE, TOKEN_PREFIX,
    },
    front::site::Proof,
    grpc_web::{Code, GrpcStatus},
};

/// The KV namespace of tokens and sessions (and of the GitHub sign-in's pending states and
/// account links).
pub const KV_BINDING: &str = "SESSIONS";
/// How long a browser session lasts.
pub const SESSION_TTL_SECONDS: u64 = 7 * 24 * 3600;

fn token_key(hash: &str) -> String {
    format!("token:{hash}")
}

fn session_key(hash: &str) -> String {
    format!("session:{hash}")
}

fn now_ms() -> u64 {
    Date::now().as_millis()
}

/// The 401 every unauthenticated request gets.
pub fn unauthenticated(message: &str) -> worker::Result<Response> {
    error_response(&GrpcStatus::new(Code::Unauthenticated, message))
}

/// The user a request authenticates as, by bearer token or session cookie, and which of the two
/// proved it; `None` if neither proves one.
pub async fn authenticate(req: &Request, env: &Env) -> worker::Result<Option<(String, Proof)>> {
    let kv = env.kv(KV_BINDING)?;
    let headers = req.headers();
    let authorization = headers.get("authorization")?;
    if let Some(token) = bearer(authorization.as_deref()) {
        let hash = secret_hash(token);
        let record: Option<CredentialRecord> = kv.get(&token_key(&hash)).json().await.map_err(kv_error)?;
        return Ok(record.filter(|r| r.accepts(token, now_ms())).map(|r| (r.user_id, Proof::Token)));
    }
    let cookies = headers.get("cookie")?;
    if let Some(session) = cookie(cookies.as_deref(), SESSION_COOKIE).filter(|s| !s.is_empty()) {
        let hash = secret_hash(session);
        let record: Option<CredentialRecord> = kv.get(&session_key(&hash)).json().await.map_err(kv_error)?;
        return Ok(record.filter(|r| r.accepts(session, now_ms())).map(|r| (r.user_id, Proof::Cookie)));
    }
    Ok(None)
}

pub fn kv_error(error: worker::KvError) -> worker::Error {
    worker::Error::RustError(format!("session store: {error}"))
}

/// `POST /api/auth/signin`: exchanges an API token (bearer header, or `{"token": ...}`) for a
/// session cookie.
pub async fn sign_in(mut req: Request, env: &Env) -> worker::Result<Response> {
    #[derive(Deserialize)]
    struct Body {
        token: String,
    }
    let from_header = bearer(req.headers().get("authorization")?.as_deref()).map(str::to_string);
    let token = match from_header {
        Some(token) => token,
        None => match req.json::<Body>().await {
            Ok(body) => body.token,
            Err(_) => return unauthenticated("send an API token as Authorization: Bearer <token> or {\"token\": ...}"),
        },
    };
    let kv = env.kv(KV_BINDING)?;
    let record: Option<CredentialRecord> = kv.get(&token_key(&secret_hash(&token))).json().await.map_err(kv_error)?;
    let Some(record) = record.filter(|r| r.accepts(&token, now_ms())) else {
        return unauthenticated("the token is not valid (unknown, revoked or expired)");
    };
    let headers = Headers::new();
    headers.set("set-cookie", &open_session(env, &record.user_id).await?)?;
    Ok(Response::from_json(&serde_json::json!({"userId": record.user_id}))?.with_headers(headers))
}

/// Opens a browser session for `user_id`; answers the `Set-Cookie` value that carries it.
pub async fn open_session(env: &Env, user_id: &str) -> worker::Result<String> {
    let session = format_secret("", &random_bytes(32)?);
    let hash = secret_hash(&session);
    let session_record = CredentialRecord {
        user_id: user_id.to_string(),
        label: "browser session".into(),
        hash: hash.clone(),
        created_at_ms: now_ms(),
        expires_at_ms: Some(now_ms() + SESSION_TTL_SECONDS * 1000),
    };
    env.kv(KV_BINDING)?
        .put(&session_key(&hash), serde_json::to_string(&session_record)?)
        .map_err(kv_error)?
        .expiration_ttl(SESSION_TTL_SECONDS)
        .execute()
        .await
        .map_err(kv_error)?;
    Ok(session_set_cookie(&session, SESSION_TTL_SECONDS))
}

/// `POST /api/auth/signout`: deletes the session and its cookie.
pub async fn sign_out(req: &Request, env: &Env) -> worker::Result<Response> {
    let cookies = req.headers().get("cookie")?;
    if let Some(session) = cookie(cookies.as_deref(), SESSION_COOKIE).filter(|s| !s.is_empty()) {
        env.kv(KV_BINDING)?.delete(&session_key(&secret_hash(session))).await.map_err(kv_error)?;
    }
    let headers = Headers::new();
    headers.set("set-cookie", &session_clear_cookie())?;
    Ok(Response::from_json(&serde_json::json!({"signedOut": true}))?.with_headers(headers))
}

/// Whether the request carries the admin secret (`ADMIN_SECRET`), compared in constant time.
/// Without a configured secret, admin routes are closed.
pub fn is_admin(req: &Request, env: &Env) -> worker::Result<bool> {
    let Ok(secret) = env.secret("ADMIN_SECRET") else { return Ok(false) };
    let secret = secret.to_string();
    let authorization = req.headers().get("authorization")?;
    Ok(!secret.is_empty() && bearer(authorization.as_deref()).is_some_and(|given| constant_time_eq(given, &secret)))
}

/// `POST /api/admin/tokens` `{"userId", "label", "expiresInSeconds"?}`: creates an API token and
/// answers it once; only its hash is stored.
pub async fn create_token(mut req: Request, env: &Env) -> worker::Result<Response> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        user_id: String,
        #[serde(default)]
        label: String,
        #[serde(default)]
        expires_in_seconds: Option<u64>,
    }
    let body: Body = match req.json().await {
        Ok(body) => body,
        Err(e) => {
            return error_response(&GrpcStatus::new(
                Code::InvalidArgument,
                format!("expected {{\"userId\", \"label\", \"expiresInSeconds\"?}}: {e}"),
            ))
        }
    };
    if !valid_user_id(&body.user_id) {
        return error_response(&GrpcStatus::new(Code::InvalidArgument, "userId must be 1-64 of A-Z a-z 0-9 . _ - @"));
    }
    let token = format_secret(TOKEN_PREFIX, &random_bytes(32)?);
    let hash = secret_hash(&token);
    let record = CredentialRecord {
        user_id: body.user_id.clone(),
        label: body.label.clone(),
        hash: hash.clone(),
        created_at_ms: now_ms(),
        expires_at_ms: body.expires_in_seconds.map(|s| now_ms() + s * 1000),
    };
    let mut put = env.kv(KV_BINDING)?.put(&token_key(&hash), serde_json::to_string(&record)?).map_err(kv_error)?;
    if let Some(seconds) = body.expires_in_seconds {
        // KV drops the record a while after expiry (it takes TTLs of at least 60 s); the record's
        // own expiry is what refuses the token on time.
        put = put.expiration_ttl(seconds.max(60) + 60);
    }
    put.execute().await.map_err(kv_error)?;
    Response::from_json(&serde_json::json!({
        "token": token,
        "tokenId": hash,
        "userId": record.user_id,
        "label": record.label,
        "expiresAtMs": record.expires_at_ms,
    }))
}

/// `DELETE /api/admin/tokens/{tokenId}`: revokes a token by its id (its hash).
pub async fn revoke_token(token_id: &str, env: &Env) -> worker::Result<Response> {
    if token_id.len() != 64 || !token_id.chars().all(|c| c.is_ascii_hexdigit()) {
        return error_response(&GrpcStatus::new(
            Code::InvalidArgument,
            "tokenId is the 64-hex-digit id create answered",
        ));
    }
    env.kv(KV_BINDING)?.delete(&token_key(token_id)).await.map_err(kv_error)?;
    Response::from_json(&serde_json::json!({"revoked": token_id}))
}
