//! Leaderboards and tournaments in the `game` database (issue 18;
//! `docs/leaderboards.md`): board definitions, the [`Leaderboard`] record
//! layer mounted per board on the `leaderboards` directory, the tournament
//! listing and joins, and each owner's change log for sync.
//!
//! Keys (`keys.rs`, directory `leaderboards`): `board (id)`, then per board
//! `record (id, expiry, owner)` and `rank (id, expiry, level, element)`
//! (the two subspaces [`Leaderboard`] is given), `by_category (category,
//! id)` for tournaments, `joined (id, expiry, owner)`, `join_count (id,
//! expiry, shard)` and `by_owner (owner, id, kind) -> expiry`, the boards an
//! owner has a record on (kind [`OWNED_RECORD`]) or joined (kind
//! [`OWNED_JOIN`]) with the window last written, which an initial sync
//! lists ([`GameDb::owned`]). `by_owner` is written blind (a set, no read)
//! and is not cleared when a board is deleted (its keys are spread over
//! every owner): its readers check that the board, and the record or join,
//! still exist, and skip what does not.
//!
//! Transactions, each one [`crate::kv::Database::run`] and safe to run
//! twice:
//! - create: reads the board key with a conflict range; a second run finds
//!   its own board (equal definition) and returns it;
//! - delete: clears the board key and one `clear_range` per per-board
//!   subspace (`record`, `rank`, `joined`, `join_count`): a range clear is
//!   one mutation whatever the number of keys it covers, so a board of
//!   1,000,000 records is deleted in one small transaction (the store
//!   reclaims the space afterwards); a second run finds no board;
//! - submit: reads the board with a conflict range (a concurrent delete
//!   makes one of the two retry, so no record outlives its board), checks a
//!   tournament's window, join and `max_num_score`, then
//!   [`Leaderboard::submit`] (idempotent by submission ID), logs
//!   `(board, expiry)` in the owner's change log and sets the owner's
//!   `by_owner` key (a second run sets the same value);
//! - join: reads the owner's `joined` key (a second run finds it and counts
//!   nothing), then takes a slot in one of [`JOIN_SHARDS`] counters
//!   (below) and sets the owner's `by_owner` key;
//! - reads: snapshot isolation, no conflicts.
//!
//! **Join counting without a hot key.** A window's joins are counted in
//! [`JOIN_SHARDS`] counters, shard `s` capped at its share of `max_size`
//! (`max_size / 16`, plus one for the first `max_size % 16` shards; the
//! caps sum to `max_size`). A join reads the shards starting at one chosen
//! by its owner's hash, with conflict ranges, and adds 1 (atomic add) to the
//! first below its cap; it is refused only when every shard is at its cap.
//! The total can never pass `max_size` (each shard's check holds at commit:
//! a concurrent join to the same shard conflicts), and two joins conflict
//! only when they land on the same shard (about 1 in 16 while the window is
//! far from full), not on every join. Without `max_size`, a join adds 1 to
//! the shard of its owner's hash without reading it (an atomic add: no
//! conflict at all), so every tournament's `size` (the joins of its current
//! window, [`GameDb::tournament`]) is the sum of its 16 shards, read with
//! one snapshot range read.
//!
//! Who may import this: `db::game` (it is part of the database).

use foundationdb_tuple::Subspace;
use serde::{Deserialize, Serialize};

use super::ctx::Ctx;
use super::{Actor, Error, GameDb, Layout, Result, decode, encode, keys, unpack};
use crate::db::leaderboard::{
    Board, Cursor, Leaderboard, Operator, Page, Record, Reset, Sort, Submission,
};
use crate::kv::{MutationType, RangeOption, Transaction};

/// How many counters a tournament window's joins are spread over.
pub const JOIN_SHARDS: u64 = 16;

/// `by_owner` kind: the owner has a record on the board.
pub const OWNED_RECORD: i64 = 0;
/// `by_owner` kind: the owner joined the tournament.
pub const OWNED_JOIN: i64 = 1;

