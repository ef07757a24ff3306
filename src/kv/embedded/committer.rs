//! The committer thread: conflict resolution, group commit, snapshot
//! publication and watches. See the module docs of [`super`] for the design.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::atomic;
use super::conflicts::{History, Verdict, key_after};
use super::engine::{Batch, Store, View};
use super::{EmbeddedOptions, Faults, Published, Snapshot};
use crate::kv::{CommitInfo, Error, MutationType, Result, Versionstamp};

/// One buffered mutation, in the order the transaction made it.
#[derive(Clone, Debug)]
pub(super) enum Mutation {
    Set(Vec<u8>, Vec<u8>),
    Clear(Vec<u8>),
    ClearRange(Vec<u8>, Vec<u8>),
    Atomic(Vec<u8>, Vec<u8>, MutationType),
}

impl Mutation {
    /// The key and value bytes it names, for the bytes-written metric.
    fn written_bytes(&self) -> u64 {
        let bytes = match self {
            Mutation::Set(k, v) | Mutation::ClearRange(k, v) | Mutation::Atomic(k, v, _) => {
                k.len() + v.len()
            }
            Mutation::Clear(k) => k.len(),
        };
        bytes as u64
    }
}

/// A watch a committing transaction asks for.
pub(super) struct WatchRequest {
    pub(super) key: Vec<u8>,
    /// The value the watch compares with, as the transaction saw it when it
    /// created the watch: its own write, or its snapshot's value. `None` when
    /// only the committer can tell (pending atomic or versionstamped
    /// mutations): then it is the value right after this transaction applies.
    pub(super) expected: Option<Option<Vec<u8>>>,
    pub(super) fire: oneshot::Sender<Result<()>>,
}

/// What a transaction sends to the committer.
pub(super) struct CommitRequest {
    pub(super) read_version: u64,
    pub(super) read_conflicts: Vec<(Vec<u8>, Vec<u8>)>,
    pub(super) write_conflicts: Vec<(Vec<u8>, Vec<u8>)>,
    pub(super) mutations: Vec<Mutation>,
    pub(super) watches: Vec<WatchRequest>,
    pub(super) reply: oneshot::Sender<Result<CommitInfo>>,
}

/// One registered watch: the value it expects, and how to fire it.
type Registered = (Option<Vec<u8>>, oneshot::Sender<Result<()>>);

/// Registered watches by key.
#[derive(Default)]
pub(super) struct Watches {
    by_key: BTreeMap<Vec<u8>, Vec<Registered>>,
    count: usize,
}

pub(super) struct Committer {
    store: Store,
    version: u64,
    history: History,
    published: Arc<Published>,
    faults: Arc<Faults>,
    window: Duration,
    max_batch: usize,
    max_watches: usize,
    /// Requests in the last batch, and how long committing it took: the
    /// group-commit gathering of the next batch is sized from them.
    last_batch: usize,
    last_commit: Duration,
}

/// Longest the committer waits to gather a batch (see [`Committer::gather`]).
const MAX_GATHER: Duration = Duration::from_millis(1);

/// The store's read view, opened right after commit `version`.
fn open_snapshot(store: &Store, version: u64) -> Result<Snapshot> {
    Ok(Snapshot {
        version,
        view: store.view()?,
    })
}

/// Registers a watch expecting `expected`, or fires it at once if the current
/// snapshot already differs. Takes the watch lock before reading the snapshot,
/// the committer publishes before taking it: no change can slip between.
pub(super) fn register_watch(
    published: &Published,
    max_watches: usize,
    key: Vec<u8>,
    expected: Option<Vec<u8>>,
    fire: oneshot::Sender<Result<()>>,
) -> Result<()> {
    let mut watches = published.watches.lock().expect("watch lock");
    let current = published.snapshot().get(&key)?;
    if current != expected {
        let _ = fire.send(Ok(()));
        return Ok(());
    }
    if watches.count >= max_watches {
        watches.collect_cancelled();
        if watches.count >= max_watches {
            let _ = fire.send(Err(Error::TooManyWatches));
            return Err(Error::TooManyWatches);
        }
    }
    watches.count += 1;
    watches
        .by_key
        .entry(key)
        .or_default()
        .push((expected, fire));
    Ok(())
}

impl Watches {
    /// Drops watches whose futures were dropped.
    fn collect_cancelled(&mut self) {
        self.by_key.retain(|_, list| {
            list.retain(|(_, fire)| !fire.is_closed());
            !list.is_empty()
        });
        self.count = self.by_key.values().map(Vec::len).sum();
    }

