//! The `autopilot.v1.Autopilot` gRPC service: validates requests ([`crate::validate`]), maps them
//! onto the task manager, and maps its answers onto gRPC statuses. No task logic and no request
//! rule lives here.

use std::{pin::Pin, sync::Arc};

use autopilot_contract::v1::{
    autopilot_server::Autopilot, CancelRequest, CancelResponse, ExportWorkspaceRequest, ExportWorkspaceResponse,
    GetDiffRequest, GetDiffResponse, ListTasksRequest, ListTasksResponse, StartRequest, StartResponse, StatusRequest,
    StatusResponse, StreamEventsRequest, StreamEventsResponse,
};
use futures::{stream, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::{
    delivery::read_diff,
    task::Task,
    task_manager::{StartError, TaskManager},
    validate::{validate_cancel_reason, validate_list_tasks, validate_start, validate_task_id, FieldError, Limits},
    workspace::ExportError,
};

/// Events read from the log per message on the internal channel.
const STREAM_BATCH: usize = 256;
/// Batches buffered per stream before the reader waits for the client.
const STREAM_BUFFER: usize = 4;

/// The gRPC face of a [`TaskManager`].
pub struct AutopilotApi {
    manager: Arc<TaskManager>,
    limits: Limits,
}

impl AutopilotApi {
    pub fn new(manager: Arc<TaskManager>, limits: Limits) -> Self {
        AutopilotApi { manager, limits }
    }

    /// The task a request names (empty: the running or most recent one).
    fn task(&self, task_id: &str) -> Result<Arc<Task>, Status> {
        validate_task_id(task_id).map_err(invalid)?;
        self.manager.find(task_id).ok_or_else(|| match task_id {
            "" => Status::not_found("no task has run on this service yet"),
            id => Status::not_found(format!("no task with id {id}")),
        })
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Autopilot for AutopilotApi {
    async fn start(&self, request: Request<StartRequest>) -> Result<Response<StartResponse>, Status> {
        let spec = validate_start(request.get_ref(), &self.limits).map_err(invalid)?;
        let task = self.manager.start(spec).map_err(|e| match e {
            StartError::AtLimit(_) => Status::resource_exhausted(e.to_string()),
            StartError::ShuttingDown => Status::unavailable(e.to_string()),
            // Word for word what any unknown id gets (the edge relies on it to retry with a restore).
            StartError::UnknownParent(_) => Status::not_found(e.to_string()),
            StartError::ParentRunning(_) | StartError::NoWorkspace(_) => Status::failed_precondition(e.to_string()),
            StartError::Invalid(error) => invalid(error),
            StartError::Io(_) => {
                tracing::error!(error = %e, "could not start a task");
                Status::internal(e.to_string())
            }
        })?;
        Ok(Response::new(StartResponse { task_id: task.id().to_string(), state: task.state() as i32 }))
    }

    async fn status(&self, request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let task = self.task(&request.get_ref().task_id)?;
        Ok(Response::new(StatusResponse { task: Some(task.snapshot()) }))
    }

    type StreamEventsStream = EventStream;

    async fn stream_events(&self, request: Request<StreamEventsRequest>) -> Result<Response<EventStream>, Status> {
        let task = self.task(&request.get_ref().task_id)?;
        let mut subscription = task.log().subscribe(request.get_ref().from_seq);
        let (tx, rx) = mpsc::channel::<Vec<Result<StreamEventsResponse, Status>>>(STREAM_BUFFER);
        tokio::spawn(async move {
            loop {
                let batch = tokio::select! {
                    batch = subscription.next_batch(STREAM_BATCH) => batch,
                    () = tx.closed() => return,
                };
                let items = match batch {
                    Ok(Some(events)) => {
                        events.into_iter().map(|event| Ok(StreamEventsResponse { event: Some(event) })).collect()
                    }
                    Ok(None) => return,
                    Err(error) => {
                        tracing::error!(task_id = task.id(), %error, "could not read the event log");
                        vec![Err(Status::internal(format!("could not read the event log: {error}")))]
                    }
                };
                let failed = items.last().is_some_and(|item: &Result<_, _>| item.is_err());
                // A failed send means the client has gone; stop reading for it.
                if tx.send(items).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx).flat_map(stream::iter))))
    }

    async fn cancel(&self, request: Request<CancelRequest>) -> Result<Response<CancelResponse>, Status> {
        let task_id = &request.get_ref().task_id;
        let reason = validate_cancel_reason(&request.get_ref().reason).map_err(invalid)?;
        let task = self.task(task_id)?;
        if task_id.is_empty() && task.state().is_final() {
            return Err(Status::failed_precondition("no task is running"));
        }
        let state = self.manager.cancel(&task, reason).await;
        Ok(Response::new(CancelResponse { task_id: task.id().to_string(), state: state as i32 }))
    }

    async fn get_diff(&self, request: Request<GetDiffRequest>) -> Result<Response<GetDiffResponse>, Status> {
        let task = self.task(&request.get_ref().task_id)?;
        // Only a diff the service recorded counts (the `diff` event sets the task's delivery): a
        // file the agent may have planted in the task directory is never served.
        let delivered = task.snapshot().delivery.is_some();
        let dir = task.dir().to_path_buf();
        let diff = tokio::task::spawn_blocking(move || if delivered { read_diff(&dir) } else { Ok(None) })
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|error| {
                tracing::error!(task_id = task.id(), %error, "could not read a task's diff");
                Status::internal(format!("could not read the task's diff: {error}"))
            })?;
        match diff {
            Some(diff) => Ok(Response::new(GetDiffResponse { diff: Some(diff) })),
            None if task.state().is_final() => Err(Status::not_found(format!(
                "task {} has no diff: it ended {} before its agent's work was delivered",
                task.id(),
                task.state().as_str_name().trim_start_matches("TASK_STATE_")
            ))),
            None => Err(Status::failed_precondition(format!(
                "task {} has no diff yet: it is computed once the agent has succeeded",
                task.id()
            ))),
        }
    }

    async fn export_workspace(
        &self,
        request: Request<ExportWorkspaceRequest>,
    ) -> Result<Response<ExportWorkspaceResponse>, Status> {
        let task_id = &request.get_ref().task_id;
        if task_id.is_empty() {
            return Err(Status::invalid_argument("task_id is required"));
        }
        let task = self.task(task_id)?;
        let snapshot = self.manager.export(&task).await.map_err(|e| match e {
            ExportError::Refused(why) => Status::failed_precondition(why),
            ExportError::Failed(why) => {
                tracing::error!(task_id = task.id(), error = %why, "could not export a task's workspace");
                Status::internal(format!("could not export the task's workspace: {why}"))
            }
        })?;
        Ok(Response::new(ExportWorkspaceResponse { snapshot: Some(snapshot) }))
    }

    async fn list_tasks(&self, request: Request<ListTasksRequest>) -> Result<Response<ListTasksResponse>, Status> {
        let page = validate_list_tasks(request.get_ref()).map_err(invalid)?;
        Ok(Response::new(self.manager.list(&page)))
    }
}

/// A rejected field as the gRPC status that says so.
fn invalid(error: FieldError) -> Status {
    Status::invalid_argument(error.to_string())
}
