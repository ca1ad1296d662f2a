//! Credits and container-time metering, as pure arithmetic over a persisted [`Account`].
//!
//! A user's container time is paid for exactly once: the account remembers up to which instant
//! the current run has been metered (`metered_until_ms`), and every debit covers only the time
//! after it. A run's total charge is `ceil(seconds x rate)` over the whole run; each periodic or
//! final debit is the run's charge so far minus what the run was already charged, so rounding
//! never adds up across debits. The caller writes the new account and its ledger entry in one
//! atomic storage write, so a retried alarm or a restarted object never charges an interval twice,
//! nor skips one.

use serde::{Deserialize, Serialize};

/// A rate in thousandths of a credit per second (so "0.5" credits/s is 500).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub millicredits_per_second: u64,
}

impl Rate {
    /// Parses a decimal rate such as "1", "0.5" or "2.25" (at most three decimals).
    pub fn parse(text: &str) -> Option<Rate> {
        let text = text.trim();
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        if fraction.len() > 3 || (whole.is_empty() && fraction.is_empty()) {
            return None;
        }
        let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
        let fraction: u64 = if fraction.is_empty() { 0 } else { format!("{fraction:0<3}").parse().ok()? };
        Some(Rate { millicredits_per_second: whole.checked_mul(1000)?.checked_add(fraction)? })
    }

    /// Credits for `ms` milliseconds: `ceil(seconds x rate)`, in integers only.
    pub fn credits_for(&self, ms: u64) -> u64 {
        let micro = u128::from(ms) * u128::from(self.millicredits_per_second);
        micro.div_ceil(1_000_000) as u64
    }
}

/// A user's balance and the metering state of their container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Credits left; may dip below zero by the last interval's charge.
    pub balance: i64,
    /// When the current container run started (None: not running).
    pub run_started_ms: Option<u64>,
    /// Up to when the current run has been charged.
    pub metered_until_ms: u64,
    /// Credits the current run has been charged so far.
    pub run_charged: u64,
    /// The sequence number of the next ledger entry.
    pub next_entry: u64,
}

/// One line of the ledger: what a user paid for, or was granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    pub seq: u64,
    /// "debit" or "grant".
    pub kind: String,
    /// Positive for grants, negative for debits.
    pub credits: i64,
    pub balance_after: i64,
    pub at_ms: u64,
    /// For debits: when the container run being charged started. The run's debits add up to
    /// `ceil((to_ms - run_started_ms) / 1000 x rate)` at each entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_started_ms: Option<u64>,
    /// For debits: the container time this entry settles, [from_ms, to_ms). Time whose cost was
    /// already covered by an earlier entry's rounding up settles without an entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<u64>,
    /// For a debit of model tokens: the task whose agent used them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    pub note: String,
}

impl Account {
    /// The container started at `now_ms`: a new run begins. A run already open is kept (a
    /// restarted object must not forget time already used).
    pub fn start_run(&mut self, now_ms: u64) {
        if self.run_started_ms.is_none() {
            self.run_started_ms = Some(now_ms);
            self.metered_until_ms = now_ms;
            self.run_charged = 0;
        }
    }

    /// Charges the open run up to `now_ms`. Returns the ledger entry when credits were debited.
    /// Calling it again for the same instant charges nothing.
    pub fn meter(&mut self, now_ms: u64, rate: Rate) -> Option<LedgerEntry> {
        let started = self.run_started_ms?;
        let until = now_ms.max(self.metered_until_ms);
        let owed = rate.credits_for(until - started);
        let from = self.metered_until_ms;
        self.metered_until_ms = until;
        let debit = owed.saturating_sub(self.run_charged);
        if debit == 0 {
            return None;
        }
        self.run_charged = owed;
        self.balance -= debit as i64;
        let mut entry = self.entry("debit", -(debit as i64), now_ms, Some((from, until)), "container time");
        entry.run_started_ms = Some(started);
        Some(entry)
    }

    /// The container stopped at `now_ms`: the run is charged to the end and closed.
    pub fn stop_run(&mut self, now_ms: u64, rate: Rate) -> Option<LedgerEntry> {
        let entry = self.meter(now_ms, rate);
        self.run_started_ms = None;
        self.run_charged = 0;
        entry
    }

    /// Closes the open run without charging what it has not been charged yet: the container
    /// was brought up for a Start the service then refused, and a refused Start costs nothing.
    pub fn waive_run(&mut self) {
        self.run_started_ms = None;
        self.run_charged = 0;
    }

    /// Adds granted credits.
    pub fn grant(&mut self, credits: u64, now_ms: u64, note: &str) -> LedgerEntry {
        self.balance += credits as i64;
        self.entry("grant", credits as i64, now_ms, None, note)
    }

    /// Charges `tokens` model tokens of `task_id` at `millicredits_per_million` (thousandths of a
    /// credit per million tokens): `ceil(tokens x rate / 1e6)` credits, nothing when that is 0.
    pub fn charge_tokens(
        &mut self,
        task_id: &str,
        tokens: u64,
        millicredits_per_million: u64,
        now_ms: u64,
    ) -> Option<LedgerEntry> {
        let credits = (u128::from(tokens) * u128::from(millicredits_per_million)).div_ceil(1_000_000_000) as u64;
        if credits == 0 {
            return None;
        }
        self.balance -= credits as i64;
        let mut entry = self.entry("debit", -(credits as i64), now_ms, None, &format!("model tokens ({tokens})"));
        entry.task_id = Some(task_id.to_string());
        Some(entry)
    }

