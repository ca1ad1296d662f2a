//! The gRPC-web wire format, as plain Rust so it is unit-tested on the host: framing requests,
//! and reading a response body incrementally, whatever the chunking.
//!
//! A gRPC-web body is a sequence of frames: one flag byte (bit 7 set = trailers), a 4-byte
//! big-endian length, then that many bytes: a protobuf message, or the trailers as HTTP/1 header
//! lines (`grpc-status: 0\r\ngrpc-message: ...\r\n`). A status can also come in the response
//! headers alone (a "trailers-only" response, used for immediate errors).

use prost::Message;

/// Size of a frame header: flag byte + 4-byte length.
pub const FRAME_HEADER_LEN: usize = 5;
/// Largest message accepted from the service: a workspace snapshot (at most 16 MiB of bundle and
/// transcript, see ExportWorkspace) and its other fields; events are far smaller.
pub const MAX_MESSAGE_LEN: usize = 17 * 1024 * 1024;
const TRAILERS_FLAG: u8 = 0x80;
const COMPRESSED_FLAG: u8 = 0x01;

/// The content type of a binary gRPC-web request.
pub const CONTENT_TYPE: &str = "application/grpc-web+proto";

/// A gRPC status: code (google.rpc.Code number) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcStatus {
    pub code: i32,
    pub message: String,
}

impl GrpcStatus {
    pub fn new(code: Code, message: impl Into<String>) -> GrpcStatus {
        GrpcStatus { code: code as i32, message: message.into() }
    }

    pub fn is_ok(&self) -> bool {
        self.code == Code::Ok as i32
    }
}

impl std::fmt::Display for GrpcStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", code_name(self.code), self.code, self.message)
    }
}

/// gRPC status codes (google.rpc.Code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

/// The canonical name of a code number, e.g. "INVALID_ARGUMENT".
pub fn code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code).ok().and_then(|i| NAMES.get(i)).copied().unwrap_or("UNKNOWN")
}

/// The code number of a canonical name ([`code_name`]'s inverse), if it is one.
pub fn code_of_name(name: &str) -> Option<i32> {
    (0..=16).find(|&code| code_name(code) == name)
}

/// What a refusal for want of credits says first (see [`http_status_of`]).
pub const INSUFFICIENT_CREDITS: &str = "insufficient credits";

/// The HTTP status the JSON routes answer for `status`: as [`http_status`], except that running
/// out of credits is 402 Payment Required (other exhausted resources, such as the running-task
/// limit, are 429 Too Many Requests).
pub fn http_status_of(status: &GrpcStatus) -> u16 {
    match status.code {
        8 if status.message.starts_with(INSUFFICIENT_CREDITS) => 402,
        code => http_status(code),
    }
}

/// The HTTP status the JSON routes answer for a gRPC code.
pub fn http_status(code: i32) -> u16 {
    match code {
        0 => 200,
        1 => 499,
        3 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        9 => 409,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    }
}

/// One request message, framed for a gRPC-web body.
pub fn encode_request(message: &impl Message) -> Vec<u8> {
    let len = message.encoded_len();
    let mut body = Vec::with_capacity(FRAME_HEADER_LEN + len);
    body.push(0);
    body.extend_from_slice(&(len as u32).to_be_bytes());
    message.encode(&mut body).expect("a Vec grows as needed");
    body
}

/// A whole OK reply carrying `message`: its frame, then the trailers frame with status 0 (what
/// the edge answers when it makes a call on a gRPC-web client's behalf).
pub fn encode_reply(message: &impl Message) -> Vec<u8> {
    let mut body = encode_request(message);
    body.extend(encode_reply_end());
    body
}

/// The trailers frame that ends an OK reply (status 0), after its messages.
pub fn encode_reply_end() -> Vec<u8> {
    let trailers = b"grpc-status: 0\r\n";
    let mut frame = vec![TRAILERS_FLAG];
    frame.extend_from_slice(&(trailers.len() as u32).to_be_bytes());
    frame.extend_from_slice(trailers);
    frame
}

