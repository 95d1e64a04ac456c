//! Periodic compaction of the store's history, as kube-apiserver asks etcd to compact: every
//! interval, history older than the revision seen one interval earlier is dropped, so watches
//! and lists may resume from any resourceVersion younger than one to two intervals.

use std::sync::Arc;
use std::time::Duration;

use skiff_store::Store;
use tokio_util::sync::CancellationToken;

/// Upstream's default `--etcd-compaction-interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// Compact every `interval` until `shutdown`.
pub async fn run(store: Arc<dyn Store>, interval: Duration, shutdown: CancellationToken) {
    let mut previous: Option<i64> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let current = match store.current_revision().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "compaction: cannot read the current revision");
                continue;
            }
        };
        if let Some(target) = previous {
            match store.compacted_revision().await {
                Ok(done) if target > done => match store.compact(target).await {
                    Ok(()) => tracing::debug!(revision = target, "compacted store history"),
                    Err(e) => tracing::warn!(revision = target, error = %e, "compaction failed"),
                },
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "compaction: cannot read the compacted revision")
                }
            }
        }
        previous = Some(current);
    }
}
