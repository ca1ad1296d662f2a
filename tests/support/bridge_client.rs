//! A WebSocket client of the bridge, as a browser or program uses it: sends `ClientFrame`s and
//! reads `ServerFrame`s in either encoding (binary protobuf or proto3 JSON text).

use std::time::Duration;

use autopilot_contract::v1::{
    client_frame::Request as ClientRequest, server_frame::Frame, ClientFrame, Event, ServerFrame, StreamEventsRequest,
};
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use tokio::net::TcpStream;
use tokio_tungstenite::{tungstenite::Message, MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How a test client encodes its frames.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Encoding {
    Binary,
    Json,
}

/// Sends one frame in `encoding`.
pub async fn send(ws: &mut Socket, frame: &ClientFrame, encoding: Encoding) {
    let message = match encoding {
        Encoding::Binary => Message::Binary(frame.encode_to_vec().into()),
        Encoding::Json => Message::Text(serde_json::to_string(frame).unwrap().into()),
    };
    ws.send(message).await.unwrap();
}

/// The next server frame, checking it came back in `encoding`.
pub async fn receive(ws: &mut Socket, encoding: Encoding) -> ServerFrame {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("a server frame within 60s")
            .expect("the socket is open")
            .expect("a WebSocket message");
        return match message {
            Message::Binary(bytes) => {
                assert_eq!(encoding, Encoding::Binary, "a binary frame answered a JSON client");
                ServerFrame::decode(bytes.as_ref()).unwrap()
            }
            Message::Text(text) => {
                assert_eq!(encoding, Encoding::Json, "a text frame answered a binary client");
                serde_json::from_str(text.as_str()).unwrap()
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected WebSocket message {other:?}"),
        };
    }
}

/// A `stream_events` frame.
pub fn subscribe(request_id: &str, task_id: &str, from_seq: u64) -> ClientFrame {
    ClientFrame {
        request_id: request_id.into(),
        request: Some(ClientRequest::StreamEvents(StreamEventsRequest { task_id: task_id.into(), from_seq })),
    }
}

/// Reads a subscription's frames until it ends (or `stop_after` events), returning the events.
pub async fn read_subscription(
    ws: &mut Socket,
    request_id: &str,
    encoding: Encoding,
    stop_after: Option<usize>,
) -> (Vec<Event>, bool) {
    let mut events = Vec::new();
    loop {
        let frame = receive(ws, encoding).await;
        assert_eq!(frame.request_id, request_id);
        match frame.frame {
            Some(Frame::Event(event)) => {
                events.push(event);
                if Some(events.len()) == stop_after {
                    return (events, false);
                }
            }
            Some(Frame::EndOfStream(_)) => return (events, true),
            other => panic!("unexpected frame in a subscription: {other:?}"),
        }
    }
}

/// Opens a WebSocket (the URL carries its ticket).
pub async fn connect(url: &str) -> Socket {
    tokio_tungstenite::connect_async(url).await.unwrap_or_else(|e| panic!("WebSocket {url}: {e}")).0
}

/// Closes `ws` as a polite client does (RFC 6455: Close with 1000, then wait for the peer's
/// Close) and answers how long the peer took to answer it, having checked it echoed 1000.
/// A peer that never answers fails it after 5 s (clients wait 10-30 s, then report 1006).
pub async fn close_politely(mut ws: Socket) -> Duration {
    use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
    let started = std::time::Instant::now();
    ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "done".into() })).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("the socket ended without the peer's Close: {other:?}"),
            }
        }
    })
    .await
    .expect("the edge answers a Close with its own within 5 s");
    assert_eq!(answer.map(|frame| frame.code), Some(CloseCode::Normal), "the Close echoes the client's code");
    started.elapsed()
}
