//! Leaderboard records: a shared db-level layer, over caller-given
//! subspaces, that keeps each owner's record of a board and its rank in a
//! [`RankedSet`] in the same store, so every server answers ranks
//! identically the moment a score commits, with O(log n) reads and nothing
//! held in memory.
//!
//! The `game` database mounts it (one [`Leaderboard`] per board, on two of
//! its subspaces); this module knows nothing of HTTP, users or board
//! creation.
//!
//! ## Keys
//! Under the caller's `records` and `ranks` subspaces, per window (below):
//! - `records + pack((expiry_ms: int, owner: str)) -> msgpack
//!   {entry, submissions}`: the [`Entry`] (score, subscore, `num_score`,
//!   metadata as JSON text, created/updated ms) and the IDs of the last
//!   [`REMEMBERED_SUBMISSIONS`] submissions applied;
//! - `ranks + pack((expiry_ms: int,))`: the window's [`RankedSet`], one
//!   element per record ([`element`]).
//!
//! ## Order
//! Records are ordered by score in the board's direction, then subscore in
//! the same direction, then owner ascending (bytewise, which is user ID
//! order); ranks are dense 1-based positions in that order (no two records
//! share a rank). The ranked set orders its elements bytewise, so the
//! element of a record encodes that order ([`element`]): the score and the
//! subscore as 8 big-endian bytes each, sign bit flipped (so that `i64`
//! order is byte order), all bits inverted on a descending board, then the
//! owner's bytes.
//!
//! ## Operators
//! A submission `(score, subscore)` meets the stored record `(s, ss)` (a new
//! record starts from `(0, 0)`):
//! - `best`: keeps the better of the two by the board's order (a tie keeps
//!   the stored one); a new record takes the submission;
//! - `set`: takes the submission;
//! - `incr`: `(s + score, ss + subscore)`, saturating;
//! - `decr`: `(s - score, ss - subscore)`, each floored at zero.
//!
//! Every submission adds 1 to `num_score` and sets `update_ms`; metadata is
//! replaced when the submission carries some. (Nakama does the same.)
//!
//! ## Windows
//! A board with a cron `reset` keeps each window in its own ranked set and
//! records, keyed by the window's **expiry**: the first cron occurrence
//! strictly after the time of the write ([`Reset::expiry_after`], a pure
//! function of an injected time). Writes go to the current window; a past
//! window is read by naming its expiry and stays unchanged. A board
//! without a reset has one window, expiry 0.
//!
//! ## Transactions
//! Each operation is one transaction's work, written against
//! [`kv::Transaction`] so the caller runs it inside [`kv::Database::run`]
//! with whatever else belongs to the same change. Each is safe to run twice
//! (`commit_unknown_result`): [`Leaderboard::submit`] records the caller's
//! submission ID in the record (the last [`REMEMBERED_SUBMISSIONS`]) and a
//! second run of the same ID returns the record unchanged; delete of a
//! deleted record changes nothing; reads change nothing. A submit reads its
//! own record (so two submissions of one owner conflict and apply in turn)
//! and moves its element in the ranked set (not at all when the scores did
//! not change, as for a `best` that did not beat the record), whose
//! conflicts are those of
//! [`crate::kv::ranked_set`] (inserts far apart commit together); the rank it
//! returns is read at snapshot isolation, so it adds no conflict. Why 8
//! remembered IDs suffice (a retry follows its unknown result within
//! milliseconds, and 8 other submissions to the same record would have to
//! commit in between, serialized by the record's conflict range) is in
//! `docs/leaderboards.md`. [`Leaderboard::bulk_load`] is the exception: it
//! fills an empty window in several transactions, for loading before
//! traffic.
//!
//! Who may import this: `db::*` databases (the `game` database), tests. Of
//! Myelin's modules it imports only `kv`.

use std::ops::Bound;

use base64::Engine as _;
use foundationdb_tuple::Subspace;
use serde::{Deserialize, Serialize};

use crate::kv::{self, ranked_set::RankedSet, ranked_set::RankedSetError};

/// Longest owner ID, in bytes (a Matrix user ID's limit).
pub const MAX_OWNER_BYTES: usize = 255;
/// How many submission IDs a record remembers for retries.
pub const REMEMBERED_SUBMISSIONS: usize = 8;
/// Most records one page or around-owner read returns.
pub const MAX_LIMIT: usize = 1000;
/// Records one transaction of [`Leaderboard::bulk_load`] writes (about
/// 100 bytes each: far below FoundationDB's 10 MB).
pub const BULK_RECORDS_PER_TRANSACTION: usize = 1000;

