//! Key backup and one-time keys under FoundationDB's rules (issue 24):
//! creating a backup version is safe after `commit_unknown_result` (the
//! embedded store injects it: the commit applies, the caller is told it may
//! not have), deleting every key of a version reads none of them (a
//! transaction that does not grow with the backup, counted with
//! `embedded::Costs`), and reads issued at once instead of one after another
//! (`put_backup_keys`, `claim`) keep their answers when a request names the
//! same thing twice.

use std::sync::atomic::Ordering;

use myelin::db::accounts::e2ee::{CLAIM_RECORD_RETENTION_MS, ClaimId, E2eeDb};
use serde_json::{Value, json};

async fn open() -> (tempfile::TempDir, myelin::db::Databases, E2eeDb) {
    let dir = tempfile::tempdir().expect("temp dir");
    let dbs = myelin::db::open_embedded_at(dir.path())
        .await
        .expect("open");
    let e2ee = E2eeDb::new(&dbs.accounts);
    (dir, dbs, e2ee)
}

fn claim_id(n: u8, now_ms: u64) -> ClaimId {
    ClaimId {
        now_ms,
        id: [n; 16],
    }
}

/// Uploads one-time keys `signed_curve25519:AAAA`, `AAAB` and `AAAC` for
/// `@a:x`'s device `DEV`.
async fn upload_three_one_time_keys(e2ee: &E2eeDb) {
    let otks: Vec<(String, String, String)> = ["AAAA", "AAAB", "AAAC"]
        .iter()
        .map(|id| {
            (
                "signed_curve25519".to_owned(),
                (*id).to_owned(),
                format!("key-{id}"),
            )
        })
        .collect();
    e2ee.upload("@a:x", "DEV", None, &otks, &[])
        .await
        .expect("upload")
        .expect("accepted");
}

fn session(index: u64) -> Value {
    json!({
        "first_message_index": index,
        "forwarded_count": 0,
        "is_verified": false,
        "session_data": { "ciphertext": "c", "ephemeral": "e", "mac": "m" },
    })
}

#[tokio::test]
async fn create_backup_after_commit_unknown_result_creates_one_version() {
    let (_dir, dbs, e2ee) = open().await;
    let auth = json!({ "public_key": "abc" });
    let faults = dbs.accounts.db.as_embedded().expect("embedded").faults();
    faults.commit_unknown_result.store(1, Ordering::SeqCst);
    let version = e2ee
        .create_backup("@a:x", "m.megolm_backup.v1.curve25519-aes-sha2", &auth)
        .await
        .expect("create");
    assert_eq!(
        faults.commit_unknown_result.load(Ordering::SeqCst),
        0,
        "injected"
    );
    assert_eq!(
        version, 1,
        "the retry returned the version the first attempt made"
    );
    let next = e2ee
        .create_backup("@a:x", "m.megolm_backup.v1.curve25519-aes-sha2", &auth)
        .await
        .expect("create");
    assert_eq!(next, 2, "no version was created twice");
}

#[tokio::test]
async fn deleting_a_whole_version_reads_none_of_its_keys() {
    let (_dir, dbs, e2ee) = open().await;
    let user = "@a:x";
    let version = e2ee
        .create_backup(user, "m.megolm_backup.v1.curve25519-aes-sha2", &json!({}))
        .await
        .expect("create");
    for chunk in 0..20 {
        let keys: Vec<(String, String, Value)> = (0..100)
            .map(|i| ("!r:x".to_owned(), format!("s{chunk:02}-{i:03}"), session(1)))
            .collect();
        e2ee.put_backup_keys(user, version, &keys)
            .await
            .expect("put")
            .expect("current version");
    }
    let costs = dbs.accounts.db.as_embedded().expect("embedded").costs();
    costs.reset();
    let (count, _) = e2ee
        .delete_backup_keys(user, version, None, None)
        .await
        .expect("delete")
        .expect("current version");
    assert_eq!(count, 0);
    let read = costs.max_keys_read.load(Ordering::SeqCst);
    assert!(
        read < 10,
        "the delete read {read} keys of a 2,000-key backup"
    );
    let left = e2ee
        .backup_keys(user, version, None, None)
        .await
        .expect("read")
        .expect("version exists");
    assert!(left.is_empty());
}

