//! A Docker API proxy on a unix socket, between workerd and podman's Docker-compatible socket.
//! It passes everything through except four things, each decided here in plain functions:
//!
//! - podman 4.3 answers a create whose name is taken with 500 "... is already in use", where
//!   Docker answers 409; workerd recovers from 409 only (removes the old container, creates again),
//!   so restarting a container after it exited would fail. The shim answers 409.
//! - podman refuses to remove, even by force, a container whose network namespace another one
//!   joined ("has dependent containers"), where Docker removes it. workerd's app container joins
//!   its sidecar's namespace, so removing the sidecar of a crashed container failed and the next
//!   start hung on the stale one. The shim removes the dependents first, then the container.
//! - workerd publishes container ports on every host interface (`PublishAllPorts`); the shim binds
//!   them to 127.0.0.1 instead, so nothing of a local container is reachable from outside.
//! - The egress sidecar learns which of the host's loopback ports to carry into the container
//!   (`AUTOPILOT_LOOPBACK_PORTS`): workerd gives it no way to be configured.

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

/// What a create of a container whose name is taken says in podman 4.3.
const NAME_IN_USE: &str = "already in use";

/// Whether `path` (with or without a `/v1.xx` version prefix) is the create endpoint.
pub fn is_create(method: &Method, path: &str) -> bool {
    method == Method::POST && unversioned(path).starts_with("/containers/create")
}

/// The status workerd should see: Docker's 409 where podman says 500 for a taken name.
pub fn docker_status(method: &Method, path: &str, status: StatusCode, body: &[u8]) -> StatusCode {
    let name_taken = String::from_utf8_lossy(body).contains(NAME_IN_USE);
    if is_create(method, path) && status == StatusCode::INTERNAL_SERVER_ERROR && name_taken {
        StatusCode::CONFLICT
    } else {
        status
    }
}

/// The create request podman should see: published ports bound to loopback, and for the
/// egress sidecar (recognised by workerd's `--http-egress-port` flag) the loopback ports to carry.
/// A body that is not a JSON object passes unchanged (podman will answer it).
pub fn rewrite_create(body: &[u8], loopback_ports: &[u16]) -> Vec<u8> {
    let Ok(Value::Object(mut create)) = serde_json::from_slice::<Value>(body) else {
        return body.to_vec();
    };
    let publish_all = create.get("HostConfig").and_then(|h| h.get("PublishAllPorts")).and_then(Value::as_bool);
    if publish_all == Some(true) {
        let exposed: Vec<String> = create
            .get("ExposedPorts")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        let bindings: serde_json::Map<String, Value> =
            exposed.into_iter().map(|port| (port, json!([{"HostIp": "127.0.0.1", "HostPort": ""}]))).collect();
        let host_config = create.entry("HostConfig").or_insert_with(|| json!({}));
        host_config["PublishAllPorts"] = json!(false);
        host_config["PortBindings"] = Value::Object(bindings);
    }
    let is_sidecar = create
        .get("Cmd")
        .and_then(Value::as_array)
        .is_some_and(|cmd| cmd.iter().any(|arg| arg == "--http-egress-port"));
    if is_sidecar && !loopback_ports.is_empty() {
        let ports: Vec<String> = loopback_ports.iter().map(u16::to_string).collect();
        let entry = json!(format!("AUTOPILOT_LOOPBACK_PORTS={}", ports.join(",")));
        match create.get_mut("Env").and_then(Value::as_array_mut) {
            Some(env) => env.push(entry),
            None => {
                create.insert("Env".into(), json!([entry]));
            }
        }
    }
    serde_json::to_vec(&create).unwrap_or_else(|_| body.to_vec())
}

