//! Crash durability of the embedded backend, on each storage engine (redb
//! and fjall: one test per engine, the same rounds).
//!
//! A child process streams commits to an embedded store and is killed with
//! SIGKILL at a random moment, again and again. After each kill the store is
//! reopened and checked:
//! - every commit the child acknowledged (printed `ACK <n>` after `commit`
//!   returned) is present;
//! - no transaction is partly visible: each writes [`KEYS_PER_TX`] keys and
//!   bumps a counter, and either all of it is there or none;
//! - transactions are present as a prefix of the sequence (no holes), and the
//!   counter equals their number;
//! - each transaction also clears the scratch range and writes its own
//!   scratch key there, so exactly the last present transaction's scratch
//!   key remains (a range clear is as atomic and durable as a set).
//!
//! The child is this test binary run again (`std::env::current_exe()`) with
//! [`CHILD_ENV`] naming the store directory and [`ENGINE_ENV`] the engine,
//! selecting the `crash_child` test,
//! which does nothing otherwise.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use myelin::kv::embedded::{EmbeddedOptions, Engine};
use myelin::kv::{self, MutationType, RangeOption};

/// Environment variable holding the store directory, in the child only.
const CHILD_ENV: &str = "MYELIN_KV_CRASH_CHILD_DIR";
/// Environment variable holding the engine's name, in the child only.
const ENGINE_ENV: &str = "MYELIN_KV_CRASH_CHILD_ENGINE";
/// Environment variable holding the first transaction number, in the child only.
const START_ENV: &str = "MYELIN_KV_CRASH_CHILD_START";
const KEYS_PER_TX: u64 = 5;
const KILLS: usize = 20;

fn tx_key(n: u64, j: u64) -> Vec<u8> {
    format!("crash/tx/{n:010}/{j}").into_bytes()
}

const COUNTER: &[u8] = b"crash/count";
const SCRATCH: &[u8] = b"crash/scratch/";
const SCRATCH_END: &[u8] = b"crash/scratch0";

fn scratch_key(n: u64) -> Vec<u8> {
    format!("crash/scratch/{n:010}").into_bytes()
}

fn options(engine: Engine) -> EmbeddedOptions {
    EmbeddedOptions {
        engine,
        ..Default::default()
    }
}

/// The child: commits transactions `start, start + 1, ...` until killed,
/// printing `ACK <n>` after each acknowledged commit. A no-op unless
/// [`CHILD_ENV`] is set.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let start: u64 = std::env::var(START_ENV).unwrap().parse().unwrap();
    let engine = match std::env::var(ENGINE_ENV).unwrap().as_str() {
        "fjall" => Engine::Fjall,
        _ => Engine::Redb,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let db: kv::Database = kv::embedded::Database::open(dir, options(engine))
            .unwrap()
            .into();
        let mut out = std::io::stdout().lock();
        for n in start.. {
            db.run(|tx, _| async move {
                for j in 0..KEYS_PER_TX {
                    tx.set(&tx_key(n, j), format!("{n}:{j}").as_bytes());
                }
                tx.atomic_op(COUNTER, &1u64.to_le_bytes(), MutationType::Add);
                tx.clear_range(SCRATCH, SCRATCH_END);
                tx.set(&scratch_key(n), b"");
                Ok::<_, kv::Error>(())
            })
            .await
            .unwrap();
            writeln!(out, "ACK {n}").unwrap();
            out.flush().unwrap();
        }
    });
}

/// Runs the child until a random kill; returns the numbers it acknowledged.
fn run_child_and_kill(
    dir: &std::path::Path,
    engine: Engine,
    start: u64,
    after: Duration,
) -> Vec<u64> {
    let mut child = Command::new(std::env::current_exe().expect("the test binary's path"))
        .args([
            "--exact",
            "crash_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, dir)
        .env(START_ENV, start.to_string())
        .env(ENGINE_ENV, engine.name())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("the child's stdout is piped");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(|l| l.ok())
            // The first line may follow libtest's "test crash_child ... ".
            .filter_map(|l| {
                l.rfind("ACK ")
                    .map(|at| l[at + 4..].parse::<u64>().expect("ACK carries a number"))
            })
            .collect::<Vec<u64>>()
    });
    std::thread::sleep(after);
    child.kill().expect("SIGKILL the child");
    child.wait().expect("the child is reaped");
    reader.join().expect("the reader thread ends")
}

