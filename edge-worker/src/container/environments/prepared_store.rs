//! The prepared store: where a container's prepared workspaces outlive it, so a task in a new
//! container (after an idle stop, a crash, a redeploy) starts from what an earlier container's
//! setup prepared (`WORKSPACE_ORIGIN_RESTORED`). They are R2 objects in the bucket
//! `ENVIRONMENT_CACHE`, one per repository and revision of each of the user's environments
//! ([`object_key`]), kept at most `ENVIRONMENT_CACHE_HOURS` and `ENVIRONMENT_CACHE_MAX_MB`.
//!
//! A Start whose environment has a setup script gets a store of its own in its environment
//! (`Environment.prepared_store`): the URL `PREPARED_STORE_URL` (or `PUBLIC_ORIGIN` +
//! `/cache/prepared`) and a task credential (`apcc_...`, [`crate::container::task_credential`])
//! that reaches that one object while the task runs. The service reads it with one `GET` and
//! keeps a new one in parts (`PUT .../parts/{n}`, `POST .../complete`), streamed from the
//! request into R2's multipart upload, never held in the Worker's memory.

use autopilot_contract::v1::{Environment, PreparedStore};
use worker::{Bucket, Method, Request, Response, UploadedPart};

use super::{
    definition::repository_key,
    prepared_targets::{check_complete, check_part, environment_prefix, expired, object_key, PreparedTargets, Target},
};
use crate::{
    container::{now_ms, task_credential, AutopilotContainer},
    entropy::random_bytes,
    front::{
        body_limit::{discard, read_within},
        route::STORE_PREFIX,
    },
    grpc_web::{Code, GrpcStatus},
};

/// The size of each part but the last.
pub const PART_BYTES: u64 = 16 << 20;

/// The store's settings, read from the vars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// Where a task's service reaches the store; `None`: no store (prepared workspaces stay in
    /// their container).
    pub url: Option<String>,
    pub max_bytes: u64,
    pub max_age_ms: u64,
}

impl StoreSettings {
    /// From the vars: `PREPARED_STORE_URL` (else `PUBLIC_ORIGIN` + [`STORE_PREFIX`]),
    /// `ENVIRONMENT_CACHE_MAX_MB` (default 2048), `ENVIRONMENT_CACHE_HOURS` (default 72).
    pub fn read(var: impl Fn(&str) -> Option<String>) -> StoreSettings {
        let set = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let number = |name: &str, default: u64| set(name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(default);
        let url = set("PREPARED_STORE_URL")
            .or_else(|| set("PUBLIC_ORIGIN").map(|origin| format!("{}{STORE_PREFIX}", origin.trim_end_matches('/'))))
            .map(|url| url.trim_end_matches('/').to_string());
        StoreSettings {
            url,
            max_bytes: number("ENVIRONMENT_CACHE_MAX_MB", 2048).saturating_mul(1_000_000),
            max_age_ms: number("ENVIRONMENT_CACHE_HOURS", 72).saturating_mul(3_600_000),
        }
    }
}

/// The store's part of the user's object.
pub struct PreparedStoreArea {
    pub bucket: Bucket,
    pub targets: PreparedTargets,
    pub settings: StoreSettings,
}

impl PreparedStoreArea {
    /// Removes every prepared workspace of `environment` (it was edited, reset or deleted).
    pub async fn forget(&self, object_id: &str, environment: &str) {
        let prefix = environment_prefix(object_id, environment);
        let listed = self.bucket.list().prefix(prefix).execute().await;
        let keys: Vec<String> = match listed {
            Ok(objects) => objects.objects().iter().map(|object| object.key()).collect(),
            Err(e) => return worker::console_warn!("listing the prepared workspaces of {environment} failed: {e}"),
        };
        if !keys.is_empty() {
            if let Err(e) = self.bucket.delete_multiple(keys).await {
                worker::console_warn!("removing the prepared workspaces of {environment} failed: {e}");
            }
        }
    }
}

/// A store call's refusal: `{"error": {"code", "message"}}` with the HTTP status.
pub fn store_error(status: u16, message: &str) -> worker::Result<Response> {
    let code = match status {
        401 => "UNAUTHENTICATED",
        404 => "NOT_FOUND",
        409 => "FAILED_PRECONDITION",
        411 | 400 => "INVALID_ARGUMENT",
        413 => "RESOURCE_EXHAUSTED",
        _ => "UNAVAILABLE",
    };
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    Ok(Response::from_json(&body)?.with_status(status))
}

impl AutopilotContainer {
    /// Gives `environment` (a Start's, on `repository_url`) a store of its own, if it has a
    /// setup script to keep and this deployment a store; answers the credential's hash, which
    /// the Start's answer binds to its task (or revokes).
    pub(in crate::container) fn attach_prepared_store(
        &self,
        environment: &mut Environment,
        repository_url: &str,
    ) -> Result<Option<String>, GrpcStatus> {
        let (Some(area), Some(grants)) = (&self.live.environments.prepared, &self.live.gateway.grants) else {
            return Ok(None);
        };
        let (Some(url), Some(repository)) = (&area.settings.url, repository_key(repository_url)) else {
            return Ok(None);
        };
        if environment.setup_script.is_empty() {
            return Ok(None);
        }
        let internal = |e: worker::Error| GrpcStatus::new(Code::Internal, format!("minting a store credential: {e}"));
        let object_id = self.state.id().to_string();
        let random = random_bytes(32).map_err(internal)?;
        let credential = task_credential::mint(task_credential::Gateway::Store, &object_id, &random);
        let hash = task_credential::hash(&credential);
        grants.mint(&hash, now_ms()).map_err(internal)?;
        let key = object_key(&object_id, &environment.name, environment.revision, &repository);
        area.targets.add(&hash, &key).map_err(internal)?;
        environment.prepared_store =
            Some(PreparedStore { url: url.clone(), token: credential, part_bytes: PART_BYTES });
        Ok(Some(hash))
    }

