//! What one leaderboard submit costs, as counts: the read calls
//! (`embedded::Transaction::reads`) and the keys they served
//! (`keys_read`) of one `GameDb::submit_scores` transaction, for `set`,
//! `best` and `incr` on a board of [`RECORDS`] records. The counts are
//! deterministic (fixed records, submissions and element hashes), so the
//! bounds are the numbers reached: a change that reads more fails here.
//! The counts are printed with `--nocapture`.
//!
//! Where the reads of a submit that moves its record go (`set`: 14 on
//! average, 33 before `RankedSet::replace`):
//! - 1 the board (with a conflict range: a racing delete retries);
//! - 1 the owner's record;
//! - 1 the old element's level-0 key (present, with a conflict range);
//! - 8 one rank walk to the new element before anything moves, one range
//!   read per level at snapshot isolation: it answers the new rank, whether
//!   the new element is present (its level-0 key ends the walk) and its
//!   predecessor on every level;
//! - the old element's predecessor, one read per level, up to the first
//!   level above both elements where it is the new one's too: from there
//!   up the move changes no count, so nothing is read or written (levels 1
//!   to 3 at most on a few thousand records; an `incr` by a small step
//!   stops at level 1); a level the new element is on (one in 16) also
//!   reads the predecessor's count and recounts its span below, and one
//!   the old element is on reads its own count there.
//!
//! A `best` that does not beat the record moves nothing: board, record and
//! a rank walk (10, fewer when the walk meets the element above level 0).

use std::sync::atomic::Ordering;

use myelin::db::game::{Actor, BoardRecord, GameDb, ScoreSubmission};
use myelin::db::leaderboard::{Operator, Sort};

/// Records on the board.
const RECORDS: u64 = 4_000;
/// Submissions measured per case.
const SUBMITS: u64 = 32;
const NOW_MS: u64 = 1_700_000_000_000;

fn owner(i: u64) -> String {
    format!("@p{i:05}:cost.test")
}

/// A score spread over `0..1_000_000_007`, fixed per `i`.
fn spread(i: u64) -> i64 {
    (i.wrapping_mul(2_654_435_761) % 1_000_000_007) as i64
}

/// The worst and the total over one case's submissions.
#[derive(Debug, Default)]
struct Cost {
    max_reads: u64,
    sum_reads: u64,
    max_keys: u64,
    sum_keys: u64,
}

/// Submits `(owner, score)` of `case(k)` for `k` in `0..SUBMITS`, each in
/// its own transaction, and returns what those transactions read.
async fn measure(
    game: &GameDb,
    costs: &myelin::kv::embedded::Costs,
    operator: Operator,
    case: impl Fn(u64) -> (String, i64),
) -> Cost {
    let mut cost = Cost::default();
    for k in 0..SUBMITS {
        let (owner, score) = case(k);
        let actor = Actor {
            user_id: owner.clone(),
            admin: false,
        };
        let submission = ScoreSubmission {
            owner,
            score,
            subscore: 0,
            metadata: None,
            operator: Some(operator),
            id: k + 1,
        };
        costs.reset();
        game.submit_scores(&actor, "cost", &[submission], NOW_MS)
            .await
            .expect("submit");
        let reads = costs.max_reads.load(Ordering::SeqCst);
        let keys = costs.max_keys_read.load(Ordering::SeqCst);
        cost.max_reads = cost.max_reads.max(reads);
        cost.sum_reads += reads;
        cost.max_keys = cost.max_keys.max(keys);
        cost.sum_keys += keys;
    }
    cost
}

#[tokio::test]
async fn a_submit_reads_what_it_needs_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let databases = myelin::db::open_embedded_at(dir.path())
        .await
        .expect("open store");
    let game = GameDb::new(&databases.game);
    let costs = databases.game.db.as_embedded().expect("embedded").costs();
    let board = BoardRecord {
        sort: Sort::Desc,
        operator: Operator::Set,
        reset: None,
        authoritative: false,
        metadata: "{}".into(),
        create_ms: 0,
        tournament: None,
    };
    game.create_board("cost", &board).await.expect("create");
    let records: Vec<(String, i64, i64)> = (0..RECORDS).map(|i| (owner(i), spread(i), 0)).collect();
    game.load_records("cost", &records, NOW_MS)
        .await
        .expect("load");

    // Each case picks owners spread over the board (a stride prime to it).
    let who = |k: u64| owner((k * 997 + 13) % RECORDS);
    let set = measure(&game, costs, Operator::Set, |k| {
        (who(k), spread(k + 1_000_003))
    })
    .await;
    // Beats every record: each one moves to the top.
    let best_moves = measure(&game, costs, Operator::Best, |k| {
        (who(k + SUBMITS), 2_000_000_000 + k as i64)
    })
    .await;
    // Beats none: nothing moves.
    let best_stays = measure(&game, costs, Operator::Best, |k| (who(k + 2 * SUBMITS), -1)).await;
    // A small step: the element moves past a few neighbours.
    let incr = measure(&game, costs, Operator::Incr, |k| {
        (who(k + 3 * SUBMITS), 1 + (k as i64 * 7919) % 100_000)
    })
    .await;
    for (name, cost) in [
        ("set", &set),
        ("best (moves)", &best_moves),
        ("best (stays)", &best_stays),
        ("incr", &incr),
    ] {
        println!(
            "{name}: reads max {} total {} (mean {:.1}), keys max {} total {} (mean {:.1})",
            cost.max_reads,
            cost.sum_reads,
            cost.sum_reads as f64 / SUBMITS as f64,
            cost.max_keys,
            cost.sum_keys,
            cost.sum_keys as f64 / SUBMITS as f64,
        );
    }

    // (max reads, total reads over SUBMITS, max keys, total keys): the
    // numbers reached (module docs).
    let pinned = [
        ("set", &set, (16, 451, 82, 1562)),
        ("best (moves)", &best_moves, (15, 450, 14, 418)),
        ("best (stays)", &best_stays, (10, 318, 85, 1286)),
        ("incr", &incr, (12, 384, 101, 1369)),
    ];
    for (name, cost, (max_reads, sum_reads, max_keys, sum_keys)) in pinned {
        assert!(
            cost.max_reads <= max_reads && cost.sum_reads <= sum_reads,
            "{name}: {cost:?}"
        );
        assert!(
            cost.max_keys <= max_keys && cost.sum_keys <= sum_keys,
            "{name}: {cost:?}"
        );
    }
}
