//! FoundationDB's argument checks, shared by every backend so each reports the
//! same [`Error`] variant for the same bad argument.
//!
//! Source: <https://apple.github.io/foundationdb/known-limitations.html> and
//! <https://apple.github.io/foundationdb/api-c.html#c.FDBMutationType>.

use super::{Error, Result, limits};

/// The end of the user keyspace: keys at or after it are FoundationDB's system keys.
pub(crate) const KEYSPACE_END: &[u8] = b"\xff";

/// A key no longer than [`limits::KEY_SIZE_BYTES`].
pub(crate) fn check_key_len(key: &[u8]) -> Result<()> {
    if key.len() > limits::KEY_SIZE_BYTES {
        return Err(Error::KeyTooLarge {
            len_bytes: key.len(),
            limit_bytes: limits::KEY_SIZE_BYTES,
        });
    }
    Ok(())
}

/// A key that may be read or written: within the size limit and before `\xff`.
pub(crate) fn check_key(key: &[u8]) -> Result<()> {
    check_key_len(key)?;
    if key >= KEYSPACE_END {
        return Err(Error::KeyOutsideLegalRange);
    }
    Ok(())
}

/// A value no longer than [`limits::VALUE_SIZE_BYTES`].
pub(crate) fn check_value(value: &[u8]) -> Result<()> {
    if value.len() > limits::VALUE_SIZE_BYTES {
        return Err(Error::ValueTooLarge {
            len_bytes: value.len(),
            limit_bytes: limits::VALUE_SIZE_BYTES,
        });
    }
    Ok(())
}

/// FoundationDB's per-mutation overhead in a transaction's size:
/// `sizeof(MutationRef)` in FDB 7.3 on 64-bit platforms (a 1-byte type, two
/// 16-byte `StringRef`s, an `Optional<uint32_t>` checksum, an
/// `Optional<uint16_t>` index and a `bool`: 56 bytes with alignment;
/// `fdbclient/include/fdbclient/CommitTransaction.h`). A transaction's size is
/// `mutations.expectedSize() + read_conflict_ranges.expectedSize() +
/// write_conflict_ranges.expectedSize()` (`Transaction::getSize`,
/// `fdbclient/NativeAPI.actor.cpp`), and a `VectorRef`'s expected size
/// counts `sizeof(T)` per item plus the item's bytes (`flow/include/flow/Arena.h`).
pub(crate) const MUTATION_OVERHEAD_BYTES: usize = 56;
/// FoundationDB's per-conflict-range overhead: `sizeof(KeyRangeRef)`, two
/// 16-byte `StringRef`s (see [`MUTATION_OVERHEAD_BYTES`]).
pub(crate) const CONFLICT_RANGE_OVERHEAD_BYTES: usize = 32;

/// A versionstamped key (its last 4 bytes the little-endian offset of the
/// 10-byte placeholder): checked as FoundationDB's
/// `ReadYourWritesTransaction::atomicOp` checks it (FDB 7.3
/// `fdbclient/ReadYourWrites.actor.cpp`): the whole key, offset included,
/// must be before `\xff` and within [`limits::KEY_SIZE_BYTES`]. Returns the
/// key without the offset, and the offset.
pub(crate) fn check_versionstamped_key(key: &[u8]) -> Result<(&[u8], usize)> {
    check_key(key)?;
    split_versionstamp_offset(key)
}

/// A versionstamped value: the whole parameter, offset included, within
/// [`limits::VALUE_SIZE_BYTES`] (as [`check_versionstamped_key`]). Returns the
/// value without the offset, and the offset.
pub(crate) fn check_versionstamped_value(value: &[u8]) -> Result<(&[u8], usize)> {
    check_value(value)?;
    split_versionstamp_offset(value)
}

/// Splits a versionstamped key or value into its bytes without the trailing
/// 4-byte little-endian offset, and the offset, checking that the 10-byte stamp
/// fits.
pub(crate) fn split_versionstamp_offset(bytes: &[u8]) -> Result<(&[u8], usize)> {
    let Some(split) = bytes.len().checked_sub(4) else {
        return Err(Error::InvalidMutation("versionstamp offset missing"));
    };
    let (body, offset) = bytes.split_at(split);
    let offset = u32::from_le_bytes(offset.try_into().expect("4 bytes")) as usize;
    if offset + 10 > body.len() {
        return Err(Error::InvalidMutation("versionstamp offset out of bounds"));
    }
    Ok((body, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_keyspace_are_enforced() {
        assert!(check_key(&[b'a'; limits::KEY_SIZE_BYTES]).is_ok());
        assert!(matches!(
            check_key(&[b'a'; limits::KEY_SIZE_BYTES + 1]),
            Err(Error::KeyTooLarge { .. })
        ));
        assert!(matches!(
            check_key(b"\xff"),
            Err(Error::KeyOutsideLegalRange)
        ));
        assert!(matches!(
            check_value(&[0; limits::VALUE_SIZE_BYTES + 1]),
            Err(Error::ValueTooLarge { .. })
        ));
    }

    #[test]
    fn versionstamp_offsets_are_checked() {
        let mut key = b"k".to_vec();
        key.extend_from_slice(&[0; 10]);
        key.extend_from_slice(&1u32.to_le_bytes());
        assert_eq!(split_versionstamp_offset(&key).unwrap(), (&key[..11], 1));
        assert!(split_versionstamp_offset(&[0, 0, 0]).is_err());
        let mut short = vec![0; 5];
        short.extend_from_slice(&0u32.to_le_bytes());
        assert!(split_versionstamp_offset(&short).is_err());
    }
}