/// The direction of a board: which end is rank 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sort {
    /// Lowest score first (times, strokes).
    Asc,
    /// Highest score first (points).
    Desc,
}

/// How a submission combines with the stored record (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operator {
    /// Keep the better of the stored and the submitted scores.
    Best,
    /// Replace the stored scores.
    Set,
    /// Add to the stored scores.
    Incr,
    /// Subtract from the stored scores, never below zero.
    Decr,
}

/// A board's reset schedule: a 5-field cron expression (minute, hour, day
/// of month, month, day of week; UTC), parsed by the `croner` crate.
#[derive(Clone, Debug)]
pub struct Reset {
    expression: String,
    cron: croner::Cron,
}

impl PartialEq for Reset {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression
    }
}

impl Reset {
    /// Parses `expression`.
    ///
    /// Errors: [`LeaderboardError::BadReset`] if it is not a 5-field cron
    /// expression or never occurs after 1970.
    pub fn parse(expression: &str) -> Result<Self> {
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| LeaderboardError::BadReset(e.to_string()))?;
        let reset = Reset {
            expression: expression.to_owned(),
            cron,
        };
        // One that never occurs (`0 0 30 2 *`) is refused here, not at the
        // first write.
        reset.expiry_after(0)?;
        Ok(reset)
    }

    /// The expression as given.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The start (ms since the Unix epoch) of the window holding `now_ms`:
    /// the last occurrence at or before it, or `None` before the first.
    pub fn start_at_or_before(&self, now_ms: u64) -> Option<u64> {
        let now = chrono::DateTime::from_timestamp_millis(i64::try_from(now_ms).ok()?)?;
        let previous = self.cron.find_previous_occurrence(&now, true).ok()?;
        u64::try_from(previous.timestamp_millis()).ok()
    }

    /// The expiry (ms since the Unix epoch) of the window holding `now_ms`:
    /// the first occurrence strictly after it.
    ///
    /// Errors: [`LeaderboardError::BadReset`] if no occurrence follows (an
    /// expression such as `0 0 30 2 *` that never matches).
    pub fn expiry_after(&self, now_ms: u64) -> Result<u64> {
        let never = || LeaderboardError::BadReset(format!("{} never occurs", self.expression));
        let now =
            chrono::DateTime::from_timestamp_millis(i64::try_from(now_ms).map_err(|_| never())?)
                .ok_or_else(never)?;
        let next = self
            .cron
            .find_next_occurrence(&now, false)
            .map_err(|_| never())?;
        u64::try_from(next.timestamp_millis()).map_err(|_| never())
    }
}

/// A board's settings that the record layer needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Board {
    /// Which end is rank 1.
    pub sort: Sort,
    /// The operator of submissions that name none.
    pub operator: Operator,
    /// The reset schedule; `None` for one window that never expires.
    pub reset: Option<Reset>,
}

/// A failed leaderboard operation.
#[derive(Debug, thiserror::Error)]
pub enum LeaderboardError {
    /// The owner ID is empty or longer than [`MAX_OWNER_BYTES`].
    #[error("owner ID must be 1 to {MAX_OWNER_BYTES} bytes")]
    BadOwner,
    /// The reset expression does not parse or never occurs.
    #[error("bad reset schedule: {0}")]
    BadReset(String),
    /// A cursor that this layer did not issue.
    #[error("bad cursor")]
    BadCursor,
    /// A limit outside 1..=[`MAX_LIMIT`].
    #[error("limit must be 1 to {MAX_LIMIT}")]
    BadLimit,
    /// The owner's record already holds this many submissions in the
    /// window (a tournament's `max_num_score`); nothing was written.
    #[error("the record already has the most submissions allowed ({0})")]
    MaxNumScore(u64),
    /// A stored record that does not decode.
    #[error("malformed leaderboard record: {0}")]
    Malformed(String),
    /// The ranked set failed (storage errors included: retryable if the
    /// `kv` error inside is).
    #[error(transparent)]
    RankedSet(#[from] RankedSetError),
}

impl From<kv::Error> for LeaderboardError {
    fn from(e: kv::Error) -> Self {
        LeaderboardError::RankedSet(e.into())
    }
}

impl kv::TransactError for LeaderboardError {
    fn as_kv(&self) -> Option<&kv::Error> {
        match self {
            LeaderboardError::RankedSet(e) => e.as_kv(),
            _ => None,
        }
    }
}

type Result<T, E = LeaderboardError> = std::result::Result<T, E>;

/// What a record holds besides its owner and rank.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The score.
    pub score: i64,
    /// The tie-breaking subscore.
    pub subscore: i64,
    /// Submissions so far, in this window.
    pub num_score: u64,
    /// JSON object text.
    pub metadata: String,
    /// First submission, ms since the Unix epoch.
    pub create_ms: u64,
    /// Last submission, ms since the Unix epoch.
    pub update_ms: u64,
}

