//! Leaderboards and tournaments in the game service (issue 18;
//! `docs/leaderboards.md`): the JSON shapes of
//! `/_myelin/game/v1/leaderboards/...` and `/tournaments/...`, their
//! validation (IDs at most [`super::shapes::MAX_NAME_BYTES`], metadata a
//! JSON object of at most [`MAX_METADATA_BYTES`], limits, owners), authority (admins
//! create and delete boards and tournaments and submit to authoritative
//! boards, naming the owner) and the answers. Each call is one `db::game`
//! transaction; a submission's ID is drawn here, once per request, so the
//! transaction's retry after `commit_unknown_result` applies it once.
//!
//! Who may import this: `api` (through [`super`]), `sync` (record JSON).

use serde::Deserialize;
use serde_json::{Value, json};

use super::shapes::{MAX_METADATA_BYTES, check_name, check_user, object_text, parse_stored};
use super::{Error, Game, Result};
use crate::db::game::{BoardRecord, ScoreSubmission, TournamentRecord};
use crate::db::leaderboard::{Cursor, Operator, Record, Reset, Sort};
use crate::service::Authed;

/// Most records one page or around-owner read returns.
pub const MAX_RECORDS_LIMIT: usize = crate::db::leaderboard::MAX_LIMIT;
/// Records in a page when `limit` is absent.
pub const DEFAULT_RECORDS_LIMIT: usize = 100;
/// Records around an owner when `limit` is absent.
pub const DEFAULT_AROUND_LIMIT: usize = 20;
/// Most `owner_ids` in one listing.
pub const MAX_OWNER_IDS: usize = 100;
/// Most tournaments in one listing page (and the default).
pub const MAX_TOURNAMENTS_LIMIT: usize = 100;
/// Longest tournament title, in bytes.
pub const MAX_TITLE_BYTES: usize = 256;
/// Longest tournament description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;
/// Highest tournament category.
pub const MAX_CATEGORY: u8 = 127;

/// `POST /leaderboards` body (and the board part of a tournament's).
#[derive(Clone, Debug, Deserialize)]
pub struct CreateLeaderboard {
    /// 1 to 128 bytes.
    pub id: String,
    /// `desc` (default) or `asc`.
    #[serde(default)]
    pub sort: Option<Sort>,
    /// `best` (default), `set`, `incr` or `decr`.
    #[serde(default)]
    pub operator: Option<Operator>,
    /// A 5-field cron expression (UTC), or null for one window.
    #[serde(default)]
    pub reset: Option<String>,
    /// Only admins submit (default false).
    #[serde(default)]
    pub authoritative: bool,
    /// A JSON object of at most 16 KiB.
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// `POST /tournaments` body: a leaderboard plus the tournament's fields.
#[derive(Clone, Debug, Deserialize)]
pub struct CreateTournament {
    /// The board's fields.
    #[serde(flatten)]
    pub board: CreateLeaderboard,
    /// 0 to 127.
    #[serde(default)]
    pub category: u8,
    /// At most 256 bytes.
    #[serde(default)]
    pub title: String,
    /// At most 4096 bytes.
    #[serde(default)]
    pub description: String,
    /// Seconds since the Unix epoch; absent: now.
    #[serde(default)]
    pub start_time: Option<u64>,
    /// Seconds since the Unix epoch, after `start_time`; 0 or absent: never.
    #[serde(default)]
    pub end_time: u64,
    /// Seconds each window takes submissions; 0 or absent: all of it.
    #[serde(default)]
    pub duration: u64,
    /// Most joins per window; 0 or absent: no limit.
    #[serde(default)]
    pub max_size: u64,
    /// Most submissions per record per window; 0 or absent: no limit.
    #[serde(default)]
    pub max_num_score: u64,
    /// Whether a join must precede a submission (default false).
    #[serde(default)]
    pub join_required: bool,
}

/// `POST /leaderboards/{id}/records` body.
#[derive(Clone, Debug, Deserialize)]
pub struct SubmitRecord {
    /// The score.
    pub score: i64,
    /// The tie-breaking subscore (default 0).
    #[serde(default)]
    pub subscore: i64,
    /// A JSON object of at most 16 KiB; absent keeps the stored one.
    #[serde(default)]
    pub metadata: Option<Value>,
    /// Overrides the board's operator for this submission.
    #[serde(default)]
    pub operator: Option<Operator>,
    /// Admins only: whose record (default: the caller's).
    #[serde(default)]
    pub owner: Option<String>,
}

/// What a record listing asks for.
#[derive(Clone, Debug, Default)]
pub struct RecordsQuery {
    /// 1 to 1000 (default 100).
    pub limit: Option<usize>,
    /// A `next_cursor` or `prev_cursor` of an earlier page.
    pub cursor: Option<String>,
    /// A past window's expiry (ms); absent: the current window.
    pub expiry: Option<u64>,
    /// Owners whose records to answer in `owner_records` (at most 100).
    pub owner_ids: Vec<String>,
}

/// A record as answered.
pub fn record_json(board_id: &str, r: &Record) -> Value {
    json!({
        "leaderboard_id": board_id,
        "owner": r.owner,
        "score": r.entry.score,
        "subscore": r.entry.subscore,
        "rank": r.rank,
        "num_score": r.entry.num_score,
        "metadata": parse_stored(&r.entry.metadata),
        "create_ts": r.entry.create_ms,
        "update_ts": r.entry.update_ms,
        "expiry": r.expiry_ms,
    })
}

fn sort_str(s: Sort) -> &'static str {
    match s {
        Sort::Asc => "asc",
        Sort::Desc => "desc",
    }
}

