//! The directory layer on the embedded backend: its operations, its errors,
//! and byte-level checks that the store holds FoundationDB's own directory
//! format (the layout of `bindings/python/fdb/directory_impl.py`), so that
//! FoundationDB's bindings would read what we write and we read what they
//! write.

use std::collections::HashSet;

use foundationdb_tuple::{Bytes, Subspace, pack, unpack};
use myelin::kv::directory::{DirectoryError, DirectoryLayer, DirectorySubspace, PARTITION_LAYER};
use myelin::kv::{self, Database, KeyValue, RangeOption, embedded};

/// The default layer's root node: `\xfe` + pack((b"\xfe",)).
const ROOT: &[u8] = b"\xfe\x01\xfe\x00";

fn open_store(dir: &std::path::Path) -> (embedded::Database, Database) {
    let store = embedded::Database::open(dir, Default::default()).expect("open store");
    (store.clone(), store.into())
}

fn store() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, db) = open_store(dir.path());
    (dir, db)
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// The key of child `name` under the node `node` (a raw node prefix).
fn child_key(node: &[u8], name: &str) -> Vec<u8> {
    cat(&[node, &pack(&(0i64, name))])
}

/// The node of the directory with `prefix` in the default layer.
fn node_of(prefix: &[u8]) -> Vec<u8> {
    cat(&[b"\xfe", &pack(&Bytes::from(prefix))])
}

fn layer_key(node: &[u8]) -> Vec<u8> {
    cat(&[node, &pack(&Bytes::from(&b"layer"[..]))])
}

async fn get(db: &Database, key: &[u8]) -> Option<Vec<u8>> {
    db.run(|tx, _| async move { tx.get(key, false).await })
        .await
        .expect("get")
}

async fn set(db: &Database, key: &[u8], value: &[u8]) {
    db.run(|tx, _| async move {
        tx.set(key, value);
        Ok::<_, kv::Error>(())
    })
    .await
    .expect("set")
}

async fn scan(db: &Database, begin: &[u8], end: &[u8]) -> Vec<KeyValue> {
    db.run(|tx, _| async move { tx.get_range_all(RangeOption::new(begin, end), false).await })
        .await
        .expect("scan")
}

async fn create_or_open(
    db: &Database,
    dl: &DirectoryLayer,
    path: &[&str],
    layer: Option<&[u8]>,
) -> Result<DirectorySubspace, DirectoryError> {
    db.run(|tx, _| async move { dl.create_or_open(&tx, path, layer).await })
        .await
}

async fn open(
    db: &Database,
    dl: &DirectoryLayer,
    path: &[&str],
    layer: Option<&[u8]>,
) -> Result<DirectorySubspace, DirectoryError> {
    db.run(|tx, _| async move { dl.open(&tx, path, layer).await })
        .await
}

async fn create(
    db: &Database,
    dl: &DirectoryLayer,
    path: &[&str],
    prefix: Option<&[u8]>,
) -> Result<DirectorySubspace, DirectoryError> {
    db.run(|tx, _| async move { dl.create(&tx, path, None, prefix).await })
        .await
}

async fn exists(db: &Database, dl: &DirectoryLayer, path: &[&str]) -> bool {
    db.run(|tx, _| async move { dl.exists(&tx, path).await })
        .await
        .expect("exists")
}

async fn list(
    db: &Database,
    dl: &DirectoryLayer,
    path: &[&str],
) -> Result<Vec<String>, DirectoryError> {
    db.run(|tx, _| async move { dl.list(&tx, path).await })
        .await
}

async fn move_to(
    db: &Database,
    dl: &DirectoryLayer,
    old: &[&str],
    new: &[&str],
) -> Result<DirectorySubspace, DirectoryError> {
    db.run(|tx, _| async move { dl.move_to(&tx, old, new).await })
        .await
}

async fn remove(db: &Database, dl: &DirectoryLayer, path: &[&str]) -> Result<bool, DirectoryError> {
    db.run(|tx, _| async move { dl.remove(&tx, path).await })
        .await
}