/// A leaderboard's (or tournament's) definition, `leaderboards/board`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardRecord {
    /// Which end is rank 1.
    pub sort: Sort,
    /// The operator of submissions that name none.
    pub operator: Operator,
    /// The cron reset expression, `None` for one window.
    pub reset: Option<String>,
    /// Whether only admins submit (naming the owner).
    pub authoritative: bool,
    /// JSON object text.
    pub metadata: String,
    /// Creation time, ms since the Unix epoch.
    pub create_ms: u64,
    /// The tournament's settings, for a tournament.
    pub tournament: Option<TournamentRecord>,
}

/// What a tournament adds to a board.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TournamentRecord {
    /// 0 to 127, for listing.
    pub category: u8,
    /// Display title.
    pub title: String,
    /// Display description.
    pub description: String,
    /// No submission before, seconds since the Unix epoch.
    pub start_time: u64,
    /// No submission or join from, seconds since the Unix epoch; 0: never.
    pub end_time: u64,
    /// Seconds each window accepts submissions after it starts; 0: the
    /// whole window.
    pub duration: u64,
    /// Most joins per window; 0: no limit.
    pub max_size: u64,
    /// Most submissions per record per window; 0: no limit.
    pub max_num_score: u64,
    /// Whether an owner must join before submitting.
    pub join_required: bool,
}

impl BoardRecord {
    /// Whether `other` defines the same board (creation time aside).
    fn same_as(&self, other: &BoardRecord) -> bool {
        BoardRecord {
            create_ms: 0,
            ..self.clone()
        } == BoardRecord {
            create_ms: 0,
            ..other.clone()
        }
    }

    fn reset(&self) -> Result<Option<Reset>> {
        self.reset
            .as_deref()
            .map(Reset::parse)
            .transpose()
            .map_err(|e| super::corrupt("board", e.to_string()))
    }

    /// The window expiry that writes at `now_ms` go to (0 without reset).
    ///
    /// Errors: a stored reset that no longer parses ([`Error::Corrupt`]).
    pub fn expiry_at(&self, now_ms: u64) -> Result<u64> {
        match self.reset()? {
            None => Ok(0),
            Some(r) => Ok(r.expiry_after(now_ms)?),
        }
    }

    /// Why a tournament takes no submission at `now_ms`, if it does not:
    /// `not_started`, `ended` or `window_closed` (past `duration` into the
    /// window). `None` for a board or an active tournament.
    ///
    /// Errors: a stored reset that no longer parses.
    pub fn closed_reason(&self, now_ms: u64) -> Result<Option<&'static str>> {
        let Some(t) = &self.tournament else {
            return Ok(None);
        };
        let start_ms = t.start_time.saturating_mul(1000);
        if now_ms < start_ms {
            return Ok(Some("not_started"));
        }
        if t.end_time != 0 && now_ms >= t.end_time.saturating_mul(1000) {
            return Ok(Some("ended"));
        }
        if t.duration == 0 {
            return Ok(None);
        }
        let window_start = match self.reset()? {
            None => start_ms,
            Some(r) => r.start_at_or_before(now_ms).unwrap_or(0).max(start_ms),
        };
        if now_ms >= window_start.saturating_add(t.duration.saturating_mul(1000)) {
            return Ok(Some("window_closed"));
        }
        Ok(None)
    }
}

/// Most submissions [`GameDb::submit_scores`] applies in one transaction
/// (well inside FoundationDB's 10 MB and 5 s: each moves one element of
/// the ranked set, a few keys per level).
pub const MAX_SUBMISSIONS: usize = 100;

/// One submission to [`GameDb::submit_scores`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScoreSubmission {
    /// Whose record.
    pub owner: String,
    /// The score.
    pub score: i64,
    /// The subscore.
    pub subscore: i64,
    /// New metadata (JSON object text), or `None` to keep the stored one.
    pub metadata: Option<String>,
    /// The operator, or `None` for the board's.
    pub operator: Option<Operator>,
    /// Chosen once per submission, so a retried transaction applies it
    /// once.
    pub id: u64,
}