/// A record's stored value (msgpack, named fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stored {
    entry: Entry,
    /// The IDs of the last [`REMEMBERED_SUBMISSIONS`] submissions, newest last.
    submissions: Vec<u64>,
}

/// One record with its rank, as reads return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The owner's ID.
    pub owner: String,
    /// 1-based position in the board's order.
    pub rank: u64,
    /// The window's expiry (ms since the Unix epoch; 0: never).
    pub expiry_ms: u64,
    /// Scores, counts, metadata and times.
    pub entry: Entry,
}

/// One submission.
#[derive(Clone, Debug, PartialEq)]
pub struct Submission<'a> {
    /// Whose record.
    pub owner: &'a str,
    /// The score.
    pub score: i64,
    /// The subscore.
    pub subscore: i64,
    /// New metadata (JSON object text), or `None` to keep the stored one.
    pub metadata: Option<&'a str>,
    /// The operator, or `None` for the board's.
    pub operator: Option<Operator>,
    /// Chosen by the caller once per submission (not per attempt), so a
    /// retried transaction recognises its own earlier commit.
    pub id: u64,
    /// Refuse the submission ([`LeaderboardError::MaxNumScore`]) when the
    /// record already counts this many (a tournament's `max_num_score`);
    /// `None`: no limit.
    pub max_num_score: Option<u64>,
}

/// A position to continue reading from: after (or before) one record.
/// Opaque to clients as [`Cursor::encode`]'s text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    element: Vec<u8>,
    forward: bool,
}

impl Cursor {
    /// URL-safe base64 of the direction byte and the record's element.
    pub fn encode(&self) -> String {
        let mut bytes = vec![u8::from(self.forward)];
        bytes.extend_from_slice(&self.element);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The cursor `encode` wrote.
    ///
    /// Errors: [`LeaderboardError::BadCursor`] for anything else.
    pub fn decode(text: &str) -> Result<Self> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| LeaderboardError::BadCursor)?;
        let (&dir, element) = bytes.split_first().ok_or(LeaderboardError::BadCursor)?;
        if dir > 1 || element.len() <= ELEMENT_HEAD_BYTES || owner_of(element).is_err() {
            return Err(LeaderboardError::BadCursor);
        }
        Ok(Cursor {
            element: element.to_vec(),
            forward: dir == 1,
        })
    }
}

/// One page of records in rank order, with cursors for the neighbouring
/// pages (`None` at either end).
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// The records, best rank first.
    pub records: Vec<Record>,
    /// Continues after the last record.
    pub next: Option<Cursor>,
    /// Continues before the first record.
    pub prev: Option<Cursor>,
}

/// Bytes of an element before the owner: score and subscore.
const ELEMENT_HEAD_BYTES: usize = 16;

/// `v` as 8 bytes whose bytewise order is the board's order of `v`.
fn ordered(v: i64, sort: Sort) -> [u8; 8] {
    let up = (v as u64) ^ (1 << 63);
    match sort {
        Sort::Asc => up.to_be_bytes(),
        Sort::Desc => (!up).to_be_bytes(),
    }
}

/// The ranked set element of a record: bytewise order is the board's
/// record order (module docs).
pub fn element(sort: Sort, score: i64, subscore: i64, owner: &str) -> Vec<u8> {
    let mut e = Vec::with_capacity(ELEMENT_HEAD_BYTES + owner.len());
    e.extend_from_slice(&ordered(score, sort));
    e.extend_from_slice(&ordered(subscore, sort));
    e.extend_from_slice(owner.as_bytes());
    e
}

