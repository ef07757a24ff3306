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
    assert_eq!(f.media.created_before(15, 10).await.unwrap(), vec!["a"]);
    assert_eq!(
        f.media.created_before(21, 10).await.unwrap(),
        vec!["a", "b"]
    );
    let (record, thumbs) = f.media.delete("a").await.unwrap().unwrap();
    assert_eq!(record.content, Some(content(7)));
    assert_eq!(thumbs, vec![thumb]);
    assert_eq!(f.media.thumbnail(&key).await.unwrap(), None);
    assert_eq!(f.media.usage(ALICE).await.unwrap(), 5);
    assert_eq!(f.media.created_before(21, 10).await.unwrap(), vec!["b"]);
    assert!(f.media.delete("a").await.unwrap().is_none());
}
