//! Tunnel mode's machine side (`agent-service connect`): the user's own machine opens a WebSocket
//! out to the edge (`GET /api/tunnel/connect`, with the user's API token), so it needs no open
//! port. The edge sends `ClientFrame`s; the [`FrameServer`] answers them with the same API the
//! gRPC server runs. When the connection drops, the task keeps running here and the machine
//! reconnects with backoff; browsers then resubscribe from their last seq.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use autopilot_contract::v1::{server_frame::Frame, ClientFrame, ServerFrame, ServerFrameBatch};
use backon::{BackoffBuilder, ExponentialBuilder};
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{
    self, client::IntoClientRequest, http::header::AUTHORIZATION, protocol::frame::coding::CloseCode, Message,
};
use url::Url;

use crate::{
    frame_server::{self, FrameServer},
    grpc_api::AutopilotApi,
};

/// Close code with which the edge replaces this machine by another of the same user.
const REPLACED_CLOSE_CODE: u16 = 4001;
/// Replies buffered before the frame server waits for the socket.
const REPLY_BUFFER: usize = 1024;
/// Frames sent in one message stop growing past this size (the edge accepts 1 MiB messages).
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// A connection that lasted this long starts the next backoff from the beginning.
const STABLE_CONNECTION: Duration = Duration::from_secs(30);
/// How long, after shutdown stopped the running task, its final frames get to reach the edge.
const FLUSH_ON_SHUTDOWN: Duration = Duration::from_millis(500);

/// Where and as whom to connect. (No `Debug`: it holds the token.)
#[derive(Clone)]
pub struct TunnelSettings {
    /// The edge's base URL (`https://...`, or `http://...` locally).
    pub edge: Url,
    /// The user's API token (sent as a bearer token; never logged).
    pub token: String,
    /// How often to ping the edge; three intervals without a word from it count as a drop.
    pub ping_interval: Duration,
}

/// The WebSocket URL of the tunnel endpoint under `edge`.
///
/// # Errors
/// `edge` is not an http(s) or ws(s) URL.
pub fn connect_url(edge: &Url) -> Result<Url, String> {
    let scheme = match edge.scheme() {
        "https" | "wss" => "wss",
        "http" | "ws" => "ws",
        other => return Err(format!("the edge URL must be https:// (or http:// locally), not {other}://")),
    };
    let mut url = edge.clone();
    url.set_scheme(scheme).map_err(|()| "the edge URL cannot carry a WebSocket scheme".to_string())?;
    url.set_path("/api/tunnel/connect");
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// Why a connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Worth reconnecting: the network or the edge went away.
    Dropped(String),
    /// Not worth reconnecting: the edge refused this machine or replaced it.
    Refused(String),
}

/// Keeps this machine connected to the edge until `shutdown` completes.
///
/// # Errors
/// The edge refused the token or replaced this machine by another.
pub async fn run(
    api: Arc<AutopilotApi>,
    settings: TunnelSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let url = connect_url(&settings.edge)?;
    let backoff = || {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(30))
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut delays = backoff();
    let (stopped_tx, mut stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stopped_tx.send(true);
    });
    loop {
        let began = Instant::now();
        let serving = connection(&api, &url, &settings);
        tokio::pin!(serving);
        let ended = tokio::select! {
            ended = &mut serving => ended,
            _ = stopped.wait_for(|stopped| *stopped) => {
                // Shutdown has stopped the running task: serve a moment longer, so the final
                // events reach the browsers following it.
                let _ = tokio::time::timeout(FLUSH_ON_SHUTDOWN, &mut serving).await;
                return Ok(());
            }
        };
        let why = match ended {
            Ended::Refused(why) => return Err(why.into()),
            Ended::Dropped(why) => why,
        };
        if began.elapsed() >= STABLE_CONNECTION {
            delays = backoff();
        }
        let delay = delays.next().unwrap_or(Duration::from_secs(30));
        tracing::warn!(reason = %why, retry_in = ?delay, "tunnel: not connected to the edge; tasks keep running here");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stopped.wait_for(|stopped| *stopped) => return Ok(()),
        }
    }
}

