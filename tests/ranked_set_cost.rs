//! The ranked set's O(log n) property as a count, not a timing: the keys
//! the embedded backend serves to one `rank` and one `nth` query
//! (`embedded::Transaction::keys_read`) at 1,000 and at 1,000,000 elements.
//! Over queries at positions spread across each set, a thousandfold larger
//! set may cost on average at most twice the reads plus one level's walk
//! ([`LEVEL_WALK`]); a structure linear in n (or in n/16^k for a fixed k)
//! would read hundreds of times more. The worst query is printed beside the
//! means (`--nocapture`).

use foundationdb_tuple::Subspace;
use myelin::kv::ranked_set::RankedSet;
use myelin::kv::{Database, Transaction, embedded};

/// Slack for the count at 1,000,000: the keys of one level's walk, twice
/// the fan-out (a walk reads the keys between two keys of the level above,
/// 16 on average, more for an unlucky hash spread).
const LEVEL_WALK: u64 = 32;

/// Queries per set: positions spread over the whole set.
const QUERIES: u64 = 64;

fn elem(n: u64) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

fn keys_read(tx: &Transaction) -> u64 {
    tx.as_embedded().expect("embedded backend").keys_read()
}

/// Keys read by one rank query and by one nth query: the mean and the
/// worst over positions spread across a set of `n` elements `0, 3, 6, ...`.
struct Reads {
    rank_mean: u64,
    rank_worst: u64,
    nth_mean: u64,
    nth_worst: u64,
}

async fn reads(db: &Database, set: &RankedSet, n: u64) -> Reads {
    let (mut rank_worst, mut nth_worst, mut rank_sum, mut nth_sum) = (0, 0, 0, 0);
    for q in 0..QUERIES {
        let position = q * (n - 1) / (QUERIES - 1);
        let tx = db.create_transaction().expect("ranked set test step");
        let rank = set
            .rank(&tx, &elem(3 * position), true)
            .await
            .expect("ranked set test step");
        assert_eq!(rank, Some(position));
        rank_worst = rank_worst.max(keys_read(&tx));
        rank_sum += keys_read(&tx);
        let tx = db.create_transaction().expect("ranked set test step");
        let nth = set
            .nth(&tx, position, true)
            .await
            .expect("ranked set test step");
        assert_eq!(nth, Some(elem(3 * position)));
        nth_worst = nth_worst.max(keys_read(&tx));
        nth_sum += keys_read(&tx);
    }
    Reads {
        rank_mean: rank_sum.div_ceil(QUERIES),
        rank_worst,
        nth_mean: nth_sum.div_ceil(QUERIES),
        nth_worst,
    }
}

#[tokio::test]
async fn rank_and_nth_read_logarithmically_many_keys() {
    let dir = tempfile::tempdir().expect("ranked set test step");
    let db: Database = embedded::Database::open(dir.path(), Default::default())
        .expect("ranked set test step")
        .into();
    let small =
        RankedSet::new(Subspace::from_bytes(b"\x15small".to_vec())).expect("ranked set test step");
    let large =
        RankedSet::new(Subspace::from_bytes(b"\x15large".to_vec())).expect("ranked set test step");
    small
        .bulk_build(&db, (0..1_000u64).map(|i| elem(3 * i)))
        .await
        .expect("ranked set test step");
    large
        .bulk_build(&db, (0..1_000_000u64).map(|i| elem(3 * i)))
        .await
        .expect("ranked set test step");
    let small = reads(&db, &small, 1_000).await;
    let large = reads(&db, &large, 1_000_000).await;
    for (n, r) in [("1e3", &small), ("1e6", &large)] {
        eprintln!(
            "keys read at {n}: rank mean {} worst {}, nth mean {} worst {}",
            r.rank_mean, r.rank_worst, r.nth_mean, r.nth_worst
        );
    }
    assert!(
        large.rank_mean <= 2 * small.rank_mean + LEVEL_WALK,
        "rank: {} keys at 1e6 vs {} at 1e3",
        large.rank_mean,
        small.rank_mean
    );
    assert!(
        large.nth_mean <= 2 * small.nth_mean + LEVEL_WALK,
        "nth: {} keys at 1e6 vs {} at 1e3",
        large.nth_mean,
        small.nth_mean
    );
}
