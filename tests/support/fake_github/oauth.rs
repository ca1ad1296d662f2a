//! The GitHub App's user-to-server OAuth flow: the authorization page (which approves at once,
//! as the chosen user), the code and refresh-token exchanges, and token revocation.
//!
//! The exchange answers as GitHub does: errors are HTTP 200 with an `error` field, in JSON when
//! the client accepts `application/json` and form-encoded otherwise.

use std::time::Instant;

use axum::{
    extract::Request,
    http::{header, HeaderMap, StatusCode},
    response::Response,
};
use serde_json::{json, Value};

use super::{
    api, basic_credentials, form_pairs, html, param, respond, Shared, CLIENT_ID, CLIENT_SECRET, CODE_LIFETIME,
    REFRESH_TOKEN_LIFETIME,
};

const TROUBLESHOOTING: &str =
    "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors";

/// `GET /login/oauth/authorize`: the person approves at once; 302 back to the app with a code.
pub(super) fn authorize(shared: &Shared, req: &Request<()>) -> Response {
    let query = form_pairs(req.uri().query().unwrap_or("").as_bytes());
    if param(&query, "client_id") != Some(CLIENT_ID) {
        return html(StatusCode::NOT_FOUND, "Page not found");
    }
    let state = param(&query, "state");
    let asked = param(&query, "redirect_uri").map(str::to_string);
    let mut world = shared.state.lock().unwrap();
    let registered = world.callback_url.clone();
    let target = match (&asked, &registered) {
        (Some(asked), Some(registered)) if asked != registered => {
            let error = [
                ("error", "redirect_uri_mismatch"),
                ("error_description", "The redirect_uri MUST match the registered callback URL for this application."),
                (
                    "error_uri",
                    "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#redirect-uri-mismatch",
                ),
            ];
            return redirect(registered, error.into_iter().chain(state.map(|s| ("state", s))));
        }
        (Some(uri), _) | (None, Some(uri)) => uri.clone(),
        (None, None) => return html(StatusCode::NOT_FOUND, "Page not found"),
    };
    let approver = world.approve_as.clone().or_else(|| world.users.first().map(|u| u.login.clone()));
    let Some(login) = approver else {
        return html(StatusCode::NOT_FOUND, "Page not found");
    };
    let code = super::random_alphanumeric(20).to_ascii_lowercase();
    world.codes.insert(code.clone(), super::Code { login, redirect_uri: asked, issued: Instant::now() });
    redirect(&target, [("code", code.as_str())].into_iter().chain(state.map(|s| ("state", s))))
}

fn redirect<'a>(target: &str, params: impl IntoIterator<Item = (&'a str, &'a str)>) -> Response {
    let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    let separator = if target.contains('?') { '&' } else { '?' };
    let mut response = html(StatusCode::FOUND, "Redirecting");
    let location = format!("{target}{separator}{query}");
    response.headers_mut().insert(header::LOCATION, location.parse().expect("a location header"));
    response
}

