//! The model gateway, the user's object's side: the real model key stays a Worker secret, and a
//! task's agent calls the model through here with the credential the object minted for that
//! task ([`super::task_credential`], kept in [`grants`]). Each call is checked (known, not revoked, its task
//! not ended), relayed to `MODEL_API_URL` with the real key, and its reply streamed back as it
//! arrives (server-sent events are not buffered), its tokens counted on the way ([`usage`]).
//! Revoking a task's credential ends its calls in flight.

pub mod grants;
pub mod usage;

use std::{cell::RefCell, rc::Rc};

use autopilot_contract::v1::ModelAccess;
use futures::StreamExt;
use percent_encoding::percent_decode_str;
use worker::{AbortController, Fetch, Headers, Method, Request, RequestInit, Response};

use self::{
    grants::{Grant, ModelGrants},
    usage::UsageMeter,
};
use super::{
    git_gateway::targets::GitTargets,
    now_ms,
    task_credential::{self as credential, hash, Gateway as CredentialFor},
    AutopilotContainer,
};
use crate::{
    entropy::random_bytes,
    front::body_limit::{discard, read_within},
    grpc_web::{Code, GrpcStatus},
};

/// The path prefix the gateway is served under; what follows is the Messages API's own path.
pub const GATEWAY_PREFIX: &str = "/model";
/// Largest request body relayed (a long conversation is a few MiB).
const MAX_CALL_BYTES: usize = 32 << 20;

/// Request headers not relayed: the caller's credential, and what the runtime sets itself.
const NOT_RELAYED: [&str; 11] = [
    "x-api-key",
    "authorization",
    "host",
    "content-length",
    "cookie",
    "connection",
    "accept-encoding",
    "true-client-ip",
    "x-real-ip",
    "forwarded",
    "via",
];

/// The Messages API path the gateway relays for `method` `path` (after [`GATEWAY_PREFIX`],
/// still percent-encoded), decoded; `None` for anything else. Relayed: what the agent CLI calls
/// (messages, streamed or not, token counting, the model list and one model by a plain id) and
/// nothing else the key could do (batches, files, ...: work that would outlive the task). The
/// path is compared after decoding, and a model id must be a plain id: whether a hop upstream
/// decodes `%2F` (`/v1/models/..%2Fmessages%2Fbatches`) is not ours to decide.
pub fn relayed(method: &Method, path: &str) -> Option<String> {
    let decoded = percent_decode_str(path).decode_utf8().ok()?;
    let plain_id = |id: &str| {
        !id.is_empty()
            && id != "."
            && id != ".."
            && id.chars().all(|c| c.is_ascii_alphanumeric() || "._:@-".contains(c))
    };
    let relayed = match (method, decoded.as_ref()) {
        (Method::Post, "/v1/messages" | "/v1/messages/count_tokens") => true,
        (Method::Get, "/v1/models") => true,
        (Method::Get, p) => p.strip_prefix("/v1/models/").is_some_and(plain_id),
        _ => false,
    };
    relayed.then(|| decoded.into_owned())
}

/// A call in flight, so that revoking its credential ends it.
pub struct ModelCall {
    pub task_id: Option<String>,
    /// Aborts the upstream fetch; taken when the call is revoked.
    abort: RefCell<Option<AbortController>>,
}

impl ModelCall {
    fn revoke(&self) {
        if let Some(abort) = self.abort.borrow_mut().take() {
            abort.abort();
        }
    }

    fn revoked(&self) -> bool {
        self.abort.borrow().is_none()
    }
}

/// One relayed call's bookkeeping: its tokens go to its credential (once its reply began), and
/// it leaves the calls in flight, when it is dropped (the fetch failed, or its reply stream
/// ended, was cut or was revoked).
struct CallUsage {
    gateway: Rc<Gateway>,
    hash: String,
    call: Rc<ModelCall>,
    meter: Option<UsageMeter>,
}

