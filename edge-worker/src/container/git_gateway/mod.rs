//! The git gateway, the user's object's side (a sibling of the model gateway): a task's git
//! reaches its GitHub repository through the edge with a credential of its own, never a GitHub
//! token. Pure: git's pkt-line framing ([`pkt_line`]), what a task's push may do, with the refusal
//! git prints ([`push_policy`]), which URLs are GitHub repositories and the gateway's paths
//! ([`repository`]); in storage: what each credential reaches ([`targets`]); at a Start, a task
//! on GitHub pointed at the gateway with a credential of its own ([`github_task`]). Here: the
//! relay of git's calls, each checked (credential, repository, and every ref a push updates).

pub mod github_task;
pub mod pkt_line;
pub mod push_policy;
pub mod repository;
pub mod targets;

use base64::{engine::general_purpose::STANDARD, Engine};
use futures::{stream, StreamExt};
use worker::{
    js_sys::Uint8Array,
    wasm_bindgen::{JsCast, JsValue},
    Fetch, Headers, Request, RequestInit, Response, ResponseBody,
};

use self::{
    push_policy::{read_start, refusal_report, verdicts, Start},
    repository::{gateway_call, GitCall},
    targets::Target,
};
use super::{task_credential, AutopilotContainer};

/// Request headers git's smart HTTP needs relayed (everything else stays here).
const RELAYED: [&str; 5] = ["content-type", "accept", "git-protocol", "content-encoding", "user-agent"];

/// An answer git shows: the status, and `message` as text (git prints it after "remote:"); a 401
/// asks for Basic credentials, as git expects.
/// How much of a refused push's body is read (and dropped) before the refusal is answered.
const DRAINED_AT_MOST: usize = 64 << 20;

/// Reads and drops what is left of a request body (at most `limit` bytes): a refusal answered
/// while the client still sends breaks the connection under an HTTP/1.1 proxy (`wrangler dev`'s
/// answers the next request on it with 503), and git then prints that instead of the refusal.
async fn drain(body: &mut worker::ByteStream, limit: usize) {
    let mut read = 0;
    while read < limit {
        match body.next().await {
            Some(Ok(chunk)) => read += chunk.len(),
            _ => return,
        }
    }
}

pub fn git_error(status: u16, message: &str) -> worker::Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "text/plain; charset=utf-8")?;
    if status == 401 {
        headers.set("www-authenticate", "Basic realm=\"autopilot git gateway\"")?;
    }
    Ok(Response::ok(format!("{message}\n"))?.with_status(status).with_headers(headers))
}

