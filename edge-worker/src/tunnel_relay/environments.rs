//! A tunnel task runs in the user's environment as a container task does: the environments are
//! the user's, kept by their container object ([`crate::container::environments`]), which the
//! relay asks before a Start goes to the machine (`/internal/environment-for-start`) for the one
//! the request names, its parent's for a follow-up naming none, or the first that applies to the
//! repository. The machine is the user's own, so the secrets go to it, in the StartRequest as
//! the service expects them; it keeps its prepared workspaces itself (no prepared store).
//!
//! The relay knows its user from the Worker's header on each request, and keeps the name in its
//! storage: a browser's frame after the object hibernated comes without one.

use autopilot_contract::v1::{Environment, StartRequest};
use prost::Message;
use worker::{Method, Request, RequestInit};

use super::TunnelRelay;
use crate::{
    front::{
        internal::USER_HEADER,
        route::{Backend, Internal},
    },
    grpc_web::{code_of_name, Code, GrpcStatus},
};

/// The storage key of the relay's user.
const USER_KEY: &str = "user";

impl TunnelRelay {
    /// Notes that this relay is `user`'s (the Worker named them on a request).
    pub(super) async fn remember_user(&self, user: &str) -> worker::Result<()> {
        if user.is_empty() || self.user.borrow().as_deref() == Some(user) {
            return Ok(());
        }
        self.state.storage().put(USER_KEY, user).await?;
        *self.user.borrow_mut() = Some(user.to_string());
        Ok(())
    }

    async fn user(&self) -> Option<String> {
        if let Some(user) = self.user.borrow().clone() {
            return Some(user);
        }
        let stored: Option<String> = self.state.storage().get(USER_KEY).await.ok().flatten();
        self.user.borrow_mut().clone_from(&stored);
        stored
    }

    /// Fills the environment `request` runs in from the user's environments; whatever the
    /// client put in it is replaced, as in container mode.
    pub(super) async fn attach_environment(&self, request: &mut StartRequest) -> Result<(), GrpcStatus> {
        let named = request.environment.take().map(|e| e.name).filter(|name| !name.is_empty());
        let parents = match (&named, request.parent_task_id.as_str()) {
            (None, parent) if !parent.is_empty() => self
                .archive
                .ended(parent)
                .and_then(|entry| entry.task)
                .map(|task| task.environment_name)
                .filter(|name| !name.is_empty()),
            _ => None,
        };
        let Some(user) = self.user().await else { return Ok(()) };
        let asked = match &parents {
            Some(name) => serde_json::json!({"environment": name, "ifStillThere": true}),
            None => serde_json::json!({"environment": named, "repositoryUrl": request.repository_url}),
        };
        request.environment = self.ask_for_environment(&user, &asked).await?;
        Ok(())
    }

    /// The user's container object's answer to `asked`.
    async fn ask_for_environment(
        &self,
        user: &str,
        asked: &serde_json::Value,
    ) -> Result<Option<Environment>, GrpcStatus> {
        let unavailable = |e: worker::Error| GrpcStatus::new(Code::Unavailable, format!("the environments: {e}"));
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_body(Some(asked.to_string().into()));
        let mut req = Request::new_with_init(&Internal::EnvironmentForStart.url(), &init).map_err(unavailable)?;
        req.headers_mut().map_err(unavailable)?.set(USER_HEADER, user).map_err(unavailable)?;
        let namespace = self.env.durable_object(Backend::Container.binding()).map_err(unavailable)?;
        let stub = namespace.id_from_name(user).and_then(|id| id.get_stub()).map_err(unavailable)?;
        let mut answer = stub.fetch_with_request(req).await.map_err(unavailable)?;
        let body = answer.bytes().await.map_err(unavailable)?;
        if answer.status_code() != 200 {
            let error: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let code = code_of_name(error["error"]["code"].as_str().unwrap_or_default());
            let message = error["error"]["message"].as_str().unwrap_or("the environments could not be read");
            return Err(GrpcStatus { code: code.unwrap_or(Code::Unavailable as i32), message: message.into() });
        }
        match body.is_empty() {
            true => Ok(None),
            false => Environment::decode(body.as_slice())
                .map(Some)
                .map_err(|e| GrpcStatus::new(Code::Internal, format!("the environment could not be read: {e}"))),
        }
    }
}
