//! The WebSocket bridge's frames, as plain Rust: a browser's `ClientFrame` in, `ServerFrame`s
//! out, each in the encoding the client used (binary WebSocket frames carry protobuf, text frames
//! carry proto3 JSON). Bad frames become error frames; nothing here can fail the socket.

use autopilot_contract::v1::{
    client_frame::Request, server_frame::Frame, CancelRequest, ClientFrame, EndOfStream, Error, Event,
    ListTasksRequest, ServerFrame, StartRequest, StatusRequest, StreamEventsRequest, Unsubscribe,
};
use prost::Message;

use crate::grpc_web::{Code, GrpcStatus};

/// Largest client frame accepted (a prompt is at most 100 kB; JSON escaping can double it).
pub const MAX_CLIENT_FRAME_BYTES: usize = 512 * 1024;

/// Longest request id accepted (ids travel in every reply, and the tunnel keeps them per socket).
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// Open subscriptions one socket may hold; one more is refused with RESOURCE_EXHAUSTED.
pub const MAX_SUBSCRIPTIONS_PER_SOCKET: usize = 8;

/// The refusal of a subscription past [`MAX_SUBSCRIPTIONS_PER_SOCKET`] (both objects).
pub fn too_many_subscriptions() -> GrpcStatus {
    GrpcStatus::new(
        Code::ResourceExhausted,
        format!("at most {MAX_SUBSCRIPTIONS_PER_SOCKET} subscriptions per socket: unsubscribe first"),
    )
}

/// Requests one socket may have in flight at once; one more is refused with RESOURCE_EXHAUSTED.
pub const MAX_IN_FLIGHT_PER_SOCKET: u32 = 16;

/// How a client encodes its frames; replies use the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Encoding {
    /// Binary WebSocket frames: protobuf.
    Binary,
    /// Text WebSocket frames: proto3 JSON.
    Json,
}

/// A WebSocket message, either kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage {
    Binary(Vec<u8>),
    Text(String),
}

/// The RPC a client frame asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Rpc {
    Start(StartRequest),
    Status(StatusRequest),
    Subscribe(StreamEventsRequest),
    Cancel(CancelRequest),
    ListTasks(ListTasksRequest),
    /// Stop the subscription opened by the frame with this request id.
    Unsubscribe(String),
}

/// A client frame, understood.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub request_id: String,
    pub rpc: Rpc,
    pub encoding: Encoding,
}

/// Reads a client frame.
///
/// # Errors
/// The error frame to send back (in the client's encoding), for an oversized, malformed or empty
/// frame. Its request id is the frame's, when it could be read.
pub fn decode_client_frame(message: &WsMessage) -> Result<Call, WsMessage> {
    let (encoding, len) = match message {
        WsMessage::Binary(bytes) => (Encoding::Binary, bytes.len()),
        WsMessage::Text(text) => (Encoding::Json, text.len()),
    };
    let refuse = |request_id: String, message: String| {
        encode_server_frame(&error_frame(request_id, GrpcStatus::new(Code::InvalidArgument, message)), encoding)
    };
    if len > MAX_CLIENT_FRAME_BYTES {
        return Err(refuse(
            String::new(),
            format!("frame of {len} bytes is larger than the {MAX_CLIENT_FRAME_BYTES}-byte limit"),
        ));
    }
    let frame = match message {
        WsMessage::Binary(bytes) => ClientFrame::decode(bytes.as_slice())
            .map_err(|e| refuse(String::new(), format!("malformed ClientFrame (protobuf): {e}")))?,
        WsMessage::Text(text) => serde_json::from_str::<ClientFrame>(text)
            .map_err(|e| refuse(request_id_of_json(text), format!("malformed ClientFrame (JSON): {e}")))?,
    };
    if frame.request_id.len() > MAX_REQUEST_ID_BYTES {
        return Err(refuse(String::new(), format!("requestId is longer than {MAX_REQUEST_ID_BYTES} bytes")));
    }
    let rpc = match frame.request {
        Some(Request::Start(r)) => Rpc::Start(r),
        Some(Request::Status(r)) => Rpc::Status(r),
        Some(Request::StreamEvents(r)) => Rpc::Subscribe(r),
        Some(Request::Cancel(r)) => Rpc::Cancel(r),
        Some(Request::ListTasks(r)) => Rpc::ListTasks(r),
        Some(Request::Unsubscribe(r)) => Rpc::Unsubscribe(r.subscription_request_id),
        Some(Request::Error(_)) => {
            return Err(refuse(frame.request_id, "error frames are sent by the edge, not to it".into()))
        }
        None => {
            return Err(refuse(
                frame.request_id,
                "ClientFrame names no request (one of start, status, streamEvents, cancel, listTasks, unsubscribe)"
                    .into(),
            ))
        }
    };
    Ok(Call { request_id: frame.request_id, rpc, encoding })
}