impl AutopilotContainer {
    /// `/git/<owner>/<name>.git/...`: one smart-HTTP call of a task's git, relayed to the task's
    /// repository on GitHub with the user's token once its credential, repository and (for a
    /// push) every ref it updates are checked.
    pub(super) async fn git_call(&self, mut req: Request) -> worker::Result<Response> {
        let url = req.url()?;
        let (repository, call) = match gateway_call(req.method().as_ref(), url.path(), url.query()) {
            Ok(found) => found,
            Err(message) => return git_error(404, &message),
        };
        let target = match self.git_target(req.headers().get("authorization")?.as_deref())? {
            Ok(target) => target,
            Err(why) => return git_error(401, why),
        };
        // Another repository is as absent as one that does not exist.
        if !repository.is(&target.repository) {
            return git_error(404, "Repository not found.");
        }
        let token = match self.live.github.github() {
            Ok(github) => self.live.github.token(&github).await.map(|(token, _)| (github, token)),
            Err(status) => Err(status),
        };
        let (github, token) = match token {
            Ok(found) => found,
            Err(status) => return git_error(403, &status.message),
        };
        let body: Option<JsValue> = match call {
            GitCall::Refs { .. } => None,
            GitCall::UploadPack => req.inner().body().map(JsValue::from),
            GitCall::ReceivePack => match self.checked_push(&mut req, &target).await? {
                Ok(body) => Some(body),
                Err(refused) => return Ok(refused),
            },
        };
        let headers = Headers::new();
        for name in RELAYED {
            if let Some(value) = req.headers().get(name)? {
                headers.set(name, &value)?;
            }
        }
        let basic = STANDARD.encode(format!("x-access-token:{token}"));
        headers.set("authorization", &format!("Basic {basic}"))?;
        let mut init = RequestInit::new();
        init.with_method(req.method()).with_headers(headers).with_body(body);
        let upstream_url = format!("{}/{}.git/{}", github.url, target.repository, call.upstream_path());
        let upstream = match Fetch::Request(Request::new_with_init(&upstream_url, &init)?).send().await {
            Ok(upstream) => upstream,
            Err(e) => return git_error(502, &format!("GitHub could not be reached: {e}")),
        };
        let reply_headers = Headers::new();
        for name in ["content-type", "cache-control", "expires", "pragma"] {
            if let Some(value) = upstream.headers().get(name)? {
                reply_headers.set(name, &value)?;
            }
        }
        let status = upstream.status_code();
        // GitHub's body is handed on as the platform's own stream: a clone's pack never passes
        // through wasm (copying each chunk in and out halved the throughput).
        let body = match upstream.body() {
            ResponseBody::Stream(stream) => ResponseBody::Stream(stream.clone()),
            _ => ResponseBody::Empty,
        };
        Ok(Response::from_body(body)?.with_status(status).with_headers(reply_headers))
    }

    /// The target of the git credential in `authorization`, if it is live; or why not.
    fn git_target(&self, authorization: Option<&str>) -> worker::Result<Result<Target, &'static str>> {
        let credential = match task_credential::read_git(authorization) {
            Ok(credential) => credential,
            Err(why) => return Ok(Err(why)),
        };
        if let Err(why) = self.live_grant(&credential.hash)? {
            return Ok(Err(why));
        }
        let Some(targets) = &self.live.gateway.git_targets else { return Ok(Err("this task credential is unknown")) };
        Ok(targets.get(&credential.hash)?.ok_or("this task credential reaches no repository"))
    }

    /// A push's body to relay, once its commands are read and allowed (its start, then the rest
    /// as it arrives); or git's report refusing it.
    async fn checked_push(&self, req: &mut Request, target: &Target) -> worker::Result<Result<JsValue, Response>> {
        let mut body = req.stream()?;
        let mut start = Vec::new();
        let push = loop {
            match read_start(&start) {
                Ok(Start::NeedMore) => match body.next().await {
                    Some(chunk) => start.extend(chunk?),
                    None => return Ok(Err(git_error(400, "the push ends before its commands do")?)),
                },
                Ok(Start::Probe) => break None,
                Ok(Start::Push(push)) => break Some(push),
                Err(message) => {
                    worker::console_warn!("git gateway: refused a push that is not one: {message}");
                    drain(&mut body, DRAINED_AT_MOST).await;
                    return Ok(Err(git_error(400, &message)?));
                }
            }
        };
        if let Some(push) = push {
            let verdicts = verdicts(&push, &target.branch);
            if verdicts.iter().any(Option::is_some) {
                drain(&mut body, DRAINED_AT_MOST).await;
                let headers = Headers::new();
                headers.set("content-type", "application/x-git-receive-pack-result")?;
                let report = refusal_report(&push, &verdicts);
                return Ok(Err(Response::from_bytes(report)?.with_headers(headers)));
            }
        }
        let chunks = stream::once(async move { Ok::<Vec<u8>, worker::Error>(start) }).chain(body);
        let js_chunks = chunks.map(|chunk| {
            chunk
                .map(|bytes| JsValue::from(Uint8Array::from(bytes.as_slice())))
                .map_err(|e| JsValue::from_str(&e.to_string()))
        });
        let readable = wasm_streams::ReadableStream::from_stream(js_chunks).into_raw();
        Ok(Ok(readable.unchecked_into::<JsValue>()))
    }
}
