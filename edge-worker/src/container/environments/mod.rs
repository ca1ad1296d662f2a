//! The user's environments, kept by their container object: how a repository's workspace is
//! prepared before the agent starts (a setup script, a maintenance script for a prepared
//! workspace, variables, secrets, a time limit). `/api/environments[/{name}[/cache]]` lists,
//! reads, saves and deletes them, and resets their prepared workspaces; a Start gets the one it
//! names, or else the first that applies to its repository, filled into its StartRequest for the
//! service to run. Secrets are sealed at rest with `ENVIRONMENT_SECRETS_KEY` (as GitHub tokens
//! are with theirs) and never leave the object in an answer: reads give their names only.

mod definition;
pub mod prepared_store;
mod prepared_targets;
mod store;

use std::{collections::BTreeMap, rc::Rc};

use autopilot_contract::{
    environment_rules::{self, DEFAULT_SETUP_TIMEOUT},
    time::duration,
    v1::{Environment, StartRequest},
};
use prost::Message;
use serde_json::json;
use worker::{Env, Request, Response};

use self::{
    definition::{applies_to, refusal_in_json, Definition},
    prepared_store::{PreparedStoreArea, StoreSettings},
    prepared_targets::PreparedTargets,
    store::{EnvironmentStore, StoredEnvironment},
};
use super::{now_ms, AutopilotContainer};
use crate::{
    api_error::error_response,
    archive::sql::Sql,
    front::route::EnvironmentRoute,
    github::sealed::TokenKey,
    grpc_web::{Code, GrpcStatus},
};

/// The object's environments, the key their secrets are sealed with, and where their prepared
/// workspaces outlive a container.
pub struct Environments {
    store: Option<EnvironmentStore>,
    key: Option<TokenKey>,
    /// `None` without the bucket `ENVIRONMENT_CACHE` (or its table).
    pub prepared: Option<PreparedStoreArea>,
}

impl Environments {
    /// Over the object's SQLite; without it (logged), environments are unavailable.
    pub fn open(sql: worker::SqlStorage, env: &Env) -> Environments {
        let sql: Rc<dyn Sql> = Rc::new(sql);
        let store = EnvironmentStore::open(Rc::clone(&sql))
            .map_err(|e| worker::console_error!("the environments could not be opened: {e}"))
            .ok();
        let secret = env.secret("ENVIRONMENT_SECRETS_KEY").map(|s| s.to_string()).unwrap_or_default();
        let prepared = env.bucket("ENVIRONMENT_CACHE").ok().and_then(|bucket| {
            let targets = PreparedTargets::open(sql)
                .map_err(|e| worker::console_error!("the prepared store's table could not be opened: {e}"))
                .ok()?;
            let settings = StoreSettings::read(|name| env.var(name).ok().map(|v| v.to_string()));
            Some(PreparedStoreArea { bucket, targets, settings })
        });
        Environments { store, key: TokenKey::from_secret(&secret), prepared }
    }

    fn store(&self) -> Result<&EnvironmentStore, GrpcStatus> {
        self.store.as_ref().ok_or_else(|| GrpcStatus::new(Code::Unavailable, "the environments' storage is not open"))
    }

    fn key(&self) -> Result<&TokenKey, GrpcStatus> {
        self.key.as_ref().ok_or_else(|| {
            GrpcStatus::new(
                Code::Unimplemented,
                "environment secrets are not set up on this deployment (the secret ENVIRONMENT_SECRETS_KEY)",
            )
        })
    }

    /// The environment a Start on `repository_url` runs with: the one named (NOT_FOUND when
    /// there is none), or the first that applies to the repository, secrets opened.
    pub fn for_start(&self, named: Option<&str>, repository_url: &str) -> Result<Option<Environment>, GrpcStatus> {
        let store = self.store()?;
        let stored = match named {
            Some(name) => Some(store.get(name).map_err(storage)?.ok_or_else(|| unknown(name))?),
            None if repository_url.is_empty() => None,
            None => store.list().map_err(storage)?.into_iter().find(|e| applies_to(&e.repositories, repository_url)),
        };
        let Some(stored) = stored else { return Ok(None) };
        let mut secrets = BTreeMap::new();
        for (name, sealed) in &stored.sealed_secrets {
            let opened = self.key()?.open(sealed).map_err(|_| {
                GrpcStatus::new(
                    Code::FailedPrecondition,
                    format!(
                        "the secret {name} of environment {} cannot be read (ENVIRONMENT_SECRETS_KEY changed): save \
                         it again",
                        stored.name
                    ),
                )
            })?;
            secrets.insert(name.clone(), opened);
        }
        Ok(Some(Environment {
            name: stored.name,
            setup_script: stored.setup_script,
            maintenance_script: stored.maintenance_script,
            variables: stored.variables.into_iter().collect(),
            secrets: secrets.into_iter().collect(),
            setup_timeout: Some(duration(std::time::Duration::from_secs(stored.setup_timeout_seconds))),
            revision: stored.revision,
            prepared_store: None,
        }))
    }

