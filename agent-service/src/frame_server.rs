//! The contract over frames: serves `ClientFrame`s by calling the very same [`AutopilotApi`] the
//! gRPC server runs (validation, statuses and streams included) and answers with `ServerFrame`s.
//! Tunnel mode uses it on the socket the machine opens to the edge; any other frame transport
//! could. One implementation of Start/Status/StreamEvents/Cancel/ListTasks (plus Unsubscribe,
//! which only frames need), two transports. GetDiff has no frame: it is served over gRPC and
//! gRPC-web.

use std::{collections::HashMap, sync::Arc};

use autopilot_contract::v1::{
    autopilot_server::Autopilot, client_frame::Request as FrameRequest, server_frame::Frame, ClientFrame, EndOfStream,
    Error, ServerFrame,
};
use futures::StreamExt;
use tokio::{sync::mpsc, task::JoinHandle};
use tonic::{Request, Status};

use crate::grpc_api::AutopilotApi;

/// Serves the frames of one connection. Subscriptions live as long as the connection: dropping
/// the server stops them (the tasks they follow go on).
pub struct FrameServer {
    api: Arc<AutopilotApi>,
    replies: mpsc::Sender<ServerFrame>,
    subscriptions: HashMap<String, JoinHandle<()>>,
}

impl FrameServer {
    /// A server whose replies go to `replies`, in the order each request produces them.
    pub fn new(api: Arc<AutopilotApi>, replies: mpsc::Sender<ServerFrame>) -> Self {
        FrameServer { api, replies, subscriptions: HashMap::new() }
    }

    /// Serves one frame: unary calls are answered in the background, a subscription streams in
    /// the background until its task ends, it is unsubscribed, or the connection goes.
    pub fn serve(&mut self, frame: ClientFrame) {
        self.subscriptions.retain(|_, stream| !stream.is_finished());
        let ClientFrame { request_id, request } = frame;
        let subscription_id = request_id.clone();
        let api = Arc::clone(&self.api);
        let replies = self.replies.clone();
        let reply = move |frame: Result<Frame, Status>| {
            let frame = frame.unwrap_or_else(|status| Frame::Error(error(&status)));
            ServerFrame { request_id: request_id.clone(), frame: Some(frame) }
        };
        match request {
            Some(FrameRequest::Start(r)) => {
                answer(
                    replies,
                    async move { reply(api.start(Request::new(r)).await.map(|r| Frame::Start(r.into_inner()))) },
                )
            }
            Some(FrameRequest::Status(r)) => answer(replies, async move {
                reply(api.status(Request::new(r)).await.map(|r| Frame::Status(r.into_inner())))
            }),
            Some(FrameRequest::Cancel(r)) => answer(replies, async move {
                reply(api.cancel(Request::new(r)).await.map(|r| Frame::Cancel(r.into_inner())))
            }),
            Some(FrameRequest::ListTasks(r)) => answer(replies, async move {
                reply(api.list_tasks(Request::new(r)).await.map(|r| Frame::ListTasks(r.into_inner())))
            }),
            Some(FrameRequest::StreamEvents(r)) => {
                let stream = async move {
                    let mut events = match api.stream_events(Request::new(r)).await {
                        Ok(events) => events.into_inner(),
                        Err(status) => return drop(replies.send(reply(Err(status))).await),
                    };
                    while let Some(item) = events.next().await {
                        let frame = match item {
                            Ok(response) => match response.event {
                                Some(event) => Frame::Event(event),
                                None => continue,
                            },
                            Err(status) => return drop(replies.send(reply(Err(status))).await),
                        };
                        if replies.send(reply(Ok(frame))).await.is_err() {
                            return;
                        }
                    }
                    let _ = replies.send(reply(Ok(Frame::EndOfStream(EndOfStream {})))).await;
                };
                // A request id names one subscription: reusing it replaces the earlier one.
                if let Some(previous) = self.subscriptions.insert(subscription_id, tokio::spawn(stream)) {
                    previous.abort();
                }
            }
            Some(FrameRequest::Unsubscribe(r)) => {
                if let Some(subscription) = self.subscriptions.remove(&r.subscription_request_id) {
                    subscription.abort();
                }
            }
            Some(FrameRequest::Error(e)) => {
                tracing::warn!(code = e.code, message = %e.message, "the edge could not read a frame this machine sent");
            }
            None => answer(replies, async move {
                reply(Err(Status::invalid_argument(
                    "ClientFrame names no request (one of start, status, streamEvents, cancel, listTasks, unsubscribe)",
                )))
            }),
        }
    }
}

impl Drop for FrameServer {
    fn drop(&mut self) {
        self.subscriptions.values().for_each(JoinHandle::abort);
    }
}

/// Sends the one frame `reply` produces, in the background.
fn answer(replies: mpsc::Sender<ServerFrame>, reply: impl std::future::Future<Output = ServerFrame> + Send + 'static) {
    tokio::spawn(async move {
        let _ = replies.send(reply.await).await;
    });
}

/// A gRPC status as a frame's error.
pub fn error(status: &Status) -> Error {
    Error { code: status.code() as i32, message: status.message().to_string() }
}