/// One connection to the edge, served until it ends.
async fn connection(api: &Arc<AutopilotApi>, url: &Url, settings: &TunnelSettings) -> Ended {
    let mut request = match url.as_str().into_client_request() {
        Ok(request) => request,
        Err(e) => return Ended::Refused(format!("bad edge URL: {e}")),
    };
    match format!("Bearer {}", settings.token).parse() {
        Ok(value) => request.headers_mut().insert(AUTHORIZATION, value),
        Err(_) => return Ended::Refused("the token is not a valid header value".into()),
    };
    let socket = match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => socket,
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status();
            let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            return match status.as_u16() {
                401 | 403 => Ended::Refused(format!("the edge refused the token (HTTP {status}): {body}")),
                404 => Ended::Refused(format!("{url} has no tunnel endpoint (HTTP 404): is --edge right?")),
                _ => Ended::Dropped(format!("the edge answered HTTP {status}: {body}")),
            };
        }
        Err(e) => return Ended::Dropped(format!("could not reach {url}: {e}")),
    };
    tracing::info!(edge = %url, "tunnel: connected; serving this machine's tasks through the edge");
    let (mut sink, mut stream) = socket.split();
    let (replies, mut outgoing) = mpsc::channel::<ServerFrame>(REPLY_BUFFER);
    let mut server = FrameServer::new(Arc::clone(api), replies.clone());
    let mut ping = tokio::time::interval(settings.ping_interval);
    let mut last_heard = Instant::now();
    // A frame that did not fit the last batch: it opens the next one.
    let mut held: Option<ServerFrame> = None;
    loop {
        tokio::select! {
            message = stream.next() => {
                last_heard = Instant::now();
                match message {
                    Some(Ok(Message::Binary(bytes))) => match ClientFrame::decode(bytes) {
                        Ok(frame) => server.serve(frame),
                        Err(e) => {
                            // try_send: this loop is the queue's only reader, so it must not wait on it.
                            let _ = replies.try_send(refusal(format!("malformed ClientFrame (protobuf): {e}")));
                        }
                    },
                    Some(Ok(Message::Text(_))) => {
                        let _ = replies.try_send(refusal("the tunnel carries binary protobuf frames, not text".into()));
                    }
                    Some(Ok(Message::Close(close))) => return closed_by_edge(close),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Ended::Dropped(format!("the connection failed: {e}")),
                    None => return Ended::Dropped("the connection closed".into()),
                }
            }
            Some(frame) = next_frame(&mut held, &mut outgoing) => {
                let batch = batch_ready_frames(frame, &mut outgoing, &mut held);
                if let Err(e) = sink.send(Message::Binary(batch.encode_to_vec().into())).await {
                    return Ended::Dropped(format!("could not send to the edge: {e}"));
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > settings.ping_interval * 3 {
                    return Ended::Dropped(format!("no word from the edge for {:?}", last_heard.elapsed()));
                }
                if let Err(e) = sink.send(Message::Ping(Default::default())).await {
                    return Ended::Dropped(format!("could not ping the edge: {e}"));
                }
            }
        }
    }
}

/// The frame to send next: the one held back from the last batch, or the next queued.
async fn next_frame(held: &mut Option<ServerFrame>, queue: &mut mpsc::Receiver<ServerFrame>) -> Option<ServerFrame> {
    match held.take() {
        Some(frame) => Some(frame),
        None => queue.recv().await,
    }
}

/// `first` and the frames already queued behind it, while they fit in [`MAX_BATCH_BYTES`] (the
/// edge pays per WebSocket message, so a backlog goes in one). A frame that does not fit is put in
/// `held` for the next batch; a frame larger than the limit travels alone.
fn batch_ready_frames(
    first: ServerFrame,
    queue: &mut mpsc::Receiver<ServerFrame>,
    held: &mut Option<ServerFrame>,
) -> ServerFrameBatch {
    let mut size = first.encoded_len();
    let mut frames = vec![first];
    while let Ok(frame) = queue.try_recv() {
        if size + frame.encoded_len() > MAX_BATCH_BYTES {
            *held = Some(frame);
            break;
        }
        size += frame.encoded_len();
        frames.push(frame);
    }
    ServerFrameBatch { frames }
}

