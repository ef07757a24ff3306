//! The `media` database's transactions on the embedded backend: the
//! pending cap and expiry, completing once, quotas, quarantine, purge, and
//! completion under injected `commit_unknown_result`.

use std::sync::atomic::Ordering;

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    dbs: crate::db::Databases,
    media: MediaDb,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let dbs = crate::db::open_embedded_at(dir.path()).await.unwrap();
    let media = MediaDb::new(&dbs.media);
    Fixture {
        _dir: dir,
        dbs,
        media,
    }
}

fn content(size: u64) -> Content {
    Content {
        size,
        content_type: Some("image/png".into()),
        file_name: Some("a.png".into()),
        sha256: "ab".repeat(32),
    }
}

const ALICE: &str = "@alice:test";
const BOB: &str = "@bob:test";

#[tokio::test]
async fn pending_uploads_are_capped_and_expired_ones_do_not_count() {
    let f = fixture().await;
    f.media.create_pending("a", ALICE, 0, 100, 2).await.unwrap();
    f.media.create_pending("b", ALICE, 0, 100, 2).await.unwrap();
    let err = f.media.create_pending("c", ALICE, 0, 100, 2).await;
    assert!(
        matches!(err, Err(Error::TooManyPending { max: 2 })),
        "{err:?}"
    );
    // Bob has his own count.
    f.media.create_pending("d", BOB, 0, 100, 2).await.unwrap();
    // Once the first two expire, Alice may create again.
    f.media
        .create_pending("c", ALICE, 100, 200, 2)
        .await
        .unwrap();
    f.media
        .create_pending("e", ALICE, 100, 200, 2)
        .await
        .unwrap();
    // The expired one cannot be uploaded.
    let err = f
        .media
        .complete("a", ALICE, &content(1), 150, true, None)
        .await;
    assert!(matches!(err, Err(Error::NotFound)), "{err:?}");
}

#[tokio::test]
async fn content_is_written_once_by_its_creator() {
    let f = fixture().await;
    f.media.create_pending("m", ALICE, 0, 100, 5).await.unwrap();
    let err = f.media.complete("m", BOB, &content(3), 1, true, None).await;
    assert!(matches!(err, Err(Error::NotUploader)), "{err:?}");
    let err = f
        .media
        .complete("nope", ALICE, &content(3), 1, true, None)
        .await;
    assert!(matches!(err, Err(Error::NotFound)), "{err:?}");
    f.media
        .complete("m", ALICE, &content(3), 1, true, None)
        .await
        .unwrap();
    let mut other = content(3);
    other.sha256 = "cd".repeat(32);
    let err = f.media.complete("m", ALICE, &other, 2, true, None).await;
    assert!(matches!(err, Err(Error::CannotOverwrite)), "{err:?}");
    let record = f.media.get("m").await.unwrap().unwrap();
    assert_eq!(record.state, MediaState::Complete);
    assert_eq!(record.content, Some(content(3)));
    assert_eq!(f.media.usage(ALICE).await.unwrap(), 3);
    // A completed upload no longer counts as pending.
    f.media.create_pending("n", ALICE, 2, 100, 1).await.unwrap();
}

#[tokio::test]
async fn quota_refuses_without_writing() {
    let f = fixture().await;
    f.media
        .complete("a", ALICE, &content(60), 0, false, Some(100))
        .await
        .unwrap();
    let err = f
        .media
        .complete("b", ALICE, &content(41), 0, false, Some(100))
        .await;
    assert!(
        matches!(
            err,
            Err(Error::QuotaExceeded {
                usage: 60,
                quota: 100,
                size: 41
            })
        ),
        "{err:?}"
    );
    assert_eq!(f.media.get("b").await.unwrap(), None);
    f.media
        .complete("b", ALICE, &content(40), 0, false, Some(100))
        .await
        .unwrap();
    assert_eq!(f.media.usage(ALICE).await.unwrap(), 100);
    let err = f
        .media
        .complete("b", BOB, &content(1), 0, false, None)
        .await;
    assert!(matches!(err, Err(Error::Exists)), "{err:?}");
}

#[tokio::test]
async fn completing_survives_commit_unknown_result() {
    let f = fixture().await;
    f.dbs
        .media
        .db
        .as_embedded()
        .unwrap()
        .faults()
        .commit_unknown_result
        .store(1, Ordering::SeqCst);
    f.media
        .complete("a", ALICE, &content(7), 0, false, Some(100))
        .await
        .unwrap();
    assert_eq!(f.media.usage(ALICE).await.unwrap(), 7, "counted once");
}

