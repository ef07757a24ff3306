//! Values longer than FoundationDB's 100,000-byte value limit, stored over
//! several keys: FDB's Record Layer's record splitting (`SplitHelper`),
//! shaped so that every value stored before it existed reads back unchanged.
//!
//! ## Layout
//! A value `v` under key `K` is cut into chunks of [`CHUNK_BYTES`]: the
//! first at `K` itself (the head), chunk `i >= 1` at `K ++ 0xff ++ be16(i)`
//! ([`crate::keys::split`]). A value of at most [`CHUNK_BYTES`] is one head
//! and no chunks, byte for byte what a plain `set` writes, so stores written
//! before splitting existed need no migration.
//!
//! ## Reads
//! [`get`] reads the head; only a head of [`STAMPED_HEAD_BYTES`] or more
//! may have chunks (exactly [`CHUNK_BYTES`], or exactly
//! [`STAMPED_HEAD_BYTES`] for a versionstamped value), and then one range
//! read fetches them. So a value shorter than [`STAMPED_HEAD_BYTES`]
//! costs one point read, as before. A range read of a subspace that holds
//! split values returns each head followed by its chunks; [`join`] folds
//! them back into one value per key. Ranges must start at a head and read
//! to the end of the records they hold (no limit that could cut a record).
//!
//! ## Writes
//! [`set`] writes the head and chunks and clears any chunks a longer old
//! value left (a blind range clear: no read, no conflict). [`clear`] clears
//! the head and its chunks. [`set_versionstamped_value`] and
//! [`set_versionstamped_key`] do the same for values and keys completed at
//! commit. All of these are mutations only, so a transaction that calls
//! them twice (a retry) writes the same keys.
//!
//! ## Bounds
//! A value must fit one transaction with everything else it writes:
//! callers bound it ([`MAX_VALUE_BYTES`], a fraction of FDB's 10,000,000
//! bytes). The request-body limit (1 MiB by default) is far below.
//!
//! Who may import this: the databases under `db`, and `service::userdata`
//! for [`MAX_VALUE_BYTES`] (the push-rule set's size limit).

use crate::keys::split::{continuation_key, continuation_range, parse_continuation};
use crate::kv::{self, KeySelector, KeyValue, MutationType, RangeOption, Transaction};

/// The size of each chunk, and the largest value stored in one key:
/// FoundationDB's value limit.
pub const CHUNK_BYTES: usize = kv::limits::VALUE_SIZE_BYTES;

/// The head of a versionstamped value: FoundationDB counts the 4-byte
/// placeholder offset of `SetVersionstampedValue` toward its value limit
/// (FDB 7.3 `ReadYourWritesTransaction::atomicOp` checks the operand as
/// given), so that head holds 4 bytes less than [`CHUNK_BYTES`].
pub const STAMPED_HEAD_BYTES: usize = CHUNK_BYTES - 4;

/// The longest value callers may store: 40 chunks, 4,000,000 bytes, under
/// half of FoundationDB's 10,000,000-byte transaction limit.
pub const MAX_VALUE_BYTES: usize = 40 * CHUNK_BYTES;

/// Writes `value` under `key`, split into chunks if longer than
/// [`CHUNK_BYTES`], and clears chunks an older, longer value left.
pub fn set(tx: &Transaction, key: &[u8], value: &[u8]) {
    let mut chunks = value.chunks(CHUNK_BYTES);
    tx.set(key, chunks.next().unwrap_or_default());
    clear_chunks(tx, key);
    for (i, chunk) in chunks.enumerate() {
        tx.set(&continuation_key(key, chunk_index(i)), chunk);
    }
}

