//! The edge worker: a Cloudflare Worker (workers-rs) in front of each user's agent-service. The
//! Worker routes; per user, one Durable Object owns that user's container and bridges the browser's
//! WebSocket frames to the container's gRPC-web (container mode), and another relays them to the
//! user's own machine over the socket it opened (tunnel mode).
//!
//! Layout:
//! - [`route`] (pure): every path spelled once, parsed into a route value the Worker and both
//!   objects match on; [`internal`]: the headers and settings the Worker hands an object.
//! - [`routes`]: the Worker's entry and authentication gate (the only thing the entry point
//!   calls); [`auth`]: tokens, sessions, sign-in, admin token routes.
//! - [`archive`]: every task of a user, its events, end and diff, in the object's SQLite storage;
//!   [`task_list`] (pure): pages, tokens and titles of the task list; [`event_rows`] (pure): how
//!   its events are stored in rows.
//! - [`container`]: the container mode's object, one file per concept (record, runtime,
//!   metering, idle policy, bridge calls, loss, HTTP routes, settings).
//! - [`tunnel_relay`]: the tunnel mode's object; [`relay_route`] (pure): where a relayed answer goes.
//! - [`sessions`]: WebSocket sessions and tickets, for both objects; [`socket`]: their messages.
//! - Pure, host-tested rules of who may do what: [`site`] (the site's origin, what a
//!   cookie-authenticated request must show, the body cap), [`task_scope`] (a user reaches only
//!   the tasks their object started).
//! - [`agent_client`]: the contract over gRPC-web to the agent-service (thin wasm transport).
//! - Pure, host-tested logic: [`grpc_web`] (framing, statuses), [`bridge`] (client/server frames
//!   in both encodings), [`lifecycle`] (container state machine), [`readiness`] (poll schedule),
//!   [`billing`] (credits and metering), [`credentials`] (token hashes, cookies), [`ticket`]
//!   (signed single-use WebSocket tickets).
//! - [`entropy`]: the runtime's CSPRNG.
//! - [`container_start`]: a workaround for container environment variables in worker 0.8.7;
//!   [`container_errors`] (pure): which platform failures are retried.
//! - [`api_error`]: the JSON error scheme; [`body_limit`]: request bodies read as a stream that
//!   stops at a limit.

pub mod agent_client;
pub mod api_error;
pub mod archive;
pub mod archive_replay;
pub mod auth;
pub mod billing;
pub mod body_limit;
pub mod bridge;
pub mod container;
pub mod container_errors;
pub mod container_start;
pub mod credentials;
pub mod entropy;
pub mod event_rows;
pub mod grpc_web;
pub mod internal;
pub mod lifecycle;
pub mod model_credential;
pub mod model_grants;
pub mod model_usage;
pub mod readiness;
pub mod relay_route;
pub mod route;
pub mod routes;
pub mod sessions;
pub mod site;
pub mod socket;
pub mod sql_values;
pub mod task_list;
pub mod task_scope;
pub mod ticket;
pub mod tunnel_relay;

pub use container::AutopilotContainer;
pub use tunnel_relay::TunnelRelay;

/// Once per isolate: a panic logs its message and place before wasm-bindgen reports the
/// instance's "Critical error" (without it, nobody can tell what failed).
#[worker::event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[worker::event(fetch)]
async fn fetch(req: worker::Request, env: worker::Env, _ctx: worker::Context) -> worker::Result<worker::Response> {
    routes::handle(req, env).await
}