/// One page of tournaments by category.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TournamentPage {
    /// `(id, definition, size)`, by category then ID; `size` as
    /// [`GameDb::tournament`] answers it.
    pub tournaments: Vec<(String, BoardRecord, u64)>,
    /// The last `(category, id)` listed, when more may follow.
    pub next: Option<(u8, String)>,
}

/// What an owner has on boards ([`GameDb::owned`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Owned {
    /// `(board id, record with its rank)`, by board ID; each in the window
    /// the owner last submitted to.
    pub records: Vec<(String, Record)>,
    /// `(tournament id, window expiry)` of the windows last joined, by ID.
    pub joins: Vec<(String, u64)>,
    /// Whether the owner has more `by_owner` entries than were read.
    pub more: bool,
}

/// A page of a board's records and the named owners' records.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordsPage {
    /// The window read (expiry ms; 0: never).
    pub expiry_ms: u64,
    /// The page, in rank order, with its cursors.
    pub page: Page,
    /// The records of the owners asked for that exist, in the order asked.
    pub owner_records: Vec<Record>,
}

fn board_key(layout: &Layout, id: &str) -> Vec<u8> {
    layout.leaderboards.key(&keys::BOARD, &(id,))
}

/// The record layer of board `id` defined by `record`.
fn mount(layout: &Layout, id: &str, record: &BoardRecord) -> Result<Leaderboard> {
    let space = &layout.leaderboards;
    let records = Subspace::from_bytes(space.subspace_prefix(&keys::RECORD)).subspace(&(id,));
    let ranks = Subspace::from_bytes(space.subspace_prefix(&keys::RANK)).subspace(&(id,));
    Ok(Leaderboard::new(
        Board {
            sort: record.sort,
            operator: record.operator,
            reset: record.reset()?,
        },
        records,
        ranks,
    ))
}

async fn read_board(
    tx: &Transaction,
    layout: &Layout,
    id: &str,
    snapshot: bool,
) -> Result<BoardRecord> {
    match tx.get(&board_key(layout, id), snapshot).await? {
        Some(v) => decode("board", &v),
        None => Err(Error::BoardNotFound),
    }
}

/// Board `id`'s record layer and the window to read: `expiry`, or the
/// current one at `now_ms`. A snapshot read of the board.
async fn read_window(
    tx: &Transaction,
    layout: &Layout,
    id: &str,
    expiry: Option<u64>,
    now_ms: u64,
) -> Result<(Leaderboard, u64)> {
    let board = read_board(tx, layout, id, true).await?;
    let expiry = expiry.map_or_else(|| board.expiry_at(now_ms), Ok)?;
    Ok((mount(layout, id, &board)?, expiry))
}

fn owned_key(layout: &Layout, owner: &str, id: &str, kind: i64) -> Vec<u8> {
    layout.leaderboards.key(&keys::BY_OWNER, &(owner, id, kind))
}

/// Notes in `by_owner` that `owner` wrote window `expiry` of board `id`
/// (a blind set: running it twice writes the same value).
fn set_owned(tx: &Transaction, layout: &Layout, owner: &str, id: &str, kind: i64, expiry: u64) {
    tx.set(
        &owned_key(layout, owner, id, kind),
        &(expiry as i64).to_le_bytes(),
    );
}

/// The joins of tournament `id`'s window `expiry`: the sum of its shards
/// (one snapshot range read of at most [`JOIN_SHARDS`] keys).
async fn window_size(tx: &Transaction, layout: &Layout, id: &str, expiry: u64) -> Result<u64> {
    let (begin, end) = layout.leaderboards.range(&keys::JOIN_COUNT, &(id, expiry));
    let rows = tx.get_range_all(RangeOption::new(begin, end), true).await?;
    let mut total = 0u64;
    for row in &rows {
        total += super::decode_balance(&row.value)?.max(0) as u64;
    }
    Ok(total)
}

