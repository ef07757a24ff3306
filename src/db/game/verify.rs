//! `myelin game verify`: every balance equals the sum of its user's ledger.
//!
//! Users are found by skipping through `wallet/balance` and `wallet/ledger`
//! one user at a time (one single-key read per user per subspace); each
//! user's balances and ledger are then read in one transaction, so both
//! are of one commit version and a concurrent update cannot make a false
//! difference.

use std::collections::{BTreeMap, BTreeSet};

use super::{GameDb, LedgerEntry, Result, decode, keys};
use crate::keys::SubspaceSpec;
use crate::kv::{KeySelector, RangeOption};

/// One currency of one user whose balance is not its ledger's sum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The user.
    pub user_id: String,
    /// The currency.
    pub currency: String,
    /// The stored balance.
    pub balance: i64,
    /// The sum of the ledger's changes.
    pub ledger_sum: i64,
}

/// What [`GameDb::verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Users checked.
    pub users: usize,
    /// (User, currency) pairs checked.
    pub balances: usize,
    /// Ledger entries summed.
    pub entries: usize,
    /// Every difference, by user then currency.
    pub mismatches: Vec<Mismatch>,
    /// Negative balances (user, currency, balance).
    pub negative: Vec<(String, String, i64)>,
}

impl GameDb {
    /// Checks that every balance equals the sum of its user's ledger and
    /// that none is negative.
    ///
    /// Errors: the store's, corrupt values.
    pub async fn verify(&self) -> Result<VerifyReport> {
        let mut users = BTreeSet::new();
        for sub in [&keys::BALANCE, &keys::LEDGER] {
            let mut after: Option<String> = None;
            while let Some(user) = self.next_user(sub, after.as_deref()).await? {
                users.insert(user.clone());
                after = Some(user);
            }
        }
        let mut report = VerifyReport {
            users: users.len(),
            ..VerifyReport::default()
        };
        for user in &users {
            let (balances, ledger) = self.wallet_and_ledger(user).await?;
            report.entries += ledger.len();
            let mut sums: BTreeMap<String, i64> = BTreeMap::new();
            for entry in &ledger {
                for (currency, delta) in &entry.changeset {
                    let sum = sums.entry(currency.clone()).or_default();
                    *sum = sum.wrapping_add(*delta);
                }
            }
            let currencies: BTreeSet<&String> = balances.keys().chain(sums.keys()).collect();
            report.balances += currencies.len();
            for currency in currencies {
                let balance = balances.get(currency).copied().unwrap_or(0);
                let ledger_sum = sums.get(currency).copied().unwrap_or(0);
                if balance != ledger_sum {
                    report.mismatches.push(Mismatch {
                        user_id: user.clone(),
                        currency: currency.clone(),
                        balance,
                        ledger_sum,
                    });
                }
                if balance < 0 {
                    report
                        .negative
                        .push((user.clone(), currency.clone(), balance));
                }
            }
        }
        Ok(report)
    }

    /// The first user after `after` with a key in `sub` of `wallet`.
    async fn next_user(&self, sub: &SubspaceSpec, after: Option<&str>) -> Result<Option<String>> {
        let space = &self.layout.wallet;
        let (begin, end) = space.range(sub, &());
        let begin = match after {
            Some(user) => space.range(sub, &(user,)).1,
            None => begin,
        };
        let rows = self
            .db
            .read_range(RangeOption {
                begin: KeySelector::first_greater_or_equal(begin),
                end: KeySelector::first_greater_or_equal(end),
                limit: Some(1),
                reverse: false,
            })
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let prefix_len = space.subspace_prefix(sub).len();
        let (user, _): (String, foundationdb_tuple::Element<'_>) =
            foundationdb_tuple::unpack(&row.key[prefix_len..])
                .map_err(|e| super::corrupt(sub.name, e))?;
        Ok(Some(user))
    }

    /// `user`'s balances and whole ledger, read in one transaction.
    async fn wallet_and_ledger(
        &self,
        user: &str,
    ) -> Result<(BTreeMap<String, i64>, Vec<LedgerEntry>)> {
        let space = &self.layout.wallet;
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| async move {
                let (b, e) = space.range(&keys::BALANCE, &(user,));
                let rows = tx.get_range_all(RangeOption::new(b, e), true).await?;
                let balances = super::read::balances_of(space, &rows)?;
                let (b, e) = space.range(&keys::LEDGER, &(user,));
                let mut ledger = Vec::new();
                for row in tx.get_range_all(RangeOption::new(b, e), true).await? {
                    ledger.push(decode("ledger", &row.value)?);
                }
                Ok((balances, ledger))
            })
            .await
    }
}
