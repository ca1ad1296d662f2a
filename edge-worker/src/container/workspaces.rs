//! What a follow-up needs of a task whose container has gone (idle stop, crash, redeploy): the
//! task's workspace snapshot (its commits as a git bundle over its base commit, and the agent's
//! session transcript, from the service's ExportWorkspace), kept in the R2 bucket `WORKSPACES`
//! under `workspaces/<object id>/<task id>` once the task has ended (the object's id scopes it:
//! a task id is the service's, and a service answering with another user's id must not reach
//! that user's snapshot). A follow-up the new container cannot
//! place (NOT_FOUND for its parent) is started again with the snapshot as its `restore`.
//! Snapshots go with their tasks when the archive prunes them.

use autopilot_contract::v1::{ExportWorkspaceRequest, ExportWorkspaceResponse, Task, WorkspaceSnapshot};
use prost::Message;
use worker::wasm_bindgen_futures::spawn_local;

use super::live::Live;
use crate::container::agent_client::AgentClient;

fn key(live: &Live, task_id: &str) -> String {
    format!("workspaces/{}/{task_id}", live.object_id)
}

/// Keeps the ended `task`'s workspace snapshot, if the service has one to give (a task that
/// never got its repository has none).
pub async fn keep_workspace(live: &Live, client: &AgentClient, task: &Task) {
    let Some(bucket) = &live.workspaces else { return };
    let request = ExportWorkspaceRequest { task_id: task.task_id.clone() };
    let snapshot = match client.unary::<ExportWorkspaceResponse>("ExportWorkspace", &request).await {
        Ok(reply) => reply.snapshot,
        Err(status) => {
            worker::console_log!("no workspace kept for task {}: {}", task.task_id, status.message);
            None
        }
    };
    let Some(snapshot) = snapshot else { return };
    if let Err(e) = bucket.put(key(live, &task.task_id), snapshot.encode_to_vec()).execute().await {
        worker::console_warn!("keeping the workspace of task {} failed: {e}", task.task_id);
    }
}

/// The kept snapshot of `task_id`, if there is one.
pub async fn kept_workspace(live: &Live, task_id: &str) -> Option<WorkspaceSnapshot> {
    let bucket = live.workspaces.as_ref()?;
    let object = bucket.get(key(live, task_id)).execute().await.ok().flatten()?;
    let bytes = object.body()?.bytes().await.ok()?;
    WorkspaceSnapshot::decode(bytes.as_slice()).ok()
}

/// Deletes the snapshots of tasks the archive pruned, in the background.
pub fn forget_workspaces(live: &Live, task_ids: Vec<String>) {
    let Some(bucket) = live.workspaces.clone() else { return };
    if task_ids.is_empty() {
        return;
    }
    let keys: Vec<String> = task_ids.iter().map(|id| key(live, id)).collect();
    spawn_local(async move {
        if let Err(e) = bucket.delete_multiple(keys).await {
            worker::console_warn!("deleting pruned workspaces failed: {e}");
        }
    });
}
