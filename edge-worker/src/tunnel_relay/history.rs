//! The tunnel relay's side of the task archive ([`crate::archive`], the same store the container
//! object keeps): each task started through the relay is recorded as the user's, followed into
//! the archive by the relay's own subscription on the user's machine (resumed whenever the
//! machine reconnects), and answered from the archive once it has ended. So a tunnel task's
//! timeline, and the task list, stay readable while the user's machine is off.
//!
//! Answered here from the archive: the task list, tickets by task id, and an ended task's
//! Status, Cancel and events (or a running one's, with the machine offline).
//!
//! The follow keeps nothing in memory between frames (the relay hibernates): its events are
//! written once per machine message (the machine batches frames), and where a reply goes is
//! named by its routed request id ([`ReplyRoute::ArchiveEvents`], [`ReplyRoute::ArchiveEnd`]).

use std::{collections::HashMap, rc::Rc};

use autopilot_contract::v1::{
    client_frame::Request as ClientRequest, event::Payload, server_frame::Frame, ClientFrame, Event, ListTasksRequest,
    ListTasksResponse, ServerFrame, StartRequest, StartResponse, StatusRequest, StreamEventsRequest,
};
use prost::Message;
use worker::{Date, WebSocket};

use super::{TunnelRelay, NOT_CONNECTED};
use crate::{
    archive::replay::{replay_to_socket, Replayed},
    archive::task_list::started_summary,
    archive::task_scope::unknown_task,
    archive::Entry,
    bridge::SharedEvent,
    bridge::{encode_server_frame, end_frame, error_frame, Encoding, Rpc},
    front::route::Backend,
    front::sessions::Sessions,
    front::task_routes::TaskHome,
    grpc_web::{Code, GrpcStatus},
    socket::send,
    tunnel_relay::reply_route::ReplyRoute,
};

/// The events of one machine message for the archive, by task.
pub(super) type ArchiveBatch = HashMap<String, Vec<Event>>;

impl TunnelRelay {
    /// Starts a task on the user's machine (every path: the JSON route and a browser's frame)
    /// and records it as the user's, followed into the archive from now on.
    pub(super) async fn start_task(&self, request: StartRequest) -> worker::Result<Result<StartResponse, GrpcStatus>> {
        // The edge keeps no workspace of a tunnel task, and forwards no snapshot it did not keep.
        let mut request = StartRequest { restore: None, ..request };
        if let Err(status) = self.attach_environment(&mut request).await {
            return Ok(Err(status));
        }
        let reply = match self.ask_machine(ClientRequest::Start(request.clone())).await? {
            Ok(reply) => reply,
            Err(status) => return Ok(Err(status)),
        };
        Ok(match reply.frame {
            Some(Frame::Start(started)) => {
                self.archive_started(&started, &request).await?;
                Ok(started)
            }
            Some(Frame::Error(e)) => Err(GrpcStatus { code: e.code, message: e.message }),
            other => Err(GrpcStatus::new(
                Code::Internal,
                format!("the machine answered Start with an unexpected frame: {other:?}"),
            )),
        })
    }

    async fn archive_started(&self, started: &StartResponse, request: &StartRequest) -> worker::Result<()> {
        let archive = &self.archive;
        let now = Date::now().as_millis();
        let summary = started_summary(&started.task_id, started.state, request, now, &[]);
        if let Err(e) = archive.add(&summary, now) {
            worker::console_warn!("archiving tunnel task {} failed: {e}", started.task_id);
            return Ok(());
        }
        if let Some((machine, _)) = self.machine().await? {
            follow(&machine, &started.task_id, 1);
        }
        Ok(())
    }

    /// A machine just connected: every task whose end the archive lacks is followed again from
    /// its last archived event (events already archived are not stored twice).
    pub(super) fn follow_unended(&self, machine: &WebSocket) {
        match self.archive.unended() {
            Ok(tasks) => tasks.iter().for_each(|(task_id, last_seq)| follow(machine, task_id, last_seq + 1)),
            Err(e) => worker::console_warn!("reading the tunnel archive failed: {e}"),
        }
    }

    /// What the archive holds of `task_id` once it has ended (an empty id: the machine's latest,
    /// which only the machine knows).
    pub(super) fn archived_end(&self, task_id: &str) -> Option<Entry> {
        if task_id.is_empty() {
            return None;
        }
        self.archive.ended(task_id)
    }

    /// Whether the archive holds `task_id` at all (ended or not).
    pub(super) fn archive_holds(&self, task_id: &str) -> bool {
        self.archive.holds(task_id).unwrap_or(false)
    }