#[tokio::test]
async fn create_open_exists_and_list() {
    let (_dir, db) = store();
    let dl = DirectoryLayer::default();
    assert!(exists(&db, &dl, &[]).await, "the root always exists");
    assert!(!exists(&db, &dl, &["a"]).await);
    assert_eq!(list(&db, &dl, &[]).await.unwrap(), Vec::<String>::new());

    let a = create_or_open(&db, &dl, &["a"], None).await.unwrap();
    assert_eq!(a.path(), ["a"]);
    assert_eq!(a.layer(), b"");
    let again = create_or_open(&db, &dl, &["a"], None).await.unwrap();
    assert_eq!(again.prefix(), a.prefix());
    let opened = open(&db, &dl, &["a"], None).await.unwrap();
    assert_eq!(opened, a);
    assert!(exists(&db, &dl, &["a"]).await);

    let b = create(&db, &dl, &["b"], None).await.unwrap();
    assert_ne!(b.prefix(), a.prefix());
    assert_eq!(list(&db, &dl, &[]).await.unwrap(), ["a", "b"]);

    // Keys packed into a directory start with its prefix and decode back.
    let key = a.pack(&("room", 7i64));
    assert!(key.starts_with(a.prefix()));
    assert_eq!(a.unpack::<(String, i64)>(&key).unwrap(), ("room".into(), 7));
    assert!(matches!(
        a.unpack::<(String, i64)>(&b.pack(&1i64)),
        Err(DirectoryError::Tuple(_))
    ));
    let (begin, end) = a.range();
    assert!(begin.as_slice() <= key.as_slice() && key.as_slice() < end.as_slice());
}

#[tokio::test]
async fn nested_paths_create_their_parents() {
    let (_dir, db) = store();
    let dl = DirectoryLayer::default();
    let c = create_or_open(&db, &dl, &["a", "b", "c"], None)
        .await
        .unwrap();
    assert_eq!(c.path(), ["a", "b", "c"]);
    assert!(exists(&db, &dl, &["a"]).await);
    assert!(exists(&db, &dl, &["a", "b"]).await);
    assert_eq!(list(&db, &dl, &["a"]).await.unwrap(), ["b"]);
    assert_eq!(list(&db, &dl, &["a", "b"]).await.unwrap(), ["c"]);
    create_or_open(&db, &dl, &["a", "b", "a2"], None)
        .await
        .unwrap();

    let tree = db
        .run(|tx, _| {
            let dl = &dl;
            async move { dl.tree(&tx, &[]).await }
        })
        .await
        .unwrap();
    let paths: Vec<Vec<String>> = tree.iter().map(|e| e.path.clone()).collect();
    let expected: Vec<Vec<String>> = [&["a"][..], &["a", "b"], &["a", "b", "a2"], &["a", "b", "c"]]
        .iter()
        .map(|p| p.iter().map(|s| s.to_string()).collect())
        .collect();
    assert_eq!(paths, expected);
    assert_eq!(tree[3].prefix, c.prefix());
    let sub = db
        .run(|tx, _| {
            let dl = &dl;
            async move { dl.tree(&tx, &["a", "b"]).await }
        })
        .await
        .unwrap();
    assert_eq!(
        sub.len(),
        2,
        "tree lists what is below the path, not the path"
    );

    let prefixes: HashSet<Vec<u8>> = tree.iter().map(|e| e.prefix.clone()).collect();
    assert_eq!(prefixes.len(), 4, "every directory has its own prefix");
}

#[tokio::test]
async fn layers_are_recorded_and_checked() {
    let (_dir, db) = store();
    let dl = DirectoryLayer::default();
    let d = create_or_open(&db, &dl, &["d"], Some(b"events"))
        .await
        .unwrap();
    assert_eq!(d.layer(), b"events");
    assert_eq!(
        get(&db, &layer_key(&node_of(d.prefix()))).await.unwrap(),
        b"events"
    );
    assert_eq!(
        open(&db, &dl, &["d"], Some(b"events"))
            .await
            .unwrap()
            .layer(),
        b"events"
    );
    assert_eq!(
        open(&db, &dl, &["d"], None).await.unwrap().layer(),
        b"events"
    );
    assert_eq!(
        open(&db, &dl, &["d"], Some(b"")).await.unwrap().layer(),
        b"events"
    );
    match open(&db, &dl, &["d"], Some(b"other")).await {
        Err(DirectoryError::LayerMismatch {
            path,
            requested,
            found,
        }) => {
            assert_eq!(path, ["d"]);
            assert_eq!(requested, b"other");
            assert_eq!(found, b"events");
        }
        other => panic!("expected LayerMismatch, got {other:?}"),
    }
    assert!(matches!(
        create_or_open(&db, &dl, &["d"], Some(b"other")).await,
        Err(DirectoryError::LayerMismatch { .. })
    ));
}

