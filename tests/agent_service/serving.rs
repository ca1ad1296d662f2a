//! The one port and what it serves besides native gRPC: gRPC-web over HTTP/1.1 (a whole task,
//! and malformed bodies answered with a gRPC error), `/ping`, CORS only for the origins named,
//! only the hosts the service answers to, reflection (v1 and v1alpha) and health.

use autopilot_contract::v1::{
    autopilot_client::AutopilotClient, StartRequest, StatusRequest, StreamEventsRequest, TaskState,
};
use autopilot_tests::{
    events::{collect, finished, first_tool_result, seqs, stream_all},
    grpc_web::grpc_web_client,
    service::{ServiceFixture, ServiceOptions},
};
use prost::Message;
use tonic::Code;

use crate::{
    http1::{grpc_web_status, header, http_get, http_post, http_send},
    start_request,
};

#[tokio::test]
async fn grpc_web_over_http1_streams_a_whole_task() {
    let setup = ServiceFixture::start().await;
    let mut web = grpc_web_client(setup.service.addr);
    let started = web.start(start_request(&setup.repo, "SCENARIO:write-file")).await.unwrap().into_inner();
    let stream = web
        .stream_events(StreamEventsRequest { task_id: started.task_id.clone(), from_seq: 1 })
        .await
        .unwrap()
        .into_inner();
    let events = collect(stream).await;
    assert_eq!(seqs(&events), (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(finished(&events).state(), TaskState::Succeeded);
    let tool = first_tool_result(&events);
    assert_eq!(tool.output.trim(), "hello from the agent");
    let file = setup.service.work_dir.join("tasks").join(&started.task_id).join("repo/AGENT_NOTES.md");
    assert_eq!(std::fs::read_to_string(file).unwrap(), "hello from the agent\n");
    let status = web.status(StatusRequest { task_id: started.task_id }).await.unwrap().into_inner();
    assert_eq!(status.task.unwrap().state(), TaskState::Succeeded);
}

#[tokio::test]
async fn malformed_grpc_web_bodies_get_a_grpc_error_and_the_service_keeps_serving() {
    let setup = ServiceFixture::start().await;
    let addr = setup.service.addr;
    let garbage_message = {
        let mut frame = vec![0u8, 0, 0, 0, 4];
        frame.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        frame
    };
    let truncated_frame = vec![0u8, 0, 0, 1, 0, 1, 2, 3];
    let start = StartRequest { repository_url: "x".into(), ..Default::default() }.encode_to_vec();
    let compressed_flag = [&[1u8, 0, 0, 0, start.len() as u8][..], &start].concat();
    for body in [garbage_message, truncated_frame, compressed_flag, b"not grpc at all".to_vec()] {
        let (status, headers, _) =
            http_post(addr, "/autopilot.v1.Autopilot/Start", "application/grpc-web+proto", &body);
        assert_eq!(status, 200, "gRPC-web errors travel as grpc-status, not HTTP status");
        let grpc_status = headers.iter().find(|(k, _)| k == "grpc-status").map(|(_, v)| v.clone());
        assert!(matches!(grpc_status.as_deref(), Some(s) if s != "0"), "{headers:?}");
    }
    assert_eq!(http_get(addr, "/ping"), (200, "ok".to_string()));
    let mut client = setup.service.client().await;
    let started = client.start(start_request(&setup.repo, "SCENARIO:answer")).await.unwrap().into_inner();
    assert_eq!(finished(&stream_all(&mut client, &started.task_id, 1).await).state(), TaskState::Succeeded);
}

#[tokio::test]
async fn ping_answers_over_http1() {
    let setup = ServiceFixture::start().await;
    assert_eq!(http_get(setup.service.addr, "/ping"), (200, "ok".to_string()));
    assert_eq!(http_get(setup.service.addr, "/no-such-page").0, 404);
}

#[tokio::test]
async fn no_web_page_may_call_the_service_unless_its_origin_is_named() {
    let preflight = |origin| {
        [
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "x-grpc-web"),
        ]
    };
    let closed = ServiceFixture::start().await;
    let addr = closed.service.addr;
    let (status, headers, _) = grpc_web_status(addr, &[("Origin", "https://evil.example")]);
    assert_eq!((status, header(&headers, "access-control-allow-origin")), (200, None), "{headers:?}");
    let (_, headers, _) =
        http_send(addr, "OPTIONS", "/autopilot.v1.Autopilot/Status", &preflight("https://evil.example"), &[]);
    assert_eq!(header(&headers, "access-control-allow-origin"), None, "a preflight gets no CORS either: {headers:?}");

    let open = ServiceFixture::start_with(ServiceOptions {
        extra_args: vec!["--cors-origin".into(), "https://ok.example".into()],
        ..Default::default()
    })
    .await;
    let addr = open.service.addr;
    let (status, headers, _) = grpc_web_status(addr, &[("Origin", "https://ok.example")]);
    assert_eq!((status, header(&headers, "access-control-allow-origin")), (200, Some("https://ok.example")));
    assert!(header(&headers, "access-control-expose-headers").is_some_and(|h| h.contains("grpc-status")));
    let (_, headers, _) =
        http_send(addr, "OPTIONS", "/autopilot.v1.Autopilot/Status", &preflight("https://ok.example"), &[]);
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("https://ok.example"), "{headers:?}");
    let (_, headers, _) = grpc_web_status(addr, &[("Origin", "https://evil.example")]);
    assert_eq!(header(&headers, "access-control-allow-origin"), None, "{headers:?}");
    let (_, headers, _) =
        http_send(addr, "OPTIONS", "/autopilot.v1.Autopilot/Status", &preflight("https://evil.example"), &[]);
    assert_eq!(header(&headers, "access-control-allow-origin"), None, "{headers:?}");
}