    /// Answers at the edge what needs no machine: Start (to archive it), the task list, and an
    /// ended task's Status, Cancel and events; with no machine connected, a running task's
    /// archived events and then why the rest cannot follow. `Some(rpc)`: the machine answers.
    pub(super) async fn answer_here(
        &self,
        ws: &WebSocket,
        request_id: &str,
        rpc: Rpc,
        encoding: Encoding,
        machine_connected: bool,
    ) -> worker::Result<Option<Rpc>> {
        let reply = |frame: Frame| ServerFrame { request_id: request_id.to_string(), frame: Some(frame) };
        let frame = match rpc {
            Rpc::Start(request) => self.start_task(request).await?.map(|started| reply(Frame::Start(started))),
            Rpc::ListTasks(request) => self.archive.page(&request).map(|page| reply(Frame::ListTasks(page))),
            Rpc::Status(request) => match self.archived_end(&request.task_id) {
                Some(ended) => Ok(reply(Frame::Status(ended.status_response()))),
                None => return Ok(Some(Rpc::Status(request))),
            },
            Rpc::Cancel(request) => match self.archived_end(&request.task_id) {
                Some(ended) => Ok(reply(Frame::Cancel(ended.cancel_response(&request.task_id)))),
                None => return Ok(Some(Rpc::Cancel(request))),
            },
            Rpc::Subscribe(request) => {
                let end = match self.archived_end(&request.task_id) {
                    Some(_) => end_frame(request_id.to_string()),
                    None if !machine_connected && self.archive_holds(&request.task_id) => {
                        error_frame(request_id.to_string(), GrpcStatus::new(Code::Unavailable, NOT_CONNECTED))
                    }
                    None => return Ok(Some(Rpc::Subscribe(request))),
                };
                let replayed = Replayed {
                    request_id: request_id.to_string(),
                    task_id: request.task_id,
                    from_seq: request.from_seq,
                    encoding,
                    end,
                };
                replay_to_socket(self.archive.clone(), ws.clone(), replayed);
                return Ok(None);
            }
            rpc => return Ok(Some(rpc)),
        };
        let frame = frame.unwrap_or_else(|status| error_frame(request_id.to_string(), status));
        send(ws, encode_server_frame(&frame, encoding));
        Ok(None)
    }

    /// One of the machine's frames for the relay's own follow: events gather in `batch`; the
    /// final Status ends the task's archive.
    pub(super) fn archive_frame(&self, route: ReplyRoute, frame: Frame, batch: &mut ArchiveBatch) {
        match (route, frame) {
            (ReplyRoute::ArchiveEvents { task_id }, Frame::Event(event)) => {
                batch.entry(task_id).or_default().push(event)
            }
            (ReplyRoute::ArchiveEnd { task_id }, Frame::Status(status)) => {
                let (archive, Some(task)) = (&self.archive, status.task) else { return };
                let finished =
                    archive.finish(&task, None).and_then(|()| archive.prune(self.retention.history_tasks).map(drop));
                if let Err(e) = finished {
                    worker::console_warn!("archiving the end of tunnel task {task_id} failed: {e}");
                }
            }
            // The machine no longer knows the task (its disk was wiped): it will never end there.
            (ReplyRoute::ArchiveEvents { task_id }, Frame::Error(e)) if e.code == Code::NotFound as i32 => {
                let archive = &self.archive;
                let reason = "your machine no longer knows this task (its agent-service lost its work directory)";
                if let Err(e) = archive.record_loss(&task_id, &[], reason, Date::now().as_millis()) {
                    worker::console_warn!("archiving the loss of tunnel task {task_id} failed: {e}");
                }
            }
            // The follow ended otherwise (the machine's stream closed): the next connection
            // follows again what has not ended.
            _ => {}
        }
    }

    /// Writes a machine message's events, one storage write per task. A task whose final event
    /// arrived is ended in the archive at once, as that event tells it, and its final Status
    /// (its delivery too) is asked for to replace that.
    pub(super) fn write_archive_batch(&self, machine: &WebSocket, batch: ArchiveBatch) {
        let archive = &self.archive;
        for (task_id, events) in batch {
            let events: Vec<Rc<SharedEvent>> = events.into_iter().map(SharedEvent::new).collect();
            let end =
                events.iter().map(|shared| &shared.event).find(|e| matches!(e.payload, Some(Payload::TaskFinished(_))));
            let ended = archive.append(&task_id, events.iter().map(Rc::as_ref)).and_then(|()| {
                let told = archive.entry(&task_id)?.and_then(|entry| end.and_then(|end| entry.task_ended_by(end)));
                told.map_or(Ok(()), |task| archive.finish(&task, None))
            });
            if let Err(e) = ended {
                worker::console_warn!("archiving events of tunnel task {task_id} failed: {e}");
            }
            if end.is_some() {
                let frame = ClientFrame {
                    request_id: ReplyRoute::ArchiveEnd { task_id: task_id.clone() }.to_request_id(),
                    request: Some(ClientRequest::Status(StatusRequest { task_id })),
                };
                let _ = machine.send_with_bytes(frame.encode_to_vec());
            }
        }
    }
}

/// Subscribes the relay itself to `task_id`'s events on the machine, from `from_seq`.
fn follow(machine: &WebSocket, task_id: &str, from_seq: u64) {
    let frame = ClientFrame {
        request_id: ReplyRoute::ArchiveEvents { task_id: task_id.to_string() }.to_request_id(),
        request: Some(ClientRequest::StreamEvents(StreamEventsRequest { task_id: task_id.to_string(), from_seq })),
    };
    let _ = machine.send_with_bytes(frame.encode_to_vec());
}

impl TaskHome for TunnelRelay {
    fn sessions(&self) -> Sessions<'_> {
        Sessions { state: &self.state, env: &self.env, backend: Backend::Tunnel }
    }

    async fn start(&self, request: &StartRequest) -> worker::Result<Result<StartResponse, GrpcStatus>> {
        self.start_task(request.clone()).await
    }

    /// Only a task the relay archived is the user's (a new session on it opens machine or not).
    async fn task_state(&self, task_id: &mut String) -> Result<i32, GrpcStatus> {
        let entry = self.archive.find(task_id);
        entry.map(|entry| entry.summary.state).ok_or_else(|| unknown_task(task_id))
    }

    fn task_page(&self, request: &ListTasksRequest) -> Result<ListTasksResponse, GrpcStatus> {
        self.archive.page(request)
    }
}