    /// Fires the watches on `keys` or inside `ranges` whose value in `snap`
    /// differs from what they expect.
    fn fire_changed(&mut self, snap: &Snapshot, keys: &[Vec<u8>], ranges: &[(Vec<u8>, Vec<u8>)]) {
        if self.by_key.is_empty() {
            return;
        }
        let mut touched: Vec<Vec<u8>> = keys
            .iter()
            .filter(|k| self.by_key.contains_key(k.as_slice()))
            .cloned()
            .collect();
        for (b, e) in ranges {
            touched.extend(
                self.by_key
                    .range::<[u8], _>((
                        Bound::Included(b.as_slice()),
                        Bound::Excluded(e.as_slice()),
                    ))
                    .map(|(k, _)| k.clone()),
            );
        }
        for key in touched {
            let Some(list) = self.by_key.remove(&key) else {
                continue;
            };
            let current = snap.get(&key);
            let mut kept = Vec::new();
            for (expected, fire) in list {
                match &current {
                    Ok(value) if *value == expected => kept.push((expected, fire)),
                    Ok(_) => {
                        self.count -= 1;
                        let _ = fire.send(Ok(()));
                    }
                    Err(_) => {
                        self.count -= 1;
                        let _ = fire.send(Err(Error::Closed));
                    }
                }
            }
            if !kept.is_empty() {
                self.by_key.insert(key, kept);
            }
        }
    }
}

/// An accepted transaction awaiting the batch's durable commit.
struct Accepted {
    reply: oneshot::Sender<Result<CommitInfo>>,
    info: CommitInfo,
    watches: Vec<(WatchRequest, Option<Vec<u8>>)>,
}

impl Committer {
    pub(super) fn new(
        store: Store,
        version: u64,
        published: Arc<Published>,
        faults: Arc<Faults>,
        options: &EmbeddedOptions,
    ) -> Self {
        Committer {
            store,
            version,
            history: History::new(version),
            published,
            faults,
            window: options.max_transaction_age,
            max_batch: options.max_batch,
            max_watches: options.max_watches,
            last_batch: 0,
            last_commit: Duration::ZERO,
        }
    }

    /// Commits batches until every sender is gone.
    // The committer's own timing (how long commits take, when a batch
    // committed for the 5 s conflict window) is the backend's clock, as
    // FoundationDB's, not the service's.
    #[allow(clippy::disallowed_methods)]
    pub(super) fn run(mut self, rx: mpsc::Receiver<CommitRequest>) {
        while let Ok(first) = rx.recv() {
            let batch = self.gather(first, &rx);
            let started = Instant::now();
            self.last_batch = batch.len();
            self.commit_batch(batch);
            self.last_commit = started.elapsed();
        }
        // Pending watches end with the store.
        let mut watches = self.published.watches.lock().expect("watch lock");
        for (_, list) in std::mem::take(&mut watches.by_key) {
            for (_, fire) in list {
                let _ = fire.send(Err(Error::Closed));
            }
        }
    }

    /// The next batch: `first`, everything queued behind it, and - group
    /// commit - the requests expected soon. The writers answered by the last
    /// batch come back within microseconds, but usually just after the
    /// committer has looked; without waiting, batches alternate between a few
    /// early requests and everyone else, and each costs an fsync. So while
    /// fewer requests than the last batch held have arrived, wait for more, at
    /// most half the last commit's duration (capped by [`MAX_GATHER`]). A lone
    /// writer (last batch of one) never waits.
    // The committer's own timing (how long commits take, when a batch
    // committed for the 5 s conflict window) is the backend's clock, as
    // FoundationDB's, not the service's.
    #[allow(clippy::disallowed_methods)]
    fn gather(
        &self,
        first: CommitRequest,
        rx: &mpsc::Receiver<CommitRequest>,
    ) -> Vec<CommitRequest> {
        let mut batch = vec![first];
        let target = self.last_batch.min(self.max_batch);
        let deadline = Instant::now() + (self.last_commit / 2).min(MAX_GATHER);
        while batch.len() < self.max_batch {
            let next = match rx.try_recv() {
                Ok(req) => Ok(req),
                Err(mpsc::TryRecvError::Disconnected) => break,
                Err(mpsc::TryRecvError::Empty) if batch.len() >= target => break,
                Err(mpsc::TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    rx.recv_timeout(left).map_err(drop)
                }
            };
            match next {
                Ok(req) => batch.push(req),
                Err(()) => break,
            }
        }
        batch
    }

