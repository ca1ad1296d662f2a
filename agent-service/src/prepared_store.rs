//! The prepared workspace kept beyond this service (`Environment.prepared_store`: the edge's
//! R2), so that a task in a new container (after an idle stop, a crash, a redeploy) starts from
//! what an earlier container's setup prepared instead of running the setup again.
//!
//! The store speaks plain HTTP with the task's bearer credential, as the contract says: a tar
//! stream of the prepared workspace, fetched with one `GET` straight into `tar -x`, and kept in
//! parts (`PUT url/parts/{n}`, then `POST url/complete`), each read from `tar -c` into one
//! buffer of `part_bytes`, so neither direction holds the workspace in memory or on disk twice,
//! and no request passes the platform's cap on a request body. Thin glue over `tar` (busybox's
//! and GNU's alike) and reqwest.

use std::{path::Path, process::Stdio, time::Duration};

use autopilot_contract::v1::PreparedStore;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::{
    prepared_workspaces::CopyError,
    process_group::{spawn_group, terminate_group},
};

/// How long the store may take to answer before a call is given up (a part is at most 64 MiB).
const CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Most of `tar`'s error output kept for a message.
const MAX_TAR_ERROR_BYTES: u64 = 4096;

/// What a store call reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The workspace was unpacked; this many bytes of tar came.
    Restored(u64),
    /// The store keeps none for this task's key (or the one it kept was too old).
    NoneKept,
}

/// An HTTP client for prepared stores.
#[derive(Clone)]
pub struct PreparedStoreClient {
    http: reqwest::Client,
}

impl Default for PreparedStoreClient {
    fn default() -> PreparedStoreClient {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(CALL_TIMEOUT)
            .user_agent(concat!("autopilot-agent-service/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with these settings builds");
        PreparedStoreClient { http }
    }
}

impl PreparedStoreClient {
    /// Unpacks the workspace `store` keeps into `dest` (created; the caller removes what a
    /// failure left).
    ///
    /// # Errors
    /// Stopped, or why the store or tar failed, in words without the credential.
    pub async fn fetch(
        &self,
        store: &PreparedStore,
        dest: &Path,
        stop: &CancellationToken,
        grace: Duration,
    ) -> Result<Fetched, CopyError> {
        let reply = self
            .http
            .get(&store.url)
            .bearer_auth(&store.token)
            .send()
            .await
            .map_err(|e| failed(format!("the store could not be reached: {}", without_url(&e))))?;
        if reply.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(Fetched::NoneKept);
        }
        if !reply.status().is_success() {
            return Err(failed(refusal(reply).await));
        }
        std::fs::create_dir_all(dest).map_err(|e| failed(format!("could not make the workspace's directory: {e}")))?;
        let mut tar = tar_command(&["-x", "-f", "-", "-C"], dest);
        tar.stdin(Stdio::piped()).stdout(Stdio::null());
        let mut child = spawn_group(&mut tar).map_err(|e| failed(format!("could not run tar: {e}")))?;
        let said = read_errors(&mut child);
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let mut body = reply.bytes_stream();
        let mut received = 0u64;
        let streamed = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| format!("the store's answer broke off: {}", without_url(&e)))?;
                received += chunk.len() as u64;
                // tar stopping early (a bad archive) shows in its exit status and words below.
                if stdin.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            drop(stdin);
            Ok::<(), String>(())
        };
        let streamed = tokio::select! {
            biased;
            () = stop.cancelled() => {
                let _ = terminate_group(&mut child, grace).await;
                return Err(CopyError::Stopped);
            }
            streamed = streamed => streamed,
        };
        let status = child.wait().await.map_err(|e| failed(format!("tar failed: {e}")))?;
        streamed.map_err(failed)?;
        if !status.success() {
            return Err(failed(tar_failure(status, said.await.unwrap_or_default())));
        }
        Ok(Fetched::Restored(received))
    }

    /// Keeps the workspace at `source` in `store`, in parts; answers the bytes sent.
    ///
    /// # Errors
    /// Stopped, or why the store or tar failed (a workspace over the store's cap: its words).
    pub async fn keep(
        &self,
        store: &PreparedStore,
        source: &Path,
        stop: &CancellationToken,
        grace: Duration,
    ) -> Result<u64, CopyError> {
        let mut tar = tar_command(&["-c", "-f", "-", "-C"], source);
        tar.arg(".").stdin(Stdio::null()).stdout(Stdio::piped());
        let mut child = spawn_group(&mut tar).map_err(|e| failed(format!("could not run tar: {e}")))?;
        let said = read_errors(&mut child);
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let part_bytes = usize::try_from(store.part_bytes).unwrap_or(usize::MAX);
        let sent = async {
            let (mut part, mut sent) = (1u32, 0u64);
            loop {
                let mut buffer = Vec::with_capacity(part_bytes);
                (&mut stdout).take(part_bytes as u64).read_to_end(&mut buffer).await.map_err(|e| e.to_string())?;
                // The first part is sent even when empty, so the store knows the upload began.
                if buffer.is_empty() && part > 1 {
                    return Ok((part - 1, sent));
                }
                let last = buffer.len() < part_bytes;
                sent += buffer.len() as u64;
                self.call(self.http.put(format!("{}/parts/{part}", store.url)).bearer_auth(&store.token).body(buffer))
                    .await?;
                if last {
                    return Ok((part, sent));
                }
                part += 1;
            }
        };
        let sent: Result<(u32, u64), String> = tokio::select! {
            biased;
            () = stop.cancelled() => {
                let _ = terminate_group(&mut child, grace).await;
                return Err(CopyError::Stopped);
            }
            sent = sent => sent,
        };
        let (parts, bytes) = match sent {
            Ok(sent) => sent,
            Err(why) => {
                let _ = terminate_group(&mut child, grace).await;
                return Err(failed(why));
            }
        };
        let status = child.wait().await.map_err(|e| failed(format!("tar failed: {e}")))?;
        if !status.success() {
            return Err(failed(tar_failure(status, said.await.unwrap_or_default())));
        }
        let complete = serde_json::json!({ "parts": parts, "bytes": bytes });
        self.call(self.http.post(format!("{}/complete", store.url)).bearer_auth(&store.token).json(&complete))
            .await
            .map_err(failed)?;
        Ok(bytes)
    }

    /// Sends one store call; its refusal in words otherwise.
    async fn call(&self, request: reqwest::RequestBuilder) -> Result<(), String> {
        let reply = request.send().await.map_err(|e| format!("the store could not be reached: {}", without_url(&e)))?;
        match reply.status().is_success() {
            true => Ok(()),
            false => Err(refusal(reply).await),
        }
    }
}