/// The window of tournament `t` (board `board`) that a join at `now_ms`
/// goes to: before the start, the first one.
fn join_window(board: &BoardRecord, t: &TournamentRecord, now_ms: u64) -> Result<u64> {
    board.expiry_at(now_ms.max(t.start_time.saturating_mul(1000)))
}

/// Shard `shard`'s share of `max_size` (module docs).
fn shard_cap(max_size: u64, shard: u64) -> u64 {
    max_size / JOIN_SHARDS + u64::from(shard < max_size % JOIN_SHARDS)
}

/// The first shard an owner's join tries: a hash of the owner, so joins
/// spread over the shards and a retry tries the same ones.
fn first_shard(owner: &str) -> u64 {
    owner
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
        .wrapping_rem(JOIN_SHARDS)
}

impl GameDb {
    /// Creates board `id`; creating it again with the same definition
    /// returns the stored one.
    ///
    /// Errors: [`Error::BoardExists`] for another definition, the store's.
    pub async fn create_board(&self, id: &str, record: &BoardRecord) -> Result<BoardRecord> {
        let layout = &*self.layout;
        // Safe to run twice: a retry after `commit_unknown_result` finds the
        // board as this call wrote it (`same_as`) and returns it.
        self.db
            .run(|tx, _| async move {
                match read_board(&tx, layout, id, false).await {
                    Ok(existing) if existing.same_as(record) => return Ok(existing),
                    Ok(_) => return Err(Error::BoardExists),
                    Err(Error::BoardNotFound) => {}
                    Err(e) => return Err(e),
                }
                tx.set(&board_key(layout, id), &encode(record));
                if let Some(t) = &record.tournament {
                    let k = layout
                        .leaderboards
                        .key(&keys::BY_CATEGORY, &(i64::from(t.category), id));
                    tx.set(&k, b"");
                }
                Ok(record.clone())
            })
            .await
    }

