//! The storage engines agree: one seeded random stream of transactions is
//! applied to an embedded store on each engine (redb and fjall), in the same
//! order, and every read, every commit outcome (version, versionstamp or
//! error code) and the final contents are compared (toydb's Mirror engine
//! idea, one level up: the whole `kv` interface, not just the byte store).
//!
//! The stream holds up to three transactions open at once over a small key
//! space, so non-snapshot reads conflict with each other's writes; it mixes
//! point and range reads (forward, reverse, limited), key selectors, sets,
//! clears, range clears, every atomic operation and versionstamped keys and
//! values. Commits are awaited one at a time, so each is its own batch and
//! both stores hand out the same versions. At the end both stores are
//! closed, reopened (fjall replays its journal) and compared again.
//!
//! `MYELIN_MIRROR_SEED=<n>` replays one seed.

use myelin::kv::embedded::{EmbeddedOptions, Engine};
use myelin::kv::{self, KeySelector, MutationType, RangeOption};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const STEPS: usize = 400;
const PREFIX: &[u8] = b"m/";

/// What one operation returned, comparable across engines.
#[derive(Debug, PartialEq)]
enum Outcome {
    Value(Option<Vec<u8>>),
    Key(Vec<u8>),
    Pairs(Vec<(Vec<u8>, Vec<u8>)>),
    Committed(Option<u64>, Option<[u8; 10]>),
    Failed(Option<i32>),
}

fn outcome<T>(r: kv::Result<T>, ok: impl FnOnce(T) -> Outcome) -> Outcome {
    match r {
        Ok(v) => ok(v),
        Err(e) => Outcome::Failed(e.code()),
    }
}

fn open(dir: &std::path::Path, engine: Engine) -> kv::Database {
    kv::embedded::Database::open(
        dir.join(engine.name()),
        EmbeddedOptions {
            engine,
            ..Default::default()
        },
    )
    .expect("opens")
    .into()
}

fn key(rng: &mut StdRng) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.push(b'a' + rng.random_range(0..20u8));
    if rng.random_bool(0.3) {
        k.push(b'/');
        k.push(b'a' + rng.random_range(0..4u8));
    }
    k
}

fn bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let n = rng.random_range(0..=max);
    (0..n).map(|_| rng.random()).collect()
}

/// A key or value with a 10-byte versionstamp placeholder at `at`, and
/// the placeholder's offset as its last 4 bytes.
fn stamped(prefix: &[u8]) -> Vec<u8> {
    let mut v = prefix.to_vec();
    v.extend_from_slice(&[0; 10]);
    v.extend_from_slice(&(prefix.len() as u32).to_le_bytes());
    v
}

const ATOMIC: [MutationType; 10] = [
    MutationType::Add,
    MutationType::Max,
    MutationType::Min,
    MutationType::BitAnd,
    MutationType::BitOr,
    MutationType::BitXor,
    MutationType::ByteMax,
    MutationType::ByteMin,
    MutationType::AppendIfFits,
    MutationType::CompareAndClear,
];

/// One random operation on the same transaction of each store; returns
/// the outcomes of reads (writes return nothing).
async fn operate(rng: &mut StdRng, txs: &[kv::Transaction; 2]) -> Option<[Outcome; 2]> {
    let snapshot = rng.random_bool(0.3);
    match rng.random_range(0..10) {
        0 | 1 => {
            let k = key(rng);
            let mut out = Vec::new();
            for tx in txs {
                out.push(outcome(tx.get(&k, snapshot).await, Outcome::Value));
            }
            Some(out.try_into().expect("two"))
        }
        2 => {
            let sel = KeySelector {
                key: key(rng),
                or_equal: rng.random_bool(0.5),
                offset: rng.random_range(-2..=3),
            };
            let mut out = Vec::new();
            for tx in txs {
                out.push(outcome(tx.get_key(&sel, snapshot).await, Outcome::Key));
            }
            Some(out.try_into().expect("two"))
        }
        3 | 4 => {
            let (mut b, mut e) = (key(rng), key(rng));
            if b > e {
                std::mem::swap(&mut b, &mut e);
            }
            let mut range = RangeOption::new(b, e);
            range.reverse = rng.random_bool(0.5);
            range.limit = rng.random_bool(0.5).then(|| rng.random_range(1..5));
            let mut out = Vec::new();
            for tx in txs {
                out.push(outcome(tx.get_range(&range, snapshot).await, |c| {
                    Outcome::Pairs(c.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect())
                }));
            }
            Some(out.try_into().expect("two"))
        }
        5 | 6 => {
            let (k, v) = (key(rng), bytes(rng, 12));
            txs.iter().for_each(|tx| tx.set(&k, &v));
            None
        }
        7 => {
            if rng.random_bool(0.5) {
                let k = key(rng);
                txs.iter().for_each(|tx| tx.clear(&k));
            } else {
                let (mut b, mut e) = (key(rng), key(rng));
                if b > e {
                    std::mem::swap(&mut b, &mut e);
                }
                txs.iter().for_each(|tx| tx.clear_range(&b, &e));
            }
            None
        }
        8 => {
            let op = ATOMIC[rng.random_range(0..ATOMIC.len())];
            let k = key(rng);
            let param = match op {
                MutationType::AppendIfFits | MutationType::CompareAndClear => bytes(rng, 8),
                _ => rng.random::<u64>().to_le_bytes()[..rng.random_range(1..=8)].to_vec(),
            };
            txs.iter().for_each(|tx| tx.atomic_op(&k, &param, op));
            None
        }
        _ => {
            if rng.random_bool(0.5) {
                let mut prefix = PREFIX.to_vec();
                prefix.extend_from_slice(b"vs/");
                let (k, v) = (stamped(&prefix), bytes(rng, 6));
                txs.iter()
                    .for_each(|tx| tx.atomic_op(&k, &v, MutationType::SetVersionstampedKey));
            } else {
                let (k, v) = (key(rng), stamped(&bytes(rng, 4)));
                txs.iter()
                    .for_each(|tx| tx.atomic_op(&k, &v, MutationType::SetVersionstampedValue));
            }
            None
        }
    }
}

