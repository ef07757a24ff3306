//! Shared test harness: the `kv` backends a test can run against.
//!
//! [`each_backend`] runs one test body once per available backend:
//! - always the embedded backend, once on each storage engine
//!   (`kv::embedded::Engine::ALL`: redb and fjall), in a fresh temporary
//!   directory per test;
//! - FoundationDB when the crate is built with `--features fdb` and
//!   `FDB_CLUSTER_FILE` names a cluster file. Each test then works inside its own
//!   random key prefix, which is cleared afterwards (never the whole keyspace).
//!
//! When FoundationDB is not available the harness prints, once per test binary,
//! `fdb backend: skipped (<reason>)`, so the test output says what was not run.
//!
//! Test bodies must build every key with [`Backend::key`] (or under
//! [`Backend::prefix`]), so they stay inside their prefix on shared clusters.
//! Who may use this: any integration test (`mod common;`).

#![allow(dead_code)]

pub mod model;

use std::future::Future;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::sync::Once;

use futures::FutureExt;
use myelin::kv::{self, RangeOption};

/// Which backend a [`Backend`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `kv::embedded`, in a temporary directory.
    Embedded,
    /// FoundationDB, inside a random prefix.
    Fdb,
}

/// One backend prepared for one test.
pub struct Backend {
    /// Which backend this is.
    pub kind: Kind,
    /// The database handle, with default retry options.
    pub db: kv::Database,
    /// Every key the test writes starts with this.
    pub prefix: Vec<u8>,
    /// Keeps the embedded store's directory alive for the test.
    dir: Option<tempfile::TempDir>,
}

impl Backend {
    /// `prefix + suffix`.
    pub fn key(&self, suffix: impl AsRef<[u8]>) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(suffix.as_ref());
        k
    }

    /// Every key of this test.
    pub fn range(&self) -> RangeOption {
        RangeOption::prefix(&self.prefix)
    }

    /// The embedded store behind this backend, if it is the embedded one.
    pub fn embedded(&self) -> Option<&kv::embedded::Database> {
        self.db.as_embedded()
    }

    /// A label for assertion messages (the embedded backend's names its
    /// engine).
    pub fn name(&self) -> &'static str {
        match self.embedded().map(|e| e.engine()) {
            Some(kv::embedded::Engine::Redb) => "embedded (redb)",
            Some(kv::embedded::Engine::Fjall) => "embedded (fjall)",
            None => self.db.backend_name(),
        }
    }
}

/// A fresh embedded store with `options`, in its own temporary directory.
pub fn embedded_with(options: kv::embedded::EmbeddedOptions) -> Backend {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = kv::embedded::Database::open(dir.path(), options).expect("open embedded store");
    Backend {
        kind: Kind::Embedded,
        db: db.into(),
        prefix: b"t/".to_vec(),
        dir: Some(dir),
    }
}

/// One fresh embedded store with `options` on each storage engine.
pub fn embedded_each(options: kv::embedded::EmbeddedOptions) -> Vec<Backend> {
    kv::embedded::Engine::ALL
        .into_iter()
        .map(|engine| {
            embedded_with(kv::embedded::EmbeddedOptions {
                engine,
                ..options.clone()
            })
        })
        .collect()
}

/// The backends available to this run, each prepared for one test.
pub fn backends() -> Vec<Backend> {
    let mut out = embedded_each(Default::default());
    match fdb_backend() {
        Ok(b) => out.push(b),
        Err(reason) => {
            static SKIPPED: Once = Once::new();
            // Written to the process's stderr directly: the test harness
            // captures `eprintln!`, and this line must show in every run.
            SKIPPED.call_once(|| {
                let _ = writeln!(std::io::stderr(), "fdb backend: skipped ({reason})");
            });
        }
    }
    out
}

#[cfg(not(feature = "fdb"))]
fn fdb_backend() -> Result<Backend, String> {
    Err("built without the `fdb` feature".into())
}

