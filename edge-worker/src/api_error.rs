//! One error scheme for the JSON routes: a gRPC status becomes an HTTP status (see
//! [`crate::grpc_web::http_status_of`]) and the body `{"error": {"code": "NOT_FOUND", "message": ...}}`.
//! On gRPC-web routes the same status travels the gRPC way, as a trailers-only response.

use worker::Response;

use crate::grpc_web::{code_name, http_status_of, Code, GrpcStatus};

/// The JSON error response for `status`.
pub fn error_response(status: &GrpcStatus) -> worker::Result<Response> {
    let body = serde_json::json!({"error": {"code": code_name(status.code), "message": status.message}});
    Ok(Response::from_json(&body)?.with_status(http_status_of(status)))
}

/// A 404 for paths no route serves.
pub fn not_found(path: &str) -> worker::Result<Response> {
    error_response(&GrpcStatus::new(Code::NotFound, format!("no route for {path}")))
}

/// A gRPC-web "trailers-only" response carrying `status`, so gRPC-web clients read a gRPC status.
/// `http_status` is 200 as gRPC-web expects, or 401 where HTTP-level clients should see it too.
pub fn grpc_web_error(status: &GrpcStatus, http_status: u16) -> worker::Result<Response> {
    let headers = worker::Headers::new();
    headers.set("content-type", crate::grpc_web::CONTENT_TYPE)?;
    headers.set("grpc-status", &status.code.to_string())?;
    headers.set("grpc-message", &status.message.replace(['\r', '\n'], " "))?;
    Ok(Response::empty()?.with_status(http_status).with_headers(headers))
}
