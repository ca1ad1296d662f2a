//! GitHub, as the edge speaks to it for a user: the GitHub App's sign-in flow ([`oauth`], pure),
//! the calls to GitHub with the headers it requires ([`client`]), the user's tokens sealed at
//! rest ([`sealed`]), and what a task's pull request says ([`pull_request`], pure). The Worker
//! runs the sign-in; the user's container object keeps the connection and renews its token
//! (`container/github_link.rs`) and opens the pull requests (`container/pull_requests.rs`).

pub mod client;
pub mod oauth;
pub mod pull_request;
pub mod sealed;
pub mod webhook;
