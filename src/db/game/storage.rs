//! Storage objects inside a `game` transaction: version checks,
//! permissions, and the versionstamped write that gives each object its
//! version.
//!
//! Reads: each named object, with a conflict range (its version and
//! `permission_write` decide the write). Writes: the object's key with
//! `SetVersionstampedValue` (its version is the commit's position), or a
//! clear. A concurrent writer of the same object therefore conflicts, and
//! of 32 if-match writers of one version exactly one commits.

use super::ctx::Ctx;
use super::keys;
use super::{Actor, Error, ObjectDelete, ObjectId, ObjectWrite, PendingAck, Result, StoredObject};
use super::{StorageObject, decode, encode};
use crate::kv::MutationType;

/// The owner field of an object key: the owner's user ID, `""` for a
/// system object.
pub(super) fn owner_key(owner: &Option<String>) -> &str {
    owner.as_deref().unwrap_or("")
}

/// Splits a stored object value into its version (24 hex digits) and record.
pub(super) fn split_value(value: &[u8]) -> Result<(String, StoredObject)> {
    if value.len() < 12 {
        return Err(super::corrupt("object", "shorter than its version"));
    }
    Ok((hex::encode(&value[..12]), decode("object", &value[12..])?))
}

/// A stored object with its identity.
pub(super) fn object(id: &ObjectId, value: &[u8]) -> Result<StorageObject> {
    let (version, record) = split_value(value)?;
    Ok(StorageObject {
        collection: id.collection.clone(),
        key: id.key.clone(),
        owner: id.owner.clone(),
        version,
        record,
    })
}

impl Ctx<'_> {
    /// The stored object `id` (version and record), read with a conflict
    /// range.
    async fn read_object(&self, id: &ObjectId) -> Result<Option<(String, StoredObject)>> {
        let key = self.object_key(id);
        self.tx
            .get(&key, false)
            .await?
            .map(|v| split_value(&v))
            .transpose()
    }

    fn object_key(&self, id: &ObjectId) -> Vec<u8> {
        self.layout.storage.key(
            &keys::OBJECT,
            &(&id.collection, owner_key(&id.owner), &id.key),
        )
    }

    /// Whether `actor` may change an existing object of `owner` whose
    /// `permission_write` is `permission`.
    fn may_write(actor: &Actor, owner: &Option<String>, permission: u8) -> bool {
        actor.admin || (permission >= 1 && owner.as_deref() == Some(actor.user_id.as_str()))
    }

    /// Writes object `index` of a batch.
    ///
    /// Errors: [`Error::PermissionDenied`] when a non-admin changes an
    /// object with `permission_write` 0, [`Error::VersionMismatch`] when the
    /// version condition fails.
    pub async fn write_object(
        &mut self,
        actor: &Actor,
        index: usize,
        write: &ObjectWrite,
    ) -> Result<PendingAck> {
        let stored = self.read_object(&write.id).await?;
        if let Some((_, record)) = &stored
            && !Self::may_write(actor, &write.id.owner, record.permission_write)
        {
            return Err(Error::PermissionDenied { index });
        }
        let version_ok = match (&write.version, &stored) {
            (super::VersionCheck::Any, _) => true,
            (super::VersionCheck::Absent, stored) => stored.is_none(),
            (super::VersionCheck::Equals(want), Some((have, _))) => want == have,
            (super::VersionCheck::Equals(_), None) => false,
        };
        if !version_ok {
            return Err(Error::VersionMismatch { index });
        }
        let record = StoredObject {
            value: write.value.clone(),
            permission_read: write.permission_read,
            permission_write: write.permission_write,
            create_ms: stored.map_or(self.now_ms, |(_, r)| r.create_ms),
            update_ms: self.now_ms,
        };
        let order = self.next_order();
        // The version: 10 bytes the commit fills, then the order; then the
        // record and the little-endian offset of the stamp (0).
        let mut value = vec![0u8; 10];
        value.extend_from_slice(&order.to_be_bytes());
        value.extend_from_slice(&encode(&record));
        value.extend_from_slice(&0u32.to_le_bytes());
        self.tx.atomic_op(
            &self.object_key(&write.id),
            &value,
            MutationType::SetVersionstampedValue,
        );
        self.log_foreign(actor, &write.id);
        Ok(PendingAck {
            collection: write.id.collection.clone(),
            key: write.id.key.clone(),
            owner: write.id.owner.clone(),
            order,
        })
    }

    /// Deletes object `index` of a batch. Deleting an absent object with no
    /// version condition does nothing (as Nakama).
    ///
    /// Errors: as [`Ctx::write_object`].
    pub async fn delete_object(
        &mut self,
        actor: &Actor,
        index: usize,
        delete: &ObjectDelete,
    ) -> Result<()> {
        let stored = self.read_object(&delete.id).await?;
        if let Some((_, record)) = &stored
            && !Self::may_write(actor, &delete.id.owner, record.permission_write)
        {
            return Err(Error::PermissionDenied { index });
        }
        match (&delete.version, &stored) {
            (Some(want), Some((have, _))) if want != have => {
                return Err(Error::VersionMismatch { index });
            }
            (Some(_), None) => return Err(Error::VersionMismatch { index }),
            (_, None) => return Ok(()),
            _ => {}
        }
        self.tx.clear(&self.object_key(&delete.id));
        self.log_foreign(actor, &delete.id);
        Ok(())
    }

    /// Logs a change to an object of a user made by someone else (an
    /// admin), so it reaches the owner's sync.
    fn log_foreign(&mut self, actor: &Actor, id: &ObjectId) {
        if let Some(owner) = &id.owner
            && *owner != actor.user_id
        {
            let entry = (id.collection.clone(), id.key.clone());
            let log = self.log(owner);
            if !log.storage.contains(&entry) {
                log.storage.push(entry);
            }
        }
    }
}