    /// `/cache/prepared/parts/{n}` and `/cache/prepared/complete`: a task's service keeping its
    /// prepared workspace (a `GET` the Worker serves itself). The credential is checked from the
    /// headers before any body is read.
    pub(in crate::container) async fn prepared_store_call(&self, mut req: Request) -> worker::Result<Response> {
        let checked = self.store_target(&req)?;
        let (hash, target, area) = match (checked, &self.live.environments.prepared) {
            (Ok((hash, target)), Some(area)) => (hash, target, area),
            (Err(why), _) => {
                discard(&mut req).await?;
                return store_error(401, why);
            }
            (Ok(_), None) => return store_error(503, "this deployment keeps no prepared workspaces"),
        };
        let path = req.path();
        let rest = path.strip_prefix(STORE_PREFIX).unwrap_or_default();
        match (req.method(), rest) {
            (Method::Put, part) if part.starts_with("/parts/") => match part["/parts/".len()..].parse::<u16>() {
                Ok(number) if number >= 1 => put_part(area, &hash, &target, number, req).await,
                _ => store_error(400, "a part's number is 1 to 10000"),
            },
            (Method::Post, "/complete") => {
                let body = read_within(&mut req, 1024).await?.unwrap_or_default();
                let parts = serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|b| b["parts"].as_u64());
                match parts {
                    Some(parts) => complete(area, &hash, &target, parts).await,
                    None => store_error(400, r#"the body is {"parts": <how many were sent>}"#),
                }
            }
            (method, _) => {
                discard(&mut req).await?;
                // A GET never comes here: the Worker serves it (`serve_kept`).
                let served = format!("GET {STORE_PREFIX}, PUT .../parts/{{n}} and POST .../complete");
                store_error(404, &format!("the prepared store serves {served}, not {method} {path}"))
            }
        }
    }

    /// `/internal/prepared-object`: the R2 key the store credential `req` presents reaches, for
    /// the Worker to serve a `GET` itself ([`serve_kept`]); or the 401 refusal.
    pub(in crate::container) fn prepared_object_route(&self, req: &Request) -> worker::Result<Response> {
        match self.store_target(req)? {
            Ok((_, target)) => Response::from_json(&serde_json::json!({"objectKey": target.object_key})),
            Err(why) => store_error(401, why),
        }
    }

    /// The store credential `req` presents, if usable now, and what it reaches; or why not.
    fn store_target(&self, req: &Request) -> worker::Result<Result<(String, Target), &'static str>> {
        let credential = match task_credential::read_store(req.headers().get("authorization")?.as_deref()) {
            Ok(credential) => credential,
            Err(why) => return Ok(Err(why)),
        };
        if let Err(why) = self.live_grant(&credential.hash)? {
            return Ok(Err(why));
        }
        let Some(area) = &self.live.environments.prepared else { return Ok(Err("this task credential is unknown")) };
        match area.targets.get(&credential.hash)? {
            Some(target) => Ok(Ok((credential.hash, target))),
            None => Ok(Err("this task credential reaches no prepared workspace")),
        }
    }
}

/// `GET`: the kept workspace at `object_key` of `bucket`, streamed from R2; 404 when none is
/// kept or it is older than `max_age_ms` (then it is removed). The Worker serves it itself, once
/// the object named the key ([`AutopilotContainer::prepared_object_route`]): under `wrangler
/// dev`, a body streamed back through the object came at 13-16 MB/s, from the Worker at 50-100.
pub async fn serve_kept(bucket: &Bucket, object_key: &str, max_age_ms: u64) -> worker::Result<Response> {
    let Some(object) = bucket.get(object_key).execute().await? else {
        return store_error(404, "no prepared workspace is kept for this task's repository and environment");
    };
    let uploaded_ms = object.uploaded().as_millis();
    if expired(uploaded_ms, now_ms(), max_age_ms) {
        bucket.delete(object_key).await?;
        return store_error(404, "the prepared workspace kept was older than ENVIRONMENT_CACHE_HOURS and is removed");
    }
    let size = object.size();
    let Some(body) = object.body() else { return store_error(404, "the prepared workspace kept has no body") };
    let mut response = Response::from_body(body.response_body()?)?;
    response.headers_mut().set("content-type", "application/x-tar")?;
    response.headers_mut().set("content-length", &size.to_string())?;
    Ok(response)
}