fn owner_of(element: &[u8]) -> Result<&str> {
    element
        .get(ELEMENT_HEAD_BYTES..)
        .and_then(|o| std::str::from_utf8(o).ok())
        .ok_or_else(|| LeaderboardError::Malformed("element without an owner".into()))
}

fn check_owner(owner: &str) -> Result<()> {
    if owner.is_empty() || owner.len() > MAX_OWNER_BYTES {
        return Err(LeaderboardError::BadOwner);
    }
    Ok(())
}

fn check_limit(limit: usize) -> Result<()> {
    if limit == 0 || limit > MAX_LIMIT {
        return Err(LeaderboardError::BadLimit);
    }
    Ok(())
}

/// Whether `(score, subscore)` ranks before `(than_score, than_subscore)`
/// on a board sorted `sort`.
fn better(sort: Sort, score: (i64, i64), than: (i64, i64)) -> bool {
    match sort {
        Sort::Asc => score < than,
        Sort::Desc => score > than,
    }
}

/// The scores after `op` applies `submitted` to `stored` (module docs).
pub fn apply(
    sort: Sort,
    op: Operator,
    stored: Option<(i64, i64)>,
    submitted: (i64, i64),
) -> (i64, i64) {
    let base = stored.unwrap_or((0, 0));
    match op {
        Operator::Best => match stored {
            Some(old) if !better(sort, submitted, old) => old,
            _ => submitted,
        },
        Operator::Set => submitted,
        Operator::Incr => (
            base.0.saturating_add(submitted.0),
            base.1.saturating_add(submitted.1),
        ),
        Operator::Decr => (
            base.0.saturating_sub(submitted.0).max(0),
            base.1.saturating_sub(submitted.1).max(0),
        ),
    }
}

/// One board's records and ranks, over caller-given subspaces. Cheap to
/// clone; holds no state but its settings and subspaces.
#[derive(Clone, Debug)]
pub struct Leaderboard {
    board: Board,
    records: Subspace,
    ranks: Subspace,
}

impl Leaderboard {
    /// The board `board` stored in `records` and `ranks`, which must hold
    /// nothing else.
    pub fn new(board: Board, records: Subspace, ranks: Subspace) -> Self {
        Leaderboard {
            board,
            records,
            ranks,
        }
    }

    /// The board's settings.
    pub fn board(&self) -> &Board {
        &self.board
    }

    /// The expiry of the window that writes at `now_ms` go to: 0 for a board
    /// without reset.
    ///
    /// Errors: [`LeaderboardError::BadReset`] (a schedule that never occurs).
    pub fn current_expiry(&self, now_ms: u64) -> Result<u64> {
        match &self.board.reset {
            None => Ok(0),
            Some(reset) => reset.expiry_after(now_ms),
        }
    }

    fn record_key(&self, expiry_ms: u64, owner: &str) -> Vec<u8> {
        self.records.pack(&(expiry_ms, owner))
    }

    fn ranked_set(&self, expiry_ms: u64) -> Result<RankedSet> {
        Ok(RankedSet::new(self.ranks.subspace(&(expiry_ms,)))?)
    }

    async fn stored(
        &self,
        tx: &kv::Transaction,
        expiry_ms: u64,
        owner: &str,
        snapshot: bool,
    ) -> Result<Option<Stored>> {
        match tx.get(&self.record_key(expiry_ms, owner), snapshot).await? {
            None => Ok(None),
            Some(bytes) => rmp_serde::from_slice(&bytes)
                .map(Some)
                .map_err(|e| LeaderboardError::Malformed(e.to_string())),
        }
    }

