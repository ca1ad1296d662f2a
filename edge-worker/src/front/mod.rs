//! The Worker's entry: parses each request into a [`Route`] and applies the authentication gate.
//! Every route but `/health` (and the page's static files) needs a user: an API token, a session
//! cookie, or, for WebSockets, a single-use ticket. The Worker names the authenticated user to
//! the user's Durable Object in [`USER_HEADER`], having removed any such header the client sent;
//! the object trusts it because only the Worker can reach it.
//!
//! Beside it: [`route`] (pure: every path spelled once, the route value the Worker and both
//! objects match on), [`auth`] (tokens, sessions, sign-in, the admin token routes),
//! [`credentials`] (token hashes, cookies), [`ticket`] (signed single-use WebSocket tickets),
//! [`sessions`] (WebSocket sessions and tickets, for both objects), [`site`] (the site's origin
//! and what a cookie-authenticated request must show), [`body_limit`] (bodies read within a
//! limit), [`task_routes`] (the Start, ticket and task-list routes both objects serve alike),
//! [`github_sign_in`] (sign in with GitHub, or connect it) and [`internal`] (the headers and
//! settings the Worker hands an object).

pub mod auth;
pub mod body_limit;
pub mod credentials;
pub mod github_sign_in;
pub mod github_webhook;
pub mod internal;
pub mod route;
pub mod sessions;
pub mod site;
pub mod task_routes;
pub mod ticket;

use worker::{Date, Env, Method, Request, RequestInit, Response};

use self::auth::{authenticate, unauthenticated};
use crate::{
    api_error::{error_response, grpc_web_error, not_found},
    bench,
    container::{
        environments::prepared_store::{serve_kept, store_error, StoreSettings},
        git_gateway::git_error,
        model_gateway::model_error,
        task_credential,
    },
    front::body_limit::read_within,
    front::credentials::bearer,
    front::internal::{
        public_origin, ticket_secret, INTERNAL_HEADERS, TICKET_NONCE_HEADER, TICKET_SESSION_HEADER, USER_HEADER,
    },
    front::route::{AdminRoute, Backend, Internal, Route, STORE_PREFIX},
    front::site::{check_browser_request, site_origin, Proof, RequestKind, MAX_BODY_BYTES},
    grpc_web::{Code, GrpcStatus},
    socket::is_websocket_upgrade,
};

/// Routes one request.
pub async fn handle(req: Request, env: Env) -> worker::Result<Response> {
    let path = req.path();
    let Some(route) = Route::parse(&req.method(), &path) else {
        return not_found(&path);
    };
    match route {
        Route::Health => Response::ok("ok"),
        Route::SignIn => auth::sign_in(req, &env).await,
        Route::SignOut => auth::sign_out(&req, &env).await,
        Route::Admin(admin_route) => admin(req, &env, admin_route).await,
        Route::BenchEcho if bench::routes_enabled(&env) => bench::echo_websocket(),
        Route::BenchFanout if bench::routes_enabled(&env) => {
            let namespace = env.durable_object(bench::FANOUT_BINDING)?;
            namespace.id_from_name("floor")?.get_stub()?.fetch_with_request(req).await
        }
        Route::BenchStream if bench::routes_enabled(&env) => {
            let namespace = env.durable_object(bench::STREAM_BINDING)?;
            namespace.id_from_name("baseline")?.get_stub()?.fetch_with_request(req).await
        }
        Route::BenchEcho | Route::BenchFanout | Route::BenchStream => not_found(&path),
        Route::Socket(backend, _) => websocket(req, &env, backend).await,
        Route::Model => model_gateway(req, &env).await,
        Route::Git => git_gateway(req, &env).await,
        Route::PreparedStore => prepared_store(req, &env).await,
        Route::AuthProviders => {
            Response::from_json(&serde_json::json!({"github": crate::github::client::GitHub::from_env(&env).is_ok()}))
        }
        Route::GitHubSignIn => github_sign_in::sign_in(req, &env).await,
        Route::GitHubCallback => github_sign_in::callback(req, &env).await,
        Route::GitHubWebhook => github_webhook::receive(req, &env).await,
        route => user_route(req, &env, route).await,
    }
}