/// Reopens the store and checks it; returns how many transactions it holds
/// and its last commit version.
async fn check_store(dir: &std::path::Path, engine: Engine, acked: &[u64]) -> (u64, u64) {
    let store = kv::embedded::Database::open(dir, options(engine)).expect("reopen after SIGKILL");
    let db: kv::Database = store.clone().into();
    let tx = db.create_transaction().expect("a transaction starts");
    let kvs = tx
        .get_range_all(RangeOption::prefix(b"crash/tx/"), false)
        .await
        .expect("the range read succeeds");
    let count = tx
        .get(COUNTER, false)
        .await
        .expect("the counter read succeeds");
    let scratch = tx
        .get_range_all(
            RangeOption::new(SCRATCH.to_vec(), SCRATCH_END.to_vec()),
            false,
        )
        .await
        .expect("the scratch range read succeeds");
    let mut present: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
    for kv in &kvs {
        let s = std::str::from_utf8(&kv.key).expect("keys are UTF-8");
        let mut parts = s.trim_start_matches("crash/tx/").split('/');
        let n: u64 = parts
            .next()
            .expect("a key names its transaction")
            .parse()
            .expect("the transaction field is a number");
        let j: u64 = parts
            .next()
            .expect("a key names its index")
            .parse()
            .expect("the index field is a number");
        assert_eq!(kv.value, format!("{n}:{j}").into_bytes());
        present.entry(n).or_default().push(j);
    }
    for (n, js) in &present {
        assert_eq!(
            js,
            &(0..KEYS_PER_TX).collect::<Vec<_>>(),
            "transaction {n} is partly visible"
        );
    }
    let numbers: Vec<u64> = present.keys().copied().collect();
    let total = numbers.len() as u64;
    assert_eq!(
        numbers,
        (0..total).collect::<Vec<_>>(),
        "transactions are not a prefix"
    );
    for n in acked {
        assert!(
            present.contains_key(n),
            "acknowledged transaction {n} is lost"
        );
    }
    let counted = count.map_or(0, |v| {
        u64::from_le_bytes(v.try_into().expect("the counter is 8 bytes"))
    });
    assert_eq!(
        counted, total,
        "the counter disagrees with the transactions"
    );
    let scratch: Vec<Vec<u8>> = scratch.into_iter().map(|kv| kv.key).collect();
    let want: Vec<Vec<u8>> = total.checked_sub(1).map(scratch_key).into_iter().collect();
    assert_eq!(
        scratch, want,
        "the scratch range is not the last transaction's"
    );
    let version = store.last_version();
    store.shutdown();
    (total, version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_commits_survive_sigkill_on_redb() {
    sigkill_rounds(Engine::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_commits_survive_sigkill_on_fjall() {
    sigkill_rounds(Engine::Fjall).await;
}

async fn sigkill_rounds(engine: Engine) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut next = 0u64;
    let mut last_version = 0u64;
    let mut acked_total = 0usize;
    for _ in 0..KILLS {
        let after = Duration::from_millis(myelin::random::Random::os().range(20..=200));
        let path = dir.path().to_path_buf();
        let acked =
            tokio::task::spawn_blocking(move || run_child_and_kill(&path, engine, next, after))
                .await
                .expect("the crash child task");
        if let Some(&last) = acked.last() {
            assert_eq!(
                acked,
                (next..=last).collect::<Vec<_>>(),
                "the child acknowledged out of order"
            );
        }
        acked_total += acked.len();
        let (total, version) = check_store(dir.path(), engine, &acked).await;
        // Commit versions survive restarts: more commits, a higher version.
        if total > next {
            assert!(
                version > last_version,
                "version {version} after {last_version}"
            );
        }
        assert!(version >= last_version);
        (next, last_version) = (total, version);
    }
    eprintln!(
        "{}: {KILLS} kills, {acked_total} acknowledged commits, {next} transactions present",
        engine.name()
    );
    // The test is meaningful only if children got to commit before dying.
    assert!(acked_total > 0, "no child acknowledged a commit");
}
