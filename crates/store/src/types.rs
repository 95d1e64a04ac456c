//! The values the store trait speaks in: revisions, key-values, range options, watch events.

use bytes::Bytes;

/// A store revision: etcd's int64 global counter, one step per write.
pub type Revision = i64;

/// One key with its value and its etcd-style version metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, e.g. `/registry/pods/default/nginx`.
    pub key: String,
    /// The stored bytes.
    pub value: Bytes,
    /// The revision that created the key (since its last deletion).
    pub create_revision: Revision,
    /// The revision of the last write to the key (the object's resourceVersion).
    pub mod_revision: Revision,
    /// Number of writes since the key was created: 1 after a create.
    pub version: i64,
}

/// How to read a range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeOptions {
    /// Read at this revision; `None` or `Some(0)` (or any value `<= 0`) reads the latest.
    pub revision: Option<Revision>,
    /// Return at most this many keys; `None` or `Some(0)` means no limit.
    pub limit: Option<usize>,
    /// Return only keys strictly after this one (the continue token of a paged list).
    pub start_after: Option<String>,
}

/// The answer to a range read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeResult {
    /// The keys, in key order.
    pub kvs: Vec<KeyValue>,
    /// The revision the read was served at; pass it back to read the next page of the same
    /// snapshot.
    pub revision: Revision,
    /// Whether more keys match after the last one returned.
    pub more: bool,
}

/// What a write did to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A create or an update.
    Put,
    /// A delete.
    Delete,
}

/// One change seen by a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// Put or delete.
    pub kind: EventKind,
    /// For a put, the new value. For a delete, the deleted value with `mod_revision` set to the
    /// revision of the delete.
    pub kv: KeyValue,
    /// The value before this event, when the key existed (always set for an update or delete).
    pub prev_kv: Option<KeyValue>,
}

impl WatchEvent {
    /// The revision of the write that produced this event.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// Health and size of a store: what `skiff datastore status` and `/readyz/etcd` report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStatus {
    /// `embedded` (redb) or `etcd`.
    pub backend: String,
    /// The current revision.
    pub revision: Revision,
    /// Revisions at or below this one are compacted.
    pub compacted_revision: Revision,
    /// Bytes on disk (the redb file; the largest member's database for etcd).
    pub size_bytes: Option<u64>,
    /// Keys stored (latest values only).
    pub keys: Option<u64>,
    /// etcd members, one per endpoint; empty for the embedded store.
    pub members: Vec<MemberStatus>,
}

/// One etcd endpoint as its Maintenance/Status call answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberStatus {
    /// The client URL asked.
    pub endpoint: String,
    /// Whether it answered.
    pub healthy: bool,
    /// Whether it is the Raft leader.
    pub leader: bool,
    /// etcd's version.
    pub version: String,
    /// Its database size in bytes.
    pub size_bytes: u64,
    /// Why it did not answer.
    pub error: Option<String>,
}