fn operator_str(o: Operator) -> &'static str {
    match o {
        Operator::Best => "best",
        Operator::Set => "set",
        Operator::Incr => "incr",
        Operator::Decr => "decr",
    }
}

/// A board (or tournament) as answered; `next_reset` is the current
/// window's expiry at `now_ms` for a board with a reset; `size` (the joins
/// of a tournament's current window) where it was read.
fn board_json(id: &str, b: &BoardRecord, now_ms: u64, size: Option<u64>) -> Value {
    let mut out = json!({
        "id": id,
        "sort": sort_str(b.sort),
        "operator": operator_str(b.operator),
        "reset": b.reset,
        "authoritative": b.authoritative,
        "metadata": parse_stored(&b.metadata),
        "create_ts": b.create_ms,
        "next_reset": b.reset.as_ref().and_then(|_| b.expiry_at(now_ms).ok()),
    });
    if let Some(t) = &b.tournament {
        out["category"] = json!(t.category);
        out["title"] = json!(t.title);
        out["description"] = json!(t.description);
        out["start_time"] = json!(t.start_time);
        out["end_time"] = json!(t.end_time);
        out["duration"] = json!(t.duration);
        out["max_size"] = json!(t.max_size);
        out["max_num_score"] = json!(t.max_num_score);
        out["join_required"] = json!(t.join_required);
        if let Some(size) = size {
            out["size"] = json!(size);
        }
    }
    out
}

fn check_limit(given: Option<usize>, default: usize, max: usize) -> Result<usize> {
    match given {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(Error::InvalidParam(format!("limit must be 1 to {max}"))),
    }
}

fn check_text(what: &str, s: &str, max: usize) -> Result<()> {
    if s.len() > max {
        return Err(Error::TooLarge(format!("{what} is over {max} bytes")));
    }
    Ok(())
}

/// The board part of a create, validated.
fn board_record(body: &CreateLeaderboard, now_ms: u64) -> Result<BoardRecord> {
    check_name("id", &body.id)?;
    if let Some(r) = &body.reset {
        Reset::parse(r).map_err(|e| Error::InvalidParam(e.to_string()))?;
    }
    Ok(BoardRecord {
        sort: body.sort.unwrap_or(Sort::Desc),
        operator: body.operator.unwrap_or(Operator::Best),
        reset: body.reset.clone(),
        authoritative: body.authoritative,
        metadata: object_text("metadata", body.metadata.as_ref(), MAX_METADATA_BYTES)?,
        create_ms: now_ms,
        tournament: None,
    })
}

fn decode_tournament_cursor(s: &str) -> Result<(u8, String)> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| Error::InvalidParam("cursor is not one this server gave".into()))
}

fn encode_tournament_cursor(c: &(u8, String)) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(c).expect("a pair serializes"))
}

impl Game {
    /// `POST /leaderboards` (admin): creates a board; the same definition
    /// again answers the stored board.
    pub async fn create_leaderboard(
        &self,
        authed: &Authed,
        body: CreateLeaderboard,
    ) -> Result<Value> {
        let now_ms = self.clock.now_ms();
        let record = board_record(&body, now_ms)?;
        self.admin(authed).await?;
        let stored = self.db.create_board(&body.id, &record).await?;
        Ok(board_json(&body.id, &stored, now_ms, None))
    }

