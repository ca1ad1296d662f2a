//! What the object keeps in its key-value storage, as this instance loaded it: the [`Record`]
//! (the user and the container's lifecycle) and the user's [`Account`]. The record is changed
//! only through [`Stored::update`], which marks it for the next write; the account is written by
//! metering alone, together with its ledger entry (see `metering.rs`).

use std::cell::{Cell, Ref, RefCell};

use super::{billing::Account, record::Record};
use crate::container::lifecycle::Lifecycle;

#[derive(Default)]
pub struct Stored {
    record: RefCell<Record>,
    /// The user's credits.
    pub account: RefCell<Account>,
    /// Whether this instance loaded them from storage (see [`Stored::load_once`]).
    loaded: Cell<bool>,
    /// Whether the record changed since it was last written.
    dirty: Cell<bool>,
}

impl Stored {
    pub fn record(&self) -> Ref<'_, Record> {
        self.record.borrow()
    }

    /// The container's lifecycle as the record holds it.
    pub fn lifecycle(&self) -> Lifecycle {
        self.record.borrow().lifecycle.clone()
    }

    pub fn user_id(&self) -> String {
        self.record.borrow().user_id.clone().unwrap_or_default()
    }

    /// Changes the record; it is written at the end of the request (see [`Stored::take_changed`]).
    /// Answers what `change` answered.
    pub fn update<T>(&self, change: impl FnOnce(&mut Record) -> T) -> T {
        let answer = change(&mut self.record.borrow_mut());
        self.dirty.set(true);
        answer
    }

    /// Whether the record and account still have to be read from storage (the first entry of an
    /// instance); then `loaded` gives them.
    pub fn load_once(&self, loaded: impl FnOnce() -> (Record, Account)) {
        if !self.loaded.replace(true) {
            let (record, account) = loaded();
            *self.record.borrow_mut() = record;
            *self.account.borrow_mut() = account;
        }
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.get()
    }

    /// The record to write, if it changed since the last call.
    pub fn take_changed(&self) -> Option<Record> {
        self.dirty.replace(false).then(|| self.record.borrow().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_is_written_once_after_it_changed() {
        let stored = Stored::default();
        assert_eq!(stored.take_changed(), None, "nothing changed");
        let user = stored.update(|record| record.user_id.insert("alice".into()).clone());
        assert_eq!(user, "alice");
        assert_eq!(stored.take_changed().and_then(|record| record.user_id).as_deref(), Some("alice"));
        assert_eq!(stored.take_changed(), None, "written once");
    }

    #[test]
    fn an_instance_loads_its_record_and_account_once() {
        let stored = Stored::default();
        let mut reads = 0;
        for _ in 0..2 {
            stored.load_once(|| {
                reads += 1;
                (Record { user_id: Some("bob".into()), ..Default::default() }, Account::default())
            });
        }
        assert_eq!((reads, stored.user_id().as_str(), stored.is_loaded()), (1, "bob", true));
    }
}
