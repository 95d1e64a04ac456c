//! The versioned key-value store every API object lives in (DESIGN.md §4, `docs/store.md`).
//!
//! [`Store`] is a small trait modelled on etcd's KV API: one global [`Revision`] counter, keys that
//! carry `create_revision`, `mod_revision` and `version`, prefix ranges at a revision with
//! limit/continue, compare-and-swap on `mod_revision`, watches by prefix from a revision, and
//! compaction. [`RedbStore`] is the embedded backend; `EtcdStore` (feature `etcd`) implements the
//! same trait on an etcd v3 cluster; both run the same [`conformance`] suite.
//!
//! Revisions follow etcd: a fresh store is at revision 1 and the first write gets revision 2, so
//! no stored object ever has resourceVersion "0" (which the API server reserves for "any").

mod error;
#[cfg(feature = "etcd")]
mod etcd;
mod migrate;
mod redb_store;
mod types;
mod watch;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;

pub use error::{Error, Result};
#[cfg(feature = "etcd")]
pub use etcd::{EtcdOptions, EtcdStore};
pub use migrate::copy_all;
pub use redb_store::{RedbStore, Stats};
pub use types::{
    EventKind, KeyValue, MemberStatus, RangeOptions, RangeResult, Revision, StoreStatus, WatchEvent,
};
pub use watch::{ProgressRequester, WatchResponse, WatchStream};

use bytes::Bytes;
use futures::future::BoxFuture;

/// The revision a fresh, never-written store reports; the first write gets `FIRST_REVISION + 1`.
///
/// etcd starts a new cluster at header revision 1 as well, so both backends agree.
pub const FIRST_REVISION: Revision = 1;

/// An etcd-like versioned key-value store.
///
/// Every method returns a boxed future so that the trait stays dyn-compatible: the API server holds
/// an `Arc<dyn Store>` and does not know which backend it talks to.
///
/// Each write is atomic and gets its own revision; an acknowledged write is durable.
pub trait Store: Send + Sync + 'static {
    /// Reads the latest value of `key`, or `None` when it does not exist.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<KeyValue>>>;

    /// Lists keys starting with `prefix` in key order, at one consistent revision.
    ///
    /// Fails with [`Error::Compacted`] when `options.revision` is older than the compacted
    /// revision and [`Error::FutureRevision`] when it is newer than the current one.
    fn range<'a>(
        &'a self,
        prefix: &'a str,
        options: RangeOptions,
    ) -> BoxFuture<'a, Result<RangeResult>>;

    /// Creates `key`; fails with [`Error::AlreadyExists`] if it exists.
    fn create<'a>(&'a self, key: &'a str, value: Bytes) -> BoxFuture<'a, Result<KeyValue>>;

    /// Replaces the value of an existing `key`.
    ///
    /// With `expected_mod_revision`, the write only happens when the key's current
    /// `mod_revision` equals it (otherwise [`Error::Conflict`]). A missing key is
    /// [`Error::NotFound`].
    fn update<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        expected_mod_revision: Option<Revision>,
    ) -> BoxFuture<'a, Result<KeyValue>>;

    /// Deletes `key`, with the same compare-and-swap rule as [`Store::update`].
    ///
    /// Returns the deleted value with `mod_revision` set to the revision of the delete.
    fn delete<'a>(
        &'a self,
        key: &'a str,
        expected_mod_revision: Option<Revision>,
    ) -> BoxFuture<'a, Result<KeyValue>>;

    /// Watches keys starting with `prefix`.
    ///
    /// The stream delivers every event with revision `>= from_revision`, in revision order, each
    /// exactly once; `from_revision == 0` means "events after the current revision". Fails with
    /// [`Error::Compacted`] when `from_revision` is older than the compacted revision. The stream
    /// ends after yielding an error (for instance when history it still needs was compacted).
    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        from_revision: Revision,
    ) -> BoxFuture<'a, Result<WatchStream>>;

    /// The revision of the latest committed write.
    fn current_revision(&self) -> BoxFuture<'_, Result<Revision>>;

    /// Discards history older than `revision`: ranges and watches at revisions `>= revision`
    /// keep working, older ones fail with [`Error::Compacted`].
    ///
    /// Compacting at or below the already compacted revision fails with [`Error::Compacted`];
    /// above the current revision with [`Error::FutureRevision`].
    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>>;

    /// The revision history was last compacted at; 0 when it never was.
    fn compacted_revision(&self) -> BoxFuture<'_, Result<Revision>>;

    /// Health and size. A store that cannot be reached answers an error, so this doubles as
    /// the health check behind `/readyz/etcd`.
    fn status(&self) -> BoxFuture<'_, Result<StoreStatus>> {
        Box::pin(async move {
            Ok(StoreStatus {
                backend: "unknown".into(),
                revision: self.current_revision().await?,
                compacted_revision: self.compacted_revision().await?,
                ..StoreStatus::default()
            })
        })
    }
}
