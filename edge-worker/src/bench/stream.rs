//! The archive's baseline: a Durable Object that answers one Subscribe frame by streaming the
//! task's events from the agent-service (`AGENT_SERVICE_URL`) to the socket, each sent as the
//! bridge sends it, with no archive, no follow and no scope. The bench streams the same recorded
//! tasks through it and through the user's container object, which follows each task into its
//! archive on the way: the difference is what the archive costs a task's first pass.

use worker::{
    durable_object, wasm_bindgen_futures::spawn_local, Env, Request, Response, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair,
};

use crate::{
    bridge::{decode_client_frame, encode_server_frame, end_frame, Rpc, WsMessage},
    container::agent_client::{AgentClient, Endpoint},
    grpc_web::{Code, GrpcStatus},
    socket::{answer_close, incoming, send, send_error, try_send},
};

#[durable_object]
pub struct BenchStream {
    state: State,
    env: Env,
}

impl worker::DurableObject for BenchStream {
    fn new(state: State, env: Env) -> Self {
        BenchStream { state, env }
    }

    async fn fetch(&self, _req: Request) -> worker::Result<Response> {
        let pair = WebSocketPair::new()?;
        self.state.accept_web_socket(&pair.server);
        Response::from_websocket(pair.client)
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> worker::Result<()> {
        self.answer(ws, message);
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, code: usize, _reason: String, _clean: bool) -> worker::Result<()> {
        answer_close(&ws, code);
        Ok(())
    }
}

impl BenchStream {
    /// Streams the task a Subscribe frame names to `ws` in the background; refuses anything else.
    fn answer(&self, ws: WebSocket, message: WebSocketIncomingMessage) {
        let call = match decode_client_frame(&incoming(message)) {
            Ok(call) => call,
            Err(reply) => return send(&ws, reply),
        };
        let Rpc::Subscribe(request) = call.rpc else {
            let status = GrpcStatus::new(Code::Unimplemented, "the bench stream answers Subscribe only");
            return send_error(&ws, call.request_id, status, call.encoding);
        };
        let Ok(url) = self.env.var("AGENT_SERVICE_URL").map(|url| url.to_string()) else {
            let status = GrpcStatus::new(Code::FailedPrecondition, "the bench stream needs AGENT_SERVICE_URL");
            return send_error(&ws, call.request_id, status, call.encoding);
        };
        let (request_id, encoding) = (call.request_id, call.encoding);
        spawn_local(async move {
            let mut stream = match AgentClient::new(Endpoint::Url(url)).stream_events(&request).await {
                Ok(stream) => stream,
                Err(status) => return send_error(&ws, request_id, status, encoding),
            };
            loop {
                let frame: WsMessage = match stream.next().await {
                    Some(Ok(shared)) => shared.frame(&request_id, encoding),
                    Some(Err(status)) => break send_error(&ws, request_id, status, encoding),
                    None => break send(&ws, encode_server_frame(&end_frame(request_id), encoding)),
                };
                if try_send(&ws, frame).is_err() {
                    break;
                }
            }
        });
    }
}
