//! Opening databases on the embedded backend: directories, schema versions,
//! shared stores and configuration errors.

use super::*;

fn meta_key(handle: &Handle) -> Vec<u8> {
    meta::schema_version_key(&handle.dirs)
}

async fn get(handle: &Handle, key: &[u8]) -> Option<Vec<u8>> {
    let key = key.to_vec();
    handle
        .db
        .run(|tx, _| {
            let key = key.clone();
            async move { tx.get(&key, false).await }
        })
        .await
        .unwrap()
}

async fn set(handle: &Handle, key: &[u8], value: &[u8]) {
    let (key, value) = (key.to_vec(), value.to_vec());
    handle
        .db
        .run(|tx, _| {
            tx.set(&key, &value);
            async { Ok::<_, kv::Error>(()) }
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn open_creates_directories_and_records_the_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let dbs = open_embedded_at(dir.path()).await.unwrap();
    let mut prefixes = Vec::new();
    assert_eq!(dbs.handles().len(), SPECS.len(), "one handle per database");
    for (handle, spec) in dbs.handles().iter().zip(SPECS) {
        assert_eq!(handle.spec(), spec);
        assert_eq!(
            handle.path,
            vec!["myelin".to_string(), spec.name.to_string()]
        );
        for space in handle.dirs.spaces() {
            let mut want = handle.path.clone();
            want.extend(space.spec().path.iter().map(|p| p.to_string()));
            assert_eq!(space.path(), want);
            prefixes.push(space.prefix().to_vec());
        }
        let version = get(handle, &meta_key(handle)).await.unwrap();
        assert_eq!(version, u64::from(spec.schema_version).to_le_bytes());
    }
    let mut unique = prefixes.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), prefixes.len(), "directory prefixes overlap");

    // Reopening resolves the same prefixes.
    drop(dbs);
    let again = open_embedded_at(dir.path()).await.unwrap();
    let reopened: Vec<Vec<u8>> = again
        .handles()
        .iter()
        .flat_map(|h| {
            h.dirs
                .spaces()
                .iter()
                .map(|s| s.prefix().to_vec())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(reopened, prefixes);
}

/// A closed embedded store whose rooms database records schema `version`.
async fn store_with_rooms_schema(version: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let dbs = open_embedded_at(dir.path()).await.unwrap();
    let key = meta_key(&dbs.rooms);
    set(&dbs.rooms, &key, &version.to_le_bytes()).await;
    drop(dbs);
    dir
}

#[tokio::test]
async fn a_newer_schema_version_is_refused() {
    let dir = store_with_rooms_schema(99).await;
    match open_embedded_at(dir.path()).await {
        Err(DbError::SchemaTooNew {
            database: "rooms",
            found: 99,
            supported: rooms::keys::SCHEMA_VERSION,
        }) => {}
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a store with a newer schema"),
    }
}

#[tokio::test]
async fn an_older_schema_version_is_refused_and_left_as_it_was() {
    let dir = store_with_rooms_schema(1).await;
    for _ in 0..2 {
        match open_embedded_at(dir.path()).await {
            Err(DbError::SchemaTooOld {
                database: "rooms",
                found: 1,
                supported: rooms::keys::SCHEMA_VERSION,
            }) => {}
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("opened a store with an older schema"),
        }
    }
}

#[tokio::test]
async fn a_corrupt_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dbs = open_embedded_at(dir.path()).await.unwrap();
    let key = meta_key(&dbs.accounts);
    set(&dbs.accounts, &key, b"x").await;
    drop(dbs);
    let err = open_embedded_at(dir.path()).await.err().unwrap();
    assert!(
        matches!(
            err,
            DbError::CorruptSchemaVersion {
                database: "accounts",
                len_bytes: 1
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn databases_on_separate_paths_get_separate_stores() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = embedded_config(dir.path());
    let mut own = config.get("transitory");
    own.path = Some(dir.path().join("transitory"));
    config.set("transitory", own);
    let dbs = open(&config).await.unwrap();
    // The shared store holds accounts and rooms; the transitory store only its own.
    let shared = read_catalog(
        &transitory::keys::SPEC,
        &dbs.accounts.db,
        &config.get("accounts").root,
    )
    .await
    .unwrap();
    assert!(shared.directories().is_empty());
    let own = read_catalog(
        &transitory::keys::SPEC,
        &dbs.transitory.db,
        &config.get("transitory").root,
    )
    .await
    .unwrap();
    assert_eq!(
        own.directories().len(),
        transitory::keys::SPEC.directories.len()
    );
    assert!(dir.path().join("transitory").join("store.redb").exists());
}

#[tokio::test]
async fn read_catalog_lists_declared_and_unknown_directories() {
    let dir = tempfile::tempdir().unwrap();
    let dbs = open_embedded_at(dir.path()).await.unwrap();
    dbs.accounts
        .db
        .run(|tx, _| async move {
            DirectoryLayer::default()
                .create_or_open(&tx, &["myelin", "accounts", "legacy"], None)
                .await
        })
        .await
        .unwrap();
    let catalog = read_catalog(
        &accounts::keys::SPEC,
        &dbs.accounts.db,
        &["myelin".to_string()],
    )
    .await
    .unwrap();
    let meta = catalog
        .directories()
        .iter()
        .find(|d| d.path.last().map(String::as_str) == Some("meta"))
        .unwrap();
    assert_eq!(meta.spec, Some(&meta::DIRECTORY));
    assert_eq!(meta.prefix, dbs.accounts.space(&meta::DIRECTORY).prefix());
    let legacy = catalog
        .directories()
        .iter()
        .find(|d| d.path.last().map(String::as_str) == Some("legacy"))
        .unwrap();
    assert_eq!(legacy.spec, None);
    assert_eq!(legacy.database, Some("accounts"));
}

#[tokio::test]
async fn a_database_that_does_not_exist_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = embedded_config(dir.path());
    config.set("room", DatabaseConfig::default());
    let err = open(&config).await.err().unwrap();
    assert_eq!(
        err.to_string(),
        "invalid configuration: databases.room: no such database (known: accounts, rooms, transitory, game, media)"
    );
    assert!(validate_config(&embedded_config(dir.path())).is_ok());
}

#[cfg(not(feature = "fdb"))]
#[tokio::test]
async fn fdb_without_the_feature_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = embedded_config(dir.path());
    config.set(
        "rooms",
        DatabaseConfig {
            backend: Backend::Fdb,
            path: None,
            cluster_file: Some("/etc/foundationdb/fdb.cluster".into()),
            cache_size_bytes: None,
            engine: Default::default(),
            open_timeout_ms: None,
            root: vec!["myelin".into()],
        },
    );
    let err = open(&config).await.err().unwrap();
    assert!(
        matches!(err, DbError::FdbNotCompiled { database: "rooms" }),
        "{err}"
    );
    assert!(err.to_string().contains("--features fdb"), "{err}");
}