#[tokio::test]
async fn quarantine_and_delete() {
    let f = fixture().await;
    f.media
        .complete("a", ALICE, &content(7), 10, false, None)
        .await
        .unwrap();
    f.media
        .complete("b", ALICE, &content(5), 20, false, None)
        .await
        .unwrap();
    assert!(f.media.quarantine("a").await.unwrap());
    assert!(!f.media.quarantine("zz").await.unwrap());
    assert_eq!(
        f.media.get("a").await.unwrap().unwrap().state,
        MediaState::Quarantined
    );
    let key = ThumbnailKey {
        media_id: "a".into(),
        width: 32,
        height: 32,
        method: "crop",
    };
    let thumb = ThumbnailRecord {
        sha256: "ef".repeat(32),
        size: 9,
        content_type: "image/png".into(),
        width: 32,
        height: 32,
    };
    f.media.put_thumbnail(&key, &thumb).await.unwrap();
    assert_eq!(f.media.thumbnail(&key).await.unwrap(), Some(thumb.clone()));
    let ids = |page: Vec<(u64, String)>| page.into_iter().map(|(_, id)| id).collect::<Vec<_>>();
    assert_eq!(
        ids(f.media.created_before(15, None, 10).await.unwrap()),
        vec!["a"]
    );
    let all = f.media.created_before(21, None, 10).await.unwrap();
    assert_eq!(ids(all.clone()), vec!["a", "b"]);
    // Paged: after the first entry comes the second.
    assert_eq!(
        ids(f.media.created_before(21, Some(&all[0]), 10).await.unwrap()),
        vec!["b"]
    );
    let deleted = f.media.delete("a", 30).await.unwrap().unwrap();
    assert_eq!(deleted.record.content, Some(content(7)));
    assert_eq!(deleted.thumbnails, vec![thumb]);
    // The content's blob is shared with "b" (same SHA-256): only the
    // thumbnail's blob is doomed.
    let ab = "ab".repeat(32);
    let ef = "ef".repeat(32);
    assert_eq!(deleted.doomed, vec![ef.clone()]);
    assert!(f.media.referenced(&ab).await.unwrap());
    assert!(!f.media.referenced(&ef).await.unwrap());
    assert_eq!(f.media.thumbnail(&key).await.unwrap(), None);
    assert_eq!(f.media.usage(ALICE).await.unwrap(), 5);
    assert_eq!(
        ids(f.media.created_before(21, None, 10).await.unwrap()),
        vec!["b"]
    );
    assert!(f.media.delete("a", 30).await.unwrap().is_none());
    let deleted = f.media.delete("b", 31).await.unwrap().unwrap();
    assert_eq!(deleted.doomed, vec![ab.clone()]);
    assert_eq!(
        f.media.doomed(None, 10).await.unwrap(),
        vec![ab.clone(), ef.clone()]
    );
    assert_eq!(
        f.media.doomed(Some(&ab), 10).await.unwrap(),
        vec![ef.clone()]
    );
}

#[tokio::test]
async fn a_claimed_blob_takes_no_reference_and_an_unclaimed_one_is_taken_back() {
    let f = fixture().await;
    let ab = "ab".repeat(32);
    f.media
        .complete("a", ALICE, &content(7), 10, false, None)
        .await
        .unwrap();
    f.media.delete("a", 20).await.unwrap().unwrap();
    // A new upload of the same bytes before the purge claims the blob
    // takes it back: it is no longer doomed, and a claim finds nothing.
    f.media
        .complete("b", ALICE, &content(7), 21, false, None)
        .await
        .unwrap();
    assert!(f.media.doomed(None, 10).await.unwrap().is_empty());
    assert!(!f.media.claim_doomed(&ab).await.unwrap());
    // Once claimed, an upload naming the blob is refused (writing nothing)
    // until the purge finishes.
    f.media.delete("b", 22).await.unwrap().unwrap();
    assert!(f.media.claim_doomed(&ab).await.unwrap());
    assert!(
        f.media.claim_doomed(&ab).await.unwrap(),
        "safe to run twice"
    );
    let err = f
        .media
        .complete("c", ALICE, &content(7), 23, false, None)
        .await;
    assert!(matches!(err, Err(Error::BlobDeleting)), "{err:?}");
    assert_eq!(f.media.get("c").await.unwrap(), None);
    f.media.finish_doomed(&ab).await.unwrap();
    f.media.finish_doomed(&ab).await.unwrap();
    f.media
        .complete("c", ALICE, &content(7), 24, false, None)
        .await
        .unwrap();
    assert!(f.media.referenced(&ab).await.unwrap());
    // An orphan is doomed only when unreferenced.
    assert!(!f.media.doom_if_unreferenced(&ab, 25).await.unwrap());
    assert!(
        f.media
            .doom_if_unreferenced(&"cd".repeat(32), 25)
            .await
            .unwrap()
    );
    assert!(
        !f.media
            .doom_if_unreferenced(&"cd".repeat(32), 25)
            .await
            .unwrap()
    );
    // A thumbnail of a deleted media ID is not recorded.
    let key = ThumbnailKey {
        media_id: "gone".into(),
        width: 32,
        height: 32,
        method: "crop",
    };
    let thumb = ThumbnailRecord {
        sha256: "ef".repeat(32),
        size: 1,
        content_type: "image/png".into(),
        width: 1,
        height: 1,
    };
    assert!(!f.media.put_thumbnail(&key, &thumb).await.unwrap());
    assert!(!f.media.referenced(&"ef".repeat(32)).await.unwrap());
}

#[tokio::test]
async fn cached_previews_are_read_by_hour_and_cleared_before_an_hour() {
    let f = fixture().await;
    for hour in [5, 6, 7] {
        let json = format!("{{\"hour\":{hour}}}");
        f.media.cache_preview(hour, "abc", &json).await.unwrap();
        // Writing twice (a retried transaction) changes nothing.
        f.media.cache_preview(hour, "abc", &json).await.unwrap();
    }
    f.media.cache_preview(6, "def", "{}").await.unwrap();
    assert_eq!(
        f.media.cached_preview(6, "abc").await.unwrap().as_deref(),
        Some("{\"hour\":6}")
    );
    assert_eq!(f.media.cached_preview(8, "abc").await.unwrap(), None);
    f.media.clear_previews_before(7).await.unwrap();
    assert_eq!(f.media.cached_preview(5, "abc").await.unwrap(), None);
    assert_eq!(f.media.cached_preview(6, "abc").await.unwrap(), None);
    assert_eq!(f.media.cached_preview(6, "def").await.unwrap(), None);
    assert!(f.media.cached_preview(7, "abc").await.unwrap().is_some());
}
