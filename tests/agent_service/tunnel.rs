//! Tunnel mode: the machine (`agent-service connect`) answers ListTasks and follow-up frames
//! through a stand-in edge as the RPCs do, refusals included.

use std::time::Duration;

use autopilot_contract::v1::{
    client_frame::Request as FrameRequest, server_frame::Frame, ClientFrame, ListTasksRequest, ServerFrame,
    ServerFrameBatch, StartRequest, StreamEventsRequest, TaskState,
};
use autopilot_tests::{
    events::finished, fake_model_api::FakeModelApi, git_fixture::GitFixture, service::CANARY_API_KEY,
    tunnel_machine::Machine,
};
use futures::{SinkExt, StreamExt};
use prost::Message;
use tonic::Code;

use crate::{listed_ids, start_request};

/// The edge's side of tunnel mode, as little of it as the machine needs: a WebSocket server the
/// machine connects out to, sending `ClientFrame`s and reading the `ServerFrame`s of its batches.
struct StandInEdge {
    socket: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    received: std::collections::VecDeque<ServerFrame>,
}

impl StandInEdge {
    /// Listens on loopback; `connect` starts the machine against the URL, then the edge accepts it.
    async fn accept(connect: impl FnOnce(&str) -> Machine) -> (StandInEdge, Machine) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let machine = connect(&format!("http://{}", listener.local_addr().unwrap()));
        let (stream, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept())
            .await
            .expect("the machine connects")
            .unwrap();
        let socket = tokio_tungstenite::accept_async(stream).await.unwrap();
        (StandInEdge { socket, received: Default::default() }, machine)
    }

    async fn send(&mut self, request_id: &str, request: FrameRequest) {
        let frame = ClientFrame { request_id: request_id.into(), request: Some(request) };
        self.socket.send(tokio_tungstenite::tungstenite::Message::Binary(frame.encode_to_vec().into())).await.unwrap();
    }

    /// The next frame the machine sent (pings are answered by the socket itself).
    async fn receive(&mut self) -> ServerFrame {
        while self.received.is_empty() {
            let message = tokio::time::timeout(Duration::from_secs(60), self.socket.next())
                .await
                .expect("a frame within 60s")
                .expect("the machine is connected")
                .unwrap();
            if let tokio_tungstenite::tungstenite::Message::Binary(bytes) = message {
                self.received.extend(ServerFrameBatch::decode(bytes.as_ref()).unwrap().frames);
            }
        }
        self.received.pop_front().unwrap()
    }

    /// The answer to a unary request.
    async fn call(&mut self, request_id: &str, request: FrameRequest) -> Frame {
        self.send(request_id, request).await;
        let reply = self.receive().await;
        assert_eq!(reply.request_id, request_id, "{reply:?}");
        reply.frame.expect("a frame")
    }
}

#[tokio::test]
async fn tunnel_mode_answers_list_tasks_and_follow_up_frames_as_the_rpc_does() {
    let model_api = FakeModelApi::start().await.unwrap();
    let repo = GitFixture::new();
    let (mut edge, _machine) = StandInEdge::accept(|url| Machine::connect(&model_api, url, "ap_test-token")).await;

    let start =
        FrameRequest::Start(start_request(&repo, &format!("SCENARIO:answer Through the tunnel {CANARY_API_KEY}")));
    let Frame::Start(started) = edge.call("s", start).await else { panic!("expected a start reply") };
    edge.send("e", FrameRequest::StreamEvents(StreamEventsRequest { task_id: started.task_id.clone(), from_seq: 1 }))
        .await;
    while !matches!(edge.receive().await.frame, Some(Frame::EndOfStream(_))) {}

    let Frame::ListTasks(listed) = edge.call("l", FrameRequest::ListTasks(ListTasksRequest::default())).await else {
        panic!("expected a list_tasks reply")
    };
    assert_eq!(listed_ids(&listed), [started.task_id.as_str()]);
    assert_eq!(listed.tasks[0].title, "SCENARIO:answer Through the tunnel ***");
    assert_eq!((listed.tasks[0].state(), listed.next_page_token.as_str()), (TaskState::Succeeded, ""));

    for (request, field) in [
        (ListTasksRequest { page_size: 101, ..Default::default() }, "page_size"),
        (ListTasksRequest { page_token: "xyz".into(), ..Default::default() }, "page_token"),
    ] {
        let Frame::Error(error) = edge.call("bad", FrameRequest::ListTasks(request)).await else {
            panic!("expected an error")
        };
        assert_eq!(error.code, Code::InvalidArgument as i32, "{error:?}");
        assert!(error.message.starts_with(field), "{error:?}");
    }

    // Follow-ups through frames: the same task machinery, the same refusals.
    let follow_up = StartRequest {
        parent_task_id: started.task_id.clone(),
        prompt: "Once more\nSCENARIO:answer".into(),
        ..Default::default()
    };
    let Frame::Start(continued) = edge.call("f", FrameRequest::Start(follow_up.clone())).await else {
        panic!("expected a start reply")
    };
    edge.send(
        "fe",
        FrameRequest::StreamEvents(StreamEventsRequest { task_id: continued.task_id.clone(), from_seq: 1 }),
    )
    .await;
    let mut last = None;
    loop {
        match edge.receive().await.frame {
            Some(Frame::EndOfStream(_)) => break,
            Some(Frame::Event(event)) => last = Some(event),
            _ => {}
        }
    }
    assert_eq!(finished(&[last.expect("events")]).state(), TaskState::Succeeded);
    let unknown = StartRequest { parent_task_id: "7d3c0c1e-0000-4000-8000-000000000000".into(), ..follow_up };
    let Frame::Error(error) = edge.call("u", FrameRequest::Start(unknown)).await else { panic!("expected an error") };
    assert_eq!(error.code, Code::NotFound as i32, "{error:?}");
    assert_eq!(error.message, "no task with id 7d3c0c1e-0000-4000-8000-000000000000");
}