#[tokio::test]
async fn requests_for_a_host_the_service_does_not_answer_to_are_refused() {
    let setup = ServiceFixture::start().await;
    let addr = setup.service.addr;
    // DNS rebinding: a page on evil.example whose name now points at this machine.
    let (status, _, body) = grpc_web_status(addr, &[("Host", "evil.example:8080")]);
    assert_eq!(status, 403);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "host evil.example is not allowed here; start the service with --allowed-host evil.example to serve it\n"
    );
    // Over HTTP/2 the name is the :authority; the 403 carries a gRPC status for gRPC clients.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .origin("http://evil.example".parse().unwrap())
        .connect()
        .await
        .unwrap();
    let refused = AutopilotClient::new(channel).status(StatusRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("start the service with --allowed-host evil.example"), "{refused:?}");
    // Health checks may use any name; the names the service is known by pass, on any port.
    assert_eq!(http_send(addr, "GET", "/ping", &[("Host", "evil.example")], &[]).0, 200);
    for host in ["localhost", "localhost:8080", "127.0.0.1", &addr.to_string(), "[::1]:9"] {
        let (status, headers, _) = grpc_web_status(addr, &[("Host", host)]);
        assert_eq!((status, header(&headers, "grpc-status")), (200, Some("5")), "{host}: NOT_FOUND, no task yet");
    }
    let mut client = setup.service.client().await;
    assert_eq!(client.status(StatusRequest::default()).await.unwrap_err().code(), Code::NotFound, "still serving");

    let named = ServiceFixture::start_with(ServiceOptions {
        extra_args: vec!["--allowed-host".into(), "evil.example".into()],
        ..Default::default()
    })
    .await;
    let (status, headers, _) = grpc_web_status(named.service.addr, &[("Host", "evil.example")]);
    assert_eq!((status, header(&headers, "grpc-status")), (200, Some("5")), "{headers:?}");
}

#[tokio::test]
async fn reflection_lists_the_service_in_v1_and_v1alpha() {
    use tonic_reflection::pb::{v1, v1alpha};
    let setup = ServiceFixture::start().await;
    let channel = setup.service.channel().await;

    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut replies = client.server_reflection_info(futures::stream::iter([request])).await.unwrap().into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        replies.message().await.unwrap().unwrap().message_response
    else {
        panic!("not a list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"autopilot.v1.Autopilot".to_string()), "{names:?}");

    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
            "autopilot.v1.Autopilot".into(),
        )),
    };
    let mut replies = client.server_reflection_info(futures::stream::iter([request])).await.unwrap().into_inner();
    let Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        replies.message().await.unwrap().unwrap().message_response
    else {
        panic!("no descriptor")
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

#[tokio::test]
async fn health_reports_serving() {
    use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};
    let setup = ServiceFixture::start().await;
    let channel = setup.service.channel().await;
    let mut health = HealthClient::new(channel);
    for service in ["", "autopilot.v1.Autopilot"] {
        let reply = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(reply.status(), ServingStatus::Serving, "{service:?}");
    }
}