    fn put(&self, name: &str, definition: Definition) -> Result<StoredEnvironment, GrpcStatus> {
        definition.check_repositories().map_err(invalid)?;
        let store = self.store()?;
        let before = store.get(name).map_err(storage)?;
        // Each secret's value: the one given, or the one stored ("kept"), opened to be checked.
        let mut secrets = BTreeMap::new();
        for (secret, value) in &definition.secrets {
            let value = match value {
                Some(value) => value.clone(),
                None => {
                    let sealed = before.as_ref().and_then(|b| b.sealed_secrets.get(secret)).ok_or_else(|| {
                        invalid(format!("secrets[{secret:?}]: null keeps a stored value, and {name} has none for it"))
                    })?;
                    self.key()?.open(sealed).map_err(|_| {
                        invalid(format!("secrets[{secret:?}]: the stored value cannot be read any more; set it again"))
                    })?
                }
            };
            secrets.insert(secret.clone(), value);
        }
        let seconds = definition.setup_timeout_seconds.unwrap_or(DEFAULT_SETUP_TIMEOUT.as_secs());
        let as_run = Environment {
            name: name.to_string(),
            setup_script: definition.setup_script.clone(),
            maintenance_script: definition.maintenance_script.clone(),
            variables: definition.variables.clone().into_iter().collect(),
            secrets: secrets.clone().into_iter().collect(),
            setup_timeout: Some(duration(std::time::Duration::from_secs(seconds))),
            revision: 0,
            prepared_store: None,
        };
        environment_rules::check(&as_run).map_err(|refused| invalid(refusal_in_json(refused)))?;
        let mut sealed_secrets = BTreeMap::new();
        for (secret, value) in secrets {
            let sealed = self.key()?.seal_fresh(&value).map_err(|e| GrpcStatus::new(Code::Internal, e.to_string()))?;
            sealed_secrets.insert(secret, sealed);
        }
        let environment = StoredEnvironment {
            name: name.to_string(),
            repositories: definition.repositories,
            setup_script: definition.setup_script,
            maintenance_script: definition.maintenance_script,
            variables: definition.variables,
            sealed_secrets,
            setup_timeout_seconds: seconds,
            ..Default::default()
        };
        store.put(environment, now_ms()).map_err(storage)
    }
}

impl AutopilotContainer {
    /// Fills the environment `request` runs with (see [`Environments::for_start`]); whatever
    /// else the client put in it is replaced by what the user saved. A follow-up naming none
    /// runs in its parent's, as saved now (none if it was deleted since). A first turn's gets a
    /// prepared store ([`prepared_store`]); answers its credential's hash, for the Start's answer
    /// to bind or revoke.
    pub(in crate::container) fn attach_environment(
        &self,
        request: &mut StartRequest,
    ) -> Result<Option<String>, GrpcStatus> {
        let named = request.environment.take().map(|e| e.name).filter(|name| !name.is_empty());
        let parents = match (&named, request.parent_task_id.as_str()) {
            (None, parent) if !parent.is_empty() => {
                let parent = self.live.archive.ended(parent).and_then(|entry| entry.task);
                parent.map(|task| task.environment_name).filter(|name| !name.is_empty())
            }
            _ => None,
        };
        request.environment = match parents {
            Some(name) => self.live.environments.for_start(Some(&name), "").or_else(|status| {
                if status.code == Code::NotFound as i32 {
                    Ok(None)
                } else {
                    Err(status)
                }
            })?,
            None => self.live.environments.for_start(named.as_deref(), &request.repository_url)?,
        };
        match (&mut request.environment, request.parent_task_id.is_empty()) {
            (Some(environment), true) => self.attach_prepared_store(environment, &request.repository_url),
            _ => Ok(None),
        }
    }