    /// `POST /tournaments` (admin): creates a tournament.
    pub async fn create_tournament(
        &self,
        authed: &Authed,
        body: CreateTournament,
    ) -> Result<Value> {
        let now_ms = self.clock.now_ms();
        let mut record = board_record(&body.board, now_ms)?;
        if body.category > MAX_CATEGORY {
            return Err(Error::InvalidParam(format!(
                "category must be 0 to {MAX_CATEGORY}"
            )));
        }
        check_text("title", &body.title, MAX_TITLE_BYTES)?;
        check_text("description", &body.description, MAX_DESCRIPTION_BYTES)?;
        let start_time = body.start_time.unwrap_or(now_ms / 1000);
        if body.end_time != 0 && body.end_time <= start_time {
            return Err(Error::InvalidParam(
                "end_time must be after start_time".into(),
            ));
        }
        if start_time > u64::MAX / 1000 || body.end_time > u64::MAX / 1000 {
            return Err(Error::InvalidParam("times are seconds since 1970".into()));
        }
        record.tournament = Some(TournamentRecord {
            category: body.category,
            title: body.title.clone(),
            description: body.description.clone(),
            start_time,
            end_time: body.end_time,
            duration: body.duration,
            max_size: body.max_size,
            max_num_score: body.max_num_score,
            join_required: body.join_required,
        });
        self.admin(authed).await?;
        let stored = self.db.create_board(&body.board.id, &record).await?;
        Ok(board_json(&body.board.id, &stored, now_ms, None))
    }

    /// `GET /leaderboards/{id}`: the definition (a tournament's too).
    pub async fn leaderboard(&self, id: &str) -> Result<Value> {
        check_name("id", id)?;
        let board = self.db.board(id).await?;
        Ok(board_json(id, &board, self.clock.now_ms(), None))
    }

    /// `GET /tournaments/{id}`: a tournament's definition and `size` (a
    /// plain leaderboard is not one: 404).
    pub async fn tournament(&self, id: &str) -> Result<Value> {
        check_name("id", id)?;
        let now_ms = self.clock.now_ms();
        let Some((board, size)) = self.db.tournament(id, now_ms).await? else {
            return Err(Error::NotFound("no such tournament".into()));
        };
        Ok(board_json(id, &board, now_ms, Some(size)))
    }

    /// `DELETE /leaderboards/{id}` (admin): deletes a board with all its
    /// windows' records.
    pub async fn delete_leaderboard(&self, authed: &Authed, id: &str) -> Result<Value> {
        check_name("id", id)?;
        self.admin(authed).await?;
        self.db.delete_board(id).await?;
        Ok(json!({}))
    }

    /// `POST /leaderboards/{id}/records`: submits to the caller's record
    /// (an admin: `owner`'s). Answers the record with its rank.
    pub async fn submit_record(
        &self,
        authed: &Authed,
        id: &str,
        body: SubmitRecord,
    ) -> Result<Value> {
        check_name("id", id)?;
        let metadata = body
            .metadata
            .as_ref()
            .map(|m| object_text("metadata", Some(m), MAX_METADATA_BYTES))
            .transpose()?;
        if let Some(o) = &body.owner {
            check_user("owner", o)?;
        }
        let actor = self.actor(authed).await?;
        let owner = match &body.owner {
            Some(o) if *o != actor.user_id && !actor.admin => {
                return Err(Error::Forbidden(
                    "only admins submit for another owner".into(),
                ));
            }
            Some(o) => o.clone(),
            None => actor.user_id.clone(),
        };
        let submission = ScoreSubmission {
            owner,
            score: body.score,
            subscore: body.subscore,
            metadata,
            operator: body.operator,
            id: crate::random::Random::os().range(0..u64::MAX),
        };
        let records = self
            .db
            .submit_scores(&actor, id, &[submission], self.clock.now_ms())
            .await?;
        let record = records
            .first()
            .ok_or_else(|| Error::NotFound("no record".into()))?;
        Ok(record_json(id, record))
    }

    /// `DELETE /leaderboards/{id}/records`: removes the caller's record
    /// from the current window (not on an authoritative board, unless an
    /// admin).
    pub async fn delete_record(&self, authed: &Authed, id: &str) -> Result<Value> {
        check_name("id", id)?;
        let actor = self.actor(authed).await?;
        let found = self
            .db
            .delete_record(&actor, id, self.clock.now_ms())
            .await?;
        if !found {
            return Err(Error::NotFound("no record on this leaderboard".into()));
        }
        Ok(json!({}))
    }