/// Like [`set`] for a value whose first 10 bytes are a versionstamp
/// placeholder completed at commit (`SetVersionstampedValue` with offset 0).
/// `value` excludes the 4-byte offset; the placeholder must lie in the head.
pub fn set_versionstamped_value(tx: &Transaction, key: &[u8], value: &[u8]) {
    let (head, rest) = value.split_at(value.len().min(STAMPED_HEAD_BYTES));
    let chunks = rest.chunks(CHUNK_BYTES);
    let mut head = head.to_vec();
    head.extend_from_slice(&0u32.to_le_bytes());
    tx.atomic_op(key, &head, MutationType::SetVersionstampedValue);
    clear_chunks(tx, key);
    for (i, chunk) in chunks.enumerate() {
        tx.set(&continuation_key(key, chunk_index(i)), chunk);
    }
}

/// Like [`set`] for a key holding a versionstamp placeholder completed at
/// commit: `key_param` is the key followed by its 4-byte little-endian
/// placeholder offset, as `SetVersionstampedKey` takes it. The chunks' keys
/// carry the same versionstamp. A versionstamped key is new at every
/// commit, so there are no old chunks to clear.
pub fn set_versionstamped_key(tx: &Transaction, key_param: &[u8], value: &[u8]) {
    let (key, offset) = key_param.split_at(key_param.len().saturating_sub(4));
    let mut chunks = value.chunks(CHUNK_BYTES);
    tx.atomic_op(
        key_param,
        chunks.next().unwrap_or_default(),
        MutationType::SetVersionstampedKey,
    );
    for (i, chunk) in chunks.enumerate() {
        let mut param = continuation_key(key, chunk_index(i));
        param.extend_from_slice(offset);
        tx.atomic_op(&param, chunk, MutationType::SetVersionstampedKey);
    }
}

/// Clears the value under `key` and its chunks.
pub fn clear(tx: &Transaction, key: &[u8]) {
    tx.clear(key);
    clear_chunks(tx, key);
}

/// The value under `key`, joined from its chunks: one point read, and a
/// range read only for a head of exactly [`CHUNK_BYTES`].
///
/// Errors: the store's.
pub async fn get(tx: &Transaction, key: &[u8], snapshot: bool) -> kv::Result<Option<Vec<u8>>> {
    let Some(mut value) = tx.get(key, snapshot).await? else {
        return Ok(None);
    };
    if value.len() >= STAMPED_HEAD_BYTES {
        let (begin, end) = continuation_range(key);
        let range = RangeOption {
            begin: KeySelector::first_greater_or_equal(begin),
            end: KeySelector::first_greater_or_equal(end),
            limit: None,
            reverse: false,
        };
        for kv in tx.get_range_all(range, snapshot).await? {
            value.extend_from_slice(&kv.value);
        }
    }
    Ok(Some(value))
}

/// The first key after the record at `key` and all its chunks: where a
/// range read resumes "after" a record.
pub fn after_record(key: &[u8]) -> Vec<u8> {
    continuation_range(key).1
}

/// Folds the chunks of a forward range read back into their heads: every
/// pair whose key is a chunk of the preceding pair's key is appended to it.
/// (No tuple-encoded key has the shape `K ++ 0xff ++ ..` for another key
/// `K`, so only chunks are folded.)
pub fn join(kvs: Vec<KeyValue>) -> Vec<KeyValue> {
    let mut out: Vec<KeyValue> = Vec::with_capacity(kvs.len());
    for kv in kvs {
        if let Some((head, _)) = parse_continuation(&kv.key)
            && let Some(last) = out.last_mut()
            && last.key == head
        {
            last.value.extend_from_slice(&kv.value);
            continue;
        }
        out.push(kv);
    }
    out
}

fn clear_chunks(tx: &Transaction, key: &[u8]) {
    let (begin, end) = continuation_range(key);
    tx.clear_range(&begin, &end);
}

/// The 1-based index of the chunk after the head at position `i` of the
/// remaining chunks.
fn chunk_index(i: usize) -> u16 {
    u16::try_from(i + 1).expect("values are bounded far below 65,535 chunks")
}