    // The committer's own timing (how long commits take, when a batch
    // committed for the 5 s conflict window) is the backend's clock, as
    // FoundationDB's, not the service's.
    #[allow(clippy::disallowed_methods)]
    fn commit_batch(&mut self, batch: Vec<CommitRequest>) {
        let version = self.version + 1;
        let mut accepted: Vec<Accepted> = Vec::with_capacity(batch.len());
        let mut written_keys: Vec<Vec<u8>> = Vec::new();
        let mut written_ranges: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut written_bytes: u64 = 0;
        // Every accepted transaction's writes, read through by atomic
        // operations and watches over the last published view (the
        // committer is the only writer, so that view is the store's state).
        let current = self.published.snapshot();
        let mut pending = Batch::default();
        let result = (|| -> Result<()> {
            for req in batch {
                if self.injected_failure() {
                    let _ = req.reply.send(Err(Error::Storage("injected fault".into())));
                    continue;
                }
                match self.history.check(req.read_version, &req.read_conflicts) {
                    Verdict::Conflict => {
                        log_conflict(&self.history, &req);
                        let _ = req.reply.send(Err(Error::Conflict));
                        continue;
                    }
                    Verdict::TooOld => {
                        let _ = req.reply.send(Err(Error::TooOld));
                        continue;
                    }
                    Verdict::Ok => {}
                }
                let order = u16::try_from(accepted.len()).expect("max_batch fits u16");
                let mut stamp: Versionstamp = [0; 10];
                stamp[..8].copy_from_slice(&version.to_be_bytes());
                stamp[8..].copy_from_slice(&order.to_be_bytes());
                for (b, e) in &req.write_conflicts {
                    self.history.record(b, e, version);
                }
                for m in &req.mutations {
                    written_bytes += m.written_bytes();
                    self.apply(
                        &mut pending,
                        &current.view,
                        m,
                        &stamp,
                        version,
                        &mut written_keys,
                        &mut written_ranges,
                    )?;
                }
                let watches = req
                    .watches
                    .into_iter()
                    .map(|mut w| {
                        let value = match w.expected.take() {
                            Some(seen) => seen,
                            None => pending.get(&current.view, &w.key)?,
                        };
                        Ok((w, value))
                    })
                    .collect::<Result<Vec<_>>>()?;
                accepted.push(Accepted {
                    reply: req.reply,
                    info: CommitInfo {
                        version: Some(version),
                        versionstamp: Some(stamp),
                    },
                    watches,
                });
            }
            if accepted.is_empty() {
                return Ok(());
            }
            self.store.apply(&pending, version)
        })();
        drop(current);
        if let Err(e) = result {
            tracing::error!(error = %e, "embedded commit failed");
            let msg = e.to_string();
            for a in accepted {
                let _ = a.reply.send(Err(Error::Storage(msg.clone().into())));
            }
            return;
        }
        if accepted.is_empty() {
            return;
        }
        self.version = version;
        self.history.committed(version, Instant::now(), self.window);
        let snapshot = match open_snapshot(&self.store, version) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot open a snapshot after commit");
                for a in accepted {
                    let _ = a.reply.send(Err(Error::CommitUnknownResult));
                }
                return;
            }
        };
        *self.published.current.write().expect("snapshot lock") = snapshot.clone();
        self.published
            .watches
            .lock()
            .expect("watch lock")
            .fire_changed(&snapshot, &written_keys, &written_ranges);
        crate::metrics::kv_embedded_batch(accepted.len(), written_bytes);
        for a in accepted {
            for (w, expected) in a.watches {
                let _ = register_watch(&self.published, self.max_watches, w.key, expected, w.fire);
            }
            let unknown = self
                .faults
                .commit_unknown_result
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            let _ = a.reply.send(if unknown {
                Err(Error::CommitUnknownResult)
            } else {
                Ok(a.info)
            });
        }
    }

    /// Whether [`Faults::fail_commit_countdown`] fails this request.
    fn injected_failure(&self) -> bool {
        self.faults
            .fail_commit_countdown
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            == Ok(1)
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        pending: &mut Batch,
        current: &View,
        m: &Mutation,
        stamp: &Versionstamp,
        version: u64,
        written_keys: &mut Vec<Vec<u8>>,
        written_ranges: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<()> {
        match m {
            Mutation::Set(k, v) => {
                pending.set(k.clone(), v.clone());
                written_keys.push(k.clone());
            }
            Mutation::Clear(k) => {
                pending.clear(k.clone());
                written_keys.push(k.clone());
            }
            Mutation::ClearRange(b, e) => {
                pending.clear_range(b, e);
                written_ranges.push((b.clone(), e.clone()));
            }
            Mutation::Atomic(k, param, MutationType::SetVersionstampedKey) => {
                let key = atomic::place_versionstamp(k, stamp);
                pending.set(key.clone(), param.clone());
                self.history.record(&key, &key_after(&key), version);
                written_keys.push(key);
            }
            Mutation::Atomic(k, param, MutationType::SetVersionstampedValue) => {
                let value = atomic::place_versionstamp(param, stamp);
                pending.set(k.clone(), value);
                written_keys.push(k.clone());
            }
            Mutation::Atomic(k, param, op) => {
                let old = pending.get(current, k)?;
                match atomic::apply(*op, old.as_deref(), param) {
                    Some(new) => pending.set(k.clone(), new),
                    None => pending.clear(k.clone()),
                }
                written_keys.push(k.clone());
            }
        }
        Ok(())
    }
}

/// Logs at debug level, target `myelin::kv::conflict`, which read range of
/// an aborted transaction a newer commit wrote, so a retry tail can be
/// traced to its keys (a leaderboard's submits retry on the ranked set's
/// high-level counts, for one). Finding the range repeats the check's
/// scan, so it runs only when that target is enabled.
fn log_conflict(history: &History, req: &CommitRequest) {
    if !tracing::enabled!(target: "myelin::kv::conflict", tracing::Level::DEBUG) {
        return;
    }
    if let Some((begin, end, write_version)) =
        history.first_conflict(req.read_version, &req.read_conflicts)
    {
        tracing::debug!(
            target: "myelin::kv::conflict",
            read_version = req.read_version,
            write_version,
            begin = %crate::keys::bytes::printable(begin),
            end = %crate::keys::bytes::printable(end),
            "transaction aborted: a newer commit wrote this read range",
        );
    }
}
