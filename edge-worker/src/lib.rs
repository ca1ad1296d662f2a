//! The edge worker: a Cloudflare Worker (workers-rs) in front of each user's agent-service. The
//! Worker routes; per user, one Durable Object owns that user's container and bridges the browser's
//! WebSocket frames to the container's gRPC-web (container mode), and another relays them to the
//! user's own machine over the socket it opened (tunnel mode).
//!
//! Layout, by concept:
//! - [`front`]: the Worker itself: the entry and authentication gate, the one route table
//!   (parsed into a route value the Worker and both objects match on), tokens and sign-in,
//!   WebSocket sessions and tickets, the site's rules for browsers, request bodies read within a
//!   limit, and the headers the Worker hands an object.
//! - [`archive`]: every task of a user, its events, end and diff, in the object's SQLite storage,
//!   shared by both objects: the tables, replaying a timeline to a socket, how events are stored
//!   in rows, the task list's pages and titles, and which task ids a user may name.
//! - [`container`]: the container mode's object and everything only it uses: the container's
//!   lifecycle and readiness, credits and metering, the agent client, the model gateway, and
//!   its memory in owned parts (the stored record, activity, subscriptions).
//! - [`tunnel_relay`]: the tunnel mode's object (the user's own machine), with where a relayed
//!   answer goes.
//! - Shared by both objects, pure and host-tested where they can be: [`bridge`] (client/server
//!   frames in both encodings), [`grpc_web`] (framing, statuses), [`socket`] (their messages on a
//!   WebSocket), [`api_error`] (the JSON error scheme), [`entropy`] (the runtime's CSPRNG).
//! - [`bench`]: what the benchmarks measure the product against, objects of their own (only with
//!   `BENCH_ROUTES=true`).

pub mod api_error;
pub mod archive;
pub mod bench;
pub mod bridge;
pub mod container;
pub mod entropy;
pub mod front;
pub mod github;
pub mod grpc_web;
pub mod socket;
pub mod tunnel_relay;

pub use bench::{fanout::BenchFanout, stream::BenchStream};
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
    front::handle(req, env).await
}
