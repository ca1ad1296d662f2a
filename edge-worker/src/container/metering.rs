//! Metering: the user's credits, the container time charged against them, and the routes that
//! show them (balance, ledger) or add to them (an admin's grant). A run opens when a container
//! starts and closes when it stops or is lost; each step of it is written together with its
//! ledger entry in one storage write, so a step is never half-recorded. The arithmetic is
//! [`crate::container::billing`]'s; this is the glue around the object's storage.

use autopilot_contract::v1::{CancelRequest, CancelResponse};
use worker::{js_sys, wasm_bindgen::JsValue, ListOptions, Request, Response};

use super::{now_ms, AutopilotContainer};
use crate::{
    api_error::error_response,
    container::agent_client::AgentClient,
    container::billing::{Account, LedgerEntry, Rate},
    grpc_web::{Code, GrpcStatus, INSUFFICIENT_CREDITS},
};

/// Storage key of the user's credits and metering state.
pub const ACCOUNT_KEY: &str = "account";
/// Storage key prefix of ledger entries (followed by a zero-padded sequence number).
const LEDGER_PREFIX: &str = "ledger:";
/// What a task cancelled for lack of credits says.
const CREDITS_EXHAUSTED: &str = "your credits ran out; the container was stopped";

impl AutopilotContainer {
    /// Applies a metering step to the account and writes the account and its ledger entry in
    /// one atomic storage write (so a step is never half-recorded).
    pub(super) async fn meter(
        &self,
        step: impl FnOnce(&mut Account, Rate) -> Option<LedgerEntry>,
    ) -> worker::Result<()> {
        let rate = self.settings.rate;
        let mut account = self.live.stored.account.borrow().clone();
        let entry = step(&mut account, rate);
        if account == *self.live.stored.account.borrow() {
            return Ok(());
        }
        self.write_account(&account, entry.as_ref()).await?;
        *self.live.stored.account.borrow_mut() = account;
        Ok(())
    }

    /// Opens a metering run from now: the container starts (or an unknown running one is adopted).
    pub(super) async fn open_run(&self) -> worker::Result<()> {
        self.meter(|account, _| {
            account.start_run(now_ms());
            None
        })
        .await
    }

    /// Charges the open run up to now (the heartbeat's step).
    pub(super) async fn meter_now(&self) -> worker::Result<()> {
        self.meter(|account, rate| account.meter(now_ms(), rate)).await
    }

    /// Charges the model tokens of each task that has ended since the last heartbeat, at the
    /// token rate (nothing at the default 0; the tokens are shown in the ledger either way).
    pub(super) async fn bill_model_tokens(&self) -> worker::Result<()> {
        let Some(grants) = self.live.gateway.grants.clone() else { return Ok(()) };
        let rate = self.settings.token_rate_millicredits;
        for (task_id, tokens) in grants.unbilled()? {
            self.meter(|account, _| account.charge_tokens(&task_id, tokens, rate, now_ms())).await?;
            grants.mark_billed(&task_id)?;
        }
        Ok(())
    }

    /// A metering run is open only while the record has a container (starting or ready): one
    /// that exited, failed or was lost is charged up to when it went (the exit seen, or else
    /// the record's last change) and closed.
    pub(super) async fn close_finished_run(&self) -> worker::Result<()> {
        let lifecycle = self.live.stored.lifecycle();
        if lifecycle.current_generation().is_some() || self.live.stored.account.borrow().run_started_ms.is_none() {
            return Ok(());
        }
        let gone_at = self.live.watch.exited_at_ms.take().unwrap_or(lifecycle.changed_ms);
        self.meter(|account, rate| account.stop_run(gone_at, rate)).await
    }

