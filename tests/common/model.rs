//! A plain in-memory model of the `kv` read semantics (key selectors, ranges,
//! limits, direction, read-your-writes), to compare a backend against.
//!
//! The model only knows the keys of one test's prefix. A selector that walks
//! out of them resolves to [`Resolved::Before`] or [`Resolved::After`]; on the
//! embedded backend those are `b""` and `b"\xff"`, on a shared cluster some key
//! outside the prefix.

use std::collections::BTreeMap;

use myelin::kv::{KeySelector, KeyValue, RangeOption};

/// Where a key selector lands, as far as the model can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// Before every key of the model.
    Before,
    /// This key of the model.
    Key(Vec<u8>),
    /// After every key of the model.
    After,
}

/// Sorted keys and values.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// The data.
    pub map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Model {
    /// Sets `key`.
    pub fn set(&mut self, key: &[u8], value: &[u8]) {
        self.map.insert(key.to_vec(), value.to_vec());
    }

    /// Clears `key`.
    pub fn clear(&mut self, key: &[u8]) {
        self.map.remove(key);
    }

    /// Clears `[begin, end)`.
    pub fn clear_range(&mut self, begin: &[u8], end: &[u8]) {
        if begin < end {
            let doomed: Vec<_> = self
                .map
                .range(begin.to_vec()..end.to_vec())
                .map(|(k, _)| k.clone())
                .collect();
            for k in doomed {
                self.map.remove(&k);
            }
        }
    }

    /// Little-endian wrapping add of a u64 parameter (absent counts as zero).
    pub fn add_u64(&mut self, key: &[u8], delta: u64) {
        let old = self.map.get(key).cloned();
        let mut b = [0u8; 8];
        if let Some(old) = old {
            let n = old.len().min(8);
            b[..n].copy_from_slice(&old[..n]);
        }
        let new = u64::from_le_bytes(b).wrapping_add(delta);
        self.map.insert(key.to_vec(), new.to_le_bytes().to_vec());
    }

    /// Where `sel` lands: locate the last key `<` (or `<=`) the anchor, then move
    /// `offset` keys forward.
    pub fn resolve(&self, sel: &KeySelector) -> Resolved {
        let before = self
            .map
            .keys()
            .filter(|k| {
                if sel.or_equal {
                    k.as_slice() <= sel.key.as_slice()
                } else {
                    k.as_slice() < sel.key.as_slice()
                }
            })
            .count() as i64;
        let idx = before + i64::from(sel.offset) - 1;
        if idx < 0 {
            Resolved::Before
        } else if idx as usize >= self.map.len() {
            Resolved::After
        } else {
            Resolved::Key(
                self.map
                    .keys()
                    .nth(idx as usize)
                    .expect("in bounds")
                    .clone(),
            )
        }
    }

    /// The pairs a range read returns.
    pub fn range(&self, range: &RangeOption) -> Vec<KeyValue> {
        let bound = |r: Resolved| match r {
            Resolved::Before => 0,
            Resolved::After => self.map.len(),
            Resolved::Key(k) => self.map.keys().position(|x| *x == k).expect("model key"),
        };
        let begin = bound(self.resolve(&range.begin));
        let end = bound(self.resolve(&range.end));
        let mut kvs: Vec<KeyValue> = self
            .map
            .iter()
            .enumerate()
            .filter(|(i, _)| *i >= begin && *i < end)
            .map(|(_, (k, v))| KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        if range.reverse {
            kvs.reverse();
        }
        kvs.truncate(range.limit.unwrap_or(usize::MAX));
        kvs
    }
}