/// The containers podman says must be removed before the one a forced DELETE named, if that is
/// why it refused (`... has dependent containers which must be removed before it: <id>, <id>: ...`).
/// Only a forced removal goes through them, as only a forced one would in Docker.
pub fn dependents_in_the_way(method: &Method, path: &str, status: StatusCode, body: &[u8]) -> Vec<String> {
    const REFUSAL: &str = "has dependent containers which must be removed before it:";
    let forced =
        path.split_once('?').is_some_and(|(_, query)| query.split('&').any(|p| p == "force=true" || p == "force=1"));
    if method != Method::DELETE || status != StatusCode::INTERNAL_SERVER_ERROR || !forced {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(body);
    let Some((_, after)) = text.split_once(REFUSAL) else {
        return Vec::new();
    };
    after.split(|c: char| !c.is_ascii_hexdigit()).filter(|token| token.len() == 64).map(str::to_owned).collect()
}

fn unversioned(path: &str) -> &str {
    match path.strip_prefix("/v") {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => rest.find('/').map_or(path, |i| &rest[i..]),
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAKEN: &[u8] = br#"{"message":"creating container storage: the container name \"w-proxy\" is already in use by abc. You have to remove that container to be able to reuse that name: that name is already in use"}"#;

    #[test]
    fn a_taken_name_is_a_conflict_as_docker_says() {
        let create = "/v1.41/containers/create?name=w-proxy";
        assert_eq!(
            docker_status(&Method::POST, create, StatusCode::INTERNAL_SERVER_ERROR, TAKEN),
            StatusCode::CONFLICT
        );
        assert_eq!(
            docker_status(&Method::POST, "/containers/create?name=w", StatusCode::INTERNAL_SERVER_ERROR, TAKEN),
            StatusCode::CONFLICT
        );
    }

    #[test]
    fn other_answers_pass_unchanged() {
        let create = "/containers/create?name=w";
        assert_eq!(
            docker_status(&Method::POST, create, StatusCode::INTERNAL_SERVER_ERROR, b"no space left"),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(docker_status(&Method::POST, create, StatusCode::CREATED, TAKEN), StatusCode::CREATED);
        assert_eq!(
            docker_status(&Method::POST, "/containers/w/start", StatusCode::INTERNAL_SERVER_ERROR, TAKEN),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            docker_status(&Method::GET, create, StatusCode::INTERNAL_SERVER_ERROR, TAKEN),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn published_ports_are_bound_to_loopback() {
        let body = br#"{"Image":"x","ExposedPorts":{"39001/tcp":{}},"HostConfig":{"PublishAllPorts":true,"CapAdd":["NET_ADMIN"]}}"#;
        let create: Value = serde_json::from_slice(&rewrite_create(body, &[])).unwrap();
        assert_eq!(create["HostConfig"]["PublishAllPorts"], json!(false));
        assert_eq!(
            create["HostConfig"]["PortBindings"],
            json!({"39001/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]})
        );
        assert_eq!(create["HostConfig"]["CapAdd"], json!(["NET_ADMIN"]), "the rest is kept");
    }

    #[test]
    fn the_sidecar_learns_the_loopback_ports_and_the_app_does_not() {
        let sidecar = br#"{"Image":"s","Cmd":["--http-egress-port","42335"],"Env":["A=1"]}"#;
        let create: Value = serde_json::from_slice(&rewrite_create(sidecar, &[8790, 9418])).unwrap();
        assert_eq!(create["Env"], json!(["A=1", "AUTOPILOT_LOOPBACK_PORTS=8790,9418"]));
        let without_env: Value =
            serde_json::from_slice(&rewrite_create(br#"{"Cmd":["--http-egress-port","1"]}"#, &[80])).unwrap();
        assert_eq!(without_env["Env"], json!(["AUTOPILOT_LOOPBACK_PORTS=80"]));
        let app = br#"{"Image":"a","Env":["ANTHROPIC_API_KEY=k"],"HostConfig":{"NetworkMode":"container:s"}}"#;
        let create: Value = serde_json::from_slice(&rewrite_create(app, &[8790])).unwrap();
        assert_eq!(create["Env"], json!(["ANTHROPIC_API_KEY=k"]));
        assert_eq!(create["HostConfig"].get("PortBindings"), None);
    }

    #[test]
    fn a_body_that_is_not_an_object_passes_unchanged() {
        assert_eq!(rewrite_create(b"not json", &[1]), b"not json");
        assert_eq!(rewrite_create(b"[1]", &[1]), b"[1]");
    }

    #[test]
    fn finds_the_dependents_podman_wants_removed_first() {
        let a = "f6e2d51b4e5e89c430958b9434743cc199b345d5101bb8b4b3d88ca0ca3062b0";
        let b = "a".repeat(64);
        let body = format!(
            r#"{{"cause":"container already exists","message":"container f74daae379db9d062b0864bd5c1d8c2cd1343c4508ec199b208aef322a2c74e8 has dependent containers which must be removed before it: {a}, {b}: container already exists","response":500}}"#
        );
        let (err, path) = (StatusCode::INTERNAL_SERVER_ERROR, "/containers/w-proxy?force=true");
        assert_eq!(dependents_in_the_way(&Method::DELETE, path, err, body.as_bytes()), vec![a.to_string(), b]);
        assert!(
            dependents_in_the_way(&Method::DELETE, "/containers/w-proxy", err, body.as_bytes()).is_empty(),
            "not forced"
        );
        assert!(dependents_in_the_way(&Method::DELETE, path, StatusCode::NO_CONTENT, body.as_bytes()).is_empty());
        assert!(dependents_in_the_way(&Method::POST, path, err, body.as_bytes()).is_empty());
        assert!(dependents_in_the_way(&Method::DELETE, path, err, b"no such container").is_empty());
    }

    #[test]
    fn knows_the_create_endpoint_with_or_without_a_version() {
        assert!(is_create(&Method::POST, "/v1.41/containers/create?name=a"));
        assert!(is_create(&Method::POST, "/containers/create"));
        assert!(!is_create(&Method::POST, "/v1.41/containers/a/start"));
        assert!(!is_create(&Method::POST, "/version/containers/create"));
    }
}