#[tokio::test]
async fn already_exists_not_found_and_invalid_paths() {
    let (_dir, db) = store();
    let dl = DirectoryLayer::default();
    assert!(
        matches!(open(&db, &dl, &["x"], None).await, Err(DirectoryError::NotFound(p)) if p == ["x"])
    );
    assert!(matches!(
        list(&db, &dl, &["x"]).await,
        Err(DirectoryError::NotFound(_))
    ));
    create(&db, &dl, &["x"], None).await.unwrap();
    assert!(
        matches!(create(&db, &dl, &["x"], None).await, Err(DirectoryError::AlreadyExists(p)) if p == ["x"])
    );
    assert!(matches!(
        open(&db, &dl, &[], None).await,
        Err(DirectoryError::InvalidPath(_))
    ));
    assert!(matches!(
        create_or_open(&db, &dl, &["x", ""], None).await,
        Err(DirectoryError::InvalidPath(_))
    ));
    assert!(matches!(
        remove(&db, &dl, &[]).await,
        Err(DirectoryError::CannotModifyRoot)
    ));
    // A failed operation changed nothing.
    assert_eq!(list(&db, &dl, &["x"]).await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn manual_prefixes_must_be_free() {
    let (_dir, db) = store();
    let dl = DirectoryLayer::default();
    let m = create(&db, &dl, &["m"], Some(b"\x01manual")).await.unwrap();
    assert_eq!(m.prefix(), b"\x01manual");
    assert_eq!(
        get(&db, &child_key(ROOT, "m")).await.unwrap(),
        b"\x01manual"
    );
    for taken in [
        &b"\x01manual"[..],
        b"\x01man",
        b"\x01manual\x05",
        b"\xfe",
        b"\xfe\x10",
        b"",
    ] {
        assert!(
            matches!(
                create(&db, &dl, &["n"], Some(taken)).await,
                Err(DirectoryError::PrefixInUse)
            ),
            "{taken:?} overlaps"
        );
    }
    assert!(!exists(&db, &dl, &["n"]).await);
    let n = create(&db, &dl, &["n"], Some(b"\x01mano")).await.unwrap();
    assert_eq!(n.prefix(), b"\x01mano");
    // An allocated prefix is also taken.
    let auto = create(&db, &dl, &["auto"], None).await.unwrap();
    let inside = cat(&[auto.prefix(), b"x"]);
    assert!(matches!(
        create(&db, &dl, &["q"], Some(&inside)).await,
        Err(DirectoryError::PrefixInUse)
    ));
}

#[tokio::test]
async fn version_key_and_incompatible_versions() {
    let (_dir, db) = store();
    let dl = DirectoryLayer::default();
    let version_key = cat(&[ROOT, b"\x01version\x00"]);
    // Reads do not initialise the layer; writes do.
    assert!(!exists(&db, &dl, &["a"]).await);
    assert_eq!(get(&db, &version_key).await, None);
    create_or_open(&db, &dl, &["a"], None).await.unwrap();
    assert_eq!(
        get(&db, &version_key).await.unwrap(),
        b"\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    );

    // A newer minor version may be read but not written.
    set(
        &db,
        &version_key,
        b"\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00",
    )
    .await;
    assert!(open(&db, &dl, &["a"], None).await.is_ok());
    assert!(matches!(
        create_or_open(&db, &dl, &["b"], None).await,
        Err(DirectoryError::IncompatibleVersion {
            found: [1, 1, 0],
            supported: [1, 0, 0]
        })
    ));
    // A newer major version may not even be read.
    set(
        &db,
        &version_key,
        b"\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
    )
    .await;
    assert!(matches!(
        open(&db, &dl, &["a"], None).await,
        Err(DirectoryError::IncompatibleVersion {
            found: [2, 0, 0],
            ..
        })
    ));
    assert!(matches!(
        list(&db, &dl, &[]).await,
        Err(DirectoryError::IncompatibleVersion { .. })
    ));
    set(&db, &version_key, b"\x01\x00").await;
    assert!(matches!(
        open(&db, &dl, &["a"], None).await,
        Err(DirectoryError::Malformed(_))
    ));
}

#[tokio::test]
async fn the_store_holds_foundationdb_directory_format() {
    let (_dir, db) = store();
    let dl = DirectoryLayer::default();
    let mut prefixes = Vec::new();
    for name in ["a", "b", "c"] {
        let d = create_or_open(&db, &dl, &[name], Some(b"L")).await.unwrap();
        // root[SUBDIRS=0][name] = prefix, e.g. \xfe\x01\xfe\x00 \x14 \x02a\x00.
        let link = get(&db, &cat(&[ROOT, b"\x14\x02", name.as_bytes(), b"\x00"])).await;
        assert_eq!(link.as_deref(), Some(d.prefix()));
        // The prefix is a tuple-encoded integer in the first window (0..64).
        let n: i64 = unpack(d.prefix()).expect("prefix is a packed integer");
        assert!((0..64).contains(&n), "{n}");
        assert_eq!(d.prefix(), pack(&n));
        // \xfe + pack((prefix,)) + pack((b"layer",)) = layer.
        assert_eq!(
            get(&db, &layer_key(&node_of(d.prefix()))).await.unwrap(),
            b"L"
        );
        // The allocator marked it in root["hca"][1][n].
        let recent = cat(&[ROOT, b"\x01hca\x00\x15\x01", &pack(&n)]);
        assert_eq!(get(&db, &recent).await.unwrap(), b"");
        prefixes.push(n);
    }
    // root["hca"][0][0]: three allocations counted, as a little-endian i64.
    let counter = cat(&[ROOT, b"\x01hca\x00\x14\x14"]);
    assert_eq!(get(&db, &counter).await.unwrap(), 3i64.to_le_bytes());
    assert_eq!(prefixes.iter().collect::<HashSet<_>>().len(), 3);

    // Every key under \xfe is one the reference layout names.
    let known: Vec<Vec<u8>> = scan(&db, b"\xfe", b"\xff")
        .await
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(
        known.len(),
        1 + 3 + 3 + 1 + 3,
        "version, 3 links, 3 layers, counter, 3 recents"
    );
}

#[tokio::test]
async fn reads_a_layout_written_by_foundationdb_bindings() {
    // What Python's fdb.directory.create_or_open(tr, ("app", "users"),
    // layer=b"L") leaves behind, written by hand, with allocated prefixes
    // \x15\x05 and \x15\x09 (integers 5 and 9).
    let (_dir, db) = store();
    set(
        &db,
        &cat(&[ROOT, b"\x01version\x00"]),
        b"\x01\0\0\0\0\0\0\0\0\0\0\0",
    )
    .await;
    set(&db, &child_key(ROOT, "app"), b"\x15\x05").await;
    set(&db, &layer_key(&node_of(b"\x15\x05")), b"").await;
    set(&db, &child_key(&node_of(b"\x15\x05"), "users"), b"\x15\x09").await;
    set(&db, &layer_key(&node_of(b"\x15\x09")), b"L").await;
    // The allocator state FoundationDB kept: two allocations in window 0,
    // integers 5 and 9 taken.
    set(
        &db,
        &cat(&[ROOT, b"\x01hca\x00\x14\x14"]),
        &2i64.to_le_bytes(),
    )
    .await;
    set(&db, &cat(&[ROOT, b"\x01hca\x00\x15\x01\x15\x05"]), b"").await;
    set(&db, &cat(&[ROOT, b"\x01hca\x00\x15\x01\x15\x09"]), b"").await;
    let dl = DirectoryLayer::default();
    let users = open(&db, &dl, &["app", "users"], Some(b"L")).await.unwrap();
    assert_eq!(users.prefix(), b"\x15\x09");
    assert_eq!(list(&db, &dl, &["app"]).await.unwrap(), ["users"]);
    // New directories never reuse their prefixes: the allocator reads FDB's
    // own record of taken integers.
    for i in 0..40 {
        let name = format!("other{i}");
        let other = create(&db, &dl, &["app", &name], None).await.unwrap();
        assert!(other.prefix() != b"\x15\x05" && other.prefix() != b"\x15\x09");
    }
    let counter = get(&db, &cat(&[ROOT, b"\x01hca\x00\x14\x14"])).await;
    assert_ne!(
        counter,
        Some(2i64.to_le_bytes().to_vec()),
        "the counter moved on"
    );
}

#[tokio::test]
async fn moves_keep_prefix_and_contents() {
    let (_dir, db) = store();
    let dl = DirectoryLayer::default();
    let b = create_or_open(&db, &dl, &["a", "b"], None).await.unwrap();
    create_or_open(&db, &dl, &["a", "b", "inner"], None)
        .await
        .unwrap();
    create_or_open(&db, &dl, &["z"], None).await.unwrap();
    set(&db, &b.pack(&"k"), b"v").await;

    let moved = move_to(&db, &dl, &["a", "b"], &["z", "c"]).await.unwrap();
    assert_eq!(moved.path(), ["z", "c"]);
    assert_eq!(moved.prefix(), b.prefix());
    assert!(!exists(&db, &dl, &["a", "b"]).await);
    assert_eq!(list(&db, &dl, &["a"]).await.unwrap(), Vec::<String>::new());
    assert_eq!(
        open(&db, &dl, &["z", "c", "inner"], None)
            .await
            .unwrap()
            .path(),
        ["z", "c", "inner"]
    );
    assert_eq!(get(&db, &moved.pack(&"k")).await.unwrap(), b"v");

    assert!(matches!(
        move_to(&db, &dl, &["z"], &["z", "c", "x"]).await,
        Err(DirectoryError::BadMove)
    ));
    assert!(matches!(
        move_to(&db, &dl, &["z"], &["z"]).await,
        Err(DirectoryError::BadMove)
    ));
    assert!(matches!(
        move_to(&db, &dl, &[], &["y"]).await,
        Err(DirectoryError::CannotModifyRoot)
    ));
    assert!(matches!(
        move_to(&db, &dl, &["z"], &["a"]).await,
        Err(DirectoryError::AlreadyExists(_))
    ));
    assert!(
        matches!(move_to(&db, &dl, &["nope"], &["y"]).await, Err(DirectoryError::NotFound(p)) if p == ["nope"])
    );
    assert!(
        matches!(move_to(&db, &dl, &["a"], &["no", "parent"]).await, Err(DirectoryError::NotFound(p)) if p == ["no"])
    );
}

#[tokio::test]
async fn remove_clears_contents_and_subdirectories() {
    let (_dir, db) = store();
    let dl = DirectoryLayer::default();
    let r = create_or_open(&db, &dl, &["r"], None).await.unwrap();
    let s = create_or_open(&db, &dl, &["r", "s"], Some(b"layer"))
        .await
        .unwrap();
    let keep = create_or_open(&db, &dl, &["keep"], None).await.unwrap();
    for d in [&r, &s, &keep] {
        set(&db, &d.pack(&("x", 1i64)), b"1").await;
        set(&db, d.prefix(), b"bare prefix key").await;
    }

    assert!(remove(&db, &dl, &["r"]).await.unwrap());
    for d in [&r, &s] {
        let end = cat(&[d.prefix(), b"\xff\xff"]);
        assert_eq!(
            scan(&db, d.prefix(), &end).await,
            vec![],
            "contents of {:?}",
            d.path()
        );
        let node = node_of(d.prefix());
        assert_eq!(
            scan(&db, &node, &cat(&[&node, b"\xff"])).await,
            vec![],
            "node of {:?}",
            d.path()
        );
    }
    assert_eq!(get(&db, &child_key(ROOT, "r")).await, None);
    assert!(!exists(&db, &dl, &["r"]).await);
    assert!(!exists(&db, &dl, &["r", "s"]).await);
    assert_eq!(get(&db, &keep.pack(&("x", 1i64))).await.unwrap(), b"1");
    assert_eq!(list(&db, &dl, &[]).await.unwrap(), ["keep"]);
    assert!(!remove(&db, &dl, &["r"]).await.unwrap(), "already gone");
    // Re-creating gets a fresh, empty directory.
    let again = create_or_open(&db, &dl, &["r"], None).await.unwrap();
    assert_ne!(again.prefix(), r.prefix());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_get_unique_prefixes() {
    let (_dir, db) = store();
    let dl = DirectoryLayer::default();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let (db, dl) = (db.clone(), dl.clone());
            tokio::spawn(async move {
                let name = format!("dir{i:02}");
                let shared = create_or_open(&db, &dl, &["shared"], None).await?;
                let own = create_or_open(&db, &dl, &[&name, "leaf"], None).await?;
                Ok::<_, DirectoryError>((name, shared, own))
            })
        })
        .collect();
    let mut prefixes = HashSet::new();
    let mut shared_prefixes = HashSet::new();
    for task in tasks {
        let (name, shared, own) = task.await.expect("task").expect("create_or_open");
        shared_prefixes.insert(shared.prefix().to_vec());
        assert!(
            prefixes.insert(own.prefix().to_vec()),
            "duplicate prefix {:?}",
            own.prefix()
        );
        let parent = open(&db, &dl, &[&name], None).await.unwrap();
        assert!(
            prefixes.insert(parent.prefix().to_vec()),
            "duplicate prefix {:?}",
            parent.prefix()
        );
        assert_eq!(
            open(&db, &dl, &[&name, "leaf"], None)
                .await
                .unwrap()
                .prefix(),
            own.prefix()
        );
    }
    assert_eq!(
        shared_prefixes.len(),
        1,
        "one `shared` directory, opened by all"
    );
    assert!(!prefixes.contains(shared_prefixes.iter().next().unwrap()));
    assert_eq!(list(&db, &dl, &[]).await.unwrap().len(), 33);
}

#[tokio::test]
async fn the_allocator_advances_its_window() {
    let (_dir, db) = store();
    let dl = DirectoryLayer::default();
    let names: Vec<String> = (0..100).map(|i| format!("d{i}")).collect();
    let dirs = db
        .run(|tx, _| {
            let (dl, names) = (&dl, &names);
            async move {
                let mut out = Vec::new();
                for name in names {
                    out.push(dl.create(&tx, &[name], None, None).await?);
                }
                Ok::<_, DirectoryError>(out)
            }
        })
        .await
        .unwrap();
    let ns: HashSet<i64> = dirs
        .iter()
        .map(|d| unpack::<i64>(d.prefix()).unwrap())
        .collect();
    assert_eq!(ns.len(), 100, "unique prefixes");
    assert!(ns.iter().any(|&n| n >= 64), "later windows were used");
    let hca = Subspace::from_bytes(ROOT.to_vec()).subspace(&Bytes::from(&b"hca"[..]));
    let (begin, end) = hca.subspace(&0i64).range();
    let counters = scan(&db, &begin, &end).await;
    assert_eq!(
        counters.len(),
        1,
        "only the latest window's counter is kept"
    );
    let start: i64 = hca.subspace(&0i64).unpack(&counters[0].key).unwrap();
    assert!(start >= 64);
    let (begin, end) = hca.subspace(&1i64).range();
    for kv in scan(&db, &begin, &end).await {
        let n: i64 = hca.subspace(&1i64).unpack(&kv.key).unwrap();
        assert!(n >= start, "recent entries of older windows are cleared");
    }
}

#[tokio::test]
async fn directories_survive_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let dl = DirectoryLayer::default();
    let (store, db) = open_store(dir.path());
    let made = create_or_open(&db, &dl, &["accounts", "users"], Some(b"myelin"))
        .await
        .unwrap();
    store.shutdown();
    drop(db);
    let (_store, db) = open_store(dir.path());
    let opened = open(&db, &dl, &["accounts", "users"], Some(b"myelin"))
        .await
        .unwrap();
    assert_eq!(opened, made);
}

#[tokio::test]
async fn partitions_nest_a_directory_layer() {
    let (_dir, db) = store();
    let dl = DirectoryLayer::default();
    let p = create_or_open(&db, &dl, &["p"], Some(PARTITION_LAYER))
        .await
        .unwrap();
    let x = create_or_open(&db, &dl, &["p", "x"], None).await.unwrap();
    assert_eq!(x.path(), ["p", "x"]);
    assert!(
        x.prefix().starts_with(p.prefix()),
        "partition contents live under its prefix"
    );
    // The partition's own root node: prefix\xfe + pack((prefix\xfe,)).
    let inner_node = cat(&[p.prefix(), b"\xfe"]);
    let inner_root = cat(&[&inner_node, &pack(&Bytes::from(inner_node.as_slice()))]);
    assert_eq!(
        get(&db, &child_key(&inner_root, "x")).await.unwrap(),
        x.prefix()
    );
    assert!(
        get(&db, &cat(&[&inner_root, b"\x01version\x00"]))
            .await
            .is_some()
    );
    assert_eq!(list(&db, &dl, &["p"]).await.unwrap(), ["x"]);
    assert!(exists(&db, &dl, &["p", "x"]).await);
    assert!(matches!(
        move_to(&db, &dl, &["p", "x"], &["y"]).await,
        Err(DirectoryError::CannotMoveBetweenPartitions)
    ));
    assert_eq!(
        move_to(&db, &dl, &["p", "x"], &["p", "y"])
            .await
            .unwrap()
            .prefix(),
        x.prefix()
    );
    assert!(matches!(
        create(&db, &dl, &["p", "m"], Some(b"\x02m")).await,
        Err(DirectoryError::InvalidPath(_))
    ));

    let tree = db
        .run(|tx, _| {
            let dl = &dl;
            async move { dl.tree(&tx, &[]).await }
        })
        .await
        .unwrap();
    let paths: Vec<_> = tree.iter().map(|e| e.path.join("/")).collect();
    assert_eq!(paths, ["p", "p/y"]);
    assert_eq!(tree[0].layer, PARTITION_LAYER);

    assert!(remove(&db, &dl, &["p"]).await.unwrap());
    assert_eq!(
        scan(&db, p.prefix(), &cat(&[p.prefix(), b"\xff"])).await,
        vec![]
    );
    assert!(!exists(&db, &dl, &["p", "y"]).await);
}

#[tokio::test]
async fn custom_node_and_content_subspaces() {
    let (_dir, db) = store();
    let dl = DirectoryLayer::new(b"\x02meta", b"\x02data");
    let d = create_or_open(&db, &dl, &["a"], None).await.unwrap();
    assert!(d.prefix().starts_with(b"\x02data"));
    let root = cat(&[b"\x02meta", &pack(&Bytes::from(&b"\x02meta"[..]))]);
    assert_eq!(get(&db, &child_key(&root, "a")).await.unwrap(), d.prefix());
    // The default layer sees nothing of it.
    assert!(!exists(&db, &DirectoryLayer::default(), &["a"]).await);
}

/// The prefixes new directories get come from the layer's random source: the
/// same seed in two fresh stores allocates the same prefixes, in a partition
/// too, and another seed others.
#[tokio::test]
async fn a_seeded_layer_allocates_repeatable_prefixes() {
    async fn prefixes(seed: u64) -> Vec<Vec<u8>> {
        let (_dir, db) = store();
        let dl = DirectoryLayer::default().with_random(myelin::random::Random::seeded(seed));
        let mut out = Vec::new();
        for name in ["a", "b", "c", "d"] {
            out.push(
                create(&db, &dl, &[name], None)
                    .await
                    .unwrap()
                    .prefix()
                    .to_vec(),
            );
        }
        create(&db, &dl, &["p"], Some(PARTITION_LAYER))
            .await
            .unwrap();
        for name in ["x", "y"] {
            let sub = create(&db, &dl, &["p", name], None).await.unwrap();
            out.push(sub.prefix().to_vec());
        }
        out
    }
    let a = prefixes(21).await;
    assert_eq!(a, prefixes(21).await);
    assert_ne!(a, prefixes(22).await);
}
