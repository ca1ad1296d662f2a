//! The local pair most edge tests drive: the fake model API, an agent-service on it, a git
//! repository to work on, and `wrangler dev` in front of the service (local mode, the service at
//! `AGENT_SERVICE_URL`). A test keeps the parts it needs; the edge must be dropped first (it is
//! listed first in the structs that hold them), so it stops before the service it fronts.

use crate::{
    edge::Edge,
    fake_model_api::FakeModelApi,
    git_fixture::GitFixture,
    service::{Service, ServiceOptions},
};

pub struct LocalPair {
    pub edge: Edge,
    pub service: Service,
    pub repo: GitFixture,
    pub model_api: FakeModelApi,
}

impl LocalPair {
    /// Starts the pair, the edge with `vars` set beside wrangler.toml's.
    pub async fn start(vars: &[(&str, &str)]) -> LocalPair {
        let model_api = FakeModelApi::start().await.unwrap();
        let service = Service::start(&model_api, ServiceOptions::default()).await;
        let repo = GitFixture::new();
        let edge = Edge::start_with_vars(&format!("http://{}", service.addr), vars).await;
        LocalPair { edge, service, repo, model_api }
    }
}
