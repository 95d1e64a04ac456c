//! The one error type of the store: what a caller (the API server) must tell apart.

use std::sync::Arc;

use crate::types::{KeyValue, Revision};

/// A store result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a store operation failed.
///
/// The type is `Clone` because one failed group commit fails every write that shared it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The requested revision is older than the compacted revision; its history is gone
    /// (the API server answers 410 Gone and the client re-lists).
    #[error("revision {requested} has been compacted (compacted revision {compacted})")]
    Compacted {
        /// The revision the caller asked for.
        requested: Revision,
        /// The store's compacted revision.
        compacted: Revision,
    },
    /// The requested revision is newer than the store's current revision.
    #[error("revision {requested} is in the future (current revision {current})")]
    FutureRevision {
        /// The revision the caller asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// A create found the key already present.
    #[error("key {key:?} already exists")]
    AlreadyExists {
        /// The key that exists.
        key: String,
    },
    /// An update or delete found no such key.
    #[error("key {key:?} not found")]
    NotFound {
        /// The missing key.
        key: String,
    },
    /// A compare-and-swap failed: the key's `mod_revision` is not the expected one.
    #[error("conflict on key {key:?}: expected mod_revision {expected}")]
    Conflict {
        /// The key written.
        key: String,
        /// The `mod_revision` the caller expected.
        expected: Revision,
        /// The key's current value, when it exists.
        current: Option<KeyValue>,
    },
    /// Keys must not be empty (etcd rejects them as well).
    #[error("empty key")]
    EmptyKey,
    /// The store was shut down (or its writer died) while the operation was in flight.
    #[error("store is closed")]
    Closed,
    /// Stored data does not decode: the database file is damaged or was written by something else.
    #[error("corrupt store: {detail}")]
    Corrupt {
        /// What did not decode, and for which key.
        detail: String,
    },
    /// The datastore cannot be reached or did not answer in time (etcd down, no quorum, network).
    /// The write, if any, may or may not have happened; the API server answers 503.
    #[error("datastore unavailable: {detail}")]
    Unavailable {
        /// Which datastore and what failed.
        detail: String,
    },
    /// The datastore refused the request (for instance etcd's "request is too large").
    #[error("datastore error: {detail}")]
    Backend {
        /// Which datastore and what it said.
        detail: String,
    },
    /// The storage engine failed (IO error, corruption, ...).
    #[error("storage engine error: {0}")]
    Storage(#[source] Arc<::redb::Error>),
}

impl Error {
    /// Wraps a redb error of any of redb's error types.
    pub(crate) fn storage(err: impl Into<::redb::Error>) -> Self {
        Self::Storage(Arc::new(err.into()))
    }
}