    /// Applies `submission` to its owner's record in the window current at
    /// `now_ms` and returns the record with its rank. One transaction's
    /// work; safe to run twice (module docs).
    ///
    /// Errors: [`LeaderboardError::BadOwner`], [`LeaderboardError::BadReset`],
    /// the store's.
    pub async fn submit(
        &self,
        tx: &kv::Transaction,
        submission: &Submission<'_>,
        now_ms: u64,
    ) -> Result<Record> {
        let owner = submission.owner;
        check_owner(owner)?;
        let expiry_ms = self.current_expiry(now_ms)?;
        let set = self.ranked_set(expiry_ms)?;
        let sort = self.board.sort;
        let old = self.stored(tx, expiry_ms, owner, false).await?;
        if let Some(old) = &old
            && old.submissions.contains(&submission.id)
        {
            // An earlier attempt of this submission committed.
            return self.ranked(tx, &set, expiry_ms, owner, old.clone()).await;
        }
        if let (Some(max), Some(old)) = (submission.max_num_score, &old)
            && old.entry.num_score >= max
        {
            return Err(LeaderboardError::MaxNumScore(max));
        }
        let op = submission.operator.unwrap_or(self.board.operator);
        let (score, subscore) = apply(
            sort,
            op,
            old.as_ref().map(|r| (r.entry.score, r.entry.subscore)),
            (submission.score, submission.subscore),
        );
        let new_element = element(sort, score, subscore, owner);
        let old_element = old
            .as_ref()
            .map(|r| element(sort, r.entry.score, r.entry.subscore, owner));
        let mut record = old.unwrap_or_else(|| Stored {
            entry: Entry {
                score,
                subscore,
                num_score: 0,
                metadata: "{}".to_owned(),
                create_ms: now_ms,
                update_ms: now_ms,
            },
            submissions: Vec::new(),
        });
        let entry = &mut record.entry;
        entry.score = score;
        entry.subscore = subscore;
        entry.num_score += 1;
        entry.update_ms = now_ms;
        if let Some(metadata) = submission.metadata {
            entry.metadata = metadata.to_owned();
        }
        record.submissions.push(submission.id);
        if record.submissions.len() > REMEMBERED_SUBMISSIONS {
            record.submissions.remove(0);
        }
        let bytes = rmp_serde::to_vec_named(&record)
            .map_err(|e| LeaderboardError::Malformed(e.to_string()))?;
        tx.set(&self.record_key(expiry_ms, owner), &bytes);
        // An unchanged score (a `best` that did not beat the record) keeps
        // its element: no ranked set write, no conflict with anyone, and
        // its rank read as a plain rank. A new or moved one goes in with
        // `replace`, whose walk to the new element answers the rank too.
        let less = if old_element.as_ref() == Some(&new_element) {
            set.count_less_than(tx, &new_element, true).await?
        } else {
            set.replace(tx, old_element.as_deref(), &new_element)
                .await?
        };
        Ok(into_record(owner, record, less + 1, expiry_ms))
    }

    /// Removes `owner`'s record from the window current at `now_ms`; those
    /// below move up at once. Returns whether there was one. Safe to run
    /// twice: the second run finds nothing.
    ///
    /// Errors: [`LeaderboardError::BadOwner`], [`LeaderboardError::BadReset`],
    /// the store's.
    pub async fn delete(&self, tx: &kv::Transaction, owner: &str, now_ms: u64) -> Result<bool> {
        check_owner(owner)?;
        let expiry_ms = self.current_expiry(now_ms)?;
        let Some(old) = self.stored(tx, expiry_ms, owner, false).await? else {
            return Ok(false);
        };
        let set = self.ranked_set(expiry_ms)?;
        set.remove(
            tx,
            &element(self.board.sort, old.entry.score, old.entry.subscore, owner),
        )
        .await?;
        tx.clear(&self.record_key(expiry_ms, owner));
        Ok(true)
    }

    /// `owner`'s record in the window expiring at `expiry_ms`, with its rank.
    /// Snapshot reads: no conflicts.
    ///
    /// Errors: [`LeaderboardError::BadOwner`], the store's.
    pub async fn get(
        &self,
        tx: &kv::Transaction,
        expiry_ms: u64,
        owner: &str,
    ) -> Result<Option<Record>> {
        check_owner(owner)?;
        let Some(stored) = self.stored(tx, expiry_ms, owner, true).await? else {
            return Ok(None);
        };
        let set = self.ranked_set(expiry_ms)?;
        self.ranked(tx, &set, expiry_ms, owner, stored)
            .await
            .map(Some)
    }

    /// The number of records in the window expiring at `expiry_ms`.
    ///
    /// Errors: the store's.
    pub async fn count(&self, tx: &kv::Transaction, expiry_ms: u64) -> Result<u64> {
        Ok(self.ranked_set(expiry_ms)?.count(tx, true).await?)
    }

