//! One listener, every protocol: native gRPC (HTTP/2 cleartext, for grpcurl and generated
//! clients), gRPC-web over HTTP/1.1 (for the edge worker and browsers, with CORS), gRPC
//! reflection (v1 and v1alpha, as grpcurl 1.8 only speaks v1alpha), the standard health service,
//! and a plain `GET /ping` that the edge polls for readiness.
//!
//! `/ping` is added to the axum router after the gRPC-web layer: tonic-web answers every HTTP/1
//! request that is not gRPC-web with 400, so the route must not sit behind it.

use std::{future::Future, sync::Arc};

use autopilot_contract::v1::autopilot_server::AutopilotServer;
use axum::{http::StatusCode, routing::get, serve::ListenerExt};
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_web::GrpcWebLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::grpc_api::AutopilotApi;

/// Headers a gRPC-web client sends and must be allowed to read back, for CORS.
const GRPC_WEB_REQUEST_HEADERS: [&str; 5] =
    ["content-type", "x-grpc-web", "x-user-agent", "grpc-timeout", "authorization"];
const GRPC_WEB_RESPONSE_HEADERS: [&str; 3] = ["grpc-status", "grpc-message", "grpc-status-details-bin"];

/// Serves the API on `listener` until `shutdown` completes, then finishes open requests.
///
/// `shutdown` should stop running tasks before completing, so that streams following them
/// deliver their final event and end by themselves.
///
/// # Errors
/// The reflection service could not be built, or serving failed.
pub async fn run(
    listener: TcpListener,
    api: Arc<AutopilotApi>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<AutopilotServer<AutopilotApi>>().await;

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(autopilot_contract::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(autopilot_contract::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let api = AutopilotServer::from_arc(api);
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([axum::http::Method::POST, axum::http::Method::GET, axum::http::Method::OPTIONS])
        .allow_headers(GRPC_WEB_REQUEST_HEADERS.map(axum::http::HeaderName::from_static))
        .expose_headers(GRPC_WEB_RESPONSE_HEADERS.map(axum::http::HeaderName::from_static));

    let router = Routes::new(api)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .prepare()
        .into_axum_router()
        .layer(GrpcWebLayer::new())
        .layer(cors)
        .route("/ping", get(|| async { "ok" }))
        // Also outside the gRPC-web layer, so an unknown path is a plain 404 rather than
        // tonic-web's 400; gRPC clients read HTTP 404 as UNIMPLEMENTED, as the spec maps it.
        .fallback(|| async {
            (StatusCode::NOT_FOUND, "not found: this service answers gRPC, gRPC-web and GET /ping\n")
        });

    // Without TCP_NODELAY, Nagle's algorithm holds back small stream frames (~5x slower streams).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
