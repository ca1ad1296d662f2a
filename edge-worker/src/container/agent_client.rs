//! The Durable Object's client of the agent-service: the `autopilot.v1` contract over gRPC-web
//! (HTTP/1.1), on top of the pure framing in [`crate::grpc_web`]. The transport is a thin choice:
//! the container's TCP port (Cloudflare Containers) or a plain URL (local development, where
//! workerd has no container runtime). Everything above it is the same code in both modes.

use autopilot_contract::v1::{StreamEventsRequest, StreamEventsResponse};
use futures::StreamExt;
use prost::Message;
use worker::{ByteStream, Delay, Fetch, Fetcher, Headers, Method, Request, RequestInit, Response};

use std::{rc::Rc, time::Duration};

use crate::{
    bridge::SharedEvent,
    container::platform_errors::is_not_listening,
    container::readiness::{backoff, NOT_LISTENING_BUDGET},
    grpc_web::{self, Code, Deframer, Frame, GrpcStatus},
};

/// How long a `/ping` may take: the service answers it at once when it is up.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The calls that may be sent again without effect when the first never reached the service.
const IDEMPOTENT: [&str; 4] = ["Status", "StreamEvents", "Cancel", "GetDiff"];

/// Where the agent-service is reached.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// The user's container, through its TCP port.
    Container(Fetcher),
    /// A service at a base URL, e.g. `http://127.0.0.1:8080` (local mode).
    Url(String),
}

impl Endpoint {
    /// Sends a request to `path` on the service.
    ///
    /// # Errors
    /// The service could not be reached.
    pub async fn fetch(&self, path: &str, init: RequestInit) -> worker::Result<Response> {
        match self {
            // The port fetcher reaches the container whatever the host; the service checks the
            // Host header it gets, and serves loopback names.
            Endpoint::Container(fetcher) => fetcher.fetch(format!("http://localhost{path}"), Some(init)).await,
            Endpoint::Url(base) => {
                Fetch::Request(Request::new_with_init(&format!("{base}{path}"), &init)?).send().await
            }
        }
    }

    /// Whether `GET /ping` answers 200 within [`PING_TIMEOUT`]. The limit matters: a connection
    /// to a container that just died can hang until the kernel gives up (minutes), and the
    /// readiness poll must go on meanwhile.
    pub async fn ping(&self) -> bool {
        let mut init = RequestInit::new();
        init.with_method(Method::Get);
        let ping = std::pin::pin!(self.fetch("/ping", init));
        match futures::future::select(ping, Delay::from(PING_TIMEOUT)).await {
            futures::future::Either::Left((Ok(response), _)) => response.status_code() == 200,
            _ => false,
        }
    }
}

/// Calls the contract's RPCs on an [`Endpoint`].
#[derive(Clone, Debug)]
pub struct AgentClient {
    endpoint: Endpoint,
    /// Whether idempotent calls wait for a service that is not listening (see [`Self::call`]).
    retries: bool,
}

impl AgentClient {
    pub fn new(endpoint: Endpoint) -> Self {
        AgentClient { endpoint, retries: true }
    }