/// The client frame that asks for `rpc` under `request_id` (what a relay passes on).
pub fn client_frame(request_id: String, rpc: Rpc) -> ClientFrame {
    let request = match rpc {
        Rpc::Start(r) => Request::Start(r),
        Rpc::Status(r) => Request::Status(r),
        Rpc::Subscribe(r) => Request::StreamEvents(r),
        Rpc::Cancel(r) => Request::Cancel(r),
        Rpc::ListTasks(r) => Request::ListTasks(r),
        Rpc::Unsubscribe(subscription_request_id) => Request::Unsubscribe(Unsubscribe { subscription_request_id }),
    };
    ClientFrame { request_id, request: Some(request) }
}

/// The request id of a JSON frame that did not parse as a whole, so the error still correlates;
/// empty when it is longer than an id may be (an error frame never carries more).
fn request_id_of_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("requestId").and_then(|id| id.as_str()).map(str::to_string))
        .filter(|id| id.len() <= MAX_REQUEST_ID_BYTES)
        .unwrap_or_default()
}

/// A server frame in `encoding`.
pub fn encode_server_frame(frame: &ServerFrame, encoding: Encoding) -> WsMessage {
    match encoding {
        Encoding::Binary => WsMessage::Binary(frame.encode_to_vec()),
        Encoding::Json => WsMessage::Text(serde_json::to_string(frame).expect("generated messages serialize")),
    }
}

/// A frame saying the request failed.
pub fn error_frame(request_id: String, status: GrpcStatus) -> ServerFrame {
    ServerFrame { request_id, frame: Some(Frame::Error(Error { code: status.code, message: status.message })) }
}

/// A frame carrying one event of a subscription.
pub fn event_frame(request_id: String, event: Event) -> ServerFrame {
    ServerFrame { request_id, frame: Some(Frame::Event(event)) }
}

/// One event as every subscriber of a task's follow sends it: encoded once, however many
/// subscribers there are (200 followers cost 200 encodings of each event otherwise), or not at
/// all when it came encoded (from the service, the bytes are kept as they came).
#[derive(Debug)]
pub struct SharedEvent {
    pub event: Event,
    encoded: std::cell::OnceCell<Vec<u8>>,
}

impl SharedEvent {
    pub fn new(event: Event) -> std::rc::Rc<SharedEvent> {
        std::rc::Rc::new(SharedEvent { event, encoded: std::cell::OnceCell::new() })
    }

    /// The event `encoded` holds, keeping those bytes as its encoding.
    pub fn decode(encoded: Vec<u8>) -> Result<std::rc::Rc<SharedEvent>, prost::DecodeError> {
        let event = Event::decode(encoded.as_slice())?;
        Ok(std::rc::Rc::new(SharedEvent { event, encoded: encoded.into() }))
    }

    /// The event's encoding.
    pub fn encoded(&self) -> &[u8] {
        self.encoded.get_or_init(|| self.event.encode_to_vec())
    }

    /// The event's frame for the subscription `request_id`, in `encoding`. A binary frame is the
    /// request id's field followed by the event's field with the event's encoding spliced in:
    /// byte for byte what encoding the whole [`event_frame`] gives (fields in tag order).
    pub fn frame(&self, request_id: &str, encoding: Encoding) -> WsMessage {
        use prost::encoding::{encode_key, encode_varint, WireType};
        if encoding == Encoding::Json {
            return encode_server_frame(&event_frame(request_id.to_string(), self.event.clone()), encoding);
        }
        let event = self.encoded();
        let mut frame = Vec::with_capacity(request_id.len() + event.len() + 12);
        if !request_id.is_empty() {
            encode_key(1, WireType::LengthDelimited, &mut frame);
            encode_varint(request_id.len() as u64, &mut frame);
            frame.extend_from_slice(request_id.as_bytes());
        }
        encode_key(4, WireType::LengthDelimited, &mut frame);
        encode_varint(event.len() as u64, &mut frame);
        frame.extend_from_slice(event);
        WsMessage::Binary(frame)
    }
}