/// Every pair of the key space, as a fresh transaction on `db` reads it.
async fn contents(db: &kv::Database) -> Vec<(Vec<u8>, Vec<u8>)> {
    let tx = db.create_transaction().expect("starts");
    tx.get_range_all(RangeOption::new(b"".to_vec(), b"\xff".to_vec()), true)
        .await
        .expect("reads")
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect()
}

/// Outcome counts, so the test can say the stream exercised what it claims.
#[derive(Debug, Default)]
struct Seen {
    reads: usize,
    committed: usize,
    conflicts: usize,
    other_errors: usize,
}

async fn mirror(seed: u64) -> Seen {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let dbs = [
        open(dir.path(), Engine::Redb),
        open(dir.path(), Engine::Fjall),
    ];
    let mut seen = Seen::default();
    for step in 0..STEPS {
        let open_txs = rng.random_range(1..=3);
        let mut txs: Vec<[kv::Transaction; 2]> = (0..open_txs)
            .map(|_| {
                dbs.each_ref()
                    .map(|db| db.create_transaction().expect("starts"))
            })
            .collect();
        for _ in 0..rng.random_range(1..=8) {
            let i = rng.random_range(0..txs.len());
            if let Some([a, b]) = operate(&mut rng, &txs[i]).await {
                assert_eq!(
                    a, b,
                    "seed {seed}, step {step}: a read differs (redb, fjall)"
                );
                seen.reads += 1;
            }
        }
        while !txs.is_empty() {
            let [a, b] = txs.swap_remove(rng.random_range(0..txs.len()));
            let ra = outcome(a.commit().await, |c| {
                Outcome::Committed(c.version, c.versionstamp)
            });
            let rb = outcome(b.commit().await, |c| {
                Outcome::Committed(c.version, c.versionstamp)
            });
            assert_eq!(
                ra, rb,
                "seed {seed}, step {step}: a commit differs (redb, fjall)"
            );
            match ra {
                Outcome::Committed(..) => seen.committed += 1,
                Outcome::Failed(Some(1020)) => seen.conflicts += 1,
                _ => seen.other_errors += 1,
            }
        }
        if step % 50 == 49 {
            assert_eq!(
                contents(&dbs[0]).await,
                contents(&dbs[1]).await,
                "seed {seed}, step {step}: the stores differ"
            );
        }
    }
    let before = contents(&dbs[0]).await;
    assert_eq!(
        before,
        contents(&dbs[1]).await,
        "seed {seed}: the stores differ"
    );
    for db in &dbs {
        db.as_embedded().expect("embedded").shutdown();
    }
    drop(dbs);
    for engine in Engine::ALL {
        let db = open(dir.path(), engine);
        assert_eq!(
            contents(&db).await,
            before,
            "seed {seed}: {} differs after reopening",
            engine.name()
        );
        db.as_embedded().expect("embedded").shutdown();
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_engines_answer_a_random_stream_identically() {
    let seeds: Vec<u64> = match std::env::var("MYELIN_MIRROR_SEED") {
        Ok(s) => vec![s.parse().expect("MYELIN_MIRROR_SEED is a number")],
        Err(_) => vec![1, 2, 3, 0x5eed],
    };
    for seed in seeds {
        let seen = mirror(seed).await;
        eprintln!("seed {seed}: {seen:?}");
        assert!(
            seen.reads > 0 && seen.committed > 0 && seen.conflicts > 0,
            "seed {seed}: the stream exercised too little: {seen:?}"
        );
    }
}