    /// The same client, each call sent once: for a caller with an answer of its own when the
    /// service is not there (it stopped, and waiting would only delay that answer).
    pub fn without_retries(&self) -> Self {
        AgentClient { endpoint: self.endpoint.clone(), retries: false }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// A unary call: `method` is the RPC name, e.g. "Start".
    ///
    /// # Errors
    /// The call's gRPC status when it is not OK; UNAVAILABLE when the service is unreachable.
    pub async fn unary<Resp: Message + Default>(
        &self,
        method: &str,
        request: &impl Message,
    ) -> Result<Resp, GrpcStatus> {
        // A unary reply is small: read it whole in one step rather than chunk by chunk.
        let mut response = self.call(method, request).await?;
        let body = response.bytes().await.map_err(unavailable)?;
        let mut deframer = Deframer::default();
        deframer.push(&body);
        let mut reply = None;
        while let Some(frame) = deframer.next_frame()? {
            match frame {
                Frame::Message(bytes) if reply.is_none() => reply = Some(bytes),
                Frame::Message(_) => {}
                Frame::Trailers(status) if !status.is_ok() => return Err(status),
                Frame::Trailers(_) => break,
            }
        }
        let bytes = reply.ok_or_else(|| GrpcStatus::new(Code::Internal, format!("{method} answered no message")))?;
        Resp::decode(bytes.as_slice()).map_err(|e| GrpcStatus::new(Code::Internal, format!("bad {method} reply: {e}")))
    }

    /// StreamEvents: the events as they arrive; ends after the last, or with the call's error.
    ///
    /// # Errors
    /// The call's status when it fails before the first event.
    pub async fn stream_events(&self, request: &StreamEventsRequest) -> Result<EventStream, GrpcStatus> {
        let mut response = self.call("StreamEvents", request).await?;
        let stream = response.stream().map_err(unavailable)?;
        Ok(EventStream { body: MessageStream { stream, deframer: Deframer::default(), done: false, failure: None } })
    }

    /// Sends one call; the response once its headers say it did not fail outright. Idempotent
    /// calls that find nothing listening (the service is starting or restarting in its
    /// container) are sent again with backoff for up to [`NOT_LISTENING_BUDGET`]: the request
    /// never reached the service, and the caller would otherwise see a failure that passes by
    /// itself within a second.
    async fn call(&self, method: &str, request: &impl Message) -> Result<Response, GrpcStatus> {
        let mut retries = backoff(Duration::from_millis(50), Duration::from_secs(1), NOT_LISTENING_BUDGET);
        loop {
            match self.call_once(method, request).await {
                Err(status) if self.retries && IDEMPOTENT.contains(&method) && self.may_retry(&status) => {
                    match retries.next() {
                        Some(delay) => Delay::from(delay).await,
                        None => return Err(status),
                    }
                }
                result => return result,
            }
        }
    }

    /// Whether a failed idempotent call may be sent again: nothing listened on the container's
    /// port, or (local mode) the service's URL could not be reached at all; workerd words a
    /// refused connection to a URL as a lost one, and a service restarting on the developer's
    /// machine (or the tunnel's) is back within moments.
    fn may_retry(&self, status: &GrpcStatus) -> bool {
        match self.endpoint {
            Endpoint::Container(_) => is_not_listening(&status.message),
            Endpoint::Url(_) => status.message.starts_with(UNREACHABLE),
        }
    }

    async fn call_once(&self, method: &str, request: &impl Message) -> Result<Response, GrpcStatus> {
        let headers = Headers::new();
        let set = |name: &str, value: &str| headers.set(name, value).map_err(unavailable);
        set("content-type", grpc_web::CONTENT_TYPE)?;
        set("accept", grpc_web::CONTENT_TYPE)?;
        set("x-grpc-web", "1")?;
        let body = grpc_web::encode_request(request);
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(Some(js_sys::Uint8Array::from(body.as_slice()).into()));
        let response =
            self.endpoint.fetch(&format!("/autopilot.v1.Autopilot/{method}"), init).await.map_err(unavailable)?;
        let header_pairs: Vec<(String, String)> = response.headers().entries().collect();
        let header_status = grpc_web::status_from_headers(header_pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(status) = header_status.filter(|s| !s.is_ok()) {
            return Err(status);
        }
        if response.status_code() != 200 {
            return Err(GrpcStatus::new(
                Code::Unavailable,
                format!("the agent-service answered HTTP {} to {method}", response.status_code()),
            ));
        }
        Ok(response)
    }
}

/// How a call that never got an answer (the transport failed) is worded.
const UNREACHABLE: &str = "could not reach the agent-service";

fn unavailable(error: worker::Error) -> GrpcStatus {
    GrpcStatus::new(Code::Unavailable, format!("{UNREACHABLE}: {error}"))
}

/// The messages of a gRPC-web response body, read as its chunks arrive.
pub struct MessageStream {
    stream: ByteStream,
    deframer: Deframer,
    done: bool,
    /// A failure read behind messages that were handed out first; the next call answers it.
    failure: Option<GrpcStatus>,
}

impl MessageStream {
    /// The messages already received in full after the next one (which it waits for): a chunk
    /// of the body often holds many, and handing them out together costs one wake-up, not one
    /// each. `None` after an OK status; `Some(Err)` for a failed call.
    pub async fn next_batch(&mut self) -> Option<Result<Vec<Vec<u8>>, GrpcStatus>> {
        if let Some(failure) = self.failure.take() {
            return Some(Err(failure));
        }
        let mut batch = match self.next().await? {
            Ok(first) => vec![first],
            Err(status) => return Some(Err(status)),
        };
        while !self.done {
            match self.deframer.next_frame() {
                Ok(Some(Frame::Message(bytes))) => batch.push(bytes),
                Ok(Some(Frame::Trailers(status))) => {
                    self.done = true;
                    self.failure = (!status.is_ok()).then_some(status);
                }
                Ok(None) => break,
                Err(status) => {
                    self.done = true;
                    self.failure = Some(status);
                }
            }
        }
        Some(Ok(batch))
    }

    /// The next message; `None` after an OK status; `Some(Err)` for a failed call.
    pub async fn next(&mut self) -> Option<Result<Vec<u8>, GrpcStatus>> {
        if let Some(failure) = self.failure.take() {
            return Some(Err(failure));
        }
        if self.done {
            return None;
        }
        loop {
            match self.deframer.next_frame() {
                Ok(Some(Frame::Message(bytes))) => return Some(Ok(bytes)),
                Ok(Some(Frame::Trailers(status))) => {
                    self.done = true;
                    return (!status.is_ok()).then_some(Err(status));
                }
                Ok(None) => {}
                Err(status) => {
                    self.done = true;
                    return Some(Err(status));
                }
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => self.deframer.push(&chunk),
                Some(Err(error)) => {
                    self.done = true;
                    return Some(Err(GrpcStatus::new(
                        Code::Unavailable,
                        format!("the agent-service stream broke: {error}"),
                    )));
                }
                None => {
                    self.done = true;
                    let how = if self.deframer.has_partial_frame() {
                        "in the middle of a message"
                    } else {
                        "without a status"
                    };
                    return Some(Err(GrpcStatus::new(
                        Code::Unavailable,
                        format!("the agent-service stream ended {how}"),
                    )));
                }
            }
        }
    }
}

/// The events of a StreamEvents call.
pub struct EventStream {
    body: MessageStream,
}

impl EventStream {
    /// The next event; `None` when the task has ended and every event was delivered.
    pub async fn next(&mut self) -> Option<Result<Rc<SharedEvent>, GrpcStatus>> {
        Some(self.body.next().await?.and_then(decode_event))
    }

    /// The next events already received (see [`MessageStream::next_batch`]).
    pub async fn next_batch(&mut self) -> Option<Result<Vec<Rc<SharedEvent>>, GrpcStatus>> {
        Some(self.body.next_batch().await?.and_then(|batch| batch.into_iter().map(decode_event).collect()))
    }
}

/// A StreamEvents message's event, its bytes kept as they came: the message is its one field,
/// the event (a message with more, from a newer service, is decoded and the event encoded again).
fn decode_event(message: Vec<u8>) -> Result<Rc<SharedEvent>, GrpcStatus> {
    use prost::encoding::{decode_key, decode_varint, WireType};
    let missing = || GrpcStatus::new(Code::Internal, "a StreamEvents message without an event");
    let mut rest = message.as_slice();
    let only_the_event = matches!(decode_key(&mut rest), Ok((1, WireType::LengthDelimited)))
        && decode_varint(&mut rest).is_ok_and(|len| len == rest.len() as u64);
    if only_the_event {
        let start = message.len() - rest.len();
        return SharedEvent::decode(message[start..].to_vec()).map_err(|_| missing());
    }
    StreamEventsResponse::decode(message.as_slice())
        .ok()
        .and_then(|r| r.event)
        .map(SharedEvent::new)
        .ok_or_else(missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use autopilot_contract::v1::{event::Payload, AgentText, Event};

    #[test]
    fn a_streamed_event_keeps_the_bytes_it_came_in() {
        let event = Event {
            task_id: "t".into(),
            seq: 7,
            payload: Some(Payload::AgentText(AgentText { text: "hello".into() })),
            ..Default::default()
        };
        let message = StreamEventsResponse { event: Some(event.clone()) }.encode_to_vec();
        let shared = decode_event(message.clone()).unwrap();
        assert_eq!(shared.event, event);
        assert_eq!(shared.encoded(), event.encode_to_vec().as_slice());

        // A field this edge does not know, after the event: decoded the long way.
        let mut newer = message;
        newer.extend_from_slice(&[0x10, 0x01]);
        assert_eq!(decode_event(newer).unwrap().event, event);
        assert_eq!(decode_event(vec![0x10, 0x01]).unwrap_err().code, Code::Internal as i32);
    }
}
