//! A generated client speaking gRPC-web over HTTP/1.1 (tonic-web's client layer over hyper), as
//! the edge worker and browsers reach the service.

use autopilot_contract::v1::autopilot_client::AutopilotClient;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use tonic_web::{GrpcWebCall, GrpcWebClientLayer, GrpcWebClientService};

/// The client type: generated stubs over gRPC-web over an HTTP/1.1-only hyper client.
pub type GrpcWebClient = AutopilotClient<GrpcWebClientService<Client<HttpConnector, GrpcWebCall<tonic::body::Body>>>>;

/// A gRPC-web client for the service at `addr`.
pub fn grpc_web_client(addr: std::net::SocketAddr) -> GrpcWebClient {
    let http1 = Client::builder(TokioExecutor::new()).build_http();
    let service = tower::ServiceBuilder::new().layer(GrpcWebClientLayer::new()).service(http1);
    AutopilotClient::with_origin(service, format!("http://{addr}").parse().unwrap())
}
