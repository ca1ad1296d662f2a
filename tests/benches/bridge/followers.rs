//! The latency of a live task's events with 1 and with 200 sockets following it (one upstream
//! stream per task, fanned out), beside the floor workerd itself sets: one Durable Object
//! sending each message to 1 and to 200 sockets, with no bridge in between (`/bench/fanout`).

use std::time::Duration;

use autopilot_contract::v1::{
    client_frame::Request as ClientRequest, server_frame::Frame, ServerFrame, StreamEventsRequest,
};
use autopilot_tests::{
    edge::Edge,
    figures::{ms, percentile},
    git_fixture::GitFixture,
};
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use tokio_tungstenite::tungstenite::Message;

use super::{part, WithId};

/// The followers' figures, beside the floor workerd itself sets: the latency of live events with
/// 1 and 200 sockets following one task, and of one object sending each message to 1 and 200
/// sockets with no bridge in between.
pub async fn followers(edge: &Edge, token: &str, session_id: &str, repo: &GitFixture, frame_len: usize) {
    if !part("followers") {
        return;
    }
    let floor = (fanout_floor(edge, 1, frame_len).await, fanout_floor(edge, 200, frame_len).await);
    let one = followers_latency(edge, token, session_id, repo, 1).await;
    let many = followers_latency(edge, token, session_id, repo, 200).await;
    println!(
        "followers of one live task (one upstream stream per task): 1 follower p50 {:.2} ms p99 {:.2} ms; \
         200 followers p50 {:.2} ms p99 {:.2} ms ({} deliveries); p50 ratio 200/1 {:.2}",
        one.0,
        one.1,
        many.0,
        many.1,
        many.2,
        many.0 / one.0
    );
    println!(
        "floor, one object sending each message to its sockets (no bridge): 1 socket p50 {:.2} ms p99 {:.2} ms; \
         200 sockets p50 {:.2} ms p99 {:.2} ms; p50 ratio 200/1 {:.2}; 200 followers p50 over the floor's {:.2}x",
        floor.0 .0,
        floor.0 .1,
        floor.1 .0,
        floor.1 .1,
        floor.1 .0 / floor.0 .0,
        many.0 / floor.1 .0
    );
}

/// `count` sockets follow one live task (a real one, whose slow steps leave time to subscribe
/// them all); the service-to-client delay of every event recorded after the last subscription,
/// over all followers: p50 and p99 (ms) and how many deliveries were measured.
async fn followers_latency(
    edge: &Edge,
    token: &str,
    session_id: &str,
    repo: &GitFixture,
    count: usize,
) -> (f64, f64, usize) {
    let started = edge
        .post_json(
            "/api/container/start",
            token,
            serde_json::json!({"repositoryUrl": repo.url(), "prompt": "SCENARIO:slow-tools:8"}),
        )
        .await;
    let task_id = started["taskId"].as_str().expect("a task").to_string();
    let mut sockets = Vec::new();
    for _ in 0..count {
        let (socket, _) = tokio_tungstenite::connect_async(edge.ws_ticket_url(token, session_id).await).await.unwrap();
        sockets.push(socket);
    }
    for socket in &mut sockets {
        let follow = ClientRequest::StreamEvents(StreamEventsRequest { task_id: task_id.clone(), from_seq: 1 });
        socket.send(Message::Binary(follow.with_id("follow".into()).encode_to_vec().into())).await.unwrap();
    }
    // Measured from when every follower has its first frame (the subscriptions are in place):
    // the steady state, not the burst of 200 subscriptions arriving at once.
    let (first_frames, mut firsts) = tokio::sync::mpsc::unbounded_channel::<()>();
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            let first_frames = first_frames.clone();
            tokio::spawn(async move {
                let (mut received, mut told) = (Vec::new(), false);
                while let Some(Ok(message)) = socket.next().await {
                    let Message::Binary(bytes) = message else { continue };
                    if !std::mem::replace(&mut told, true) {
                        let _ = first_frames.send(());
                    }
                    match ServerFrame::decode(bytes.as_ref()).unwrap().frame {
                        Some(Frame::Event(event)) => {
                            let time = event.time.unwrap();
                            let at = std::time::UNIX_EPOCH + Duration::new(time.seconds as u64, time.nanos as u32);
                            received.push((at, std::time::SystemTime::now().duration_since(at).unwrap_or_default()));
                        }
                        Some(Frame::EndOfStream(_)) | Some(Frame::Error(_)) => break,
                        _ => {}
                    }
                }
                received
            })
        })
        .collect();
    drop(first_frames);
    for _ in 0..count {
        if firsts.recv().await.is_none() {
            break;
        }
    }
    let ready_at = std::time::SystemTime::now();
    let mut delays = Vec::new();
    for reader in readers {
        delays.extend(reader.await.unwrap().into_iter().filter(|(at, _)| *at > ready_at).map(|(_, delay)| delay));
    }
    let measured = delays.len();
    assert!(measured > 0, "no live event reached the {count} followers");
    (ms(percentile(&mut delays, 0.5)), ms(percentile(&mut delays, 0.99)), measured)
}

/// The floor under `followers_latency`: `count` sockets on the bench's fan-out route, where one
/// Durable Object sends each message a sender socket sends to all the others, with no bridge in
/// between. The sender sends what a slow task's follow receives: rounds of one event, then two
/// together; p50 and p99 (ms) of send-to-receipt over all receivers, and the deliveries measured.
async fn fanout_floor(edge: &Edge, count: usize, frame_len: usize) -> (f64, f64, usize) {
    let url = &format!("{}/bench/fanout", edge.ws_base());
    let (mut sender, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut receivers = Vec::new();
    for _ in 0..count {
        receivers.push(tokio_tungstenite::connect_async(url).await.unwrap().0);
    }
    // A message: how many copies each socket gets, then the send time (ns since the epoch),
    // padded to an event frame's size.
    let message = |copies: u8| {
        let sent = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let mut bytes = vec![copies];
        bytes.extend_from_slice(&sent.to_le_bytes());
        bytes.resize(frame_len.max(17) + 1, 0);
        Message::Binary(bytes.into())
    };
    // Every receiver has its first message before the rounds are measured.
    sender.send(message(1)).await.unwrap();
    for receiver in &mut receivers {
        while !matches!(receiver.next().await, Some(Ok(Message::Binary(_)))) {}
    }
    let (rounds, per_round) = (15, 3);
    let readers: Vec<_> = receivers
        .into_iter()
        .map(|mut receiver| {
            tokio::spawn(async move {
                let mut delays = Vec::new();
                while delays.len() < rounds * per_round {
                    let Some(Ok(Message::Binary(bytes))) = receiver.next().await else { break };
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
                    let sent = u128::from_le_bytes(bytes[..16].try_into().unwrap());
                    delays.push(Duration::from_nanos(now.saturating_sub(sent) as u64));
                }
                delays
            })
        })
        .collect();
    for _ in 0..rounds {
        sender.send(message(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        sender.send(message(2)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut delays = Vec::new();
    for reader in readers {
        delays.extend(reader.await.unwrap());
    }
    let measured = delays.len();
    assert_eq!(measured, count * rounds * per_round, "every receiver gets every message");
    (ms(percentile(&mut delays, 0.5)), ms(percentile(&mut delays, 0.99)), measured)
}