impl Drop for CallUsage {
    fn drop(&mut self) {
        if let (Some(meter), Some(grants)) = (self.meter.take(), &self.gateway.grants) {
            if let Err(e) = grants.add_usage(&self.hash, meter.finish()) {
                worker::console_warn!("counting a model call's tokens failed: {e}");
            }
        }
        self.gateway.calls.borrow_mut().retain(|c| !Rc::ptr_eq(c, &self.call));
    }
}

/// What a refused call hears: 401 (or the status given) with an error in the Messages API's
/// shape, so the CLI shows the message.
pub fn model_error(status: u16, kind: &str, message: &str) -> worker::Result<Response> {
    let body = serde_json::json!({"type": "error", "error": {"type": kind, "message": message}});
    Ok(Response::from_json(&body)?.with_status(status))
}

impl AutopilotContainer {
    /// Whether a model call may be relayed, from its headers and path alone: its credential's
    /// grant, the credential's hash and the upstream path; or the refusal (401 for a credential
    /// that is unknown, revoked or of an ended task; 404 for what is not relayed).
    fn check_call(&self, req: &Request) -> worker::Result<Result<(Grant, String, String), worker::Result<Response>>> {
        let refuse = |status: u16, kind: &str, message: &str| Ok(Err(model_error(status, kind, message)));
        let credential = match credential::from_headers(req.headers())? {
            Ok(credential) => credential,
            Err(why) => return refuse(401, "authentication_error", why),
        };
        let grant = match self.live_grant(&credential.hash)? {
            Ok(grant) => grant,
            Err(why) => return refuse(401, "authentication_error", why),
        };
        let url = req.url()?;
        let Some(path) = relayed(&req.method(), url.path().strip_prefix(GATEWAY_PREFIX).unwrap_or(url.path())) else {
            let message = format!(
                "the model gateway relays POST /v1/messages, POST /v1/messages/count_tokens and GET \
                 /v1/models[/<model id>] only, not {} {}",
                req.method(),
                url.path()
            );
            return refuse(404, "not_found_error", &message);
        };
        Ok(Ok((grant, credential.hash, path)))
    }

