//! Support for the end-to-end tests: the fakes of the two outside services (the model API and
//! GitHub) and fixtures that start the real agent-service, build real git repositories and make real
//! clients (native gRPC and gRPC-web).

pub mod bridge_client;
pub mod browser_script;
pub mod child_process;
pub mod container;
pub mod edge;
pub mod events;
pub mod fake_github;
pub mod fake_model_api;
pub mod figures;
pub mod git_fixture;
pub mod git_http_backend;
pub mod git_logging;
pub mod github_sign_in;
pub mod grpc_web;
pub mod https_git_server;
pub mod isolate_profile;
pub mod local_pair;
pub mod processes;
pub mod service;
pub mod tcp_proxy;
pub mod tunnel_machine;
