//! Player-to-player trades: open, accept, cancel.
//!
//! A trade is a record in `trades/trade` plus one `trades/by_user` entry per
//! party and state. Accepting it is one serializable transaction: it reads
//! the trade, every item on both sides and both sides' debited balances
//! with conflict ranges, checks them, and moves the items and currencies
//! (ledger entries for both users, naming the trade) and marks the trade
//! completed. Any concurrent change to what it read makes one of the two
//! transactions retry, so an item is never traded twice and no balance goes
//! below zero.

use std::collections::BTreeMap;

use super::ctx::Ctx;
use super::keys;
use super::{Error, GameDb, Result, Trade, TradeRecord, TradeSide, TradeState, decode, encode};

impl GameDb {
    /// Opens a trade `trade_id` (chosen by the caller before the
    /// transaction) from `initiator` to `counterparty`. Nothing moves; the
    /// offer is checked now (items owned, currency held, read at snapshot
    /// isolation: the accept checks again) and the counterparty's sync is
    /// told.
    ///
    /// Safe to run twice: the retry writes the same record under the same
    /// ID (after checking it is not there yet, or is this same trade).
    ///
    /// Errors: [`Error::InsufficientItems`], [`Error::InsufficientFunds`],
    /// the store's.
    pub async fn open_trade(
        &self,
        trade_id: &str,
        initiator: &str,
        counterparty: &str,
        give: &TradeSide,
        take: &TradeSide,
        now_ms: u64,
    ) -> Result<Trade> {
        let layout = &*self.layout;
        let record = TradeRecord {
            initiator: initiator.to_owned(),
            counterparty: counterparty.to_owned(),
            give: give.clone(),
            take: take.clone(),
            state: TradeState::Open,
            create_ms: now_ms,
            update_ms: now_ms,
        };
        let record = &record;
        // Safe to run twice: the trade ID is the caller's (chosen once per
        // request), and a retry after an attempt that committed finds the trade
        // stored under it and returns it without checking or moving anything.
        self.db
            .run(|tx, _| async move {
                let mut ctx = Ctx::new(&tx, layout, now_ms);
                if let Some(existing) = read_trade(&ctx, trade_id).await? {
                    // A retry of this very open after an unknown result.
                    return Ok(Trade {
                        trade_id: trade_id.to_owned(),
                        record: existing,
                    });
                }
                check_side(&mut ctx, initiator, give, true).await?;
                check_side(&mut ctx, counterparty, take, true).await?;
                Ok(save(ctx, trade_id, record.clone(), None))
            })
            .await
    }

    /// Accepts trade `trade_id` as `user` (who must be its counterparty):
    /// in one transaction, checks both sides still own their items and hold
    /// their currency, moves them, and marks the trade completed. Accepting
    /// a completed trade returns it and moves nothing.
    ///
    /// Safe to run twice: the retry reads the trade's state (with a
    /// conflict range); once completed it returns without moving anything.
    ///
    /// Errors: [`Error::TradeNotFound`], [`Error::NotAllowed`] (not the
    /// counterparty), [`Error::TradeNotOpen`] (cancelled),
    /// [`Error::InsufficientItems`], [`Error::InsufficientFunds`] (the trade
    /// stays open), the store's.
    pub async fn accept_trade(&self, trade_id: &str, user: &str, now_ms: u64) -> Result<Trade> {
        let layout = &*self.layout;
        self.db
            .run(|tx, _| async move {
                let mut ctx = Ctx::new(&tx, layout, now_ms);
                let mut record = read_trade(&ctx, trade_id)
                    .await?
                    .ok_or(Error::TradeNotFound)?;
                if record.counterparty != user {
                    return Err(Error::NotAllowed(
                        "only the counterparty may accept a trade",
                    ));
                }
                match record.state {
                    TradeState::Completed => {
                        return Ok(Trade {
                            trade_id: trade_id.to_owned(),
                            record,
                        });
                    }
                    TradeState::Cancelled => return Err(Error::TradeNotOpen(record.state)),
                    TradeState::Open => {}
                }
                let (a, b) = (record.initiator.clone(), record.counterparty.clone());
                let mut pairs = BTreeMap::new();
                for (giver, taker, side) in [(&a, &b, &record.give), (&b, &a, &record.take)] {
                    for currency in side.currency.keys() {
                        *pairs.entry((giver.clone(), currency.clone())).or_default() |= true;
                        pairs
                            .entry((taker.clone(), currency.clone()))
                            .or_insert(false);
                    }
                }
                ctx.read_balances(pairs).await?;
                for (giver, taker, side) in [(&a, &b, &record.give), (&b, &a, &record.take)] {
                    for item in &side.items {
                        ctx.move_item(item, Some(giver), taker).await?;
                    }
                    if !side.currency.is_empty() {
                        let debit = side.currency.iter().map(|(c, v)| (c.clone(), -v)).collect();
                        ctx.apply_wallet(giver, &debit, "{}", Some(trade_id))?;
                        ctx.apply_wallet(taker, &side.currency, "{}", Some(trade_id))?;
                    }
                }
                record.state = TradeState::Completed;
                record.update_ms = now_ms;
                Ok(save(ctx, trade_id, record, Some(TradeState::Open)))
            })
            .await
    }