/// The first message of a gRPC-web request body (a unary or server-streaming call has one).
///
/// # Errors
/// INVALID_ARGUMENT when the body holds no whole message.
pub fn request_message(body: &[u8]) -> Result<Vec<u8>, GrpcStatus> {
    let mut deframer = Deframer::default();
    deframer.push(body);
    match deframer.next_frame()? {
        Some(Frame::Message(bytes)) => Ok(bytes),
        _ => Err(GrpcStatus::new(Code::InvalidArgument, "the gRPC-web request body holds no message")),
    }
}

/// What a response body yields, frame by frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// An encoded message.
    Message(Vec<u8>),
    /// The trailers: the call's final status.
    Trailers(GrpcStatus),
}

/// Reads frames out of a body that arrives in arbitrary chunks.
#[derive(Default)]
pub struct Deframer {
    buf: Vec<u8>,
    start: usize,
}

impl Deframer {
    /// Adds a chunk of the body.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete frame, if the buffered bytes hold one.
    ///
    /// # Errors
    /// A compressed or oversized frame (the service sends neither).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, GrpcStatus> {
        let available = &self.buf[self.start..];
        if available.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let flag = available[0];
        let len = u32::from_be_bytes([available[1], available[2], available[3], available[4]]) as usize;
        if len > MAX_MESSAGE_LEN {
            return Err(GrpcStatus::new(
                Code::ResourceExhausted,
                format!("gRPC-web frame of {len} bytes is too large"),
            ));
        }
        if flag & COMPRESSED_FLAG != 0 {
            return Err(GrpcStatus::new(Code::Internal, "compressed gRPC-web frames are not supported"));
        }
        if available.len() < FRAME_HEADER_LEN + len {
            return Ok(None);
        }
        let payload = available[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len].to_vec();
        self.start += FRAME_HEADER_LEN + len;
        if self.start > 64 * 1024 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if flag & TRAILERS_FLAG != 0 {
            return Ok(Some(Frame::Trailers(parse_trailers(&String::from_utf8_lossy(&payload)))));
        }
        Ok(Some(Frame::Message(payload)))
    }

    /// Whether bytes of an incomplete frame are left (a body cut short).
    pub fn has_partial_frame(&self) -> bool {
        self.start < self.buf.len()
    }
}

/// The status in a trailers block (`name: value` lines); a missing status is UNKNOWN.
pub fn parse_trailers(block: &str) -> GrpcStatus {
    status_from_headers(block.lines().filter_map(|line| line.split_once(':')).map(|(k, v)| (k.trim(), v.trim())))
        .unwrap_or_else(|| GrpcStatus::new(Code::Unknown, "the response ended without a grpc-status"))
}

/// The status in a set of headers or trailers, if `grpc-status` is among them.
pub fn status_from_headers<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<GrpcStatus> {
    let (mut code, mut message) = (None, String::new());
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("grpc-status") {
            code = Some(value.parse().unwrap_or(Code::Unknown as i32));
        } else if name.eq_ignore_ascii_case("grpc-message") {
            message = percent_decode(value);
        }
    }
    code.map(|code| GrpcStatus { code, message })
}

