//! The key shape of a split value (see `db::split`): pure byte work, shared
//! with the key decoder so `myelin keys` can name a continuation chunk.
//!
//! A value too long for one FoundationDB value is stored as a head at its
//! key `K` and continuation chunks `1..` at `K ++ 0xff ++ be16(i)`. No tuple
//! element begins with `0xff`, so no tuple-encoded key is `K ++ 0xff ++ ..`,
//! and a chunk sorts after every tuple key that extends `K` and before the
//! next key that does not: a record's chunks are contiguous in any range
//! read, right after their head.
//!
//! Who may import this: `db` (the split layer) and `keys::decode`.

/// The byte that separates a head key from its chunk index.
pub const CONTINUATION_MARKER: u8 = 0xff;

/// The key of continuation chunk `index` (1-based) of the value at `head`.
pub fn continuation_key(head: &[u8], index: u16) -> Vec<u8> {
    let mut key = Vec::with_capacity(head.len() + 3);
    key.extend_from_slice(head);
    key.push(CONTINUATION_MARKER);
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// `[begin, end)` of every continuation chunk of the value at `head`.
pub fn continuation_range(head: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut begin = head.to_vec();
    begin.push(CONTINUATION_MARKER);
    let mut end = begin.clone();
    end.extend_from_slice(&[0xff, 0xff, 0xff]);
    (begin, end)
}

/// If `key` has the shape of a continuation chunk, its head key and index.
/// Only a shape: whether `head` holds a split value is the store's to say
/// (a range read finds chunks right after their head).
pub fn parse_continuation(key: &[u8]) -> Option<(&[u8], u16)> {
    let split = key.len().checked_sub(3)?;
    let (head, tail) = key.split_at(split);
    (tail[0] == CONTINUATION_MARKER).then(|| (head, u16::from_be_bytes([tail[1], tail[2]])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_sort_after_every_tuple_extension_of_their_head_and_before_the_next_head() {
        let head = foundationdb_tuple::pack(&("user", "type"));
        let extension = foundationdb_tuple::pack(&("user", "type", "more"));
        let next = foundationdb_tuple::pack(&("user", "typf"));
        let chunk = continuation_key(&head, 1);
        assert!(head < extension && extension < chunk && chunk < next);
        let (begin, end) = continuation_range(&head);
        assert!(begin <= chunk && chunk < end && end < next);
        assert_eq!(parse_continuation(&chunk), Some((&head[..], 1)));
        assert_eq!(continuation_key(&head, 2).len(), head.len() + 3);
        assert!(continuation_key(&head, 1) < continuation_key(&head, 256));
    }
}