/// A route of the signed-in user: authenticated, checked as a browser request if a cookie proved
/// the user, its body capped, then handed to the user's object of the route's mode.
async fn user_route(req: Request, env: &Env, route: Route) -> worker::Result<Response> {
    let grpc = matches!(route, Route::Grpc(_));
    let refuse = |status: GrpcStatus, http: u16| {
        if grpc {
            grpc_web_error(&status, http)
        } else {
            Ok(error_response(&status)?.with_status(http))
        }
    };
    // A machine proves itself with its API token only: a browser's session cookie must not
    // let a page (or a cross-site request) stand in for the user's machine.
    if route == Route::TunnelConnect && bearer(req.headers().get("authorization")?.as_deref()).is_none() {
        return unauthenticated("a machine connects with Authorization: Bearer <API token>");
    }
    let Some((user, proof)) = authenticate(&req, env).await? else {
        return if grpc {
            let status = GrpcStatus::new(Code::Unauthenticated, "send Authorization: Bearer <token>");
            grpc_web_error(&status, 401)
        } else {
            unauthenticated("sign in, or send Authorization: Bearer <token>")
        };
    };
    let kind = match req.method() {
        Method::Get | Method::Head if is_websocket_upgrade(&req)? => RequestKind::Upgrade,
        Method::Get | Method::Head => RequestKind::Read,
        _ if grpc => RequestKind::GrpcWeb,
        _ => RequestKind::Json,
    };
    if let Err(refusal) = check_browser(&req, env, proof, kind)? {
        return refuse(GrpcStatus::new(Code::PermissionDenied, refusal), 403);
    }
    let Some(backend) = route.backend() else {
        // The one user route no object serves.
        return Response::from_json(&serde_json::json!({"userId": user}));
    };
    let req = match capped(req).await? {
        Ok(req) => req,
        Err(status) => return refuse(status, 413),
    };
    forward(req, env, backend, &user, &[]).await
}

/// A request whose body is at most [`MAX_BODY_BYTES`], read here (as a stream that stops at the
/// limit) so that no route (nor the service behind it) meets a larger one; `Err` says the limit.
async fn capped(mut req: Request) -> worker::Result<Result<Request, GrpcStatus>> {
    if matches!(req.method(), Method::Get | Method::Head) {
        return Ok(Ok(req));
    }
    let body = match read_within(&mut req, MAX_BODY_BYTES).await? {
        Ok(body) => body,
        Err(too_large) => {
            let message = too_large.message("the request body", MAX_BODY_BYTES);
            return Ok(Err(GrpcStatus::new(Code::ResourceExhausted, message)));
        }
    };
    let mut init = RequestInit::new();
    init.with_method(req.method())
        .with_headers(req.headers().clone())
        .with_body(Some(worker::js_sys::Uint8Array::from(body.as_slice()).into()));
    Ok(Ok(Request::new_with_init(req.url()?.as_str(), &init)?))
}

/// [`check_browser_request`] for `req`; `Err` is the refusal's message.
fn check_browser(req: &Request, env: &Env, proof: Proof, kind: RequestKind) -> worker::Result<Result<(), String>> {
    if proof == Proof::Token || kind == RequestKind::Read {
        return Ok(Ok(()));
    }
    // A host the edge cannot vouch for has no origin to match: refused like a foreign Origin.
    let site = match site_origin(public_origin(env).as_deref(), req.url()?.as_str()) {
        Ok(site) => site,
        Err(message) => return Ok(Err(message)),
    };
    let headers = req.headers();
    Ok(check_browser_request(
        proof,
        kind,
        headers.get("origin")?.as_deref(),
        headers.get("content-type")?.as_deref(),
        &site,
    ))
}