fn failed(why: impl Into<String>) -> CopyError {
    CopyError::Failed(why.into())
}

/// `tar <args> <dir>`, with nothing of the service's environment but PATH.
fn tar_command(args: &[&str], dir: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("tar");
    command
        .args(args)
        .arg(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
        .env("LC_ALL", "C")
        .stderr(Stdio::piped());
    command
}

/// Reads what `child` writes to stderr, in the background.
fn read_errors(child: &mut tokio::process::Child) -> tokio::task::JoinHandle<String> {
    let stderr = child.stderr.take().expect("stderr is piped");
    tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.take(MAX_TAR_ERROR_BYTES).read_to_string(&mut text).await;
        text
    })
}

fn tar_failure(status: std::process::ExitStatus, said: String) -> String {
    match said.trim() {
        "" => format!("tar ended with {status}"),
        said => format!("tar: {said}"),
    }
}

/// A reqwest error's words without its URL (the store's URL names the user's object).
fn without_url(error: &reqwest::Error) -> String {
    let mut words = error.to_string();
    if let Some(url) = error.url() {
        words = words.replace(&format!(" ({url})"), "").replace(url.as_str(), "the store");
    }
    words
}

/// What a store that refused a call said: its status and the error's message from its JSON
/// body (`{"error": {"message": ...}}`), or the status alone.
async fn refusal(reply: reqwest::Response) -> String {
    let status = reply.status();
    let body = reply.text().await.unwrap_or_default();
    refusal_text(status.as_u16(), &body)
}