    /// Up to `limit` records in rank order: the first page without a
    /// cursor, else the page after (or before) the cursor's record. A
    /// cursor names a record, not a position, so paging visits each
    /// record once even while others' ranks move. Snapshot reads.
    ///
    /// Errors: [`LeaderboardError::BadLimit`], the store's.
    pub async fn page(
        &self,
        tx: &kv::Transaction,
        expiry_ms: u64,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page> {
        check_limit(limit)?;
        let set = self.ranked_set(expiry_ms)?;
        let mut elements = match cursor {
            None => set.range_by_rank(tx, 0, limit, true).await?,
            Some(c) => {
                let mut found = set
                    .elements(tx, Bound::Excluded(&c.element), limit, !c.forward, true)
                    .await?;
                if !c.forward {
                    found.reverse();
                }
                found
            }
        };
        elements.truncate(limit);
        let Some(first) = elements.first() else {
            return Ok(Page {
                records: Vec::new(),
                next: None,
                prev: None,
            });
        };
        let first_rank = set.count_less_than(tx, first, true).await? + 1;
        let total = set.count(tx, true).await?;
        let records = self
            .records_of(tx, expiry_ms, &elements, first_rank)
            .await?;
        let last_rank = first_rank + records.len() as u64 - 1;
        Ok(Page {
            next: (last_rank < total).then(|| Cursor {
                element: elements[elements.len() - 1].clone(),
                forward: true,
            }),
            prev: (first_rank > 1).then(|| Cursor {
                element: elements[0].clone(),
                forward: false,
            }),
            records,
        })
    }

    /// Up to `limit` records centred on `owner`'s (nearer the end when the
    /// owner is near the top or bottom, so the page stays full), or `None`
    /// if the owner has no record. Snapshot reads.
    ///
    /// Errors: [`LeaderboardError::BadOwner`], [`LeaderboardError::BadLimit`],
    /// the store's.
    pub async fn around(
        &self,
        tx: &kv::Transaction,
        expiry_ms: u64,
        owner: &str,
        limit: usize,
    ) -> Result<Option<Vec<Record>>> {
        check_owner(owner)?;
        check_limit(limit)?;
        let Some(stored) = self.stored(tx, expiry_ms, owner, true).await? else {
            return Ok(None);
        };
        let set = self.ranked_set(expiry_ms)?;
        let own = element(
            self.board.sort,
            stored.entry.score,
            stored.entry.subscore,
            owner,
        );
        let position = set.count_less_than(tx, &own, true).await?;
        let total = set.count(tx, true).await?;
        let start = position
            .saturating_sub((limit as u64 - 1) / 2)
            .min(total.saturating_sub(limit as u64));
        let elements = set.range_by_rank(tx, start, limit, true).await?;
        let records = self.records_of(tx, expiry_ms, &elements, start + 1).await?;
        Ok(Some(records))
    }

    /// Loads `records` (owner, score, subscore; a repeated owner keeps its
    /// last) into the **empty** window `expiry_ms` in several transactions:
    /// the records in batches of blind writes, then the ranked set by
    /// [`RankedSet::bulk_build`]. Each record gets `num_score` 1 and times
    /// `now_ms`. For loading a board before it takes traffic (imports,
    /// benchmarks, tests): the window is not consistent until it returns,
    /// and it must not be written meanwhile. Returns the number loaded.
    ///
    /// Errors: [`LeaderboardError::BadOwner`] (before anything is written);
    /// the ranked set's (`NotEmpty` for a window that holds records); the
    /// store's.
    pub async fn bulk_load(
        &self,
        db: &kv::Database,
        expiry_ms: u64,
        records: &[(String, i64, i64)],
        now_ms: u64,
    ) -> Result<u64> {
        let mut by_owner = std::collections::BTreeMap::new();
        for (owner, score, subscore) in records {
            check_owner(owner)?;
            by_owner.insert(owner.as_str(), (*score, *subscore));
        }
        let set = self.ranked_set(expiry_ms)?;
        // The set is checked empty first (a second load is refused before
        // it overwrites records).
        if set.count(&db.create_transaction()?, true).await? > 0 {
            return Err(RankedSetError::NotEmpty.into());
        }
        let owners: Vec<(&str, (i64, i64))> = by_owner.into_iter().collect();
        for chunk in owners.chunks(BULK_RECORDS_PER_TRANSACTION) {
            // Safe to run twice: blind writes of fixed values.
            db.run(|tx, _| async move {
                for (owner, (score, subscore)) in chunk {
                    let stored = Stored {
                        entry: Entry {
                            score: *score,
                            subscore: *subscore,
                            num_score: 1,
                            metadata: "{}".to_owned(),
                            create_ms: now_ms,
                            update_ms: now_ms,
                        },
                        submissions: Vec::new(),
                    };
                    let bytes = rmp_serde::to_vec_named(&stored)
                        .map_err(|e| LeaderboardError::Malformed(e.to_string()))?;
                    tx.set(&self.record_key(expiry_ms, owner), &bytes);
                }
                Ok::<_, LeaderboardError>(())
            })
            .await?;
        }
        let sort = self.board.sort;
        let mut elements: Vec<Vec<u8>> = owners
            .iter()
            .map(|(owner, (score, subscore))| element(sort, *score, *subscore, owner))
            .collect();
        elements.sort();
        Ok(set.bulk_build(db, elements).await?)
    }

    /// The records of consecutive `elements`, the first at rank
    /// `first_rank`, read at snapshot isolation.
    async fn records_of(
        &self,
        tx: &kv::Transaction,
        expiry_ms: u64,
        elements: &[Vec<u8>],
        first_rank: u64,
    ) -> Result<Vec<Record>> {
        let mut records = Vec::with_capacity(elements.len());
        for (rank, e) in (first_rank..).zip(elements) {
            let owner = owner_of(e)?;
            let stored = self
                .stored(tx, expiry_ms, owner, true)
                .await?
                .ok_or_else(|| {
                    LeaderboardError::Malformed(format!("{owner} ranked without a record"))
                })?;
            records.push(into_record(owner, stored, rank, expiry_ms));
        }
        Ok(records)
    }

    /// `stored` with its rank, read at snapshot isolation.
    async fn ranked(
        &self,
        tx: &kv::Transaction,
        set: &RankedSet,
        expiry_ms: u64,
        owner: &str,
        stored: Stored,
    ) -> Result<Record> {
        let e = element(
            self.board.sort,
            stored.entry.score,
            stored.entry.subscore,
            owner,
        );
        let rank = set.count_less_than(tx, &e, true).await? + 1;
        Ok(into_record(owner, stored, rank, expiry_ms))
    }
}

fn into_record(owner: &str, stored: Stored, rank: u64, expiry_ms: u64) -> Record {
    Record {
        owner: owner.to_owned(),
        rank,
        expiry_ms,
        entry: stored.entry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_order_as_the_board() {
        let values = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        for w in values.windows(2) {
            assert!(element(Sort::Asc, w[0], 0, "@a:x") < element(Sort::Asc, w[1], 0, "@a:x"));
            assert!(element(Sort::Desc, w[0], 0, "@a:x") > element(Sort::Desc, w[1], 0, "@a:x"));
            assert!(element(Sort::Asc, 3, w[0], "@a:x") < element(Sort::Asc, 3, w[1], "@a:x"));
            assert!(element(Sort::Desc, 3, w[0], "@a:x") > element(Sort::Desc, 3, w[1], "@a:x"));
        }
        // Ties go to the owner, ascending, on both boards.
        for sort in [Sort::Asc, Sort::Desc] {
            assert!(element(sort, 3, 3, "@a:x") < element(sort, 3, 3, "@b:x"));
            assert!(element(sort, 3, 3, "@a:x") < element(sort, 3, 3, "@aa:x"));
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = Cursor {
            element: element(Sort::Desc, 10, 2, "@u:x"),
            forward: false,
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for bad in ["", "!!", "AA", "Ag"] {
            assert!(
                matches!(Cursor::decode(bad), Err(LeaderboardError::BadCursor)),
                "{bad}"
            );
        }
    }

    #[test]
    fn reset_windows_expire_at_the_next_occurrence() {
        let daily = Reset::parse("0 0 * * *").unwrap();
        let day_ms = 86_400_000;
        // 1970-01-01 00:00 is an occurrence: it belongs to the next window.
        assert_eq!(daily.expiry_after(0).unwrap(), day_ms);
        assert_eq!(daily.expiry_after(day_ms - 1).unwrap(), day_ms);
        assert_eq!(daily.expiry_after(day_ms).unwrap(), 2 * day_ms);
        assert!(matches!(
            Reset::parse("not cron"),
            Err(LeaderboardError::BadReset(_))
        ));
        assert!(matches!(
            Reset::parse("0 0 0 * * *"),
            Err(LeaderboardError::BadReset(_))
        ));
        // February 30th never comes.
        assert!(matches!(
            Reset::parse("0 0 30 2 *"),
            Err(LeaderboardError::BadReset(_))
        ));
    }
}