/// A frame saying a subscription ended normally.
pub fn end_frame(request_id: String) -> ServerFrame {
    ServerFrame { request_id, frame: Some(Frame::EndOfStream(EndOfStream {})) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autopilot_contract::v1::{event::Payload, AgentText, StartResponse, TaskState};

    #[test]
    fn binary_and_json_frames_carry_the_same_call() {
        let frame = ClientFrame {
            request_id: "r7".into(),
            request: Some(Request::StreamEvents(StreamEventsRequest { task_id: "t".into(), from_seq: 9 })),
        };
        let binary = decode_client_frame(&WsMessage::Binary(frame.encode_to_vec())).unwrap();
        let json = decode_client_frame(&WsMessage::Text(
            r#"{"requestId":"r7","streamEvents":{"taskId":"t","fromSeq":"9"}}"#.into(),
        ))
        .unwrap();
        assert_eq!(binary.rpc, json.rpc);
        assert_eq!((binary.encoding, json.encoding), (Encoding::Binary, Encoding::Json));
        assert_eq!(json.request_id, "r7");
        assert_eq!(json.rpc, Rpc::Subscribe(StreamEventsRequest { task_id: "t".into(), from_seq: 9 }));
    }

    #[test]
    fn a_relayed_call_is_the_same_frame_under_another_id() {
        let frame = ClientFrame {
            request_id: "r1".into(),
            request: Some(Request::Unsubscribe(Unsubscribe { subscription_request_id: "events-1".into() })),
        };
        let call = decode_client_frame(&WsMessage::Binary(frame.encode_to_vec())).unwrap();
        assert_eq!(call.rpc, Rpc::Unsubscribe("events-1".into()));
        let relayed = client_frame("s/x/b/r1".into(), call.rpc);
        assert_eq!(relayed, ClientFrame { request_id: "s/x/b/r1".into(), ..frame });
    }

    #[test]
    fn replies_use_the_clients_encoding() {
        let reply = ServerFrame {
            request_id: "r1".into(),
            frame: Some(Frame::Start(StartResponse { task_id: "t".into(), state: TaskState::Pending as i32 })),
        };
        let WsMessage::Text(text) = encode_server_frame(&reply, Encoding::Json) else { panic!("expected text") };
        assert_eq!(text, r#"{"requestId":"r1","start":{"taskId":"t","state":"TASK_STATE_PENDING"}}"#);
        let WsMessage::Binary(bytes) = encode_server_frame(&reply, Encoding::Binary) else { panic!("expected binary") };
        assert_eq!(ServerFrame::decode(bytes.as_slice()).unwrap(), reply);
        let event = Event {
            task_id: "t".into(),
            seq: 3,
            payload: Some(Payload::AgentText(AgentText { text: "hi".into() })),
            ..Default::default()
        };
        let WsMessage::Text(text) = encode_server_frame(&event_frame("s".into(), event), Encoding::Json) else {
            panic!()
        };
        assert_eq!(text, r#"{"requestId":"s","event":{"taskId":"t","seq":"3","agentText":{"text":"hi"}}}"#);
    }

    fn error_of(message: WsMessage) -> (String, i32, String) {
        let frame = match message {
            WsMessage::Binary(bytes) => ServerFrame::decode(bytes.as_slice()).unwrap(),
            WsMessage::Text(text) => serde_json::from_str(&text).unwrap(),
        };
        match frame.frame {
            Some(Frame::Error(e)) => (frame.request_id, e.code, e.message),
            other => panic!("expected an error frame, got {other:?}"),
        }
    }

    #[test]
    fn malformed_frames_become_error_frames_in_the_same_encoding() {
        let (id, code, message) =
            error_of(decode_client_frame(&WsMessage::Binary(vec![0xff, 0x01, 0x02])).unwrap_err());
        assert_eq!((id.as_str(), code), ("", Code::InvalidArgument as i32));
        assert!(message.contains("malformed ClientFrame (protobuf)"), "{message}");

        let bad_json = WsMessage::Text(r#"{"requestId":"r9","start":{"prompt":42}}"#.into());
        let error = decode_client_frame(&bad_json).unwrap_err();
        assert!(matches!(error, WsMessage::Text(_)), "a JSON client gets JSON back");
        let (id, _, message) = error_of(error);
        assert_eq!(id, "r9", "the request id is kept when it can be read");
        assert!(message.contains("malformed ClientFrame (JSON)"), "{message}");

        let (id, _, message) =
            error_of(decode_client_frame(&WsMessage::Text(r#"{"requestId":"r2"}"#.into())).unwrap_err());
        assert_eq!(id, "r2");
        assert!(message.contains("names no request"));

        let long_id = ClientFrame { request_id: "r".repeat(MAX_REQUEST_ID_BYTES + 1), ..Default::default() };
        let message = error_of(decode_client_frame(&WsMessage::Binary(long_id.encode_to_vec())).unwrap_err()).2;
        assert!(message.contains("requestId is longer"), "{message}");

        let long_json_id = format!(r#"{{"requestId":"{}","start":{{"prompt":42}}}}"#, "i".repeat(400_000));
        let (id, _, _) = error_of(decode_client_frame(&WsMessage::Text(long_json_id)).unwrap_err());
        assert!(id.len() <= MAX_REQUEST_ID_BYTES, "an error frame echoed a {}-byte id", id.len());

        let huge = WsMessage::Text("x".repeat(MAX_CLIENT_FRAME_BYTES + 1));
        assert!(error_of(decode_client_frame(&huge).unwrap_err()).2.contains("limit"));
        assert!(decode_client_frame(&WsMessage::Text("not json".into())).is_err());
    }

    #[test]
    fn a_shared_event_makes_the_same_frames_as_encoding_each_whole() {
        let event = Event {
            task_id: "t-1".into(),
            seq: 300,
            payload: Some(autopilot_contract::v1::event::Payload::AgentText(AgentText { text: "ü".repeat(200) })),
            ..Default::default()
        };
        let received = SharedEvent::decode(event.encode_to_vec()).unwrap();
        for shared in [SharedEvent::new(event.clone()), received] {
            for request_id in ["", "events-1", &"r".repeat(200)] {
                for encoding in [Encoding::Binary, Encoding::Json] {
                    let whole = encode_server_frame(&event_frame(request_id.to_string(), event.clone()), encoding);
                    assert_eq!(shared.frame(request_id, encoding), whole, "{request_id:?} {encoding:?}");
                }
            }
        }
    }
}