    async fn write_account(&self, account: &Account, entry: Option<&LedgerEntry>) -> worker::Result<()> {
        let batch = js_sys::Object::new();
        js_sys::Reflect::set(&batch, &JsValue::from_str(ACCOUNT_KEY), &serde_wasm_bindgen::to_value(account)?)?;
        if let Some(entry) = entry {
            let key = format!("{LEDGER_PREFIX}{:012}", entry.seq);
            js_sys::Reflect::set(&batch, &JsValue::from_str(&key), &serde_wasm_bindgen::to_value(entry)?)?;
        }
        self.state.storage().put_multiple_raw(batch).await
    }

    /// Whether the user may start work; the error says why not.
    pub(super) fn check_credits(&self) -> Result<(), GrpcStatus> {
        let balance = self.live.stored.account.borrow().balance;
        let minimum = self.settings.minimum_to_start;
        if self.live.stored.account.borrow().can_start(minimum) {
            return Ok(());
        }
        Err(GrpcStatus::new(
            Code::ResourceExhausted,
            format!("{INSUFFICIENT_CREDITS}: the balance is {balance}, and starting needs at least {}", minimum.max(1)),
        ))
    }

    /// Credits ran out: cancels every running task with a reason that says so, then stops.
    pub(super) async fn stop_for_credits(&self) -> worker::Result<()> {
        for task_id in self.live.unended_tasks() {
            let Ok(endpoint) = self.endpoint() else { break };
            let request = CancelRequest { task_id, reason: CREDITS_EXHAUSTED.into() };
            match AgentClient::new(endpoint).unary::<CancelResponse>("Cancel", &request).await {
                Ok(_) => {}
                Err(status) => worker::console_warn!("cancelling for credits failed: {status}"),
            }
        }
        worker::console_log!("credits exhausted: stopping the container");
        self.catch_up_archive().await;
        self.stop_container().await
    }

    /// `GET /api/billing/balance`.
    pub(super) fn balance_route(&self) -> worker::Result<Response> {
        let account = self.live.stored.account.borrow();
        Response::from_json(&serde_json::json!({
            "userId": self.live.stored.record().user_id,
            "balance": account.balance,
            "minimumToStart": self.settings.minimum_to_start.max(1),
            "creditsPerContainerSecond": self.settings.rate_text,
            "containerRunningSinceMs": account.run_started_ms,
        }))
    }

    /// `GET /api/billing/ledger`: every debit and grant, oldest first, and the model tokens of
    /// each task whose agent called the model through the gateway (`modelUsage`, newest first).
    pub(super) async fn ledger_route(&self) -> worker::Result<Response> {
        let entries = self.state.storage().list_with_options(ListOptions::new().prefix(LEDGER_PREFIX)).await?;
        let mut ledger: Vec<LedgerEntry> = Vec::new();
        for value in entries.values() {
            ledger.push(serde_wasm_bindgen::from_value(value?)?);
        }
        ledger.sort_by_key(|e| e.seq);
        // Beside the container time: each task's model tokens, as the gateway counted them.
        let model_usage = match &self.live.gateway.grants {
            Some(grants) => grants.usage_by_task()?,
            None => Vec::new(),
        };
        Response::from_json(&serde_json::json!({"entries": ledger, "modelUsage": model_usage}))
    }

    /// Admin: `{"credits": N, "note"?}` granted to this user.
    pub(super) async fn grant_route(&self, mut req: Request) -> worker::Result<Response> {
        let body: serde_json::Value = req.json().await.unwrap_or_default();
        let Some(credits) = body["credits"].as_u64().filter(|c| *c > 0 && *c <= 1_000_000_000) else {
            return error_response(&GrpcStatus::new(Code::InvalidArgument, "credits must be a positive integer"));
        };
        let note = body["note"].as_str().unwrap_or("granted by an admin").to_string();
        let mut account = self.live.stored.account.borrow().clone();
        let entry = account.grant(credits, now_ms(), &note);
        self.write_account(&account, Some(&entry)).await?;
        *self.live.stored.account.borrow_mut() = account;
        Response::from_json(&serde_json::json!({"balance": entry.balance_after, "entry": entry}))
    }
}
