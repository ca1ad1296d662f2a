//! One error scheme for the JSON routes: a gRPC status becomes an HTTP status (see
//! [`crate::grpc_web::http_status`]) and the body `{"error": {"code": "NOT_FOUND", "message": ...}}`.

use worker::Response;

use crate::grpc_web::{code_name, http_status, Code, GrpcStatus};

/// The JSON error response for `status`.
pub fn error_response(status: &GrpcStatus) -> worker::Result<Response> {
    let body = serde_json::json!({"error": {"code": code_name(status.code), "message": status.message}});
    Ok(Response::from_json(&body)?.with_status(http_status(status.code)))
}

/// A 404 for paths no route serves.
pub fn not_found(path: &str) -> worker::Result<Response> {
    error_response(&GrpcStatus::new(Code::NotFound, format!("no route for {path}")))
}