    /// Whether the balance allows starting work.
    pub fn can_start(&self, minimum: i64) -> bool {
        self.balance >= minimum.max(1)
    }

    fn entry(&mut self, kind: &str, credits: i64, at_ms: u64, span: Option<(u64, u64)>, note: &str) -> LedgerEntry {
        let seq = self.next_entry;
        self.next_entry += 1;
        LedgerEntry {
            seq,
            kind: kind.into(),
            credits,
            balance_after: self.balance,
            at_ms,
            run_started_ms: None,
            from_ms: span.map(|s| s.0),
            to_ms: span.map(|s| s.1),
            task_id: None,
            note: note.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> Rate {
        Rate::parse(text).unwrap()
    }

    #[test]
    fn rates_parse_as_decimals() {
        assert_eq!(rate("1").millicredits_per_second, 1000);
        assert_eq!(rate("0.5").millicredits_per_second, 500);
        assert_eq!(rate("2.25").millicredits_per_second, 2250);
        assert_eq!(rate(".5").millicredits_per_second, 500);
        assert!(Rate::parse("1.2345").is_none());
        assert!(Rate::parse("-1").is_none());
        assert!(Rate::parse("").is_none());
    }

    #[test]
    fn a_run_costs_the_ceiling_of_seconds_times_rate() {
        assert_eq!(rate("1").credits_for(0), 0);
        assert_eq!(rate("1").credits_for(1), 1);
        assert_eq!(rate("1").credits_for(1000), 1);
        assert_eq!(rate("1").credits_for(1001), 2);
        assert_eq!(rate("0.5").credits_for(3000), 2);
        assert_eq!(rate("0.5").credits_for(2000), 1);
        assert_eq!(rate("3").credits_for(2500), 8);
    }

    #[test]
    fn periodic_debits_add_up_to_one_ceiling_not_one_per_period() {
        let mut account = Account { balance: 100, ..Default::default() };
        account.start_run(10_000);
        // Metered every 0.7 s for 3.5 s at 1 credit/s: ceil(3.5) = 4 in all, not 5 ceilings.
        let mut debited = 0;
        for step in 1..=5 {
            if let Some(entry) = account.meter(10_000 + step * 700, rate("1")) {
                debited -= entry.credits;
            }
        }
        debited -= account.stop_run(13_500, rate("1")).map(|e| e.credits).unwrap_or(0);
        assert_eq!(debited, 4);
        assert_eq!(account.balance, 96);
        assert_eq!(account.run_started_ms, None);
    }

    #[test]
    fn metering_the_same_instant_twice_charges_once() {
        let mut account = Account { balance: 10, ..Default::default() };
        account.start_run(0);
        let first = account.meter(2_500, rate("1")).unwrap();
        assert_eq!((first.credits, first.from_ms, first.to_ms), (-3, Some(0), Some(2_500)));
        assert_eq!(account.meter(2_500, rate("1")), None, "a retried alarm charges nothing");
        assert_eq!(account.meter(2_000, rate("1")), None, "a clock step back charges nothing");
        let next = account.meter(3_200, rate("1")).unwrap();
        assert_eq!(
            (next.credits, next.from_ms, next.to_ms),
            (-1, Some(2_500), Some(3_200)),
            "intervals are contiguous"
        );
        assert_eq!(account.balance, 6);
    }

    #[test]
    fn a_restart_keeps_the_open_run() {
        let mut account = Account { balance: 10, ..Default::default() };
        account.start_run(1_000);
        account.meter(2_000, rate("1"));
        let persisted = serde_json::to_string(&account).unwrap();
        let mut restored: Account = serde_json::from_str(&persisted).unwrap();
        restored.start_run(5_000);
        assert_eq!(restored.run_started_ms, Some(1_000), "the run is not restarted nor its time forgotten");
        assert_eq!(restored.stop_run(5_000, rate("1")).unwrap().credits, -3);
    }

    #[test]
    fn a_waived_run_closes_without_a_charge() {
        let mut account = Account { balance: 10, ..Default::default() };
        account.start_run(1_000);
        account.waive_run();
        assert_eq!(account.run_started_ms, None);
        assert_eq!(account.stop_run(1_400, rate("1")), None, "nothing left to charge");
        assert_eq!(account.balance, 10);
    }

    #[test]
    fn grants_and_the_start_minimum() {
        let mut account = Account::default();
        assert!(!account.can_start(0), "zero credits never start work");
        let entry = account.grant(50, 7, "welcome");
        assert_eq!((entry.kind.as_str(), entry.credits, entry.balance_after), ("grant", 50, 50));
        assert!(account.can_start(50));
        assert!(!account.can_start(51));
        assert_eq!(account.next_entry, 1);
    }

    #[test]
    fn model_tokens_are_charged_at_their_rate_rounded_up_and_free_without_one() {
        let mut account = Account { balance: 100, ..Account::default() };
        // 1.5 credits per million tokens: 1_000_001 tokens cost ceil(1.5000015) = 2 credits.
        let entry = account.charge_tokens("t1", 1_000_001, 1_500, 7).unwrap();
        assert_eq!((entry.credits, entry.balance_after, entry.task_id.as_deref()), (-2, 98, Some("t1")));
        assert_eq!(account.charge_tokens("t2", 5_000, 0, 8), None, "no rate, no charge");
        assert_eq!(account.balance, 98);
    }
}
