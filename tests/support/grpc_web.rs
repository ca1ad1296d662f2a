//! A generated client speaking gRPC-web over HTTP/1.1, as the edge worker and browsers reach the
//! service (the contract crate's `grpc-web-client`).

pub use autopilot_contract::grpc_web_client::GrpcWebClient;

/// A gRPC-web client for the service at `addr`.
pub fn grpc_web_client(addr: std::net::SocketAddr) -> GrpcWebClient {
    autopilot_contract::grpc_web_client::connect(&format!("http://{addr}"))
}

/// A gRPC request carrying the user's API token, as a client of the edge sends it.
pub fn with_token<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}