#[tokio::test]
async fn a_session_named_twice_in_one_request_counts_once() {
    let (_dir, _dbs, e2ee) = open().await;
    let user = "@a:x";
    let version = e2ee
        .create_backup(user, "m.megolm_backup.v1.curve25519-aes-sha2", &json!({}))
        .await
        .expect("create");
    let keys = vec![
        ("!r:x".to_owned(), "s".to_owned(), session(5)),
        ("!r:x".to_owned(), "s".to_owned(), session(2)),
        ("!r:x".to_owned(), "s".to_owned(), session(9)),
        ("!r:x".to_owned(), "t".to_owned(), session(1)),
    ];
    let (count, _) = e2ee
        .put_backup_keys(user, version, &keys)
        .await
        .expect("put")
        .expect("current version");
    assert_eq!(count, 2);
    let stored = e2ee
        .backup_keys(user, version, Some("!r:x"), Some("s"))
        .await
        .expect("read")
        .expect("version exists");
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].data["first_message_index"], 2,
        "the best one is kept"
    );
}

/// `claim` reads every device's first one-time key at once; a tuple named
/// twice still gets two different keys, as when the reads were one after
/// another.
#[tokio::test]
async fn claiming_a_device_twice_in_one_request_hands_out_two_keys() {
    let (_dir, _dbs, e2ee) = open().await;
    upload_three_one_time_keys(&e2ee).await;
    let one = (
        "@a:x".to_owned(),
        "DEV".to_owned(),
        "signed_curve25519".to_owned(),
    );
    let claimed = e2ee
        .claim(claim_id(1, 1_000), &[one.clone(), one])
        .await
        .expect("claim");
    let ids: Vec<&str> = claimed.iter().map(|(_, _, k)| k.key_id.as_str()).collect();
    assert_eq!(ids, ["signed_curve25519:AAAA", "signed_curve25519:AAAB"]);
}

/// Registering after `commit_unknown_result` (the commit applied, the
/// caller told it may not have): the retry finds the account its first
/// attempt made and reports it created, not "in use"; a different
/// registration of the same ID still is.
#[tokio::test]
async fn registering_after_commit_unknown_result_reports_created() {
    use myelin::db::accounts::{AccountsDb, CreateUser};
    let (_dir, dbs, _e2ee) = open().await;
    let accounts = AccountsDb::new(&dbs.accounts);
    let faults = dbs.accounts.db.as_embedded().expect("embedded").faults();
    faults.commit_unknown_result.store(1, Ordering::SeqCst);
    let created = accounts
        .create_user("@new:x", Some("hash"), 1_000, None)
        .await
        .expect("create");
    assert_eq!(
        faults.commit_unknown_result.load(Ordering::SeqCst),
        0,
        "injected"
    );
    assert!(matches!(created, CreateUser::Created), "{created:?}");
    let again = accounts
        .create_user("@new:x", Some("other"), 2_000, None)
        .await
        .expect("create");
    assert!(matches!(again, CreateUser::InUse), "{again:?}");
}

