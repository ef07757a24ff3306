//! Rooms an admin blocked (admin API room delete with `block`,
//! `service::admin`): nobody may join them, by ID or by alias, and no alias
//! may be pointed at them.

use ruma::RoomId;

use super::{Error, Result, Rooms};

impl Rooms {
    /// Refuses a blocked room: 403 `M_FORBIDDEN` "This room has been
    /// blocked on this server" (Synapse's words). One read.
    pub(super) async fn refuse_blocked(&self, room_id: &RoomId) -> Result<()> {
        if self.db.is_blocked(room_id).await? {
            return Err(Error::Forbidden(
                "This room has been blocked on this server".into(),
            ));
        }
        Ok(())
    }
}