/// `PUT .../parts/{n}`: one part, its body streamed into R2's multipart upload.
async fn put_part(
    area: &PreparedStoreArea,
    hash: &str,
    target: &Target,
    number: u16,
    mut req: Request,
) -> worker::Result<Response> {
    let length = req.headers().get("content-length")?.and_then(|v| v.parse::<u64>().ok());
    let Some(length) = length else {
        discard(&mut req).await?;
        return store_error(411, "a part needs its Content-Length");
    };
    if let Err(refused) = check_part(target, number, length, PART_BYTES, area.settings.max_bytes) {
        discard(&mut req).await?;
        if refused.status == 413 && !target.upload_id.is_empty() {
            abort(area, hash, target).await;
        }
        return store_error(refused.status, &refused.message);
    }
    let upload = if number == 1 {
        if !target.upload_id.is_empty() {
            abort(area, hash, target).await;
        }
        area.bucket.create_multipart_upload(&target.object_key).execute().await?
    } else {
        area.bucket.resume_multipart_upload(&target.object_key, &target.upload_id)?
    };
    let upload_id = upload.upload_id().await;
    let body = req.inner().body();
    let sent = match body {
        Some(stream) => upload.upload_part(number, stream).await,
        None => upload.upload_part(number, Vec::new()).await,
    };
    let part = match sent {
        Ok(part) => part,
        Err(e) => {
            worker::console_warn!("a prepared workspace's part failed: {e}");
            return store_error(503, &format!("the part could not be stored: {e}"));
        }
    };
    let mut parts = if number == 1 { Vec::new() } else { target.parts.clone() };
    parts.push((part.part_number(), part.etag()));
    let bytes = if number == 1 { length } else { target.bytes + length };
    area.targets.set_upload(hash, &upload_id, &parts, bytes)?;
    Response::from_json(&serde_json::json!({"part": number, "bytes": bytes}))
}

/// `POST .../complete`: the upload becomes the kept workspace, replacing the one before.
async fn complete(area: &PreparedStoreArea, hash: &str, target: &Target, parts: u64) -> worker::Result<Response> {
    if let Err(refused) = check_complete(target, parts) {
        return store_error(refused.status, &refused.message);
    }
    let upload = area.bucket.resume_multipart_upload(&target.object_key, &target.upload_id)?;
    let uploaded = target.parts.iter().map(|(number, etag)| UploadedPart::new(*number, etag.clone()));
    let completed = upload.complete(uploaded).await;
    area.targets.set_upload(hash, "", &[], 0)?;
    match completed {
        Ok(object) => Response::from_json(&serde_json::json!({"bytes": object.size()})),
        Err(e) => store_error(503, &format!("the upload could not be completed: {e}")),
    }
}

/// Drops `target`'s upload in progress (R2 and the record). Best effort.
async fn abort(area: &PreparedStoreArea, hash: &str, target: &Target) {
    if let Ok(upload) = area.bucket.resume_multipart_upload(&target.object_key, &target.upload_id) {
        if let Err(e) = upload.abort().await {
            worker::console_warn!("aborting a prepared workspace's upload failed: {e}");
        }
    }
    if let Err(e) = area.targets.set_upload(hash, "", &[], 0) {
        worker::console_warn!("recording an aborted upload failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_at_the_public_origin_unless_named_and_its_limits_have_defaults() {
        let read = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            StoreSettings::read(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        };
        let none = read(&[]);
        assert_eq!((none.url, none.max_bytes, none.max_age_ms), (None, 2_048_000_000, 72 * 3_600_000));
        assert_eq!(
            read(&[("PUBLIC_ORIGIN", "https://a.example/")]).url.as_deref(),
            Some("https://a.example/cache/prepared")
        );
        let named = read(&[
            ("PUBLIC_ORIGIN", "https://a.example"),
            ("PREPARED_STORE_URL", "http://127.0.0.1:8787/cache/prepared/"),
            ("ENVIRONMENT_CACHE_MAX_MB", "5"),
            ("ENVIRONMENT_CACHE_HOURS", "1"),
        ]);
        assert_eq!(named.url.as_deref(), Some("http://127.0.0.1:8787/cache/prepared"));
        assert_eq!((named.max_bytes, named.max_age_ms), (5_000_000, 3_600_000));
    }
}