/// Uploading device keys after `commit_unknown_result`: the retry finds the
/// keys its first attempt stored and still reports them changed, so the
/// caller marks the device list changed.
#[tokio::test]
async fn device_keys_uploaded_after_commit_unknown_result_count_as_changed() {
    let (_dir, dbs, e2ee) = open().await;
    let faults = dbs.accounts.db.as_embedded().expect("embedded").faults();
    faults.commit_unknown_result.store(1, Ordering::SeqCst);
    let (changed, _) = e2ee
        .upload("@a:x", "DEV", Some(r#"{"k":1}"#), &[], &[])
        .await
        .expect("upload")
        .expect("accepted");
    assert_eq!(
        faults.commit_unknown_result.load(Ordering::SeqCst),
        0,
        "injected"
    );
    assert!(changed, "the retry reports the first attempt's change");
    let (again, _) = e2ee
        .upload("@a:x", "DEV", Some(r#"{"k":1}"#), &[], &[])
        .await
        .expect("upload")
        .expect("accepted");
    assert!(!again, "an unchanged upload is still unchanged");
}

/// Taking a UIA session after `commit_unknown_result`: the retry finds the
/// session marked taken by this very call and returns it (the user's UIA
/// step succeeds), while another call, or a later read, finds it taken.
#[tokio::test]
async fn taking_a_uia_session_after_commit_unknown_result_returns_it() {
    use myelin::db::accounts::{AccountsDb, UiaSession};
    let (_dir, dbs, _e2ee) = open().await;
    let accounts = AccountsDb::new(&dbs.accounts);
    let record = UiaSession {
        user_id: Some("@a:x".into()),
        created_ms: 1_000,
        taken_by: None,
    };
    accounts.put_uia_session("S", &record).await.expect("put");
    let faults = dbs.accounts.db.as_embedded().expect("embedded").faults();
    faults.commit_unknown_result.store(1, Ordering::SeqCst);
    let taken = accounts.take_uia_session("S", 7).await.expect("take");
    assert_eq!(
        faults.commit_unknown_result.load(Ordering::SeqCst),
        0,
        "injected"
    );
    assert_eq!(taken.map(|s| s.user_id), Some(record.user_id.clone()));
    assert_eq!(accounts.take_uia_session("S", 8).await.expect("take"), None);
    assert_eq!(accounts.uia_session("S").await.expect("read"), None);
    assert_eq!(
        accounts.take_uia_session("none", 9).await.expect("take"),
        None
    );
}

/// Claiming one-time keys after `commit_unknown_result`: the retry returns
/// the key its first attempt took (from the claim's record) and removes no
/// second key; the next claim gets the next key. A claim long after clears
/// the old claim records.
#[tokio::test]
async fn a_claim_retried_after_commit_unknown_result_takes_one_key() {
    let (_dir, dbs, e2ee) = open().await;
    upload_three_one_time_keys(&e2ee).await;
    let want = [(
        "@a:x".to_owned(),
        "DEV".to_owned(),
        "signed_curve25519".to_owned(),
    )];
    let faults = dbs.accounts.db.as_embedded().expect("embedded").faults();
    faults.commit_unknown_result.store(1, Ordering::SeqCst);
    let first = e2ee.claim(claim_id(1, 1_000), &want).await.expect("claim");
    assert_eq!(
        faults.commit_unknown_result.load(Ordering::SeqCst),
        0,
        "injected"
    );
    assert_eq!(first[0].2.key_id, "signed_curve25519:AAAA");
    let counts = e2ee
        .one_time_key_counts("@a:x", "DEV")
        .await
        .expect("counts");
    assert_eq!(
        counts["signed_curve25519"], 2,
        "the retry took no second key"
    );
    let next = e2ee.claim(claim_id(2, 2_000), &want).await.expect("claim");
    assert_eq!(next[0].2.key_id, "signed_curve25519:AAAB");

    // The records of the two claims above are kept until the retention
    // passes; a claim after it clears them.
    let records = |dbs: &myelin::db::Databases| {
        let e2ee_dir = dbs.accounts.dirs.space(&myelin::db::accounts::keys::E2EE);
        let prefix = e2ee_dir.subspace_prefix(&myelin::db::accounts::keys::KEY_CLAIM);
        let mut end = prefix.clone();
        end.push(0xff);
        myelin::kv::RangeOption::new(prefix, end)
    };
    let before = dbs
        .accounts
        .db
        .read_range(records(&dbs))
        .await
        .expect("read");
    assert_eq!(before.len(), 2);
    let later = 2_000 + CLAIM_RECORD_RETENTION_MS + 1;
    let last = e2ee.claim(claim_id(3, later), &want).await.expect("claim");
    assert_eq!(last[0].2.key_id, "signed_curve25519:AAAC");
    let after = dbs
        .accounts
        .db
        .read_range(records(&dbs))
        .await
        .expect("read");
    assert_eq!(after.len(), 1, "only the last claim's record is left");
}