    /// Cancels open trade `trade_id` as `user` (either party). Cancelling a
    /// cancelled trade returns it unchanged.
    ///
    /// Safe to run twice: the retry reads the state and finds it cancelled.
    ///
    /// Errors: [`Error::TradeNotFound`], [`Error::NotAllowed`] (not a
    /// party), [`Error::TradeNotOpen`] (completed), the store's.
    pub async fn cancel_trade(&self, trade_id: &str, user: &str, now_ms: u64) -> Result<Trade> {
        let layout = &*self.layout;
        self.db
            .run(|tx, _| async move {
                let ctx = Ctx::new(&tx, layout, now_ms);
                let mut record = read_trade(&ctx, trade_id)
                    .await?
                    .ok_or(Error::TradeNotFound)?;
                if record.initiator != user && record.counterparty != user {
                    return Err(Error::NotAllowed("only a party may cancel a trade"));
                }
                match record.state {
                    TradeState::Cancelled => {
                        return Ok(Trade {
                            trade_id: trade_id.to_owned(),
                            record,
                        });
                    }
                    TradeState::Completed => return Err(Error::TradeNotOpen(record.state)),
                    TradeState::Open => {}
                }
                record.state = TradeState::Cancelled;
                record.update_ms = now_ms;
                Ok(save(ctx, trade_id, record, Some(TradeState::Open)))
            })
            .await
    }
}

/// Checks that `owner` holds every item of `side` and its currency;
/// `snapshot`: read without conflict ranges (the offer's early check).
async fn check_side(
    ctx: &mut Ctx<'_>,
    owner: &str,
    side: &TradeSide,
    snapshot: bool,
) -> Result<()> {
    for item_id in &side.items {
        let key = ctx.layout.items.key(&keys::ITEM, &(item_id,));
        let held = match ctx.tx.get(&key, snapshot).await? {
            Some(v) => {
                let record: super::ItemRecord = decode("item", &v)?;
                if record.owner == owner {
                    record.quantity
                } else {
                    0
                }
            }
            None => 0,
        };
        if held == 0 {
            return Err(Error::InsufficientItems {
                item_id: item_id.clone(),
                held: 0,
                wanted: 1,
            });
        }
    }
    for (currency, &amount) in &side.currency {
        let key = ctx.layout.wallet.key(&keys::BALANCE, &(owner, currency));
        let balance = match ctx.tx.get(&key, snapshot).await? {
            Some(v) => super::decode_balance(&v)?,
            None => 0,
        };
        if balance < amount {
            return Err(Error::InsufficientFunds {
                user_id: owner.to_owned(),
                currency: currency.clone(),
                balance,
                delta: -amount,
            });
        }
    }
    Ok(())
}

/// Reads trade `trade_id` with a conflict range.
pub(super) async fn read_trade(ctx: &Ctx<'_>, trade_id: &str) -> Result<Option<TradeRecord>> {
    let key = ctx.layout.trades.key(&keys::TRADE, &(trade_id,));
    ctx.tx
        .get(&key, false)
        .await?
        .map(|v| decode("trade", &v))
        .transpose()
}

/// Writes a trade's record, moves its `by_user` entries from state
/// `before` (none for a new trade) to its state, logs the change for both
/// parties and flushes the context.
fn save(
    mut ctx: Ctx<'_>,
    trade_id: &str,
    record: TradeRecord,
    before: Option<TradeState>,
) -> Trade {
    let tx = ctx.tx;
    let space = &ctx.layout.trades;
    tx.set(&space.key(&keys::TRADE, &(trade_id,)), &encode(&record));
    for user in [&record.initiator, &record.counterparty] {
        if let Some(before) = before {
            tx.clear(&space.key(&keys::TRADE_BY_USER, &(user, before.as_str(), trade_id)));
        }
        tx.set(
            &space.key(
                &keys::TRADE_BY_USER,
                &(user, record.state.as_str(), trade_id),
            ),
            b"",
        );
    }
    for user in [&record.initiator, &record.counterparty] {
        ctx.log(user).trades.push(trade_id.to_owned());
    }
    ctx.flush();
    Trade {
        trade_id: trade_id.to_owned(),
        record,
    }
}