/// `GET /api/{container,tunnel}/ws/{session}`: a ticket (`?ticket=`) or a session cookie proves
/// the user; the user's object then checks the session is theirs and burns the ticket, before
/// upgrading.
async fn websocket(req: Request, env: &Env, backend: Backend) -> worker::Result<Response> {
    let url = req.url()?;
    let ticket_text = url.query_pairs().find(|(k, _)| k == "ticket").map(|(_, v)| v.into_owned());
    let (user, ticket) = if let Some(text) = ticket_text {
        let secret = ticket_secret(env)?;
        match ticket::verify(secret.as_bytes(), &text, Date::now().as_millis()) {
            Ok(ticket) => (ticket.user_id.clone(), Some(ticket)),
            Err(error) => {
                return unauthenticated(&format!("{error}; ask POST {} for a new one", backend.ticket_path()))
            }
        }
    } else {
        match authenticate(&req, env).await? {
            Some((user, proof)) => match check_browser(&req, env, proof, RequestKind::Upgrade)? {
                Ok(()) => (user, None),
                Err(refusal) => return error_response(&GrpcStatus::new(Code::PermissionDenied, refusal)),
            },
            None => return unauthenticated("a WebSocket needs ?ticket= (from start or ws-ticket) or a session cookie"),
        }
    };
    match ticket {
        Some(ticket) => {
            let headers =
                [(TICKET_NONCE_HEADER, ticket.nonce.as_str()), (TICKET_SESSION_HEADER, ticket.session_id.as_str())];
            forward(req, env, backend, &user, &headers).await
        }
        None => forward(req, env, backend, &user, &[]).await,
    }
}

/// `/model/...`: a task's agent calling the model. Its task credential is its only proof, and
/// names the user's object that minted it, which checks it and relays the call. A request
/// without one is refused from its headers alone: its body is never read into the Worker (the
/// runtime discards what is left of it).
async fn model_gateway(req: Request, env: &Env) -> worker::Result<Response> {
    let credential = task_credential::from_headers(req.headers())?;
    match forward_by_credential(req, env, credential).await? {
        Ok(answer) => Ok(answer),
        Err(refusal) => model_error(401, "authentication_error", refusal),
    }
}

/// `/git/...`: a task's git reaches the user's object its credential names.
async fn git_gateway(req: Request, env: &Env) -> worker::Result<Response> {
    let credential = task_credential::read_git(req.headers().get("authorization")?.as_deref());
    match forward_by_credential(req, env, credential).await? {
        Ok(answer) => Ok(answer),
        Err(refusal) => git_error(401, refusal),
    }
}

/// `/cache/prepared[/...]`: a task's service reaches the user's object its credential names. A
/// `GET` is served from R2 by the Worker itself, once that object named what the credential
/// reaches (the data does not pass through the object).
async fn prepared_store(req: Request, env: &Env) -> worker::Result<Response> {
    let credential = task_credential::read_store(req.headers().get("authorization")?.as_deref());
    if req.method() == Method::Get && req.path() == STORE_PREFIX {
        return serve_prepared(req, env, credential).await;
    }
    match forward_by_credential(req, env, credential).await? {
        Ok(answer) => Ok(answer),
        Err(refusal) => store_error(401, refusal),
    }
}

/// A store `GET`: the object says which R2 key the credential reaches; the Worker streams it.
async fn serve_prepared(
    req: Request,
    env: &Env,
    credential: Result<task_credential::TaskCredential, &'static str>,
) -> worker::Result<Response> {
    let authorization = req.headers().get("authorization")?.unwrap_or_default();
    let mut init = RequestInit::new();
    init.with_method(Method::Get);
    let mut ask = Request::new_with_init(&Internal::PreparedObject.url(), &init)?;
    ask.headers_mut()?.set("authorization", &authorization)?;
    let mut answer = match forward_by_credential(ask, env, credential).await? {
        Ok(answer) => answer,
        Err(refusal) => return store_error(401, refusal),
    };
    if answer.status_code() != 200 {
        return Ok(answer);
    }
    let reached: serde_json::Value = answer.json().await?;
    let (Some(key), Ok(bucket)) = (reached["objectKey"].as_str(), env.bucket("ENVIRONMENT_CACHE")) else {
        return store_error(503, "this deployment keeps no prepared workspaces");
    };
    let settings = StoreSettings::read(|name| env.var(name).ok().map(|v| v.to_string()));
    serve_kept(&bucket, key, settings.max_age_ms).await
}

