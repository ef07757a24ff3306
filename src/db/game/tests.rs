//! The `game` database's transactions on the embedded backend: storage
//! versions and permissions, wallets and the ledger, idempotency under
//! injected `commit_unknown_result`, items and trades.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    dbs: crate::db::Databases,
    game: GameDb,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let dbs = crate::db::open_embedded_at(dir.path()).await.unwrap();
    let game = GameDb::new(&dbs.game);
    Fixture {
        _dir: dir,
        dbs,
        game,
    }
}

impl Fixture {
    /// Makes the next `n` commits of the store report
    /// `commit_unknown_result` although they committed.
    fn inject_unknown(&self, n: u32) {
        self.dbs
            .game
            .db
            .as_embedded()
            .unwrap()
            .faults()
            .commit_unknown_result
            .store(n, Ordering::SeqCst);
    }
}

fn user(name: &str) -> Actor {
    Actor {
        user_id: format!("@{name}:test"),
        admin: false,
    }
}

fn admin() -> Actor {
    Actor {
        user_id: "@admin:test".into(),
        admin: true,
    }
}

fn id(owner: &Actor, key: &str) -> ObjectId {
    ObjectId {
        collection: "saves".into(),
        key: key.into(),
        owner: Some(owner.user_id.clone()),
    }
}

fn write(owner: &Actor, key: &str, value: &str, version: VersionCheck) -> ObjectWrite {
    ObjectWrite {
        id: id(owner, key),
        value: value.into(),
        version,
        permission_read: 1,
        permission_write: 1,
    }
}

fn changeset(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(c, v)| (c.to_string(), *v)).collect()
}

fn wallet(user: &Actor, pairs: &[(&str, i64)]) -> WalletUpdate {
    WalletUpdate {
        user_id: user.user_id.clone(),
        changeset: changeset(pairs),
        metadata: "{}".into(),
    }
}

fn key(scope: &'static str, k: &str) -> IdempotencyKey {
    IdempotencyKey {
        scope,
        key: k.into(),
    }
}

async fn credit(game: &GameDb, u: &Actor, pairs: &[(&str, i64)], k: &str) -> Result<Applied> {
    let multi = MultiUpdate {
        wallets: vec![wallet(u, pairs)],
        ..MultiUpdate::default()
    };
    game.apply(&admin(), Some(&key("wallets", k)), &multi, 1000)
        .await
}

async fn grant(game: &GameDb, u: &Actor, item_id: &str, quantity: u64) {
    let multi = MultiUpdate {
        grants: vec![ItemGrant {
            user_id: u.user_id.clone(),
            items: vec![NewItem {
                item_id: item_id.into(),
                item_type: "sword".into(),
                quantity,
                metadata: "{}".into(),
            }],
        }],
        ..MultiUpdate::default()
    };
    game.apply(&admin(), Some(&key("items", item_id)), &multi, 1000)
        .await
        .unwrap();
}

