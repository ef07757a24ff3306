//! Evaluation of atomic mutations and versionstamp placeholders, with
//! FoundationDB's semantics
//! (<https://apple.github.io/foundationdb/api-c.html#c.FDBMutationType>).

use crate::kv::{MutationType, Versionstamp, limits};

/// The value after applying `op` with `param` to `existing`; `None` means the key
/// is cleared. Versionstamp mutations are not evaluated here.
pub(super) fn apply(op: MutationType, existing: Option<&[u8]>, param: &[u8]) -> Option<Vec<u8>> {
    use MutationType::*;
    let Some(old) = existing else {
        return match op {
            Add | BitOr | BitXor => Some(zip_le(&[], param, |_, p| p)),
            CompareAndClear => None,
            _ => Some(param.to_vec()),
        };
    };
    Some(match op {
        Add => {
            let mut carry = 0u16;
            zip_le(old, param, |a, b| {
                let sum = a as u16 + b as u16 + carry;
                carry = sum >> 8;
                sum as u8
            })
        }
        BitAnd => zip_le(old, param, |a, b| a & b),
        BitOr => zip_le(old, param, |a, b| a | b),
        BitXor => zip_le(old, param, |a, b| a ^ b),
        Max | Min => {
            let old = zip_le(old, param, |a, _| a);
            let old_is_larger = cmp_le(&old, param) == std::cmp::Ordering::Greater;
            if old_is_larger == (op == Max) {
                old
            } else {
                param.to_vec()
            }
        }
        ByteMax => old.max(param).to_vec(),
        ByteMin => old.min(param).to_vec(),
        AppendIfFits => {
            if old.len() + param.len() <= limits::VALUE_SIZE_BYTES {
                [old, param].concat()
            } else {
                old.to_vec()
            }
        }
        CompareAndClear => {
            if old == param {
                return None;
            }
            old.to_vec()
        }
        SetVersionstampedKey | SetVersionstampedValue => param.to_vec(),
    })
}

/// Byte-wise combination of `old` (truncated or zero-extended) with `param`,
/// low byte first; the result has `param`'s length.
fn zip_le(old: &[u8], param: &[u8], mut f: impl FnMut(u8, u8) -> u8) -> Vec<u8> {
    param
        .iter()
        .enumerate()
        .map(|(i, &p)| f(old.get(i).copied().unwrap_or(0), p))
        .collect()
}

/// Compares two equally long little-endian unsigned integers.
fn cmp_le(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.iter().rev().cmp(b.iter().rev())
}

/// `bytes` (with its offset suffix) with the versionstamp written at its offset.
pub(super) fn place_versionstamp(bytes: &[u8], stamp: &Versionstamp) -> Vec<u8> {
    let (body, offset) =
        crate::kv::checks::split_versionstamp_offset(bytes).expect("validated when buffered");
    let mut out = body.to_vec();
    out[offset..offset + 10].copy_from_slice(stamp);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use MutationType::*;

    #[test]
    fn add_is_little_endian_with_carry_and_wraps() {
        assert_eq!(apply(Add, None, &[5, 0]), Some(vec![5, 0]));
        assert_eq!(apply(Add, Some(&[0xff, 0]), &[1, 0]), Some(vec![0, 1]));
        assert_eq!(apply(Add, Some(&[0xff, 0xff]), &[1, 0]), Some(vec![0, 0]));
        // The existing value is truncated or zero-extended to the parameter's length.
        assert_eq!(apply(Add, Some(&[1, 2, 3]), &[1]), Some(vec![2]));
        assert_eq!(apply(Add, Some(&[1]), &[1, 1]), Some(vec![2, 1]));
    }

    #[test]
    fn max_min_compare_unsigned_little_endian() {
        assert_eq!(apply(Max, Some(&[0, 1]), &[0xff, 0]), Some(vec![0, 1]));
        assert_eq!(apply(Min, Some(&[0, 1]), &[0xff, 0]), Some(vec![0xff, 0]));
        assert_eq!(apply(Min, None, &[7]), Some(vec![7]));
    }

    #[test]
    fn compare_and_clear_clears_only_on_equal() {
        assert_eq!(apply(CompareAndClear, Some(b"x"), b"x"), None);
        assert_eq!(
            apply(CompareAndClear, Some(b"y"), b"x"),
            Some(b"y".to_vec())
        );
        assert_eq!(apply(CompareAndClear, None, b"x"), None);
    }

    #[test]
    fn versionstamps_are_placed_at_their_offset() {
        let mut key = b"k".to_vec();
        key.extend_from_slice(&[0; 10]);
        key.extend_from_slice(&1u32.to_le_bytes());
        let stamp = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        let placed = place_versionstamp(&key, &stamp);
        assert_eq!(&placed[1..], &stamp);
    }
}
