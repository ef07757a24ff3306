//! The `org.myelin.game` section of `/sync` (issue 17; `docs/game.md`).
//!
//! The `game` database keeps one change-log entry per user per commit that
//! concerns them (`changes/user_log`). A sync reads the user's entries
//! after the token's `game` part up to the read version of the sync (one
//! range read), merges them and answers the current state of what they
//! name:
//!
//! ```json
//! "org.myelin.game": {
//!   "wallet": {"balances": {"gold": 120}},      // when a balance changed
//!   "inventory_changed": true,
//!   "trades": [{"trade_id": "...", "state": "completed", ...}],
//!   "storage": [{"collection": "saves", "key": "slot1", "version": "..."}],
//!   "leaderboards": [{"id": "weekly", "expiry": 0, "score": 120,
//!                     "subscore": 0, "num_score": 3, "rank": 7}],
//!   "tournaments": [{"id": "cup", "expiry": 0, "joined": true}]
//! }
//! ```
//!
//! `leaderboards` lists the user's own records that the user (or an admin
//! on an authoritative board) submitted or deleted, with their current
//! scores and rank read at the sync (a deleted record answers
//! `"deleted": true` instead of scores); `tournaments` the tournament
//! windows the user joined. Both are present only when non-empty. Rank
//! changes caused by other players are not pushed: read them on demand.
//!
//! The section is absent when nothing changed. On an initial sync it holds
//! the current balances, the open trades (at most [`MAX_TRADES`]) and what
//! the user has on boards (`GameDb::owned`): `leaderboards`, the user's
//! record on each board in the window last submitted to, with its rank
//! read at the sync, and `tournaments`, the windows last joined, in the
//! shapes above, by board ID. That list is bounded: at most
//! [`MAX_OWNED`] boards are read; past it the section says
//! `"leaderboards_limited": true` and the client reads the records of the
//! boards it knows by ID (`GET .../records/{owner}`), as after any sync.
//! Records bulk-loaded by an import are not listed. A token from before the game
//! database (format version 1, no `game` part) owes no game changes: its
//! first sync answers no section and a token positioned at the read.
//!
//! Who may import this: `sync::service`.

use serde_json::{Value, json};

use crate::db::Position;
use crate::db::game::{self as db, GameDb, ObjectId, TradeState};
use crate::db::leaderboard::Record;
use crate::service::game::shapes::trade_json;

/// Most trades (and leaderboard records) listed in one section.
const MAX_TRADES: usize = 100;

/// Most boards (records and joins together) an initial sync reads for the
/// user; past it, `"leaderboards_limited": true`.
pub const MAX_OWNED: usize = 100;

/// A record of the user as a sync lists it.
fn record_entry(id: &str, r: &Record) -> Value {
    json!({
        "id": id,
        "expiry": r.expiry_ms,
        "score": r.entry.score,
        "subscore": r.entry.subscore,
        "num_score": r.entry.num_score,
        "rank": r.rank,
    })
}

/// A join of the user as a sync lists it.
fn join_entry(id: &str, expiry: u64) -> Value {
    json!({ "id": id, "expiry": expiry, "joined": true })
}

/// Adds `leaderboards` (`records`) and `tournaments` (`joins`) to a
/// section, each only when not empty.
fn put_boards(out: &mut Value, records: Vec<Value>, joins: &[(String, u64)]) {
    if !records.is_empty() {
        out["leaderboards"] = json!(records);
    }
    if !joins.is_empty() {
        let joins: Vec<Value> = joins
            .iter()
            .map(|(id, expiry)| join_entry(id, *expiry))
            .collect();
        out["tournaments"] = json!(joins);
    }
}

/// The initial section: current balances, open trades, the user's records
/// and joins (module docs); `None` when there is none of these.
async fn initial(game: &GameDb, user: &str) -> Result<Option<Value>, db::Error> {
    let balances = game.balances(user).await?;
    let trades: Vec<Value> = game
        .trades(user, Some(TradeState::Open), MAX_TRADES)
        .await?
        .iter()
        .map(trade_json)
        .collect();
    let owned = game.owned(user, MAX_OWNED).await?;
    if balances.is_empty()
        && trades.is_empty()
        && owned.records.is_empty()
        && owned.joins.is_empty()
        && !owned.more
    {
        return Ok(None);
    }
    let mut out = json!({ "inventory_changed": false, "trades": trades, "storage": [] });
    if !balances.is_empty() {
        out["wallet"] = json!({ "balances": balances });
    }
    let records = owned
        .records
        .iter()
        .map(|(id, r)| record_entry(id, r))
        .collect();
    put_boards(&mut out, records, &owned.joins);
    if owned.more {
        out["leaderboards_limited"] = json!(true);
    }
    Ok(Some(out))
}

/// The section for `user` between `since` (`None`: initial sync;
/// `Some(None)`: a version-1 token) and read version `rv`.
///
/// Errors: the `game` database's.
pub async fn section(
    game: &GameDb,
    user: &str,
    since: Option<Option<Position<GameDb>>>,
    rv: u64,
) -> Result<Option<Value>, db::Error> {
    let change = match since {
        Some(None) => return Ok(None),
        None => return initial(game, user).await,
        Some(Some(since)) => game.changes(user, Some(since.to_bytes()), rv).await?.0,
    };
    if change.is_empty() {
        return Ok(None);
    }
    let mut trades = Vec::new();
    for id in change.trades.iter().rev().take(MAX_TRADES) {
        if let Some(t) = game.trade(id).await? {
            trades.push(trade_json(&t));
        }
    }
    let ids: Vec<ObjectId> = change
        .storage
        .iter()
        .map(|(collection, key)| ObjectId {
            collection: collection.clone(),
            key: key.clone(),
            owner: Some(user.to_owned()),
        })
        .collect();
    let current = game.read_objects(&ids).await?;
    let storage: Vec<Value> = ids
        .iter()
        .map(|id| {
            let version = current
                .iter()
                .find(|o| o.collection == id.collection && o.key == id.key)
                .map(|o| o.version.clone());
            json!({ "collection": id.collection, "key": id.key, "version": version })
        })
        .collect();
    let mut out = json!({
        "inventory_changed": change.inventory,
        "trades": trades,
        "storage": storage,
    });
    let mut records = Vec::new();
    for (id, expiry) in change.leaderboards.iter().rev().take(MAX_TRADES) {
        let record = match game.record(id, Some(*expiry), user, 0).await {
            Ok(r) => r,
            // Deleted since: the record went with it.
            Err(db::Error::BoardNotFound) => None,
            Err(e) => return Err(e),
        };
        records.push(match record {
            Some(r) => record_entry(id, &r),
            None => json!({ "id": id, "expiry": expiry, "deleted": true }),
        });
    }
    put_boards(&mut out, records, &change.joins);
    if change.wallet {
        out["wallet"] = json!({ "balances": game.balances(user).await? });
    }
    Ok(Some(out))
}