    /// Board `id`'s definition.
    ///
    /// Errors: [`Error::BoardNotFound`], the store's.
    pub async fn board(&self, id: &str) -> Result<BoardRecord> {
        let layout = &*self.layout;
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| async move { read_board(&tx, layout, id, true).await })
            .await
    }

    /// Deletes board `id` with every window's records, ranks and joins
    /// (range clears: module docs).
    ///
    /// Errors: [`Error::BoardNotFound`], the store's.
    pub async fn delete_board(&self, id: &str) -> Result<()> {
        let layout = &*self.layout;
        // Safe to run twice: an attempt commits only after it found the
        // board, so a retry after `commit_unknown_result` (MaybeCommitted)
        // that finds none knows the board is gone (that attempt deleted it,
        // or another request did since) and answers success, not
        // `BoardNotFound`; a board that never existed still fails at the
        // first attempt, which commits nothing.
        self.db
            .run(|tx, maybe_committed| async move {
                let record = match read_board(&tx, layout, id, false).await {
                    Err(Error::BoardNotFound) if maybe_committed.0 => return Ok(()),
                    other => other?,
                };
                let space = &layout.leaderboards;
                tx.clear(&board_key(layout, id));
                if let Some(t) = &record.tournament {
                    tx.clear(&space.key(&keys::BY_CATEGORY, &(i64::from(t.category), id)));
                }
                for sub in [&keys::RECORD, &keys::RANK, &keys::JOINED, &keys::JOIN_COUNT] {
                    let (begin, end) = space.range(sub, &(id,));
                    tx.clear_range(&begin, &end);
                }
                Ok(())
            })
            .await
    }

    /// Applies `submissions` in order, in one transaction, to their owners'
    /// records on board `id` at `now_ms` (module docs), on behalf of
    /// `actor`, and returns the records with their ranks. Each submission's
    /// ID is chosen once per request (not per attempt). The API submits one
    /// at a time; a server importing records (and the tests' setup) submits
    /// up to [`MAX_SUBMISSIONS`] at once.
    ///
    /// Errors: [`Error::BoardNotFound`]; [`Error::NotAllowed`] for a
    /// non-admin on an authoritative board or naming another owner, or more
    /// than [`MAX_SUBMISSIONS`]; [`Error::TournamentNotActive`],
    /// [`Error::NotJoined`]; [`Error::Leaderboard`] (`MaxNumScore`, bad
    /// owner); the store's. Any error writes nothing.
    pub async fn submit_scores(
        &self,
        actor: &Actor,
        id: &str,
        submissions: &[ScoreSubmission],
        now_ms: u64,
    ) -> Result<Vec<Record>> {
        if submissions.len() > MAX_SUBMISSIONS {
            return Err(Error::NotAllowed("too many submissions in one transaction"));
        }
        if !actor.admin && submissions.iter().any(|s| s.owner != actor.user_id) {
            return Err(Error::NotAllowed("only admins submit for another owner"));
        }
        let layout = &*self.layout;
        // Safe to run twice: each submission's ID is chosen once per request,
        // outside the closure, and the record keeps the IDs it applied
        // (`Leaderboard::submit`), so a retry after an attempt that committed
        // applies none of them again and returns the records as they are.
        self.db
            .run(|tx, _| async move {
                let board = read_board(&tx, layout, id, false).await?;
                if board.authoritative && !actor.admin {
                    return Err(Error::NotAllowed(
                        "only admins submit to an authoritative leaderboard",
                    ));
                }
                if let Some(reason) = board.closed_reason(now_ms)? {
                    return Err(Error::TournamentNotActive(reason));
                }
                let expiry = board.expiry_at(now_ms)?;
                let lb = mount(layout, id, &board)?;
                let mut ctx = Ctx::new(&tx, layout, now_ms);
                let mut records = Vec::with_capacity(submissions.len());
                for s in submissions {
                    let owner = s.owner.as_str();
                    let mut max_num_score = None;
                    if let Some(t) = &board.tournament {
                        if t.join_required {
                            let k = layout.leaderboards.key(&keys::JOINED, &(id, expiry, owner));
                            if tx.get(&k, false).await?.is_none() {
                                return Err(Error::NotJoined);
                            }
                        }
                        max_num_score = (t.max_num_score > 0).then_some(t.max_num_score);
                    }
                    let submission = Submission {
                        owner,
                        score: s.score,
                        subscore: s.subscore,
                        metadata: s.metadata.as_deref(),
                        operator: s.operator,
                        id: s.id,
                        max_num_score,
                    };
                    let record = lb.submit(&tx, &submission, now_ms).await?;
                    set_owned(&tx, layout, owner, id, OWNED_RECORD, record.expiry_ms);
                    let entry = (id.to_owned(), record.expiry_ms);
                    let log = &mut ctx.log(owner).leaderboards;
                    if !log.contains(&entry) {
                        log.push(entry);
                    }
                    records.push(record);
                }
                ctx.flush();
                Ok(records)
            })
            .await
    }

    /// Loads `records` (owner, score, subscore) into board `id`'s window
    /// current at `now_ms`, which must be empty, with
    /// [`Leaderboard::bulk_load`]: several transactions, no change-log or
    /// `by_owner` entries (an initial sync does not list these records). For imports, benchmarks and tests, before the board takes
    /// traffic. Returns the number loaded.
    ///
    /// Errors: [`Error::BoardNotFound`], [`Error::Leaderboard`] (a bad
    /// owner, a window that is not empty), the store's.
    pub async fn load_records(
        &self,
        id: &str,
        records: &[(String, i64, i64)],
        now_ms: u64,
    ) -> Result<u64> {
        let board = self.board(id).await?;
        let lb = mount(&self.layout, id, &board)?;
        let expiry = board.expiry_at(now_ms)?;
        Ok(lb.bulk_load(&self.db, expiry, records, now_ms).await?)
    }

    /// Removes `actor`'s record from the current window of board `id`.
    /// Returns whether there was one.
    ///
    /// Errors: [`Error::BoardNotFound`]; [`Error::NotAllowed`] for a
    /// non-admin on an authoritative board; the store's.
    pub async fn delete_record(&self, actor: &Actor, id: &str, now_ms: u64) -> Result<bool> {
        let layout = &*self.layout;
        let owner = actor.user_id.as_str();
        // Safe to run twice: an attempt writes only when it found the
        // record, so a retry after `commit_unknown_result` (MaybeCommitted)
        // that finds none answers `true` as that attempt would have (the
        // record is gone either way); with no earlier commit, `false`.
        self.db
            .run(|tx, maybe_committed| async move {
                let board = read_board(&tx, layout, id, false).await?;
                if board.authoritative && !actor.admin {
                    return Err(Error::NotAllowed(
                        "only admins change an authoritative leaderboard",
                    ));
                }
                let lb = mount(layout, id, &board)?;
                let found = lb.delete(&tx, owner, now_ms).await?;
                if found {
                    // The owner's record was in the current window, the
                    // one `by_owner` names: none is left to list.
                    tx.clear(&owned_key(layout, owner, id, OWNED_RECORD));
                    let mut ctx = Ctx::new(&tx, layout, now_ms);
                    let expiry = board.expiry_at(now_ms)?;
                    ctx.log(owner).leaderboards.push((id.to_owned(), expiry));
                    ctx.flush();
                }
                Ok(found || maybe_committed.0)
            })
            .await
    }

    /// `owner`'s record with its rank in board `id`'s window `expiry`
    /// (`None`: the current one at `now_ms`).
    ///
    /// Errors: [`Error::BoardNotFound`], the store's.
    pub async fn record(
        &self,
        id: &str,
        expiry: Option<u64>,
        owner: &str,
        now_ms: u64,
    ) -> Result<Option<Record>> {
        let layout = &*self.layout;
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| async move {
                let (lb, expiry) = read_window(&tx, layout, id, expiry, now_ms).await?;
                Ok(lb.get(&tx, expiry, owner).await?)
            })
            .await
    }

    /// One page of board `id`'s window `expiry` (`None`: current) and the
    /// records of `owners`.
    ///
    /// Errors: [`Error::BoardNotFound`], [`Error::Leaderboard`] (limit),
    /// the store's.
    pub async fn records(
        &self,
        id: &str,
        expiry: Option<u64>,
        cursor: Option<&Cursor>,
        limit: usize,
        owners: &[String],
        now_ms: u64,
    ) -> Result<RecordsPage> {
        let layout = &*self.layout;
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| async move {
                let (lb, expiry_ms) = read_window(&tx, layout, id, expiry, now_ms).await?;
                let page = lb.page(&tx, expiry_ms, cursor, limit).await?;
                let mut owner_records = Vec::new();
                for owner in owners {
                    if let Some(r) = lb.get(&tx, expiry_ms, owner).await? {
                        owner_records.push(r);
                    }
                }
                Ok(RecordsPage {
                    expiry_ms,
                    page,
                    owner_records,
                })
            })
            .await
    }

    /// Up to `limit` records of board `id`'s window `expiry` (`None`:
    /// current) centred on `owner`'s; `None` if the owner has none.
    ///
    /// Errors: [`Error::BoardNotFound`], [`Error::Leaderboard`], the store's.
    pub async fn around(
        &self,
        id: &str,
        expiry: Option<u64>,
        owner: &str,
        limit: usize,
        now_ms: u64,
    ) -> Result<Option<Vec<Record>>> {
        let layout = &*self.layout;
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| async move {
                let (lb, expiry_ms) = read_window(&tx, layout, id, expiry, now_ms).await?;
                Ok(lb.around(&tx, expiry_ms, owner, limit).await?)
            })
            .await
    }

    /// Joins `owner` to tournament `id`'s current window (module docs).
    /// Returns the window's expiry and whether this call joined (false:
    /// already joined).
    ///
    /// Errors: [`Error::BoardNotFound`] (also for a board that is not a
    /// tournament), [`Error::TournamentNotActive`] (`ended`),
    /// [`Error::TournamentFull`], the store's.
    pub async fn join(&self, id: &str, owner: &str, now_ms: u64) -> Result<(u64, bool)> {
        let layout = &*self.layout;
        // Safe to run twice: the `joined` key is written in the same
        // transaction as the count, so a retry after an attempt that committed
        // finds it and counts nothing more (answering `joined: false`).
        self.db
            .run(|tx, _| async move {
                let board = read_board(&tx, layout, id, true).await?;
                let Some(t) = &board.tournament else {
                    return Err(Error::BoardNotFound);
                };
                if t.end_time != 0 && now_ms >= t.end_time.saturating_mul(1000) {
                    return Err(Error::TournamentNotActive("ended"));
                }
                let expiry = join_window(&board, t, now_ms)?;
                let space = &layout.leaderboards;
                let joined = space.key(&keys::JOINED, &(id, expiry, owner));
                if tx.get(&joined, false).await?.is_some() {
                    // Joined before, or an earlier attempt of this one committed.
                    return Ok((expiry, false));
                }
                if t.max_size > 0 {
                    let first = first_shard(owner);
                    let mut slot = None;
                    for i in 0..JOIN_SHARDS {
                        let shard = (first + i) % JOIN_SHARDS;
                        let cap = shard_cap(t.max_size, shard);
                        if cap == 0 {
                            continue;
                        }
                        let k = space.key(&keys::JOIN_COUNT, &(id, expiry, shard));
                        let count = match tx.get(&k, false).await? {
                            Some(v) => super::decode_balance(&v)?,
                            None => 0,
                        };
                        if (count as u64) < cap {
                            slot = Some(k);
                            break;
                        }
                    }
                    let Some(k) = slot else {
                        return Err(Error::TournamentFull {
                            max_size: t.max_size,
                        });
                    };
                    tx.atomic_op(&k, &1i64.to_le_bytes(), MutationType::Add);
                } else {
                    // Counted for `size` only: a blind add, no conflict.
                    let k = space.key(&keys::JOIN_COUNT, &(id, expiry, first_shard(owner)));
                    tx.atomic_op(&k, &1i64.to_le_bytes(), MutationType::Add);
                }
                tx.set(&joined, b"");
                set_owned(&tx, layout, owner, id, OWNED_JOIN, expiry);
                let mut ctx = Ctx::new(&tx, layout, now_ms);
                ctx.log(owner).joins.push((id.to_owned(), expiry));
                ctx.flush();
                Ok((expiry, true))
            })
            .await
    }

    /// How many owners joined tournament `id`'s window `expiry`.
    ///
    /// Errors: the store's.
    pub async fn join_count(&self, id: &str, expiry: u64) -> Result<u64> {
        let layout = &*self.layout;
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| async move { window_size(&tx, layout, id, expiry).await })
            .await
    }

    /// Tournament `id`'s definition and `size`: the joins of the window a
    /// join at `now_ms` goes to. `None` for a board that is not a
    /// tournament. Snapshot reads.
    ///
    /// Errors: [`Error::BoardNotFound`], the store's.
    pub async fn tournament(&self, id: &str, now_ms: u64) -> Result<Option<(BoardRecord, u64)>> {
        let layout = &*self.layout;
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| async move {
                let board = read_board(&tx, layout, id, true).await?;
                let Some(t) = &board.tournament else {
                    return Ok(None);
                };
                let size = window_size(&tx, layout, id, join_window(&board, t, now_ms)?).await?;
                Ok(Some((board, size)))
            })
            .await
    }

    /// What `owner` has on boards, for an initial sync: the first `limit`
    /// `by_owner` entries (by board ID), each checked (module docs): a
    /// record with its rank where the board and the record still exist, a
    /// join where the board and the join still exist. Snapshot reads: up
    /// to `limit` boards, each a board read and a rank (O(log n) reads) or
    /// a join key.
    ///
    /// Errors: the store's, corrupt values.
    pub async fn owned(&self, owner: &str, limit: usize) -> Result<Owned> {
        let layout = &*self.layout;
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| async move {
                let space = &layout.leaderboards;
                let (begin, end) = space.range(&keys::BY_OWNER, &(owner,));
                let mut range = RangeOption::new(begin, end);
                range.limit = Some(limit + 1);
                let rows = tx.get_range_all(range, true).await?;
                let mut out = Owned {
                    more: rows.len() > limit,
                    ..Owned::default()
                };
                for row in rows.iter().take(limit) {
                    let (_, id, kind): (String, String, i64) =
                        unpack(space, &keys::BY_OWNER, &row.key)?;
                    let expiry = super::decode_balance(&row.value)?.max(0) as u64;
                    let board = match read_board(&tx, layout, &id, true).await {
                        Ok(b) => b,
                        Err(Error::BoardNotFound) => continue,
                        Err(e) => return Err(e),
                    };
                    if kind == OWNED_JOIN {
                        let k = space.key(&keys::JOINED, &(id.as_str(), expiry, owner));
                        if tx.get(&k, true).await?.is_some() {
                            out.joins.push((id, expiry));
                        }
                    } else if let Some(r) =
                        mount(layout, &id, &board)?.get(&tx, expiry, owner).await?
                    {
                        out.records.push((id, r));
                    }
                }
                Ok(out)
            })
            .await
    }

    /// Up to `limit` tournaments with category in `categories`, after
    /// `after` (the last `(category, id)` of the previous page), with their
    /// sizes at `now_ms`.
    ///
    /// Errors: the store's, corrupt values.
    pub async fn tournaments(
        &self,
        categories: std::ops::RangeInclusive<u8>,
        after: Option<&(u8, String)>,
        limit: usize,
        now_ms: u64,
    ) -> Result<TournamentPage> {
        let layout = &*self.layout;
        let categories = &categories;
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| async move {
                let space = &layout.leaderboards;
                let begin = match after {
                    Some((c, id)) => {
                        let mut k = space.key(&keys::BY_CATEGORY, &(i64::from(*c), id.as_str()));
                        k.push(0);
                        k
                    }
                    None => {
                        space
                            .range(&keys::BY_CATEGORY, &(i64::from(*categories.start()),))
                            .0
                    }
                };
                let end = space
                    .range(&keys::BY_CATEGORY, &(i64::from(*categories.end()),))
                    .1;
                let mut range = RangeOption::new(begin, end);
                range.limit = Some(limit + 1);
                let rows = tx.get_range_all(range, true).await?;
                let mut page = TournamentPage::default();
                for row in rows.iter().take(limit) {
                    let (category, id): (i64, String) =
                        unpack(space, &keys::BY_CATEGORY, &row.key)?;
                    let category = u8::try_from(category)
                        .map_err(|_| super::corrupt("by_category", "category out of range"))?;
                    let record = read_board(&tx, layout, &id, true).await?;
                    let size = match &record.tournament {
                        Some(t) => {
                            let expiry = join_window(&record, t, now_ms)?;
                            window_size(&tx, layout, &id, expiry).await?
                        }
                        None => 0,
                    };
                    page.next = Some((category, id.clone()));
                    page.tournaments.push((id, record, size));
                }
                if rows.len() <= limit {
                    page.next = None;
                }
                Ok(page)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_caps_sum_to_max_size() {
        for max in [1, 5, 15, 16, 17, 100, 1001] {
            let sum: u64 = (0..JOIN_SHARDS).map(|s| shard_cap(max, s)).sum();
            assert_eq!(sum, max);
        }
    }
}