/// See [`refusal`]. Pure.
fn refusal_text(status: u16, body: &str) -> String {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|json| json["error"]["message"].as_str().map(str::to_string));
    match message {
        Some(message) => format!("the store answered {status}: {message}"),
        None => format!("the store answered {status}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::{
        body::Bytes,
        extract::{Path as UrlPath, State},
        http::{HeaderMap, StatusCode},
        routing::{get, post, put},
        Router,
    };

    use super::*;

    /// A store as the contract describes it, in memory: parts in order, then complete.
    #[derive(Default)]
    struct Store {
        parts: Vec<Vec<u8>>,
        kept: Option<Vec<u8>>,
        /// Most bytes a kept workspace may have.
        cap: usize,
    }

    type Shared = Arc<Mutex<Store>>;

    fn authorized(headers: &HeaderMap) -> bool {
        headers.get("authorization").is_some_and(|v| v == "Bearer apcc_test")
    }

    async fn start_store(cap: usize) -> (String, Shared) {
        let store: Shared = Arc::new(Mutex::new(Store { cap, ..Store::default() }));
        let app = Router::new()
            .route(
                "/cache/prepared",
                get(|State(store): State<Shared>, headers: HeaderMap| async move {
                    if !authorized(&headers) {
                        return Err(StatusCode::UNAUTHORIZED);
                    }
                    store.lock().unwrap().kept.clone().ok_or(StatusCode::NOT_FOUND)
                }),
            )
            .route(
                "/cache/prepared/parts/{n}",
                put(|State(store): State<Shared>, UrlPath(n): UrlPath<usize>, body: Bytes| async move {
                    let mut store = store.lock().unwrap();
                    if n == 1 {
                        store.parts.clear();
                    }
                    assert_eq!(n, store.parts.len() + 1, "parts come in order");
                    store.parts.push(body.to_vec());
                    if store.parts.iter().map(Vec::len).sum::<usize>() > store.cap {
                        let body = r#"{"error":{"code":"RESOURCE_EXHAUSTED","message":"over the cap"}}"#;
                        return (StatusCode::PAYLOAD_TOO_LARGE, body.to_string());
                    }
                    (StatusCode::OK, "{}".to_string())
                }),
            )
            .route(
                "/cache/prepared/complete",
                post(|State(store): State<Shared>| async move {
                    let mut store = store.lock().unwrap();
                    store.kept = Some(store.parts.concat());
                    "{}"
                }),
            )
            .with_state(Arc::clone(&store));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/cache/prepared", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, store)
    }

    #[tokio::test]
    async fn a_workspace_kept_in_parts_comes_back_whole_and_a_store_without_one_says_so() {
        let (url, store) = start_store(usize::MAX).await;
        let client = PreparedStoreClient::default();
        let stop = CancellationToken::new();
        let grace = Duration::from_secs(1);
        let kept = PreparedStore { url: url.clone(), token: "apcc_test".into(), part_bytes: 4096 };
        let work = tempfile::tempdir().unwrap();
        assert_eq!(client.fetch(&kept, &work.path().join("none"), &stop, grace).await, Ok(Fetched::NoneKept));

        let source = work.path().join("source");
        std::fs::create_dir_all(source.join("node_modules/dep")).unwrap();
        std::fs::write(source.join("node_modules/dep/index.js"), "x".repeat(10_000)).unwrap();
        std::os::unix::fs::symlink("dep/index.js", source.join("node_modules/link.js")).unwrap();
        let sent = client.keep(&kept, &source, &stop, grace).await.unwrap();
        assert!(store.lock().unwrap().parts.len() >= 3, "a 10 KB file in 4 KiB parts");
        assert_eq!(sent, store.lock().unwrap().kept.as_ref().unwrap().len() as u64);

        let dest = work.path().join("restored");
        assert_eq!(client.fetch(&kept, &dest, &stop, grace).await, Ok(Fetched::Restored(sent)));
        assert_eq!(std::fs::read_to_string(dest.join("node_modules/dep/index.js")).unwrap(), "x".repeat(10_000));
        assert_eq!(std::fs::read_link(dest.join("node_modules/link.js")).unwrap(), Path::new("dep/index.js"));

        let wrong = PreparedStore { token: "apcc_other".into(), ..kept };
        let refused = client.fetch(&wrong, &work.path().join("x"), &stop, grace).await;
        assert_eq!(refused, Err(CopyError::Failed("the store answered 401".into())));
    }

    #[tokio::test]
    async fn a_workspace_over_the_stores_cap_is_refused_in_its_words() {
        let (url, _store) = start_store(5000).await;
        let work = tempfile::tempdir().unwrap();
        std::fs::write(work.path().join("big"), "y".repeat(20_000)).unwrap();
        let store = PreparedStore { url, token: "apcc_test".into(), part_bytes: 4096 };
        let refused = PreparedStoreClient::default()
            .keep(&store, work.path(), &CancellationToken::new(), Duration::from_secs(1))
            .await;
        assert_eq!(refused, Err(CopyError::Failed("the store answered 413: over the cap".into())));
    }

    #[test]
    fn a_refusal_says_the_status_and_the_stores_own_words() {
        let body = r#"{"error":{"code":"RESOURCE_EXHAUSTED","message":"the prepared workspace is over 512 MB"}}"#;
        assert_eq!(refusal_text(413, body), "the store answered 413: the prepared workspace is over 512 MB");
        assert_eq!(refusal_text(502, "<html>bad gateway</html>"), "the store answered 502");
    }
}
