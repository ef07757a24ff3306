//! The randomized economy test of the `game` database (issue 17): users
//! trade, get minted and burned currency and move items concurrently while
//! the embedded store injects `commit_unknown_result` into random commits.
//! Afterwards every currency sums to what was minted, no balance is
//! negative, every item has exactly one owner, every idempotency key was
//! applied exactly once, and `myelin game verify` finds no difference
//! between balances and the ledger (and does find one made on purpose).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use myelin::config::{Config, Overrides};
use myelin::db::game::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const USERS: usize = 10;
const WORKERS: u64 = 8;
const OPS: usize = 40;
const MINT: i64 = 1000;

fn uid(i: usize) -> String {
    format!("@p{i}:test")
}

fn admin() -> Actor {
    Actor {
        user_id: "@admin:test".into(),
        admin: true,
    }
}

/// What the workers' successful calls did, by idempotency key.
#[derive(Default)]
struct Applied {
    /// Net gold per wallet-update key that returned Ok.
    wallet_keys: BTreeMap<String, i64>,
    /// Keys that failed (must not appear in any ledger).
    failed_keys: BTreeSet<String>,
}

fn update(user: &str, delta: i64, k: &str) -> MultiUpdate {
    MultiUpdate {
        wallets: vec![WalletUpdate {
            user_id: user.to_string(),
            changeset: [("gold".to_string(), delta)].into(),
            metadata: serde_json::json!({ "k": k }).to_string(),
        }],
        ..MultiUpdate::default()
    }
}