    /// The grant of the task credential `hash` (of either gateway) if it may be used now: known,
    /// not revoked, and its task not ended (then it is revoked here); or why not.
    pub(in crate::container) fn live_grant(&self, hash: &str) -> worker::Result<Result<Grant, &'static str>> {
        let Some(grants) = &self.live.gateway.grants else { return Ok(Err("this task credential is unknown")) };
        let Some(grant) = grants.lookup(hash)?.filter(|grant| grant.usable(now_ms())) else {
            return Ok(Err("this task credential is unknown or revoked (a credential ends with its task)"));
        };
        if let Some(task_id) = grant.task_id.as_deref().filter(|id| self.archived_end(id).is_some()) {
            self.live.gateway.revoke(Some(task_id));
            return Ok(Err("this task credential is revoked: its task has ended"));
        }
        Ok(Ok(grant))
    }

    /// A credential for the task a Start is about to create, with where the agent reaches the
    /// gateway; `None` when the Worker holds no model key (the service then uses its own).
    pub(super) fn mint_model_access(&self) -> Result<Option<(ModelAccess, String)>, GrpcStatus> {
        let key = self.env.secret("ANTHROPIC_API_KEY");
        let (Some(grants), Ok(_)) = (&self.live.gateway.grants, key) else {
            return Ok(None);
        };
        let Some(base_url) = self.settings.model_gateway_url.clone() else {
            return Err(GrpcStatus::new(
                Code::Internal,
                "the edge holds the model key but knows no URL its gateway is reached at: set MODEL_GATEWAY_URL \
                 or PUBLIC_ORIGIN",
            ));
        };
        let internal = |e: worker::Error| GrpcStatus::new(Code::Internal, format!("minting a model credential: {e}"));
        let credential =
            credential::mint(CredentialFor::Model, &self.state.id().to_string(), &random_bytes(32).map_err(internal)?);
        let hash = hash(&credential);
        grants.mint(&hash, now_ms()).map_err(internal)?;
        Ok(Some((ModelAccess { base_url, api_key: credential }, hash)))
    }

    /// The Start the credential `hash` (of any gateway) was minted for answered: bound to its task, or revoked.
    pub(super) fn settle_model_access(&self, hash: &str, task_id: Option<&str>) {
        let Some(grants) = &self.live.gateway.grants else { return };
        let settled = match task_id {
            Some(task_id) => grants.bind(hash, task_id),
            None => grants.revoke(hash, now_ms()),
        };
        if let Err(e) = settled {
            worker::console_warn!("recording a model credential failed: {e}");
        }
    }

    /// `/model/...`: one model call of a task's agent. The call is checked from its headers
    /// before anything of its body is read (see [`Self::check_call`]), and the body is read as a
    /// stream that stops at the gateway's limit: a refused body is never buffered (what a refused
    /// caller still sends is read and dropped, see [`discard`]).
    pub(super) async fn model_call(&self, mut req: Request) -> worker::Result<Response> {
        let (grant, hash, path) = match self.check_call(&req)? {
            Ok(checked) => checked,
            Err(refusal) => {
                discard(&mut req).await?;
                return refusal;
            }
        };
        let body = match read_within(&mut req, MAX_CALL_BYTES).await? {
            Ok(body) => body,
            Err(too_large) => {
                return model_error(413, "request_too_large", &too_large.message("the model call", MAX_CALL_BYTES));
            }
        };
        let Ok(key) = self.env.secret("ANTHROPIC_API_KEY") else {
            return model_error(503, "api_error", "the edge holds no model key (ANTHROPIC_API_KEY)");
        };
        let url = req.url()?;
        let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
        let upstream_url = format!("{}{path}{query}", self.settings.model_api_url);
        let upstream_headers = Headers::new();
        for (name, value) in req.headers().entries() {
            if !NOT_RELAYED.contains(&name.as_str()) && !name.starts_with("cf-") && !name.starts_with("x-forwarded") {
                upstream_headers.set(&name, &value)?;
            }
        }
        upstream_headers.set("x-api-key", &key.to_string())?;
        let mut init = RequestInit::new();
        init.with_method(req.method()).with_headers(upstream_headers);
        if !matches!(req.method(), Method::Get | Method::Head) {
            init.with_body(Some(worker::js_sys::Uint8Array::from(body.as_slice()).into()));
        }
        let abort = AbortController::default();
        let signal = abort.signal();
        let call = Rc::new(ModelCall { task_id: grant.task_id.clone(), abort: RefCell::new(Some(abort)) });
        self.live.gateway.calls.borrow_mut().push(Rc::clone(&call));
        // The call's tokens are counted however its reply ends: whole, cut by the agent, or by
        // a revocation (then as far as it went).
        let mut usage = CallUsage { gateway: Rc::clone(&self.live.gateway), hash, call, meter: None };
        let upstream = Request::new_with_init(&upstream_url, &init)?;
        let mut reply = match Fetch::Request(upstream).send_with_signal(&signal).await {
            Ok(reply) => reply,
            Err(e) => return model_error(502, "api_error", &format!("the model API could not be reached: {e}")),
        };
        let content_type = reply.headers().get("content-type")?.unwrap_or_default();
        usage.meter = Some(UsageMeter::new(&content_type));
        let status = reply.status_code();
        let reply_headers = Headers::new();
        for (name, value) in reply.headers().entries() {
            let hop_or_account = matches!(
                name.as_str(),
                "content-length"
                    | "content-encoding"
                    | "set-cookie"
                    | "transfer-encoding"
                    | "anthropic-organization-id"
            );
            if !hop_or_account {
                reply_headers.set(&name, &value)?;
            }
        }
        let reply_body = reply.stream()?.map(move |chunk| {
            if usage.call.revoked() {
                return Err(worker::Error::RustError("the task's model credential was revoked".into()));
            }
            let bytes = chunk?;
            if let Some(meter) = usage.meter.as_mut() {
                meter.feed(&bytes);
            }
            Ok(bytes)
        });
        Ok(Response::from_stream(reply_body)?.with_status(status).with_headers(reply_headers))
    }
}