/// `POST /login/oauth/access_token`: exchanges a code, or a refresh token, for a token pair.
pub(super) fn access_token(shared: &Shared, req: &Request<()>, body: &[u8]) -> Response {
    // GitHub reads the parameters from the query string as well as from the body.
    let mut params = form_pairs(req.uri().query().unwrap_or("").as_bytes());
    let is_json = header_contains(req.headers(), header::CONTENT_TYPE, "json");
    if is_json {
        if let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) {
            params
                .extend(fields.into_iter().map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string))));
        }
    } else {
        params.extend(form_pairs(body));
    }
    let answer_json = header_contains(req.headers(), header::ACCEPT, "application/json");
    let reply = |fields: Vec<(&str, Value)>| exchange_response(answer_json, fields);

    if param(&params, "client_id") != Some(CLIENT_ID) || param(&params, "client_secret") != Some(CLIENT_SECRET) {
        return reply(error(
            "incorrect_client_credentials",
            "The client_id and/or client_secret passed are incorrect.",
            "/#incorrect-client-credentials",
        ));
    }
    let mut world = shared.state.lock().unwrap();
    let login = match param(&params, "grant_type") {
        None | Some("authorization_code") => {
            // A code is good for one exchange, right or wrong.
            let code = param(&params, "code").and_then(|code| world.codes.remove(code));
            let Some(code) = code.filter(|c| c.issued.elapsed() < CODE_LIFETIME) else {
                return reply(error(
                    "bad_verification_code",
                    "The code passed is incorrect or expired.",
                    "/#bad-verification-code",
                ));
            };
            if let (Some(asked), Some(used)) = (param(&params, "redirect_uri"), &code.redirect_uri) {
                if asked != used {
                    return reply(error(
                        "redirect_uri_mismatch",
                        "The redirect_uri MUST match the registered callback URL for this application.",
                        "/#redirect-uri-mismatch",
                    ));
                }
            }
            code.login
        }
        Some("refresh_token") => {
            let refresh = param(&params, "refresh_token").and_then(|token| world.refresh_tokens.remove(token));
            let Some(refresh) = refresh.filter(|r| r.expires > Instant::now()) else {
                return reply(error(
                    "bad_refresh_token",
                    "The refresh token passed is incorrect or expired.",
                    "/#bad-refresh-token",
                ));
            };
            // Once a refresh token is used, it and the access token it came with stop working.
            world.tokens.remove(&refresh.access_token);
            refresh.login
        }
        Some(_) => {
            return reply(error(
                "unsupported_grant_type",
                "The grant type is not supported.",
                "/#unsupported-grant-type",
            ))
        }
    };
    let (access, refresh) = world.issue_tokens(&login);
    let lifetime = world.token_lifetime.unwrap_or(super::ACCESS_TOKEN_LIFETIME);
    reply(vec![
        ("access_token", json!(access)),
        ("expires_in", json!(lifetime.as_secs())),
        ("refresh_token", json!(refresh)),
        ("refresh_token_expires_in", json!(REFRESH_TOKEN_LIFETIME.as_secs())),
        ("token_type", json!("bearer")),
        ("scope", json!("")),
    ])
}

fn error(code: &str, description: &str, anchor: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("error", json!(code)),
        ("error_description", json!(description)),
        ("error_uri", json!(format!("{TROUBLESHOOTING}{anchor}"))),
    ]
}

/// The exchange's answer, always HTTP 200: JSON, or form-encoded as GitHub's default.
fn exchange_response(as_json: bool, fields: Vec<(&str, Value)>) -> Response {
    if as_json {
        let object: serde_json::Map<String, Value> = fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        return respond(StatusCode::OK, "application/json; charset=utf-8", Value::Object(object).to_string());
    }
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (name, value) in &fields {
        form.append_pair(name, &value.as_str().map_or_else(|| value.to_string(), str::to_string));
    }
    respond(StatusCode::OK, "application/x-www-form-urlencoded; charset=utf-8", form.finish())
}

fn header_contains(headers: &HeaderMap, name: header::HeaderName, needle: &str) -> bool {
    headers.get(name).and_then(|v| v.to_str().ok()).is_some_and(|v| v.to_ascii_lowercase().contains(needle))
}

/// `DELETE /api/v3/applications/{client_id}/token` with the app's Basic credentials and
/// `{"access_token": ...}`: revokes that token (and its refresh token); 204. Anything wrong: 404.
pub(super) fn revoke(shared: &Shared, req: &Request<()>, client_id: &str, body: &[u8]) -> Response {
    const DOCS: &str = "https://docs.github.com/rest/apps/oauth-applications#delete-an-app-token";
    let credentials = basic_credentials(req.headers());
    let app = credentials.as_ref().map(|(user, password)| (user.as_str(), password.as_str()));
    if client_id != CLIENT_ID || app != Some((CLIENT_ID, CLIENT_SECRET)) {
        return api::error(StatusCode::NOT_FOUND, "Not Found", DOCS);
    }
    let token = serde_json::from_slice::<Value>(body).ok().and_then(|b| b["access_token"].as_str().map(str::to_string));
    let mut world = shared.state.lock().unwrap();
    let Some(removed) = token.as_ref().and_then(|token| world.tokens.remove(token)) else {
        return api::error(StatusCode::NOT_FOUND, "Not Found", DOCS);
    };
    world.refresh_tokens.remove(&removed.refresh_token);
    world.revoked.extend(token);
    api::no_content()
}