    /// `GET /leaderboards/{id}/records`: a page in rank order, with cursors,
    /// and the records of `owner_ids`.
    pub async fn list_records(&self, id: &str, q: RecordsQuery) -> Result<Value> {
        check_name("id", id)?;
        let limit = check_limit(q.limit, DEFAULT_RECORDS_LIMIT, MAX_RECORDS_LIMIT)?;
        if q.owner_ids.len() > MAX_OWNER_IDS {
            return Err(Error::InvalidParam(format!(
                "at most {MAX_OWNER_IDS} owner_ids"
            )));
        }
        for o in &q.owner_ids {
            check_user("owner_ids", o)?;
        }
        let cursor = q
            .cursor
            .as_deref()
            .map(Cursor::decode)
            .transpose()
            .map_err(|_| Error::InvalidParam("cursor is not one this server gave".into()))?;
        let got = self
            .db
            .records(
                id,
                q.expiry,
                cursor.as_ref(),
                limit,
                &q.owner_ids,
                self.clock.now_ms(),
            )
            .await?;
        let records: Vec<Value> = got
            .page
            .records
            .iter()
            .map(|r| record_json(id, r))
            .collect();
        let owners: Vec<Value> = got
            .owner_records
            .iter()
            .map(|r| record_json(id, r))
            .collect();
        Ok(json!({
            "records": records,
            "owner_records": owners,
            "next_cursor": got.page.next.map(|c| c.encode()),
            "prev_cursor": got.page.prev.map(|c| c.encode()),
            "expiry": got.expiry_ms,
        }))
    }

    /// `GET /leaderboards/{id}/records/{owner}`: one record with its rank.
    pub async fn get_record(&self, id: &str, owner: &str, expiry: Option<u64>) -> Result<Value> {
        check_name("id", id)?;
        check_user("owner", owner)?;
        match self
            .db
            .record(id, expiry, owner, self.clock.now_ms())
            .await?
        {
            Some(r) => Ok(record_json(id, &r)),
            None => Err(Error::NotFound("no record for this owner".into())),
        }
    }

    /// `GET /leaderboards/{id}/records/around/{owner}`: the records centred
    /// on the owner's.
    pub async fn around_owner(
        &self,
        id: &str,
        owner: &str,
        limit: Option<usize>,
        expiry: Option<u64>,
    ) -> Result<Value> {
        check_name("id", id)?;
        check_user("owner", owner)?;
        let limit = check_limit(limit, DEFAULT_AROUND_LIMIT, MAX_RECORDS_LIMIT)?;
        match self
            .db
            .around(id, expiry, owner, limit, self.clock.now_ms())
            .await?
        {
            Some(records) => {
                let records: Vec<Value> = records.iter().map(|r| record_json(id, r)).collect();
                Ok(json!({ "records": records }))
            }
            None => Err(Error::NotFound("no record for this owner".into())),
        }
    }

    /// `POST /tournaments/{id}/join`: joins the caller to the current
    /// window (once; a second join answers `"joined": false`).
    pub async fn join_tournament(&self, authed: &Authed, id: &str) -> Result<Value> {
        check_name("id", id)?;
        let (expiry, joined) = self
            .db
            .join(id, authed.user_id.as_str(), self.clock.now_ms())
            .await?;
        Ok(json!({ "tournament_id": id, "expiry": expiry, "joined": joined }))
    }

    /// `GET /tournaments?category_start=&category_end=&limit=&cursor=`.
    pub async fn list_tournaments(
        &self,
        category_start: Option<u8>,
        category_end: Option<u8>,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Value> {
        let start = category_start.unwrap_or(0);
        let end = category_end.unwrap_or(MAX_CATEGORY);
        if start > end || end > MAX_CATEGORY {
            return Err(Error::InvalidParam(format!(
                "categories are 0 to {MAX_CATEGORY}, start at most end"
            )));
        }
        let limit = check_limit(limit, MAX_TOURNAMENTS_LIMIT, MAX_TOURNAMENTS_LIMIT)?;
        let after = cursor.map(decode_tournament_cursor).transpose()?;
        let now_ms = self.clock.now_ms();
        let page = self
            .db
            .tournaments(start..=end, after.as_ref(), limit, now_ms)
            .await?;
        let tournaments: Vec<Value> = page
            .tournaments
            .iter()
            .map(|(id, b, size)| board_json(id, b, now_ms, Some(*size)))
            .collect();
        Ok(json!({
            "tournaments": tournaments,
            "next_cursor": page.next.as_ref().map(encode_tournament_cursor),
        }))
    }
}
