//! Real Cloudflare containers on a developer's machine: `wrangler dev` (workerd) can run the
//! Durable Object's container code against a Docker-compatible engine, and these are the two
//! pieces podman needs for that on machines without Docker or a registry:
//!
//! - [`egress_sidecar`]: the program of the `<container>-proxy` sidecar workerd starts next to
//!   every container (Cloudflare's `proxy-everything` image cannot be pulled here). It carries
//!   workerd's connections into the container, and the container's connections to the
//!   developer's loopback services (the model API, a git server) out through workerd.
//! - [`docker_api_shim`]: a Docker API proxy on a unix socket between workerd and podman that
//!   smooths the one answer where podman 4.3 differs from Docker in a way workerd cannot recover
//!   from, and tells each sidecar which loopback ports to carry.
//!
//! Every address either serves is loopback on the host, or inside the network namespaces podman
//! creates for these containers.

pub mod docker_api_shim;
pub mod egress_sidecar;
pub mod gateway;
pub mod tunnel;