/// The model credentials this object minted (`None` if storage refused their table) and the
/// calls made with them in flight.
#[derive(Default)]
pub struct Gateway {
    pub grants: Option<ModelGrants>,
    /// What each git credential reaches (see [`crate::container::git_gateway`]).
    pub git_targets: Option<GitTargets>,
    calls: RefCell<Vec<Rc<ModelCall>>>,
}

impl Gateway {
    /// The gateway over the object's credential store; without it (logged), no credentials.
    pub fn open(sql: worker::SqlStorage) -> Gateway {
        let sql: Rc<dyn crate::archive::sql::Sql> = Rc::new(sql);
        let grants = ModelGrants::open(Rc::clone(&sql))
            .map_err(|e| worker::console_error!("the task credentials could not be opened: {e}"))
            .ok();
        let git_targets = GitTargets::open(sql)
            .map_err(|e| worker::console_error!("the git credentials' targets could not be opened: {e}"))
            .ok();
        Gateway { grants, git_targets, calls: RefCell::default() }
    }

    /// Revokes the credentials of `task_id` (it ended), or of every task (`None`: the container
    /// stopped or was lost), and ends their calls in flight.
    pub fn revoke(&self, task_id: Option<&str>) {
        if let Some(grants) = &self.grants {
            let revoked = match task_id {
                Some(task_id) => grants.revoke_task(task_id, now_ms()),
                None => grants.revoke_all(now_ms()),
            };
            if let Err(e) = revoked {
                worker::console_warn!("revoking model credentials failed: {e}");
            }
        }
        let ends =
            |call: &Rc<ModelCall>| task_id.is_none() || call.task_id.is_none() || call.task_id.as_deref() == task_id;
        // Taken out first: a call's stream, ended by its revocation, leaves this list itself.
        let ending: Vec<Rc<ModelCall>> = {
            let mut calls = self.calls.borrow_mut();
            let (ending, going_on) = calls.drain(..).partition(|call| ends(call));
            *calls = going_on;
            ending
        };
        ending.iter().for_each(|call| call.revoke());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_agent_calls_is_relayed() {
        for (method, path) in [
            (Method::Post, "/v1/messages"),
            (Method::Post, "/v1/messages/count_tokens"),
            (Method::Get, "/v1/models"),
            (Method::Get, "/v1/models/claude-sonnet-4-5"),
            (Method::Get, "/v1/models/claude-3-5-sonnet@20241022"),
        ] {
            assert_eq!(relayed(&method, path).as_deref(), Some(path), "{method:?} {path}");
        }
        for (method, path) in [
            (Method::Post, "/v1/messages/batches"),
            (Method::Get, "/v1/messages"),
            (Method::Post, "/v1/files"),
            (Method::Get, "/v1/models/a/b"),
            (Method::Delete, "/v1/models/x"),
            (Method::Post, "/v1/organizations/api_keys"),
        ] {
            assert_eq!(relayed(&method, path), None, "{method:?} {path}");
        }
    }

    #[test]
    fn an_encoded_path_is_compared_decoded_and_a_model_id_must_be_plain() {
        for path in [
            "/v1/models/..%2Fmessages%2Fbatches",
            "/v1/models/..%2fmessages%2fbatches",
            "/v1/models/%2E%2E",
            "/v1/models/..",
            "/v1/models/a%20b",
            "/v1/models/a%00",
            "/v1/models/%ff",
            "/v1/models/a?b",
        ] {
            assert_eq!(relayed(&Method::Get, path), None, "{path}");
        }
        assert_eq!(relayed(&Method::Post, "/v1/%6Dessages").as_deref(), Some("/v1/messages"), "relayed decoded");
        assert_eq!(relayed(&Method::Post, "/v1/messages%2Fbatches"), None);
    }
}