#[cfg(feature = "fdb")]
fn fdb_backend() -> Result<Backend, String> {
    let Some(path) = std::env::var_os("FDB_CLUSTER_FILE") else {
        return Err("FDB_CLUSTER_FILE unset".into());
    };
    let path = std::path::PathBuf::from(path);
    let db: kv::Database = kv::fdb::Database::open(Some(path.as_path()))
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?
        .into();
    // A prefix under `\xfd`, a byte no tuple type code or directory-layer
    // prefix uses: the wall-clock second (10 digits, so prefixes sort by
    // age) and 12 random letters; no test shares it.
    let now = unix_seconds();
    let mut prefix = FDB_TEST_PREFIX.to_vec();
    prefix.extend(format!("{now:010}/").bytes());
    prefix.extend(myelin::random::Random::os().lowercase(12).bytes());
    prefix.push(b'/');
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(|| sweep_stale_prefixes(&db, now));
    Ok(Backend {
        kind: Kind::Fdb,
        db,
        prefix,
        dir: None,
    })
}

/// Where every FoundationDB test prefix starts.
#[cfg(feature = "fdb")]
const FDB_TEST_PREFIX: &[u8] = b"\xfdmyelin-test/";

/// Seconds since the Unix epoch, by the wall clock: dates what tests leave
/// on a shared cluster.
#[allow(clippy::disallowed_methods)] // Test prefixes on a shared cluster are dated by wall time, so a later run (another process) can tell stale ones.
pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs()
}

/// Clears the prefixes a crashed run left: those dated more than an hour
/// before `now` (a run in progress elsewhere is younger). Once per test binary.
#[cfg(feature = "fdb")]
fn sweep_stale_prefixes(db: &kv::Database, now: u64) {
    let begin = FDB_TEST_PREFIX.to_vec();
    let mut end = FDB_TEST_PREFIX.to_vec();
    end.extend(format!("{:010}", now.saturating_sub(3600)).bytes());
    let db = db.clone();
    // On its own thread and runtime: this runs inside a test's runtime.
    let swept = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(db.run(|tx, _| {
            let (b, e) = (begin.clone(), end.clone());
            // Safe to run twice: clearing is idempotent.
            async move {
                tx.clear_range(&b, &e);
                Ok::<_, kv::Error>(())
            }
        }))
    })
    .join();
    if !matches!(swept, Ok(Ok(()))) {
        let _ = writeln!(
            std::io::stderr(),
            "fdb backend: could not sweep stale test prefixes"
        );
    }
}

/// Runs `test` once on every available backend, in order. After each run on a
/// shared backend (FDB), clears the test's prefix, even when the test panicked.
pub async fn each_backend<F, Fut>(mut test: F)
where
    F: FnMut(Backend) -> Fut,
    Fut: Future<Output = ()>,
{
    for backend in backends() {
        let kind = backend.kind;
        let name = backend.name();
        let db = backend.db.clone();
        let prefix = backend.prefix.clone();
        let outcome = AssertUnwindSafe(test(backend)).catch_unwind().await;
        if kind == Kind::Fdb {
            let range = RangeOption::prefix(&prefix);
            let cleared = db
                .run(|tx, _| {
                    let (b, e) = (range.begin.key.clone(), range.end.key.clone());
                    async move {
                        tx.clear_range(&b, &e);
                        Ok::<_, kv::Error>(())
                    }
                })
                .await;
            if let Err(e) = cleared {
                eprintln!("fdb backend: could not clear test prefix {prefix:?}: {e}");
            }
        }
        if let Err(panic) = outcome {
            eprintln!("failed on the {name} backend ({kind:?})");
            std::panic::resume_unwind(panic);
        }
    }
}

/// Commits `pairs` in one transaction.
pub async fn put_all(db: &kv::Database, pairs: &[(Vec<u8>, Vec<u8>)]) {
    db.run(|tx, _| async move {
        for (k, v) in pairs {
            tx.set(k, v);
        }
        Ok::<_, kv::Error>(())
    })
    .await
    .expect("put_all");
}

/// Reads `key` in a fresh transaction.
pub async fn read(db: &kv::Database, key: &[u8]) -> Option<Vec<u8>> {
    let tx = db.create_transaction().expect("transaction");
    tx.get(key, true).await.expect("get")
}

/// The first key after every key that starts with `prefix`.
pub fn strinc(prefix: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    while let Some(&last) = out.last() {
        if last == 0xff {
            out.pop();
        } else {
            *out.last_mut().expect("non-empty") += 1;
            return out;
        }
    }
    vec![0xff]
}

/// A little-endian u64 from an atomic counter's value (absent = 0).
pub fn le_u64(v: Option<Vec<u8>>) -> u64 {
    v.map_or(0, |v| {
        let mut b = [0u8; 8];
        b[..v.len().min(8)].copy_from_slice(&v[..v.len().min(8)]);
        u64::from_le_bytes(b)
    })
}
