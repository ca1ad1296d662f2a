//! One listener, every protocol: native gRPC (HTTP/2 cleartext, for grpcurl and generated
//! clients), gRPC-web over HTTP/1.1 (for the edge worker, and browsers of origins the operator
//! named: [`crate::cors`]), gRPC reflection (v1 and v1alpha, as grpcurl 1.8 only speaks
//! v1alpha), the standard health service, and a plain `GET /ping` that the edge polls for
//! readiness. Every request but `/ping` must be addressed to a host the service answers to
//! ([`crate::host_guard`]).
//!
//! `/ping` is added to the axum router after the gRPC-web layer: tonic-web answers every HTTP/1
//! request that is not gRPC-web with 400, so the route must not sit behind it.

use std::{future::Future, sync::Arc};

use autopilot_contract::v1::autopilot_server::AutopilotServer;
use axum::{http::StatusCode, routing::get, serve::ListenerExt};
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_web::GrpcWebLayer;

use crate::{cors::cors_layer, grpc_api::AutopilotApi, host_guard::AllowedHosts};

/// Largest request accepted: a Start carrying a 16 MiB workspace snapshot, with room for the rest.
const MAX_REQUEST_BYTES: usize = crate::workspace_snapshot::MAX_SNAPSHOT_BYTES + 1024 * 1024;
/// Largest reply sent: GetDiff's 64 MiB of patch text, with room for the rest.
const MAX_REPLY_BYTES: usize = 65 * 1024 * 1024;

/// Who may reach the service over HTTP.
#[derive(Debug, Clone)]
pub struct Access {
    /// Browser origins allowed by CORS (none: no CORS headers at all).
    pub cors_origins: Vec<String>,
    /// Host names requests may be addressed to.
    pub allowed_hosts: AllowedHosts,
}

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
    access: Access,
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

    // A follow-up's Start may carry a workspace snapshot (16 MiB at most) and ExportWorkspace
    // answers one; GetDiff answers up to 64 MiB of patches.
    let api = AutopilotServer::from_arc(api)
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(MAX_REPLY_BYTES);
    let mut router = Routes::new(api)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .prepare()
        .into_axum_router()
        .layer(GrpcWebLayer::new());
    if let Some(cors) = cors_layer(&access.cors_origins) {
        router = router.layer(cors);
    }
    let router = router
        .route("/ping", get(|| async { "ok" }))
        // Also outside the gRPC-web layer, so an unknown path is a plain 404 rather than
        // tonic-web's 400; gRPC clients read HTTP 404 as UNIMPLEMENTED, as the spec maps it.
        .fallback(|| async {
            (StatusCode::NOT_FOUND, "not found: this service answers gRPC, gRPC-web and GET /ping\n")
        })
        // Outermost, over the fallback too; it lets /ping through itself.
        .layer(axum::middleware::from_fn_with_state(Arc::new(access.allowed_hosts), crate::host_guard::guard));

    // Without TCP_NODELAY, Nagle's algorithm holds back small stream frames (~5x slower streams).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