#[tokio::test]
async fn storage_versions_are_checked_and_a_rejected_batch_writes_nothing() {
    let f = fixture().await;
    let alice = user("alice");
    let acks = f
        .game
        .write_objects(
            &alice,
            &[write(&alice, "a", r#"{"n":1}"#, VersionCheck::Absent)],
            10,
        )
        .await
        .unwrap();
    let v1 = acks[0].version.clone();
    assert_eq!(v1.len(), 24);
    // Create-only again fails.
    let err = f
        .game
        .write_objects(
            &alice,
            &[write(&alice, "a", "{}", VersionCheck::Absent)],
            11,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::VersionMismatch { index: 0 }),
        "{err:?}"
    );
    // A batch whose second object fails writes neither.
    let batch = [
        write(&alice, "b", r#"{"n":2}"#, VersionCheck::Any),
        write(&alice, "a", "{}", VersionCheck::Equals("00".repeat(12))),
    ];
    let err = f.game.write_objects(&alice, &batch, 12).await.unwrap_err();
    assert!(
        matches!(err, Error::VersionMismatch { index: 1 }),
        "{err:?}"
    );
    let read = f
        .game
        .read_objects(&[id(&alice, "a"), id(&alice, "b")])
        .await
        .unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].version, v1);
    assert_eq!(read[0].record.value, r#"{"n":1}"#);
    // The right version succeeds, keeps the creation time and changes the version.
    let acks = f
        .game
        .write_objects(
            &alice,
            &[write(
                &alice,
                "a",
                r#"{"n":3}"#,
                VersionCheck::Equals(v1.clone()),
            )],
            20,
        )
        .await
        .unwrap();
    assert_ne!(acks[0].version, v1);
    let read = f.game.read_objects(&[id(&alice, "a")]).await.unwrap();
    assert_eq!(read[0].version, acks[0].version);
    assert_eq!(
        (read[0].record.create_ms, read[0].record.update_ms),
        (10, 20)
    );
    // Delete with a stale version fails; with the current one succeeds.
    let stale = ObjectDelete {
        id: id(&alice, "a"),
        version: Some(v1),
    };
    assert!(matches!(
        f.game.delete_objects(&alice, &[stale], 30).await,
        Err(Error::VersionMismatch { index: 0 })
    ));
    let current = ObjectDelete {
        id: id(&alice, "a"),
        version: Some(acks[0].version.clone()),
    };
    f.game.delete_objects(&alice, &[current], 31).await.unwrap();
    assert!(
        f.game
            .read_objects(&[id(&alice, "a")])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn only_admins_change_objects_with_write_permission_zero() {
    let f = fixture().await;
    let alice = user("alice");
    let mut locked = write(&alice, "locked", "{}", VersionCheck::Any);
    locked.permission_write = 0;
    f.game.write_objects(&admin(), &[locked], 1).await.unwrap();
    let err = f
        .game
        .write_objects(
            &alice,
            &[write(&alice, "locked", "{}", VersionCheck::Any)],
            2,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::PermissionDenied { index: 0 }),
        "{err:?}"
    );
    let del = ObjectDelete {
        id: id(&alice, "locked"),
        version: None,
    };
    assert!(matches!(
        f.game
            .delete_objects(&alice, std::slice::from_ref(&del), 3)
            .await,
        Err(Error::PermissionDenied { index: 0 })
    ));
    f.game.delete_objects(&admin(), &[del], 4).await.unwrap();
}

#[tokio::test]
async fn an_admin_write_reaches_the_owners_change_log() {
    let f = fixture().await;
    let alice = user("alice");
    let rv = f.game.read_version().await.unwrap();
    f.game
        .write_objects(&alice, &[write(&alice, "own", "{}", VersionCheck::Any)], 1)
        .await
        .unwrap();
    f.game
        .write_objects(
            &admin(),
            &[write(&alice, "theirs", "{}", VersionCheck::Any)],
            2,
        )
        .await
        .unwrap();
    let now = f.game.read_version().await.unwrap();
    let mut since = [0xff; 10];
    since[..8].copy_from_slice(&rv.to_be_bytes());
    let (change, last) = f
        .game
        .changes(&alice.user_id, Some(since), now)
        .await
        .unwrap();
    assert_eq!(
        change.storage,
        vec![("saves".to_string(), "theirs".to_string())]
    );
    assert!(last.is_some());
}

#[tokio::test]
async fn listing_visits_each_object_once_under_concurrent_writes() {
    let f = fixture().await;
    let alice = user("alice");
    let batch: Vec<ObjectWrite> = (0..50)
        .map(|i| write(&alice, &format!("k{i:03}"), "{}", VersionCheck::Any))
        .collect();
    f.game.write_objects(&alice, &batch, 1).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = f
            .game
            .list_objects("saves", None, cursor.as_ref(), 7, &|_| true)
            .await
            .unwrap();
        seen.extend(page.objects.iter().map(|o| o.key.clone()));
        // Between pages, rewrite every object and add one before the cursor.
        let rewrite: Vec<ObjectWrite> = (0..50)
            .map(|i| write(&alice, &format!("k{i:03}"), r#"{"x":1}"#, VersionCheck::Any))
            .collect();
        f.game.write_objects(&alice, &rewrite, 2).await.unwrap();
        f.game
            .write_objects(
                &alice,
                &[write(&alice, &format!("a{pages}"), "{}", VersionCheck::Any)],
                3,
            )
            .await
            .unwrap();
        pages += 1;
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let want: Vec<String> = (0..50).map(|i| format!("k{i:03}")).collect();
    assert_eq!(seen, want);
    assert_eq!(pages, 8);
}

#[tokio::test]
async fn thirty_two_if_match_writers_one_success_per_version() {
    let f = fixture().await;
    let alice = user("alice");
    let acks = f
        .game
        .write_objects(
            &alice,
            &[write(&alice, "hot", r#"{"n":0}"#, VersionCheck::Any)],
            1,
        )
        .await
        .unwrap();
    let mut version = acks[0].version.clone();
    let mut expected = 0;
    for _round in 0..3 {
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let (game, alice, version) = (f.game.clone(), alice.clone(), version.clone());
                tokio::spawn(async move {
                    let value = format!(r#"{{"writer":{i}}}"#);
                    let w = write(&alice, "hot", &value, VersionCheck::Equals(version));
                    game.write_objects(&alice, &[w], 2).await.map(|a| (i, a))
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok((i, acks)) => winners.push((i, acks[0].version.clone())),
                Err(Error::VersionMismatch { index: 0 }) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one success per version");
        let read = f.game.read_objects(&[id(&alice, "hot")]).await.unwrap();
        assert_eq!(read[0].version, winners[0].1);
        assert_eq!(
            read[0].record.value,
            format!(r#"{{"writer":{}}}"#, winners[0].0)
        );
        version = winners[0].1.clone();
        expected += 1;
    }
    assert_eq!(expected, 3);
}

#[tokio::test]
async fn wallets_credit_debit_and_refuse_to_go_below_zero() {
    let f = fixture().await;
    let alice = user("alice");
    let applied = credit(&f.game, &alice, &[("gold", 120), ("gems", 5)], "k1")
        .await
        .unwrap();
    assert_eq!(
        applied.outcome.wallets[0].balances,
        changeset(&[("gold", 120), ("gems", 5)])
    );
    assert_eq!(
        applied.outcome.wallets[0].previous,
        changeset(&[("gold", 0), ("gems", 0)])
    );
    let err = credit(&f.game, &alice, &[("gems", 1), ("gold", -121)], "k2")
        .await
        .unwrap_err();
    match err {
        Error::InsufficientFunds {
            user_id,
            currency,
            balance,
            delta,
        } => {
            assert_eq!(
                (user_id.as_str(), currency.as_str()),
                (alice.user_id.as_str(), "gold")
            );
            assert_eq!((balance, delta), (120, -121));
        }
        e => panic!("{e:?}"),
    }
    // Nothing of the rejected update applied, its key is not used up.
    assert_eq!(
        f.game.balances(&alice.user_id).await.unwrap(),
        changeset(&[("gold", 120), ("gems", 5)])
    );
    let applied = credit(&f.game, &alice, &[("gold", -20)], "k2")
        .await
        .unwrap();
    assert_eq!(
        applied.outcome.wallets[0].balances,
        changeset(&[("gold", 100)])
    );
    let ledger = f.game.ledger(&alice.user_id, None, 10).await.unwrap();
    assert_eq!(ledger.entries.len(), 2);
    assert_eq!(
        ledger.entries[0].entry.changeset,
        changeset(&[("gold", -20)])
    );
    assert!(ledger.entries[0].id > ledger.entries[1].id, "newest first");
    let report = f.game.verify().await.unwrap();
    assert!(
        report.mismatches.is_empty() && report.negative.is_empty(),
        "{report:?}"
    );
    assert_eq!(report.entries, 2);
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_result() {
    let f = fixture().await;
    let alice = user("alice");
    let first = credit(&f.game, &alice, &[("gold", 7)], "once")
        .await
        .unwrap();
    assert!(!first.repeated);
    // Same key, other changeset: the first result, nothing applied.
    let again = credit(&f.game, &alice, &[("gold", 1000)], "once")
        .await
        .unwrap();
    assert!(again.repeated);
    assert_eq!(again.outcome, first.outcome);
    assert_eq!(again.stamp, first.stamp);
    assert_eq!(
        f.game.balances(&alice.user_id).await.unwrap(),
        changeset(&[("gold", 7)])
    );
}

#[tokio::test]
async fn an_unknown_commit_result_applies_a_wallet_update_once() {
    let f = fixture().await;
    let alice = user("alice");
    for i in 0..5 {
        f.inject_unknown(1);
        let applied = credit(&f.game, &alice, &[("gold", 10)], &format!("k{i}"))
            .await
            .unwrap();
        // The retry found the key: it reports the first commit's outcome.
        assert!(applied.repeated);
        assert_eq!(applied.outcome.wallets[0].balances["gold"], 10 * (i + 1));
    }
    assert_eq!(
        f.game.balances(&alice.user_id).await.unwrap(),
        changeset(&[("gold", 50)])
    );
    assert_eq!(
        f.game
            .ledger(&alice.user_id, None, 100)
            .await
            .unwrap()
            .entries
            .len(),
        5
    );
    assert!(f.game.verify().await.unwrap().mismatches.is_empty());
}

#[tokio::test]
async fn items_are_granted_consumed_and_never_overdrawn() {
    let f = fixture().await;
    let alice = user("alice");
    grant(&f.game, &alice, "i1", 3).await;
    let inv = f.game.inventory(&alice.user_id).await.unwrap();
    assert_eq!(inv.len(), 1);
    assert_eq!((inv[0].item_id.as_str(), inv[0].record.quantity), ("i1", 3));
    let consume = |quantity, owner: &Actor, k: &str| {
        let multi = MultiUpdate {
            consumes: vec![ItemConsume {
                item_id: "i1".into(),
                quantity,
                owner: Some(owner.user_id.clone()),
            }],
            ..MultiUpdate::default()
        };
        let (game, owner, k) = (f.game.clone(), owner.clone(), key("consume", k));
        async move { game.apply(&owner, Some(&k), &multi, 5).await }
    };
    let err = consume(4, &alice, "c1").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::InsufficientItems {
                held: 3,
                wanted: 4,
                ..
            }
        ),
        "{err:?}"
    );
    let bob = user("bob");
    let err = consume(1, &bob, "c2").await.unwrap_err();
    assert!(
        matches!(err, Error::InsufficientItems { held: 0, .. }),
        "{err:?}"
    );
    consume(2, &alice, "c3").await.unwrap();
    assert_eq!(f.game.item("i1").await.unwrap().unwrap().record.quantity, 1);
    consume(1, &alice, "c4").await.unwrap();
    assert!(f.game.item("i1").await.unwrap().is_none());
    assert!(f.game.inventory(&alice.user_id).await.unwrap().is_empty());
}

async fn trade_count(f: &Fixture, u: &Actor, state: TradeState) -> usize {
    f.game
        .trades(&u.user_id, Some(state), 10)
        .await
        .unwrap()
        .len()
}

fn side(items: &[&str], currency: &[(&str, i64)]) -> TradeSide {
    TradeSide {
        items: items.iter().map(|s| s.to_string()).collect(),
        currency: changeset(currency),
    }
}

#[tokio::test]
async fn a_trade_moves_everything_once_or_nothing() {
    let f = fixture().await;
    let (alice, bob) = (user("alice"), user("bob"));
    grant(&f.game, &alice, "sword", 1).await;
    grant(&f.game, &bob, "shield", 1).await;
    credit(&f.game, &bob, &[("gold", 50)], "b").await.unwrap();
    let trade = f
        .game
        .open_trade(
            "t1",
            &alice.user_id,
            &bob.user_id,
            &side(&["sword"], &[]),
            &side(&["shield"], &[("gold", 30)]),
            1,
        )
        .await
        .unwrap();
    assert_eq!(trade.record.state, TradeState::Open);
    assert_eq!(trade_count(&f, &bob, TradeState::Open).await, 1);
    // Only the counterparty accepts.
    assert!(matches!(
        f.game.accept_trade("t1", &alice.user_id, 2).await,
        Err(Error::NotAllowed(_))
    ));
    // Bob spends gold meanwhile: the accept fails and nothing moves.
    credit(&f.game, &bob, &[("gold", -40)], "spend")
        .await
        .unwrap();
    let err = f
        .game
        .accept_trade("t1", &bob.user_id, 3)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InsufficientFunds {
                balance: 10,
                delta: -30,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        f.game.trade("t1").await.unwrap().unwrap().record.state,
        TradeState::Open
    );
    assert_eq!(
        f.game.item("sword").await.unwrap().unwrap().record.owner,
        alice.user_id
    );
    assert_eq!(
        f.game.item("shield").await.unwrap().unwrap().record.owner,
        bob.user_id
    );
    credit(&f.game, &bob, &[("gold", 40)], "refill")
        .await
        .unwrap();
    // An unknown result on the accept: the retry sees it completed.
    f.inject_unknown(1);
    let done = f.game.accept_trade("t1", &bob.user_id, 4).await.unwrap();
    assert_eq!(done.record.state, TradeState::Completed);
    let again = f.game.accept_trade("t1", &bob.user_id, 5).await.unwrap();
    assert_eq!(again, done);
    assert_eq!(
        f.game.item("sword").await.unwrap().unwrap().record.owner,
        bob.user_id
    );
    assert_eq!(
        f.game.item("shield").await.unwrap().unwrap().record.owner,
        alice.user_id
    );
    assert_eq!(
        f.game.balances(&alice.user_id).await.unwrap(),
        changeset(&[("gold", 30)])
    );
    assert_eq!(
        f.game.balances(&bob.user_id).await.unwrap(),
        changeset(&[("gold", 20)])
    );
    let ledger = f.game.ledger(&alice.user_id, None, 10).await.unwrap();
    assert_eq!(ledger.entries[0].entry.trade_id.as_deref(), Some("t1"));
    assert!(trade_count(&f, &bob, TradeState::Open).await == 0);
    assert_eq!(trade_count(&f, &alice, TradeState::Completed).await, 1);
    assert!(matches!(
        f.game.cancel_trade("t1", &alice.user_id, 6).await,
        Err(Error::TradeNotOpen(TradeState::Completed))
    ));
    assert!(f.game.verify().await.unwrap().mismatches.is_empty());
}

#[tokio::test]
async fn a_cancelled_trade_cannot_be_accepted() {
    let f = fixture().await;
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    grant(&f.game, &alice, "gem", 1).await;
    f.game
        .open_trade(
            "t",
            &alice.user_id,
            &bob.user_id,
            &side(&["gem"], &[]),
            &side(&[], &[]),
            1,
        )
        .await
        .unwrap();
    assert!(matches!(
        f.game.cancel_trade("t", &carol.user_id, 2).await,
        Err(Error::NotAllowed(_))
    ));
    f.game.cancel_trade("t", &bob.user_id, 2).await.unwrap();
    assert!(matches!(
        f.game.accept_trade("t", &bob.user_id, 3).await,
        Err(Error::TradeNotOpen(TradeState::Cancelled))
    ));
    assert_eq!(
        f.game.item("gem").await.unwrap().unwrap().record.owner,
        alice.user_id
    );
    assert!(matches!(
        f.game.accept_trade("nope", &bob.user_id, 3).await,
        Err(Error::TradeNotFound)
    ));
}

fn board() -> BoardRecord {
    BoardRecord {
        sort: crate::db::leaderboard::Sort::Desc,
        operator: crate::db::leaderboard::Operator::Best,
        reset: None,
        authoritative: false,
        metadata: "{}".into(),
        create_ms: 0,
        tournament: None,
    }
}

/// A deletion retried after `commit_unknown_result` (it committed) finds
/// nothing to delete: it must answer as the first attempt did, not "not
/// found"; deleting what never existed still answers "not found".
#[tokio::test]
async fn deletions_retried_after_an_unknown_commit_result_succeed() {
    let f = fixture().await;
    let alice = user("alice");
    f.game.create_board("b", &board()).await.unwrap();
    let submission = ScoreSubmission {
        owner: alice.user_id.clone(),
        score: 5,
        subscore: 0,
        metadata: None,
        operator: None,
        id: 1,
    };
    f.game
        .submit_scores(&alice, "b", &[submission], 1)
        .await
        .unwrap();

    f.inject_unknown(1);
    assert!(f.game.delete_record(&alice, "b", 2).await.unwrap());
    assert!(
        f.game
            .record("b", None, &alice.user_id, 2)
            .await
            .unwrap()
            .is_none()
    );
    assert!(!f.game.delete_record(&alice, "b", 3).await.unwrap());

    f.inject_unknown(1);
    f.game.delete_board("b").await.unwrap();
    assert!(matches!(f.game.board("b").await, Err(Error::BoardNotFound)));
    assert!(matches!(
        f.game.delete_board("b").await,
        Err(Error::BoardNotFound)
    ));
    assert!(matches!(
        f.game.delete_board("never").await,
        Err(Error::BoardNotFound)
    ));
}
