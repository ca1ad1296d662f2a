//! A generated client speaking gRPC-web over HTTP/1.1, as the edge worker and browsers reach the
//! service (the contract crate's `grpc-web-client`).

pub use autopilot_contract::grpc_web_client::GrpcWebClient;

/// A gRPC-web client for the service at `addr`.
pub fn grpc_web_client(addr: std::net::SocketAddr) -> GrpcWebClient {
    autopilot_contract::grpc_web_client::connect(&format!("http://{addr}"))
}