/// Hands a gateway call (model, git or store) to the object its `credential` names, without the
/// internal headers a client may have sent; or why not, for the gateway's own 401.
async fn forward_by_credential(
    req: Request,
    env: &Env,
    credential: Result<task_credential::TaskCredential, &'static str>,
) -> worker::Result<Result<Response, &'static str>> {
    let credential = match credential {
        Ok(credential) => credential,
        Err(why) => return Ok(Err(why)),
    };
    let namespace = env.durable_object(Backend::Container.binding())?;
    let Ok(id) = namespace.id_from_string(&credential.object_id) else {
        return Ok(Err("this task credential is unknown"));
    };
    let mut forwarded = req.clone_mut()?;
    for name in INTERNAL_HEADERS {
        forwarded.headers_mut()?.delete(name)?;
    }
    Ok(Ok(id.get_stub()?.fetch_with_request(forwarded).await?))
}

/// Admin routes: guarded by the admin secret.
async fn admin(mut req: Request, env: &Env, route: AdminRoute) -> worker::Result<Response> {
    if !auth::is_admin(&req, env)? {
        return unauthenticated("admin routes need Authorization: Bearer <ADMIN_SECRET>");
    }
    let internal = match route {
        AdminRoute::CreateToken => return auth::create_token(req, env).await,
        AdminRoute::RevokeToken(token_id) => return auth::revoke_token(&token_id, env).await,
        AdminRoute::GrantCredits => Internal::Grant,
        AdminRoute::RunMeter => Internal::Alarm,
        AdminRoute::Storage => Internal::Storage,
        // Benchmarks replay a task recorded straight into the service's work directory: this
        // records it as the user's, which only a start through the edge does otherwise.
        AdminRoute::AdoptTask if bench::routes_enabled(env) => Internal::AdoptTask,
        AdminRoute::AdoptTask => return not_found(&req.path()),
    };
    let (user, init) = if internal == Internal::Storage {
        let user = req.url()?.query_pairs().find(|(k, _)| k == "userId").map(|(_, v)| v.into_owned());
        (user, RequestInit::new())
    } else {
        let body: serde_json::Value = req.json().await.unwrap_or_default();
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_body(Some(body.to_string().into()));
        (body["userId"].as_str().map(str::to_string), init)
    };
    let Some(user) = user.filter(|u| crate::front::credentials::valid_user_id(u)) else {
        return error_response(&GrpcStatus::new(Code::InvalidArgument, "userId is required"));
    };
    let forwarded = Request::new_with_init(&internal.url(), &init)?;
    forward(forwarded, env, Backend::Container, &user, &[]).await
}

/// Sends the request to `user`'s Durable Object of `backend`, naming the user (and any verified
/// ticket) in internal headers, after removing any the client sent.
pub(crate) async fn forward(
    req: Request,
    env: &Env,
    backend: Backend,
    user: &str,
    extra: &[(&str, &str)],
) -> worker::Result<Response> {
    let mut forwarded = req.clone_mut()?;
    let headers = forwarded.headers_mut()?;
    for name in INTERNAL_HEADERS {
        headers.delete(name)?;
    }
    headers.set(USER_HEADER, user)?;
    for (name, value) in extra {
        headers.set(name, value)?;
    }
    let stub = env.durable_object(backend.binding())?.id_from_name(user)?.get_stub()?;
    stub.fetch_with_request(forwarded).await
}