/// grpc-message is percent-encoded (gRPC over HTTP/2 spec).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&value[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use autopilot_contract::v1::{AgentText, Event, StatusRequest};

    fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn body_of(events: &[Event], trailers: &str) -> Vec<u8> {
        let mut body: Vec<u8> = events.iter().flat_map(|e| frame(0, &e.encode_to_vec())).collect();
        body.extend(frame(0x80, trailers.as_bytes()));
        body
    }

    fn events(n: u64) -> Vec<Event> {
        (1..=n)
            .map(|seq| Event {
                task_id: "t".into(),
                seq,
                payload: Some(autopilot_contract::v1::event::Payload::AgentText(AgentText {
                    text: format!("text {seq}"),
                })),
                ..Default::default()
            })
            .collect()
    }

    fn read_all(chunks: impl IntoIterator<Item = Vec<u8>>) -> (Vec<Event>, Option<GrpcStatus>) {
        let mut deframer = Deframer::default();
        let (mut messages, mut status) = (Vec::new(), None);
        for chunk in chunks {
            deframer.push(&chunk);
            while let Some(frame) = deframer.next_frame().unwrap() {
                match frame {
                    Frame::Message(bytes) => messages.push(Event::decode(bytes.as_slice()).unwrap()),
                    Frame::Trailers(s) => status = Some(s),
                }
            }
        }
        assert!(!deframer.has_partial_frame());
        (messages, status)
    }

    #[test]
    fn a_request_is_one_uncompressed_frame() {
        let request = StatusRequest { task_id: "abc".into() };
        let body = encode_request(&request);
        assert_eq!(body[0], 0);
        assert_eq!(u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize, body.len() - 5);
        assert_eq!(StatusRequest::decode(&body[5..]).unwrap(), request);
    }

    #[test]
    fn frames_split_at_every_byte_boundary_are_reassembled() {
        let sent = events(3);
        let body = body_of(&sent, "grpc-status: 0\r\n");
        for size in [1, 2, 3, 5, 7, 64, body.len()] {
            let (got, status) = read_all(body.chunks(size).map(<[u8]>::to_vec));
            assert_eq!(got, sent, "chunks of {size}");
            assert!(status.unwrap().is_ok());
        }
    }

    #[test]
    fn coalesced_frames_in_one_chunk_all_come_out() {
        let sent = events(500);
        let (got, status) = read_all([body_of(&sent, "grpc-status:0")]);
        assert_eq!(got.len(), 500);
        assert_eq!(got, sent);
        assert!(status.unwrap().is_ok());
    }

    #[test]
    fn trailers_carry_the_error_status_percent_decoded() {
        let (_, status) = read_all([frame(0x80, b"grpc-status: 5\r\ngrpc-message: no task with id%20x%3A y\r\n")]);
        assert_eq!(status, Some(GrpcStatus::new(Code::NotFound, "no task with id x: y")));
        assert_eq!(parse_trailers("content-type: x").code, Code::Unknown as i32);
        let headers = [("Grpc-Status", "3"), ("grpc-message", "prompt is required")];
        assert_eq!(status_from_headers(headers), Some(GrpcStatus::new(Code::InvalidArgument, "prompt is required")));
    }

    #[test]
    fn oversized_and_compressed_frames_are_errors_not_panics() {
        let mut deframer = Deframer::default();
        deframer.push(&[0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(deframer.next_frame().unwrap_err().code, Code::ResourceExhausted as i32);
        let mut deframer = Deframer::default();
        deframer.push(&frame(1, b"zz"));
        assert_eq!(deframer.next_frame().unwrap_err().code, Code::Internal as i32);
    }

    #[test]
    fn a_truncated_body_is_noticed() {
        let body = body_of(&events(1), "grpc-status: 0");
        let mut deframer = Deframer::default();
        deframer.push(&body[..body.len() - 3]);
        assert!(matches!(deframer.next_frame(), Ok(Some(Frame::Message(_)))));
        assert!(deframer.next_frame().unwrap().is_none());
        assert!(deframer.has_partial_frame());
    }

    #[test]
    fn a_reply_made_at_the_edge_reads_back_as_the_message_then_ok() {
        let reply = autopilot_contract::v1::StartResponse { task_id: "t".into(), state: 1 };
        let mut deframer = Deframer::default();
        deframer.push(&encode_reply(&reply));
        assert_eq!(deframer.next_frame().unwrap(), Some(Frame::Message(reply.encode_to_vec())));
        assert_eq!(deframer.next_frame().unwrap(), Some(Frame::Trailers(GrpcStatus::new(Code::Ok, ""))));
        assert_eq!(request_message(&encode_request(&reply)).unwrap(), reply.encode_to_vec());
        assert_eq!(request_message(&[0, 0, 0]).unwrap_err().code, Code::InvalidArgument as i32);
    }

    #[test]
    fn codes_map_to_http_statuses_and_names() {
        assert_eq!((http_status(3), code_name(3)), (400, "INVALID_ARGUMENT"));
        assert_eq!((http_status(5), http_status(9), http_status(14), http_status(16)), (404, 409, 503, 401));
        assert_eq!(http_status(8), 429, "an exhausted resource is Too Many Requests...");
        let broke = GrpcStatus::new(Code::ResourceExhausted, format!("{INSUFFICIENT_CREDITS}: the balance is 0"));
        assert_eq!(http_status_of(&broke), 402, "...but out of credits is Payment Required");
        assert_eq!(code_name(99), "UNKNOWN");
    }
}
