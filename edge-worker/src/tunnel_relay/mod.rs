//! The Durable Object `TunnelRelay`, one per user (`id_from_name(user_id)`): tunnel mode's edge.
//! The user's own machine runs the agent-service and opens a WebSocket out to it
//! (`GET /api/tunnel/connect`); the user's browsers open theirs as in container mode. The relay
//! passes each browser `ClientFrame` to the machine under a routed request id
//! ([`ReplyRoute`]) and each `ServerFrame` the machine answers with back to the socket that asked, in
//! that socket's encoding. Nothing is started and nothing is charged: the machine is the user's.
//!
//! Tasks started through the relay are archived as the container object archives its own
//! ([`history`]): an ended task, and the task list, are answered at the edge, machine or not.
//!
//! All sockets are hibernatable; what a socket is (the machine, or a browser with its open
//! subscriptions) travels in its attachment, so the relay keeps no state in memory but the HTTP
//! calls it is waiting on. Only one machine per user is connected: a new one replaces the old,
//! which is told why and closed.

mod environments;
mod history;
pub mod reply_route;
mod subscriptions;

use std::{cell::RefCell, collections::HashMap, time::Duration};

use autopilot_contract::v1::{
    client_frame::Request as ClientRequest, server_frame::Frame, ClientFrame, Error, ServerFrame, ServerFrameBatch,
};
use futures::{channel::oneshot, future::Either};
use prost::Message;
use serde::{Deserialize, Serialize};
use worker::{
    durable_object, Date, Delay, Env, Request, Response, State, WebSocket, WebSocketIncomingMessage, WebSocketPair,
};

use self::{history::ArchiveBatch, subscriptions::Subscriptions};
use crate::{
    api_error::{error_response, not_found},
    archive::{Archive, Retention},
    bridge::{client_frame, decode_client_frame, encode_server_frame, Call, Rpc, WsMessage},
    entropy::random_id,
    front::internal::USER_HEADER,
    front::route::{Backend, Route},
    front::task_routes::{self, TaskHome},
    grpc_web::{Code, GrpcStatus},
    socket::{answer_close, incoming, is_websocket_upgrade, send, send_error, upgrade_required},
    tunnel_relay::reply_route::ReplyRoute,
};

/// Tag of the machine's socket.
const MACHINE_TAG: &str = "machine";
/// Storage key of the connected machine.
const MACHINE_KEY: &str = "machine";
/// Close code and reason a replaced machine receives (4000-4999: application codes).
pub const REPLACED_CLOSE_CODE: u16 = 4001;
const REPLACED_REASON: &str = "replaced: another machine connected for this user";
/// How long an HTTP call waits for the machine's answer.
const MACHINE_REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// What a browser hears when there is no machine to ask.
const NOT_CONNECTED: &str =
    "your machine is not connected: run `agent-service connect --edge <this site>` on it (the page shows the command)";
/// What a browser's open subscriptions hear when the machine goes away.
const DISCONNECTED: &str = "your machine disconnected (its task goes on there); subscribe again from your last \
                            seq once it is back";

/// What a socket is, carried in its attachment across hibernation.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Peer {
    Machine { machine_id: String },
    Browser { socket_id: String, session_id: String, subscriptions: Subscriptions },
}

/// The connected machine, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ConnectedMachine {
    machine_id: String,
    connected_ms: u64,
}

#[durable_object]
pub struct TunnelRelay {
    state: State,
    env: Env,
    /// HTTP calls waiting for the machine's answer, by call id.
    waiting: RefCell<HashMap<String, oneshot::Sender<ServerFrame>>>,
    /// The stored machine record, read once per wake-up (every frame needs it; storage would
    /// cost a read per frame). `None`: not read yet.
    connected: RefCell<Option<Option<ConnectedMachine>>>,
    /// The user's tunnel tasks (see [`history`]).
    archive: Archive,
    retention: Retention,
    /// The user this relay is for, once known (see [`environments`]).
    user: RefCell<Option<String>>,
}

