//! Value types of the `kv` interface: key selectors, ranges, mutations, commit
//! results and watches. Pure data, shared by every backend.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;

use super::{Result, Transaction};

/// A FoundationDB key selector: the key found by locating the last key less
/// than `key` (or less than or equal to, with `or_equal`) and moving `offset`
/// keys forward from there.
///
/// Source: <https://apple.github.io/foundationdb/developer-guide.html#key-selectors>.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySelector {
    /// The anchor key.
    pub key: Vec<u8>,
    /// Whether the anchor itself counts as "less than".
    pub or_equal: bool,
    /// Keys to move forward (positive) or backward (zero and negative).
    pub offset: i32,
}

impl KeySelector {
    /// The first key `>= key`.
    pub fn first_greater_or_equal(key: impl Into<Vec<u8>>) -> Self {
        KeySelector {
            key: key.into(),
            or_equal: false,
            offset: 1,
        }
    }

    /// The first key `> key`.
    pub fn first_greater_than(key: impl Into<Vec<u8>>) -> Self {
        KeySelector {
            key: key.into(),
            or_equal: true,
            offset: 1,
        }
    }

    /// The last key `< key`.
    pub fn last_less_than(key: impl Into<Vec<u8>>) -> Self {
        KeySelector {
            key: key.into(),
            or_equal: false,
            offset: 0,
        }
    }

    /// The last key `<= key`.
    pub fn last_less_or_equal(key: impl Into<Vec<u8>>) -> Self {
        KeySelector {
            key: key.into(),
            or_equal: true,
            offset: 0,
        }
    }
}

impl std::ops::Add<i32> for KeySelector {
    type Output = KeySelector;

    /// The same selector moved `delta` keys.
    fn add(mut self, delta: i32) -> Self {
        self.offset += delta;
        self
    }
}

/// A range read: selectors for both ends (end exclusive), an optional limit on
/// the number of pairs, and the direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeOption {
    /// Where the range begins (inclusive once resolved).
    pub begin: KeySelector,
    /// Where the range ends (exclusive once resolved).
    pub end: KeySelector,
    /// At most this many pairs; `None` for all.
    pub limit: Option<usize>,
    /// Return pairs from the end backwards.
    pub reverse: bool,
}

impl RangeOption {
    /// `[begin, end)` as plain keys.
    pub fn new(begin: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        RangeOption {
            begin: KeySelector::first_greater_or_equal(begin),
            end: KeySelector::first_greater_or_equal(end),
            limit: None,
            reverse: false,
        }
    }

    /// Every key that starts with `prefix` (which must not be empty or all `\xff`).
    pub fn prefix(prefix: &[u8]) -> Self {
        RangeOption::new(prefix.to_vec(), strinc(prefix))
    }

    /// The same range with a limit.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The same range read backwards.
    pub fn reverse(mut self, reverse: bool) -> Self {
        self.reverse = reverse;
        self
    }
}

/// The first key after every key that starts with `prefix`: `prefix` with
/// trailing `\xff` bytes removed and its last byte incremented. An empty or
/// all-`\xff` prefix yields `\xff`, the end of the user keyspace.
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

/// One key and its value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
}

/// One batch of a range read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeChunk {
    /// The pairs, in the order asked for.
    pub kvs: Vec<KeyValue>,
    /// Whether the backend stopped before the end of the range and the limit.
    pub more: bool,
}