    /// `/internal/environment-for-start`, from the user's tunnel relay before a Start on the
    /// user's machine: `{"environment": <name or null>, "repositoryUrl": "...", "ifStillThere":
    /// bool}` (the last for a follow-up's parent's environment: none if it was deleted since).
    /// Answers the environment as protobuf bytes (an empty body: none), or the refusal. A
    /// machine keeps its prepared workspaces itself: no prepared store is attached.
    pub(super) async fn environment_for_start_route(&self, mut req: Request) -> worker::Result<Response> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Asked {
            environment: Option<String>,
            #[serde(default)]
            repository_url: String,
            #[serde(default)]
            if_still_there: bool,
        }
        let asked: Asked = match serde_json::from_slice(&req.bytes().await?) {
            Ok(asked) => asked,
            Err(e) => return error_response(&invalid(format!("the body must name an environment: {e}"))),
        };
        let found = self.live.environments.for_start(asked.environment.as_deref(), &asked.repository_url);
        let found = match found {
            Err(status) if asked.if_still_there && status.code == Code::NotFound as i32 => Ok(None),
            found => found,
        };
        match found {
            Ok(environment) => Response::from_bytes(environment.map(|e| e.encode_to_vec()).unwrap_or_default()),
            Err(status) => error_response(&status),
        }
    }

    /// `/api/environments[/{name}[/cache]]`.
    pub(super) async fn environments_route(
        &self,
        mut req: Request,
        route: EnvironmentRoute,
    ) -> worker::Result<Response> {
        let environments = &self.live.environments;
        let changed = match &route {
            EnvironmentRoute::Put(name) | EnvironmentRoute::Delete(name) | EnvironmentRoute::ResetCache(name) => {
                Some(name.clone())
            }
            EnvironmentRoute::List | EnvironmentRoute::Get(_) => None,
        };
        let answer = match route {
            EnvironmentRoute::List => environments.store().and_then(|store| {
                let listed = store.list().map_err(storage)?;
                Ok(json!({"environments": listed.iter().map(view).collect::<Vec<_>>()}))
            }),
            EnvironmentRoute::Get(name) => environments
                .store()
                .and_then(|store| store.get(&name).map_err(storage)?.ok_or_else(|| unknown(&name)))
                .map(|stored| view(&stored)),
            EnvironmentRoute::Put(name) => match serde_json::from_slice::<Definition>(&req.bytes().await?) {
                Ok(definition) => environments.put(&name, definition).map(|stored| view(&stored)),
                Err(e) => Err(invalid(format!("the body must be an environment: {e}"))),
            },
            EnvironmentRoute::Delete(name) => {
                environments.store().and_then(|store| match store.delete(&name).map_err(storage)? {
                    true => Ok(json!({"deleted": name})),
                    false => Err(unknown(&name)),
                })
            }
            EnvironmentRoute::ResetCache(name) => environments.store().and_then(|store| {
                let revision = store.reset(&name, now_ms()).map_err(storage)?.ok_or_else(|| unknown(&name))?;
                Ok(json!({"name": name, "revision": revision}))
            }),
        };
        match answer {
            Ok(body) => {
                // An edit, a reset or a deletion leaves the environment's prepared workspaces
                // unusable (their revision is past): they go.
                if let (Some(area), Some(name)) = (&environments.prepared, changed) {
                    area.forget(&self.live.object_id, &name).await;
                }
                Response::from_json(&body)
            }
            Err(status) => error_response(&status),
        }
    }
}

/// An environment as the routes show it: its secrets by name only.
fn view(stored: &StoredEnvironment) -> serde_json::Value {
    json!({
        "name": stored.name,
        "repositories": stored.repositories,
        "setupScript": stored.setup_script,
        "maintenanceScript": stored.maintenance_script,
        "variables": stored.variables,
        "secrets": stored.sealed_secrets.keys().collect::<Vec<_>>(),
        "setupTimeoutSeconds": stored.setup_timeout_seconds,
        "revision": stored.revision,
        "updatedMs": stored.updated_ms,
    })
}

fn unknown(name: &str) -> GrpcStatus {
    GrpcStatus::new(Code::NotFound, format!("you have no environment named {name:?}"))
}

fn invalid(message: impl Into<String>) -> GrpcStatus {
    GrpcStatus::new(Code::InvalidArgument, message)
}

fn storage(e: worker::Error) -> GrpcStatus {
    GrpcStatus::new(Code::Unavailable, format!("the environments' storage: {e}"))
}
