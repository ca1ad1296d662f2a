//! Support for the end-to-end tests: the fake model API (the one fake in the system) and
//! fixtures that start the real agent-service, real git repositories and real clients.

pub mod fake_model_api;
