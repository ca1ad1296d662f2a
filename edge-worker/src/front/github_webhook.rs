//! `POST /webhooks/github`: GitHub's deliveries for the App. Each is checked before anything
//! else happens: at most [`MAX_DELIVERY_BYTES`] (413), signed with `GITHUB_WEBHOOK_SECRET`
//! (401 otherwise, nothing done), GitHub's shape (400). A mention of the App's handle
//! (`GITHUB_APP_HANDLE`, default `autopilot`) on a pull request autopilot opened goes to the
//! object of the user whose task opened it (found by the KV index the object keeps,
//! [`pull_request_key`]), which takes it ([`crate::container::pull_requests::mentions`]).
//! Everything else is acknowledged (202) with the reason it asks nothing.

use serde_json::json;
use worker::{Env, Method, Request, RequestInit, Response};

use crate::{
    api_error::error_response,
    front::{
        auth::{kv_error, KV_BINDING},
        body_limit::read_within,
        route::{Backend, Internal},
    },
    github::webhook::{pull_request_key, read, signed_by, CommentKind, Delivery, MAX_DELIVERY_BYTES},
    grpc_web::{Code, GrpcStatus},
};

/// The App's handle when `GITHUB_APP_HANDLE` is not set.
const DEFAULT_HANDLE: &str = "autopilot";

fn acknowledged(why: &str) -> worker::Result<Response> {
    Ok(Response::from_json(&json!({"ignored": why}))?.with_status(202))
}

pub async fn receive(mut req: Request, env: &Env) -> worker::Result<Response> {
    let Some(secret) = env.secret("GITHUB_WEBHOOK_SECRET").ok().map(|s| s.to_string()).filter(|s| !s.is_empty()) else {
        let status = GrpcStatus::new(Code::Unimplemented, "GitHub webhooks are not set up on this deployment");
        return error_response(&status);
    };
    let body = match read_within(&mut req, MAX_DELIVERY_BYTES).await? {
        Ok(body) => body,
        Err(too_large) => {
            let status =
                GrpcStatus::new(Code::InvalidArgument, too_large.message("a webhook delivery", MAX_DELIVERY_BYTES));
            return Ok(error_response(&status)?.with_status(413));
        }
    };
    let signature = req.headers().get("x-hub-signature-256")?;
    if !signed_by(secret.as_bytes(), &body, signature.as_deref()) {
        let status = GrpcStatus::new(Code::Unauthenticated, "the delivery's X-Hub-Signature-256 is missing or wrong");
        return error_response(&status);
    }
    let event = req.headers().get("x-github-event")?.unwrap_or_default();
    let delivery = req.headers().get("x-github-delivery")?.unwrap_or_default();
    let payload: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(payload) => payload,
        Err(e) => return error_response(&GrpcStatus::new(Code::InvalidArgument, format!("not JSON: {e}"))),
    };
    let handle = env.var("GITHUB_APP_HANDLE").map(|v| v.to_string()).unwrap_or_default();
    let handle = if handle.trim().is_empty() { DEFAULT_HANDLE.to_string() } else { handle.trim().to_string() };
    if delivery.is_empty() || delivery.len() > 100 {
        return error_response(&GrpcStatus::new(Code::InvalidArgument, "X-GitHub-Delivery is missing"));
    }
    match read(&event, &payload, &handle) {
        Ok(Delivery::Mention(mention)) => {
            let kind = match mention.kind {
                CommentKind::Conversation => "conversation",
                CommentKind::Review => "review",
                CommentKind::Line { .. } => "line",
            };
            let handed = json!({
                "delivery": delivery,
                "repository": mention.repository,
                "number": mention.pull_number,
                "commentId": mention.comment_id,
                "kind": kind,
                "author": mention.author,
                "prompt": mention.prompt(),
            });
            hand_on(env, Internal::GitHubMention, &mention.repository, mention.pull_number, &handed).await
        }
        Ok(Delivery::FailedChecks(failed)) => {
            // Each pull request is its own owner's: a delivery for several is handed on to each.
            let mut answers = Vec::new();
            for number in &failed.pull_numbers {
                let handed = json!({
                    "delivery": format!("{delivery}#{number}"),
                    "repository": failed.repository,
                    "number": number,
                    "suiteId": failed.suite_id,
                    "headSha": failed.head_sha,
                });
                let mut answer = hand_on(env, Internal::GitHubChecks, &failed.repository, *number, &handed).await?;
                answers.push(answer.json::<serde_json::Value>().await.unwrap_or_default());
            }
            Response::from_json(&json!({ "pullRequests": answers }))
        }
        Ok(Delivery::Ignored(why)) => acknowledged(&why),
        Err(shape) => error_response(&GrpcStatus::new(Code::InvalidArgument, shape)),
    }
}

/// Hands `handed` on to the object of the user whose task opened `repository`'s pull request
/// `number` (the KV index); acknowledged without it when autopilot opened no such pull request.
async fn hand_on(
    env: &Env,
    internal: Internal,
    repository: &str,
    number: u64,
    handed: &serde_json::Value,
) -> worker::Result<Response> {
    let kv = env.kv(KV_BINDING)?;
    let owner = kv.get(&pull_request_key(repository, number)).text().await.map_err(kv_error)?;
    let Some(user) = owner else { return acknowledged("not a pull request autopilot opened") };
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(handed.to_string().into()));
    let request = Request::new_with_init(&internal.url(), &init)?;
    let stub = env.durable_object(Backend::Container.binding())?.id_from_name(&user)?.get_stub()?;
    stub.fetch_with_request(request).await
}