impl worker::DurableObject for TunnelRelay {
    fn new(state: State, env: Env) -> Self {
        let retention = Retention::read(|name| env.var(name).ok().map(|v| v.to_string()));
        let archive = Archive::open(&state.storage(), retention.max_events);
        let (waiting, connected, user) = (RefCell::default(), RefCell::default(), RefCell::default());
        TunnelRelay { state, env, waiting, connected, archive, retention, user }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        if let Err(refusal) = self.archive.check() {
            return error_response(&refusal);
        }
        let user = req.headers().get(USER_HEADER)?.unwrap_or_default();
        self.remember_user(&user).await?;
        let path = req.path();
        match Route::parse(&req.method(), &path) {
            Some(Route::TunnelConnect) => self.connect_route(&req).await,
            Some(Route::Status(Backend::Tunnel)) => self.status_route().await,
            Some(Route::Start(Backend::Tunnel)) => task_routes::start_route(self, req, &user).await,
            Some(Route::Ticket(Backend::Tunnel)) => task_routes::ticket_route(self, req, &user).await,
            Some(Route::Socket(Backend::Tunnel, session_id)) => self.browser_route(&req, &session_id).await,
            Some(Route::Tasks(Backend::Tunnel)) => task_routes::tasks_route(self, &req),
            _ => not_found(&path),
        }
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> worker::Result<()> {
        let message = incoming(message);
        match peer(&ws) {
            Some(Peer::Machine { machine_id }) => self.relay_machine_frame(&ws, &machine_id, message).await,
            Some(Peer::Browser { .. }) => self.relay_browser_frame(&ws, message).await,
            None => Ok(()),
        }
    }

    async fn websocket_close(&self, ws: WebSocket, code: usize, _reason: String, _clean: bool) -> worker::Result<()> {
        answer_close(&ws, code);
        self.gone(&ws).await
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> worker::Result<()> {
        self.gone(&ws).await
    }
}

impl TunnelRelay {
    /// `GET /api/tunnel/connect`: the user's machine connects; any machine before it is replaced.
    async fn connect_route(&self, req: &Request) -> worker::Result<Response> {
        if !is_websocket_upgrade(req)? {
            return upgrade_required("connect with a WebSocket (Upgrade: websocket)");
        }
        for old in self.state.get_websockets_with_tag(MACHINE_TAG) {
            let _ = old.close(Some(REPLACED_CLOSE_CODE), Some(REPLACED_REASON));
        }
        self.tell_subscribers(DISCONNECTED);
        // Calls waiting on the old machine will get no answer the relay accepts: end them now.
        self.waiting.borrow_mut().clear();
        let machine = ConnectedMachine { machine_id: random_id()?, connected_ms: Date::now().as_millis() };
        let pair = WebSocketPair::new()?;
        self.state.accept_websocket_with_tags(&pair.server, &[MACHINE_TAG]);
        pair.server.serialize_attachment(Peer::Machine { machine_id: machine.machine_id.clone() })?;
        self.state.storage().put(MACHINE_KEY, &machine).await?;
        *self.connected.borrow_mut() = Some(Some(machine));
        worker::console_log!("tunnel: a machine connected");
        self.follow_unended(&pair.server);
        Response::from_websocket(pair.client)
    }

    /// `GET /api/tunnel/status`: whether the user's machine is connected, and since when.
    async fn status_route(&self) -> worker::Result<Response> {
        let machine = self.machine().await?;
        Response::from_json(&serde_json::json!({
            "connected": machine.is_some(),
            "connectedSinceMs": machine.map(|(_, m)| m.connected_ms),
        }))
    }

    /// `GET /api/tunnel/ws/{session}`: a browser's socket on one of this user's sessions.
    async fn browser_route(&self, req: &Request, session_id: &str) -> worker::Result<Response> {
        if let Err(refusal) = self.sessions().admit(req, session_id).await? {
            return Ok(refusal);
        }
        let socket_id = random_id()?;
        let pair = WebSocketPair::new()?;
        self.state.accept_websocket_with_tags(&pair.server, &[socket_id.as_str()]);
        let peer =
            Peer::Browser { socket_id, session_id: session_id.to_string(), subscriptions: Subscriptions::default() };
        pair.server.serialize_attachment(peer)?;
        Response::from_websocket(pair.client)
    }

    /// The connected machine's socket and record, if one is connected now.
    async fn machine(&self) -> worker::Result<Option<(WebSocket, ConnectedMachine)>> {
        let Some(machine) = self.connected_machine().await? else {
            return Ok(None);
        };
        let socket = self
            .state
            .get_websockets_with_tag(MACHINE_TAG)
            .into_iter()
            .find(|ws| matches!(peer(ws), Some(Peer::Machine { machine_id }) if machine_id == machine.machine_id));
        Ok(socket.map(|ws| (ws, machine)))
    }

    /// The record of the connected machine (it may have gone since: see [`Self::machine`]).
    async fn connected_machine(&self) -> worker::Result<Option<ConnectedMachine>> {
        let cached = self.connected.borrow().clone();
        match cached {
            Some(machine) => Ok(machine),
            None => {
                let stored = self.state.storage().get::<ConnectedMachine>(MACHINE_KEY).await?;
                *self.connected.borrow_mut() = Some(stored.clone());
                Ok(stored)
            }
        }
    }

    /// Sends the machine one request of the edge's own and waits for its answer.
    async fn ask_machine(&self, request: ClientRequest) -> worker::Result<Result<ServerFrame, GrpcStatus>> {
        let Some((machine, _)) = self.machine().await? else {
            return Ok(Err(GrpcStatus::new(Code::Unavailable, NOT_CONNECTED)));
        };
        let call_id = random_id()?;
        let (tx, rx) = oneshot::channel();
        self.waiting.borrow_mut().insert(call_id.clone(), tx);
        let frame = ClientFrame {
            request_id: ReplyRoute::Http { call_id: call_id.clone() }.to_request_id(),
            request: Some(request),
        };
        if machine.send_with_bytes(frame.encode_to_vec()).is_err() {
            self.waiting.borrow_mut().remove(&call_id);
            return Ok(Err(GrpcStatus::new(Code::Unavailable, NOT_CONNECTED)));
        }
        let timeout = Delay::from(MACHINE_REPLY_TIMEOUT);
        let answer = match futures::future::select(rx, timeout).await {
            Either::Left((Ok(reply), _)) => Ok(reply),
            Either::Left((Err(_), _)) => Err(GrpcStatus::new(Code::Unavailable, DISCONNECTED)),
            Either::Right(_) => Err(GrpcStatus::new(
                Code::DeadlineExceeded,
                format!("your machine did not answer within {}s", MACHINE_REPLY_TIMEOUT.as_secs()),
            )),
        };
        self.waiting.borrow_mut().remove(&call_id);
        Ok(answer)
    }

    /// A browser frame: passed to the machine under a routed id, or answered here when it is
    /// malformed or there is no machine.
    async fn relay_browser_frame(&self, ws: &WebSocket, message: WsMessage) -> worker::Result<()> {
        let Call { request_id, rpc, encoding } = match decode_client_frame(&message) {
            Ok(call) => call,
            Err(reply) => {
                send(ws, reply);
                return Ok(());
            }
        };
        let machine = self.machine().await?.map(|(machine, _)| machine);
        let rpc = match self.answer_here(ws, &request_id, rpc, encoding, machine.is_some()).await? {
            Some(rpc) => rpc,
            None => return Ok(()),
        };
        let Some(machine) = machine else {
            let status = GrpcStatus::new(Code::Unavailable, NOT_CONNECTED);
            send_error(ws, request_id, status, encoding);
            return Ok(());
        };
        let Some(Peer::Browser { socket_id, session_id, mut subscriptions }) = peer(ws) else { return Ok(()) };
        let routed = |request_id: String| ReplyRoute::Socket { socket_id: socket_id.clone(), encoding, request_id };
        let rpc = match rpc {
            Rpc::Subscribe(request) => {
                if let Err(status) = subscriptions.open(&request_id, encoding) {
                    send_error(ws, request_id, status, encoding);
                    return Ok(());
                }
                Rpc::Subscribe(request)
            }
            Rpc::Unsubscribe(subscription) => {
                // Routed as the subscription was (its encoding may differ from this frame's).
                let opened_as = subscriptions.close(&subscription);
                let route = ReplyRoute::Socket {
                    socket_id: socket_id.clone(),
                    encoding: opened_as.unwrap_or(encoding),
                    request_id: subscription,
                };
                Rpc::Unsubscribe(route.to_request_id())
            }
            rpc => rpc,
        };
        ws.serialize_attachment(Peer::Browser { socket_id: socket_id.clone(), session_id, subscriptions })?;
        let frame = client_frame(routed(request_id.clone()).to_request_id(), rpc);
        if machine.send_with_bytes(frame.encode_to_vec()).is_err() {
            let status = GrpcStatus::new(Code::Unavailable, DISCONNECTED);
            send_error(ws, request_id, status, encoding);
            return Ok(());
        }
        Ok(())
    }

    /// A machine's message: a batch of frames, each delivered where it is routed.
    async fn relay_machine_frame(&self, ws: &WebSocket, machine_id: &str, message: WsMessage) -> worker::Result<()> {
        let current = self.connected_machine().await?.is_some_and(|m| m.machine_id == machine_id);
        if !current {
            return Ok(());
        }
        let batch = match &message {
            WsMessage::Binary(bytes) => ServerFrameBatch::decode(bytes.as_slice())
                .map_err(|e| format!("the edge could not read your ServerFrameBatch (protobuf): {e}")),
            WsMessage::Text(_) => Err("the tunnel carries binary protobuf ServerFrameBatches, not text".to_string()),
        };
        match batch {
            Ok(batch) => {
                let mut browsers = HashMap::new();
                let mut archived = ArchiveBatch::new();
                for frame in batch.frames {
                    self.route_machine_frame(ws, frame, &mut browsers, &mut archived)?;
                }
                self.write_archive_batch(ws, archived);
                Ok(())
            }
            Err(message) => tell_machine(ws, String::new(), &message),
        }
    }

    /// Delivers one of the machine's frames to the socket or HTTP call its request id routes to.
    /// `browsers` keeps the sockets already looked up for this batch (`None`: gone).
    fn route_machine_frame(
        &self,
        ws: &WebSocket,
        mut frame: ServerFrame,
        browsers: &mut HashMap<String, Option<WebSocket>>,
        archived: &mut ArchiveBatch,
    ) -> worker::Result<()> {
        let ends_request = matches!(frame.frame, Some(Frame::Error(_)) | Some(Frame::EndOfStream(_)));
        match ReplyRoute::parse(&frame.request_id) {
            Some(ReplyRoute::Http { call_id }) => {
                if let Some(waiting) = self.waiting.borrow_mut().remove(&call_id) {
                    let _ = waiting.send(frame);
                }
                Ok(())
            }
            Some(ReplyRoute::Socket { socket_id, encoding, request_id }) => {
                let routed_id = std::mem::replace(&mut frame.request_id, request_id.clone());
                let looked_up = browsers.contains_key(&socket_id);
                let browser = browsers
                    .entry(socket_id)
                    .or_insert_with_key(|socket_id| self.state.get_websockets_with_tag(socket_id).into_iter().next());
                let Some(browser) = browser else {
                    // The browser has gone: stop the machine streaming to nobody (once).
                    return if looked_up { Ok(()) } else { stop_stream(ws, routed_id) };
                };
                if ends_request {
                    forget_subscription(browser, &request_id)?;
                }
                send(browser, encode_server_frame(&frame, encoding));
                Ok(())
            }
            Some(route @ (ReplyRoute::ArchiveEvents { .. } | ReplyRoute::ArchiveEnd { .. })) => {
                if let Some(frame) = frame.frame {
                    self.archive_frame(route, frame, archived);
                }
                Ok(())
            }
            None => {
                let message = format!("request id {:?} was not issued by this relay", frame.request_id);
                tell_machine(ws, frame.request_id, &message)
            }
        }
    }

    /// A socket closed. A browser's subscriptions are stopped on the machine; when the current
    /// machine goes, every open subscription is told, so its browser can resubscribe later.
    async fn gone(&self, ws: &WebSocket) -> worker::Result<()> {
        match peer(ws) {
            Some(Peer::Browser { socket_id, mut subscriptions, .. }) => {
                if let Some((machine, _)) = self.machine().await? {
                    for subscription in subscriptions.take() {
                        let route = ReplyRoute::Socket {
                            socket_id: socket_id.clone(),
                            encoding: subscription.encoding,
                            request_id: subscription.request_id,
                        };
                        let _ = stop_stream(&machine, route.to_request_id());
                    }
                }
            }
            Some(Peer::Machine { machine_id }) => {
                // A replaced machine closing is not news: only the current one's going is.
                let current = self.connected_machine().await?.is_some_and(|m| m.machine_id == machine_id);
                if current {
                    self.state.storage().delete(MACHINE_KEY).await?;
                    *self.connected.borrow_mut() = Some(None);
                    worker::console_log!("tunnel: the machine disconnected");
                    self.tell_subscribers(DISCONNECTED);
                    self.waiting.borrow_mut().clear();
                }
            }
            None => {}
        }
        Ok(())
    }

    /// Ends every browser subscription with UNAVAILABLE and `why`.
    fn tell_subscribers(&self, why: &str) {
        for browser in self.state.get_websockets() {
            let Some(Peer::Browser { socket_id, session_id, mut subscriptions }) = peer(&browser) else { continue };
            for subscription in subscriptions.take() {
                send_error(
                    &browser,
                    subscription.request_id,
                    GrpcStatus::new(Code::Unavailable, why),
                    subscription.encoding,
                );
            }
            let _ = browser.serialize_attachment(Peer::Browser { socket_id, session_id, subscriptions });
        }
    }
}

fn peer(ws: &WebSocket) -> Option<Peer> {
    ws.deserialize_attachment::<Peer>().ok().flatten()
}

/// Removes a subscription that has ended from its browser's attachment.
fn forget_subscription(browser: &WebSocket, request_id: &str) -> worker::Result<()> {
    if let Some(Peer::Browser { socket_id, session_id, mut subscriptions }) = peer(browser) {
        if subscriptions.close(request_id).is_some() {
            browser.serialize_attachment(Peer::Browser { socket_id, session_id, subscriptions })?;
        }
    }
    Ok(())
}

/// Asks the machine to stop the subscription it knows as `routed_id`.
fn stop_stream(machine: &WebSocket, routed_id: String) -> worker::Result<()> {
    let frame = client_frame(String::new(), Rpc::Unsubscribe(routed_id));
    machine.send_with_bytes(frame.encode_to_vec())
}

/// Tells the machine a frame it sent could not be relayed.
fn tell_machine(machine: &WebSocket, request_id: String, message: &str) -> worker::Result<()> {
    worker::console_warn!("tunnel: {message}");
    let error = Error { code: Code::InvalidArgument as i32, message: message.to_string() };
    let frame = ClientFrame { request_id, request: Some(ClientRequest::Error(error)) };
    machine.send_with_bytes(frame.encode_to_vec())
}