/// Atomic mutations, with FoundationDB's semantics
/// (<https://apple.github.io/foundationdb/api-c.html#c.FDBMutationType>).
/// Integers are little-endian and as long as the parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MutationType {
    /// Wrapping addition; an absent value counts as zero.
    Add,
    /// Unsigned maximum; an absent value takes the parameter.
    Max,
    /// Unsigned minimum; an absent value takes the parameter.
    Min,
    /// Bitwise and; an absent value takes the parameter.
    BitAnd,
    /// Bitwise or; an absent value counts as zero.
    BitOr,
    /// Bitwise xor; an absent value counts as zero.
    BitXor,
    /// Lexicographic maximum of the byte strings.
    ByteMax,
    /// Lexicographic minimum of the byte strings.
    ByteMin,
    /// Appends the parameter if the result stays within the value limit.
    AppendIfFits,
    /// Clears the key if its value equals the parameter.
    CompareAndClear,
    /// Sets a key that embeds the commit's versionstamp: the last 4 bytes of the
    /// key are a little-endian offset where the 10-byte versionstamp goes; the
    /// parameter is the value.
    SetVersionstampedKey,
    /// Sets a value that embeds the commit's versionstamp: the last 4 bytes of the
    /// parameter are a little-endian offset where the 10-byte versionstamp goes.
    SetVersionstampedValue,
}

/// Which kind of explicit conflict range to add.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConflictRangeType {
    /// Conflicts with writes committed after the read version.
    Read,
    /// Makes other transactions that read the range conflict.
    Write,
}

/// A commit's 10-byte versionstamp: the 8-byte big-endian commit version and
/// the 2-byte big-endian order of the transaction within its commit batch.
pub type Versionstamp = [u8; 10];

/// What a successful commit reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitInfo {
    /// The commit version; `None` when the transaction wrote nothing.
    pub version: Option<u64>,
    /// The commit's versionstamp; `None` when the transaction wrote nothing.
    pub versionstamp: Option<Versionstamp>,
}

/// A pending watch; resolves with `Ok(())` when the watched key changes, or an
/// error if the transaction that set it failed or the database closed.
#[must_use = "a watch does nothing unless awaited"]
pub struct Watch(Pin<Box<dyn Future<Output = Result<()>> + Send>>);

impl Watch {
    /// Wraps a backend's watch future.
    pub(crate) fn new(fut: impl Future<Output = Result<()>> + Send + 'static) -> Self {
        Watch(Box::pin(fut))
    }
}

impl Future for Watch {
    type Output = Result<()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

/// Batch size of the first request of a streamed range; each later request
/// doubles it up to [`MAX_BATCH`], as FoundationDB's `Iterator` streaming mode does.
const FIRST_BATCH: usize = 256;
const MAX_BATCH: usize = 16_384;

/// Follows a range batch by batch; see [`Transaction::get_ranges`].
pub(super) fn stream_range(
    tx: Transaction,
    range: RangeOption,
    snapshot: bool,
) -> impl Stream<Item = Result<Vec<KeyValue>>> + Send + 'static {
    struct State {
        tx: Transaction,
        range: RangeOption,
        remaining: Option<usize>,
        batch: usize,
        done: bool,
    }
    let state = State {
        tx,
        remaining: range.limit,
        range,
        batch: FIRST_BATCH,
        done: false,
    };
    futures::stream::try_unfold(state, move |mut st| async move {
        if st.done || st.remaining == Some(0) {
            return Ok(None);
        }
        let want = st.remaining.map_or(st.batch, |r| r.min(st.batch));
        let mut req = st.range.clone();
        req.limit = Some(want);
        let chunk = st.tx.get_range(&req, snapshot).await?;
        let got = chunk.kvs.len();
        if let Some(r) = st.remaining.as_mut() {
            *r -= got.min(*r);
        }
        match chunk.kvs.last() {
            Some(last) if chunk.more || got == want => {
                if st.range.reverse {
                    st.range.end = KeySelector::first_greater_or_equal(last.key.clone());
                } else {
                    st.range.begin = KeySelector::first_greater_than(last.key.clone());
                }
            }
            _ => st.done = true,
        }
        st.batch = (st.batch * 2).min(MAX_BATCH);
        if got == 0 {
            return Ok(None);
        }
        Ok(Some((chunk.kvs, st)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strinc_increments_last_non_ff_byte() {
        assert_eq!(strinc(b"ab"), b"ac");
        assert_eq!(strinc(b"a\xff\xff"), b"b");
        assert_eq!(strinc(b"\xff"), b"\xff");
        assert_eq!(strinc(b""), b"\xff");
    }
}