/// How the edge's close frame ends the connection.
fn closed_by_edge(close: Option<tungstenite::protocol::CloseFrame>) -> Ended {
    match close {
        Some(frame) if frame.code == CloseCode::from(REPLACED_CLOSE_CODE) => {
            Ended::Refused(format!("the edge closed this connection: {}", frame.reason))
        }
        Some(frame) => Ended::Dropped(format!("the edge closed the connection ({}): {}", frame.code, frame.reason)),
        None => Ended::Dropped("the edge closed the connection".into()),
    }
}

/// The reply to a frame that could not be read.
fn refusal(message: String) -> ServerFrame {
    let error = frame_server::error(&tonic::Status::invalid_argument(message));
    ServerFrame { request_id: String::new(), frame: Some(Frame::Error(error)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tunnel_endpoint_is_under_the_edge_url() {
        let url = |s: &str| connect_url(&Url::parse(s).unwrap());
        assert_eq!(
            url("https://autopilot.example.com").unwrap().as_str(),
            "wss://autopilot.example.com/api/tunnel/connect"
        );
        assert_eq!(url("http://127.0.0.1:8787/").unwrap().as_str(), "ws://127.0.0.1:8787/api/tunnel/connect");
        assert_eq!(url("https://x.dev/some/page?q=1#f").unwrap().as_str(), "wss://x.dev/api/tunnel/connect");
        assert!(url("ftp://x.dev").unwrap_err().contains("https://"));
    }

    #[test]
    fn a_backlog_travels_in_one_batch_in_order() {
        let frame = |id: &str| ServerFrame { request_id: id.into(), frame: None };
        let (tx, mut rx) = mpsc::channel(8);
        let mut held = None;
        for id in ["b", "c"] {
            tx.try_send(frame(id)).unwrap();
        }
        let batch = batch_ready_frames(frame("a"), &mut rx, &mut held);
        let ids: Vec<&str> = batch.frames.iter().map(|f| f.request_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(batch_ready_frames(frame("d"), &mut rx, &mut held).frames.len(), 1, "nothing waits: one frame");
        assert!(held.is_none());
    }

    #[tokio::test]
    async fn a_batch_never_grows_past_the_limit_and_what_does_not_fit_goes_next() {
        let big =
            |id: &str| ServerFrame { request_id: format!("{id}{}", "x".repeat(MAX_BATCH_BYTES / 3)), frame: None };
        let (tx, mut rx) = mpsc::channel(8);
        let mut held = None;
        for id in ["b", "c", "d"] {
            tx.try_send(big(id)).unwrap();
        }
        let first = batch_ready_frames(big("a"), &mut rx, &mut held);
        assert_eq!(first.frames.len(), 2, "a third of the limit each: two fit");
        assert!(first.encoded_len() <= MAX_BATCH_BYTES + 16, "{}", first.encoded_len());
        let next = next_frame(&mut held, &mut rx).await.unwrap();
        assert!(next.request_id.starts_with('c'), "the held frame opens the next batch, in order");
        let second = batch_ready_frames(next, &mut rx, &mut held);
        let starts: Vec<char> = second.frames.iter().map(|f| f.request_id.chars().next().unwrap()).collect();
        assert_eq!(starts, ['c', 'd']);
        let huge = ServerFrame { request_id: "y".repeat(MAX_BATCH_BYTES * 2), frame: None };
        assert_eq!(batch_ready_frames(huge, &mut rx, &mut held).frames.len(), 1, "an oversized frame goes alone");
    }

    #[test]
    fn only_a_replacement_stops_reconnecting() {
        let close = |code: u16, reason: &str| {
            Some(tungstenite::protocol::CloseFrame { code: CloseCode::from(code), reason: reason.to_string().into() })
        };
        assert!(matches!(closed_by_edge(close(4001, "replaced")), Ended::Refused(why) if why.contains("replaced")));
        assert!(matches!(closed_by_edge(close(1001, "going away")), Ended::Dropped(_)));
        assert!(matches!(closed_by_edge(None), Ended::Dropped(_)));
    }
}