fn key(scope: &'static str, k: &str) -> IdempotencyKey {
    IdempotencyKey {
        scope,
        key: k.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn randomized_economy_keeps_its_invariants_under_unknown_commit_results() {
    let dir = tempfile::tempdir().expect("game test step");
    let dbs = open_like_cli(dir.path()).await;
    let game = GameDb::new(&dbs.game);
    let faults = dbs.game.db.as_embedded().expect("game test step").clone();

    let mut items = Vec::new();
    for u in 0..USERS {
        game.apply(
            &admin(),
            Some(&key("wallets", &format!("mint{u}"))),
            &update(&uid(u), MINT, &format!("mint{u}")),
            1,
        )
        .await
        .expect("game test step");
        let grant = MultiUpdate {
            grants: vec![ItemGrant {
                user_id: uid(u),
                items: (0..3)
                    .map(|n| NewItem {
                        item_id: format!("item-{u}-{n}"),
                        item_type: "sword".into(),
                        quantity: 1,
                        metadata: "{}".into(),
                    })
                    .collect(),
            }],
            ..MultiUpdate::default()
        };
        let applied = game
            .apply(&admin(), Some(&key("items", &format!("g{u}"))), &grant, 1)
            .await
            .expect("game test step");
        items.extend(applied.outcome.item_ids);
    }
    let items = Arc::new(items);
    let applied = Arc::new(Mutex::new(Applied::default()));
    let completed = Arc::new(Mutex::new(0usize));

    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (game, faults, items, applied, completed) = (
                game.clone(),
                faults.clone(),
                items.clone(),
                applied.clone(),
                completed.clone(),
            );
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(17 + w);
                for op in 0..OPS {
                    if rng.random_bool(0.3) {
                        faults
                            .faults()
                            .commit_unknown_result
                            .fetch_add(1, Ordering::SeqCst);
                    }
                    let a = rng.random_range(0..USERS);
                    let b = (a + rng.random_range(1..USERS)) % USERS;
                    match rng.random_range(0..3) {
                        0 => {
                            let give_items: Vec<String> = game
                                .inventory(&uid(a))
                                .await
                                .expect("game test step")
                                .into_iter()
                                .filter(|_| rng.random_bool(0.5))
                                .map(|i| i.item_id)
                                .collect();
                            let give = TradeSide {
                                items: give_items,
                                currency: [("gold".to_string(), rng.random_range(1..200))].into(),
                            };
                            let take = TradeSide {
                                items: vec![],
                                currency: [("gold".to_string(), rng.random_range(1..200))].into(),
                            };
                            let id = format!("t-{w}-{op}");
                            match game
                                .open_trade(&id, &uid(a), &uid(b), &give, &take, 2)
                                .await
                            {
                                Ok(_) => {}
                                Err(
                                    Error::InsufficientFunds { .. }
                                    | Error::InsufficientItems { .. },
                                ) => continue,
                                Err(e) => panic!("{e:?}"),
                            }
                            match game.accept_trade(&id, &uid(b), 3).await {
                                Ok(t) => {
                                    assert_eq!(t.record.state, TradeState::Completed);
                                    *completed.lock().expect("game test step") += 1;
                                }
                                Err(
                                    Error::InsufficientFunds { .. }
                                    | Error::InsufficientItems { .. },
                                ) => {
                                    game.cancel_trade(&id, &uid(a), 4)
                                        .await
                                        .expect("game test step");
                                }
                                Err(e) => panic!("{e:?}"),
                            }
                        }
                        1 => {
                            let k = format!("w-{w}-{op}");
                            let delta = rng.random_range(-300..300);
                            let result = game
                                .apply(
                                    &admin(),
                                    Some(&key("wallets", &k)),
                                    &update(&uid(a), delta, &k),
                                    5,
                                )
                                .await;
                            match result {
                                Ok(first) => {
                                    applied
                                        .lock()
                                        .expect("game test step")
                                        .wallet_keys
                                        .insert(k.clone(), delta);
                                    // A client repeating the call gets the same answer.
                                    let again = game
                                        .apply(
                                            &admin(),
                                            Some(&key("wallets", &k)),
                                            &update(&uid(a), delta, &k),
                                            6,
                                        )
                                        .await
                                        .expect("game test step");
                                    assert!(again.repeated);
                                    assert_eq!(again.outcome, first.outcome);
                                }
                                Err(Error::InsufficientFunds { .. }) => {
                                    applied
                                        .lock()
                                        .expect("game test step")
                                        .failed_keys
                                        .insert(k);
                                }
                                Err(e) => panic!("{e:?}"),
                            }
                        }
                        _ => {
                            let item = &items[rng.random_range(0..items.len())];
                            let multi = MultiUpdate {
                                transfers: vec![ItemTransfer {
                                    item_id: item.clone(),
                                    to: uid(b),
                                }],
                                ..MultiUpdate::default()
                            };
                            let k = format!("x-{w}-{op}");
                            game.apply(&admin(), Some(&key("transactions", &k)), &multi, 7)
                                .await
                                .expect("game test step");
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("game test step");
    }
    faults
        .faults()
        .commit_unknown_result
        .store(0, Ordering::SeqCst);

    let applied = std::mem::take(&mut *applied.lock().expect("game test step"));
    // Currency: what was minted plus the admins' net updates; trades move it.
    let minted = MINT * USERS as i64 + applied.wallet_keys.values().sum::<i64>();
    let mut total = 0;
    let mut ledger_keys: BTreeMap<String, usize> = BTreeMap::new();
    let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for u in 0..USERS {
        let balances = game.balances(&uid(u)).await.expect("game test step");
        let gold = balances.get("gold").copied().unwrap_or(0);
        assert!(gold >= 0, "{} has {gold}", uid(u));
        total += gold;
        let ledger = game
            .ledger(&uid(u), None, 10_000)
            .await
            .expect("game test step");
        for row in ledger.entries {
            let meta: serde_json::Value =
                serde_json::from_str(&row.entry.metadata).expect("game test step");
            if let Some(k) = meta.get("k").and_then(|k| k.as_str()) {
                *ledger_keys.entry(k.to_string()).or_default() += 1;
            }
        }
        for item in game.inventory(&uid(u)).await.expect("game test step") {
            assert_eq!(item.record.owner, uid(u));
            owners.entry(item.item_id).or_default().push(uid(u));
        }
    }
    assert_eq!(total, minted, "the sum of gold is what was minted");
    for k in applied.wallet_keys.keys() {
        assert_eq!(ledger_keys.get(k), Some(&1), "key {k} applied once");
    }
    for k in &applied.failed_keys {
        assert_eq!(ledger_keys.get(k), None, "rejected key {k} applied nothing");
    }
    for item in items.iter() {
        assert_eq!(
            owners.get(item).map(Vec::len),
            Some(1),
            "{item} has one owner"
        );
    }
    let report = game.verify().await.expect("game test step");
    assert!(
        report.mismatches.is_empty() && report.negative.is_empty(),
        "{report:?}"
    );
    assert_eq!(report.users, USERS);
    assert!(
        *completed.lock().expect("game test step") > 0,
        "some trades completed"
    );

    // The operator's check agrees, then catches a balance changed behind
    // the ledger's back.
    let key = dbs
        .game
        .space(&keys::WALLET)
        .key(&keys::BALANCE, &(uid(0), "gold"));
    close(dbs);
    let out = verify_cli(dir.path());
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("users {USERS}")));
    let dbs = open_like_cli(dir.path()).await;
    dbs.game
        .db
        .run(|tx, _| {
            tx.atomic_op(&key, &1i64.to_le_bytes(), myelin::kv::MutationType::Add);
            async { Ok::<_, myelin::kv::Error>(()) }
        })
        .await
        .expect("game test step");
    close(dbs);
    let out = verify_cli(dir.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("MISMATCH {} gold", uid(0))),
        "{stdout}"
    );
}

/// The databases as `myelin --data dir` opens them.
async fn open_like_cli(dir: &Path) -> myelin::db::Databases {
    let overrides = Overrides {
        data_dir: Some(dir.to_path_buf()),
        ..Overrides::default()
    };
    let config = Config::load(None, &overrides).expect("game test step");
    myelin::db::open(&config.databases)
        .await
        .expect("game test step")
}

/// Closes every store, so another process may open them.
fn close(dbs: myelin::db::Databases) {
    for handle in dbs.handles() {
        handle.db.as_embedded().expect("game test step").shutdown();
    }
}

/// Runs `myelin game verify --data dir` without the caller's `MYELIN_*`
/// variables.
fn verify_cli(dir: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_myelin"));
    for (key, _) in std::env::vars() {
        if key.starts_with("MYELIN_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.args(["game", "verify", "--data"])
        .arg(dir)
        .output()
        .expect("run myelin")
}
