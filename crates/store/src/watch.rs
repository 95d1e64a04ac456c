//! The backend-neutral watch stream: what a watcher receives and how it asks for progress.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::stream::{BoxStream, Stream, StreamExt};
use tokio::sync::Notify;

use crate::error::Result;
use crate::types::{Revision, WatchEvent};

/// One item of a watch stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchResponse {
    /// Events in revision order; never empty. One write's event is never split across responses.
    Events(Vec<WatchEvent>),
    /// Progress notification (etcd's, the API server's bookmark): every event of this watch with
    /// a revision `<=` this one has been delivered.
    Progress(Revision),
}

/// Asks a watch stream to report its progress; cheap to clone and usable from another task (for
/// instance a bookmark timer) while the stream is being polled.
#[derive(Debug, Clone, Default)]
pub struct ProgressRequester(Arc<Notify>);

impl ProgressRequester {
    /// Creates a requester not yet tied to a stream (backends pass it to [`WatchStream::new`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests one [`WatchResponse::Progress`]; several requests before it is sent coalesce.
    ///
    /// The reported revision is at least the revision of every write acknowledged before the
    /// request.
    pub fn request(&self) {
        self.0.notify_one();
    }

    /// Completes when a request is pending (consumed by the backend's stream).
    pub async fn requested(&self) {
        self.0.notified().await;
    }
}

/// A stream of [`WatchResponse`]s from a [`crate::Store::watch`] call.
///
/// After it yields an `Err`, the stream ends; the caller re-lists and starts a new watch. Dropping
/// the stream cancels the watch.
pub struct WatchStream {
    inner: BoxStream<'static, Result<WatchResponse>>,
    progress: ProgressRequester,
}

impl WatchStream {
    /// Wraps a backend's stream together with the requester its stream listens to.
    pub fn new(
        inner: BoxStream<'static, Result<WatchResponse>>,
        progress: ProgressRequester,
    ) -> Self {
        Self { inner, progress }
    }

    /// Requests a [`WatchResponse::Progress`] (see [`ProgressRequester::request`]).
    pub fn request_progress(&self) {
        self.progress.request();
    }

    /// A handle to request progress from elsewhere while this stream is polled.
    pub fn progress_requester(&self) -> ProgressRequester {
        self.progress.clone()
    }
}

impl Stream for WatchStream {
    type Item = Result<WatchResponse>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream").finish_non_exhaustive()
    }
}
