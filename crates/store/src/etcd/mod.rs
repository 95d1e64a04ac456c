//! The etcd v3 backend of the [`Store`] trait, for a highly available control plane
//! (DESIGN.md §4, `docs/store.md` "etcd backend").
//!
//! Revisions are etcd's own: a key's `mod_revision` is the object's resourceVersion, and every
//! compare-and-swap is one etcd `Txn`. Several `skiff server`s may share one etcd; nothing here
//! keeps state that another server could contradict, except the lower bound of the compacted
//! revision (see [`EtcdStore::compacted_revision`]).

mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, TlsOptions, Txn,
    TxnOp, TxnOpResponse,
};
use futures::future::BoxFuture;

use crate::error::{Error, Result};
use crate::types::{KeyValue, RangeOptions, RangeResult, Revision};
use crate::watch::WatchStream;
use crate::{FIRST_REVISION, Store};

/// etcd's message for a read or watch below the compacted revision (`mvcc.ErrCompacted`).
const COMPACTED_MESSAGE: &str = "required revision has been compacted";
/// etcd's message for a read above the current revision (`mvcc.ErrFutureRev`).
const FUTURE_MESSAGE: &str = "required revision is a future revision";

/// Responses larger than gRPC's 4 MiB default happen: a list of many objects, a watch catching up
/// over a thousand revisions. etcd itself sends up to 2 GiB.
const MAX_MESSAGE_BYTES: usize = 512 * 1024 * 1024;

/// How to reach etcd.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// Client URLs, e.g. `http://127.0.0.1:2379`; requests are balanced over all of them.
    pub endpoints: Vec<String>,
    /// CA certificate (PEM) that signed the etcd servers' certificates; enables TLS.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    /// Key of the client certificate (PEM).
    pub key_file: Option<PathBuf>,
    /// Prepended to every key, so that several stores (tests, clusters) can share one etcd.
    pub key_prefix: String,
    /// Upper bound for one store call, retries included; past it the call fails with
    /// [`Error::Unavailable`] instead of hanging.
    pub request_timeout: Duration,
}

impl EtcdOptions {
    /// Options for plain-HTTP endpoints, no key prefix, a 10 s request bound.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            ca_file: None,
            cert_file: None,
            key_file: None,
            key_prefix: String::new(),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The [`Store`] on an etcd v3 cluster.
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    prefix: String,
    /// For error messages: which datastore failed.
    endpoints: String,
    timeout: Duration,
    /// Kept to ask each member for its status separately.
    options: EtcdOptions,
    /// The highest revision this process knows to be compacted (by itself or learned from etcd).
    compacted: AtomicI64,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.inner.endpoints)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// How a failed etcd call is classified.
enum Failure {
    /// Below the compacted revision.
    Compacted,
    /// Above the current revision.
    Future,
    /// The request certainly did not reach the state machine (no connection, no leader), so it
    /// may be retried even if it writes.
    NotSent(String),
    /// etcd or the network failed; a write may or may not have happened.
    Unavailable(String),
    /// etcd rejected the request (too large, invalid, ...).
    Rejected(String),
}

fn classify(err: &etcd_client::Error) -> Failure {
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message();
            if message.contains(COMPACTED_MESSAGE) {
                return Failure::Compacted;
            }
            if message.contains(FUTURE_MESSAGE) {
                return Failure::Future;
            }
            let text = format!("{}: {message}", status.code());
            match status.code() {
                tonic::Code::Unavailable
                    if message.contains("no leader")
                        || message.contains("connect")
                        || message.contains("Connection refused") =>
                {
                    Failure::NotSent(text)
                }
                tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Unknown
                | tonic::Code::Cancelled
                | tonic::Code::Aborted
                | tonic::Code::Internal => Failure::Unavailable(text),
                _ => Failure::Rejected(text),
            }
        }
        etcd_client::Error::TransportError(e) => Failure::NotSent(e.to_string()),
        etcd_client::Error::IoError(e) => Failure::Unavailable(e.to_string()),
        other => Failure::Rejected(other.to_string()),
    }
}

/// The smallest key greater than every key starting with `prefix`; `[0]` means "no end".
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl EtcdStore {
    /// Connects to etcd and checks that it answers, so that a wrong endpoint fails at startup
    /// with a clear message rather than on the first request.
    pub async fn connect(options: EtcdOptions) -> Result<Self> {
        let endpoints = options.endpoints.join(",");
        if options.endpoints.is_empty() {
            return Err(Error::Unavailable {
                detail: "no etcd endpoint given".into(),
            });
        }
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            // Detects a dead member behind an idle watch stream; etcd refuses pings more often
            // than every 5 s (`--grpc-keepalive-min-time`).
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            // A member cut off from the quorum fails requests and watches at once, so the
            // balanced channel moves them to a member that has a leader.
            .with_require_leader(true);
        if options.ca_file.is_some() || options.cert_file.is_some() {
            connect = connect.with_tls(tls_options(&options)?);
        }
        let client = Client::connect(&options.endpoints, Some(connect))
            .await
            .map_err(|e| Error::Unavailable {
                detail: format!("etcd at {endpoints}: {e}"),
            })?;
        let store = Self {
            inner: Arc::new(Inner {
                client,
                prefix: options.key_prefix.clone(),
                endpoints,
                timeout: options.request_timeout,
                compacted: AtomicI64::new(0),
                options: options.clone(),
            }),
        };
        let revision = store.current_revision().await?;
        tracing::info!(endpoints = %store.inner.endpoints, revision, "connected to etcd");
        Ok(store)
    }

    /// The comma-separated endpoints, for messages.
    pub fn endpoints(&self) -> &str {
        &self.inner.endpoints
    }

    fn full_key(&self, key: &str) -> Result<Vec<u8>> {
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        Ok(format!("{}{key}", self.inner.prefix).into_bytes())
    }

    /// `[start, end)` of a prefix range in etcd's key space.
    fn prefix_range(&self, prefix: &str) -> (Vec<u8>, Vec<u8>) {
        let full = format!("{}{prefix}", self.inner.prefix).into_bytes();
        if full.is_empty() {
            (vec![0], vec![0])
        } else {
            let end = prefix_end(&full);
            (full, end)
        }
    }

    fn kv_client(&self) -> etcd_client::KvClient {
        self.inner
            .client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn unavailable(&self, detail: impl std::fmt::Display) -> Error {
        Error::Unavailable {
            detail: format!("etcd at {}: {detail}", self.inner.endpoints),
        }
    }

    /// Runs `call` until it succeeds, fails for good, or the request bound passes. Failures that
    /// leave the outcome unknown are retried only when `idempotent` (reads); a write is retried
    /// only when it certainly did not reach etcd.
    async fn call<T, F, Fut>(&self, idempotent: bool, mut call: F) -> Result<T, CallError>
    where
        F: FnMut(etcd_client::KvClient) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.inner.timeout;
        let mut backoff = Duration::from_millis(50);
        loop {
            let attempt = tokio::time::timeout_at(deadline, call(self.kv_client())).await;
            let err = match attempt {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) => err,
                Err(_) => {
                    return Err(CallError::Store(self.unavailable(format_args!(
                        "no answer within {:?}",
                        self.inner.timeout
                    ))));
                }
            };
            let retry = match classify(&err) {
                Failure::Compacted => return Err(CallError::Compacted),
                Failure::Future => return Err(CallError::Future),
                Failure::Rejected(text) => {
                    return Err(CallError::Store(Error::Backend {
                        detail: format!("etcd at {}: {text}", self.inner.endpoints),
                    }));
                }
                Failure::NotSent(text) => Some(text),
                Failure::Unavailable(text) if idempotent => Some(text),
                Failure::Unavailable(text) => {
                    return Err(CallError::Store(self.unavailable(text)));
                }
            };
            let text = retry.unwrap_or_default();
            if tokio::time::Instant::now() + backoff >= deadline {
                return Err(CallError::Store(self.unavailable(format_args!(
                    "{text} (gave up after {:?})",
                    self.inner.timeout
                ))));
            }
            tracing::debug!(error = %text, ?backoff, "etcd call failed, retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(1000));
        }
    }

    fn convert(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        let key = kv
            .key()
            .strip_prefix(self.inner.prefix.as_bytes())
            .ok_or_else(|| Error::Corrupt {
                detail: format!("etcd returned a key outside prefix {:?}", self.inner.prefix),
            })?;
        let key = String::from_utf8(key.to_vec()).map_err(|_| Error::Corrupt {
            detail: format!("etcd key {key:?} is not UTF-8"),
        })?;
        Ok(KeyValue {
            key,
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            version: kv.version(),
        })
    }

    /// The current revision, for a FutureRevision error.
    async fn future_error(&self, requested: Revision) -> Error {
        match self.current_revision_inner().await {
            Ok(current) => Error::FutureRevision { requested, current },
            Err(e) => e,
        }
    }

    /// A Compacted error carrying etcd's actual compacted revision.
    async fn compacted_error(&self, requested: Revision) -> Error {
        match self.learn_compacted().await {
            Ok(compacted) => Error::Compacted {
                requested,
                compacted,
            },
            Err(e) => e,
        }
    }

    async fn current_revision_inner(&self) -> Result<Revision> {
        // A single-key, count-only read is the cheapest linearizable request that returns the
        // header revision.
        let key = format!("{}\0", self.inner.prefix).into_bytes();
        let response = self
            .call(true, |mut kv| {
                let key = key.clone();
                async move { kv.get(key, Some(GetOptions::new().with_count_only())).await }
            })
            .await
            .map_err(|e| e.into_error(0))?;
        Ok(header_revision(response.header()))
    }

    /// etcd does not report its compacted revision directly, but a watch from revision 1 is
    /// cancelled with it (`compact_revision`). Only called once a read proved that something
    /// above revision 1 was compacted, so the cancel is certain to come.
    async fn learn_compacted(&self) -> Result<Revision> {
        let revision = watch::probe_compacted(self).await?;
        self.inner.compacted.fetch_max(revision, Ordering::SeqCst);
        Ok(self.inner.compacted.load(Ordering::SeqCst))
    }

    /// Whether reading at `revision` is below the compacted revision. `Ok(false)` also for
    /// future revisions.
    async fn is_compacted(&self, revision: Revision) -> Result<bool> {
        let key = format!("{}\0", self.inner.prefix).into_bytes();
        let result = self
            .call(true, |mut kv| {
                let key = key.clone();
                async move {
                    kv.get(
                        key,
                        Some(GetOptions::new().with_count_only().with_revision(revision)),
                    )
                    .await
                }
            })
            .await;
        match result {
            Ok(_) | Err(CallError::Future) => Ok(false),
            Err(CallError::Compacted) => Ok(true),
            Err(CallError::Store(e)) => Err(e),
        }
    }

    /// A transaction `if exists [and mod_revision == expected] then op else get`.
    async fn guarded(
        &self,
        key: &str,
        expected: Option<Revision>,
        then: TxnOp,
    ) -> Result<std::result::Result<(TxnOpResponse, Revision), Option<KeyValue>>> {
        let full = self.full_key(key)?;
        let mut compares = vec![Compare::create_revision(
            full.clone(),
            CompareOp::Greater,
            0,
        )];
        if let Some(expected) = expected {
            compares.push(Compare::mod_revision(
                full.clone(),
                CompareOp::Equal,
                expected,
            ));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then(vec![then])
            .or_else(vec![TxnOp::get(full, None)]);
        let response = self
            .call(false, |mut kv| {
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await
            .map_err(|e| e.into_error(0))?;
        let revision = header_revision(response.header());
        let first = response.op_responses().into_iter().next();
        if response.succeeded() {
            let op = first.ok_or_else(|| self.unexpected("a transaction without a response"))?;
            Ok(Ok((op, revision)))
        } else {
            let current = match first {
                Some(TxnOpResponse::Get(get)) => match get.kvs().first() {
                    Some(kv) => Some(self.convert(kv)?),
                    None => None,
                },
                _ => None,
            };
            Ok(Err(current))
        }
    }

    fn unexpected(&self, what: &str) -> Error {
        Error::Backend {
            detail: format!("etcd at {}: {what}", self.inner.endpoints),
        }
    }
}

/// A failed call, before the revision-specific errors get their numbers.
enum CallError {
    Compacted,
    Future,
    Store(Error),
}

impl CallError {
    /// For calls that cannot see revision errors: turn them into a backend error.
    fn into_error(self, requested: Revision) -> Error {
        match self {
            Self::Store(e) => e,
            Self::Compacted => Error::Compacted {
                requested,
                compacted: requested,
            },
            Self::Future => Error::FutureRevision {
                requested,
                current: requested,
            },
        }
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map_or(FIRST_REVISION, etcd_client::ResponseHeader::revision)
}

fn read_file(path: &PathBuf, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Unavailable {
        detail: format!("cannot read the etcd {what} {}: {e}", path.display()),
    })
}

fn tls_options(options: &EtcdOptions) -> Result<TlsOptions> {
    let mut tls = TlsOptions::new();
    if let Some(ca) = &options.ca_file {
        tls = tls.ca_certificate(Certificate::from_pem(read_file(ca, "CA file")?));
    }
    match (&options.cert_file, &options.key_file) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(
                read_file(cert, "certificate file")?,
                read_file(key, "key file")?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(Error::Unavailable {
                detail: "the etcd client certificate and key must be given together".into(),
            });
        }
    }
    Ok(tls)
}

impl EtcdStore {
    /// One member's answer to Maintenance/Status, through a connection to it alone.
    async fn member_status(&self, endpoint: &str) -> crate::MemberStatus {
        let mut member = crate::MemberStatus {
            endpoint: endpoint.to_string(),
            ..crate::MemberStatus::default()
        };
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(2));
        let options = &self.inner.options;
        if options.ca_file.is_some() || options.cert_file.is_some() {
            match tls_options(options) {
                Ok(tls) => connect = connect.with_tls(tls),
                Err(e) => {
                    member.error = Some(e.to_string());
                    return member;
                }
            }
        }
        let answer = async {
            let mut client = Client::connect([endpoint], Some(connect)).await?;
            client.status().await
        };
        match tokio::time::timeout(Duration::from_secs(3), answer).await {
            Ok(Ok(status)) => {
                member.healthy = true;
                member.leader = status
                    .header()
                    .is_some_and(|h| h.member_id() == status.leader());
                member.version = status.version().to_string();
                member.size_bytes = status.db_size().max(0) as u64;
            }
            Ok(Err(e)) => member.error = Some(e.to_string()),
            Err(_) => member.error = Some("no answer within 3s".into()),
        }
        member
    }
}

impl Store for EtcdStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<KeyValue>>> {
        Box::pin(async move {
            let full = self.full_key(key)?;
            let response = self
                .call(true, |mut kv| {
                    let full = full.clone();
                    async move { kv.get(full, None).await }
                })
                .await
                .map_err(|e| e.into_error(0))?;
            response
                .kvs()
                .first()
                .map(|kv| self.convert(kv))
                .transpose()
        })
    }

    fn range<'a>(
        &'a self,
        prefix: &'a str,
        options: RangeOptions,
    ) -> BoxFuture<'a, Result<RangeResult>> {
        Box::pin(async move {
            let (mut start, end) = self.prefix_range(prefix);
            if let Some(after) = &options.start_after {
                // The smallest key strictly after `after` is `after` followed by a zero byte.
                let mut next = format!("{}{after}", self.inner.prefix).into_bytes();
                next.push(0);
                if next > start {
                    start = next;
                }
            }
            let revision = options.revision.filter(|r| *r > 0);
            let mut get = GetOptions::new().with_range(end.clone());
            if let Some(limit) = options.limit.filter(|l| *l > 0) {
                get = get.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
            }
            if let Some(revision) = revision {
                get = get.with_revision(revision);
            }
            let empty = end != [0] && start >= end;
            if empty {
                // Nothing can match; etcd would reject the inverted range, so ask for one key
                // that cannot exist to still validate the revision.
                get = GetOptions::new().with_count_only();
                if let Some(revision) = revision {
                    get = get.with_revision(revision);
                }
                start = format!("{}\0", self.inner.prefix).into_bytes();
            }
            let result = self
                .call(true, |mut kv| {
                    let start = start.clone();
                    let get = get.clone();
                    async move { kv.get(start, Some(get)).await }
                })
                .await;
            let response = match result {
                Ok(response) => response,
                Err(CallError::Compacted) => {
                    return Err(self.compacted_error(revision.unwrap_or(0)).await);
                }
                Err(CallError::Future) => {
                    return Err(self.future_error(revision.unwrap_or(0)).await);
                }
                Err(CallError::Store(e)) => return Err(e),
            };
            let kvs = if empty {
                Vec::new()
            } else {
                response
                    .kvs()
                    .iter()
                    .map(|kv| self.convert(kv))
                    .collect::<Result<Vec<_>>>()?
            };
            Ok(RangeResult {
                kvs,
                revision: revision.unwrap_or_else(|| header_revision(response.header())),
                more: !empty && response.more(),
            })
        })
    }

    fn create<'a>(&'a self, key: &'a str, value: Bytes) -> BoxFuture<'a, Result<KeyValue>> {
        Box::pin(async move {
            let full = self.full_key(key)?;
            let txn = Txn::new()
                .when(vec![Compare::create_revision(
                    full.clone(),
                    CompareOp::Equal,
                    0,
                )])
                .and_then(vec![TxnOp::put(full, value.to_vec(), None)]);
            let response = self
                .call(false, |mut kv| {
                    let txn = txn.clone();
                    async move { kv.txn(txn).await }
                })
                .await
                .map_err(|e| e.into_error(0))?;
            if !response.succeeded() {
                return Err(Error::AlreadyExists {
                    key: key.to_owned(),
                });
            }
            let revision = header_revision(response.header());
            Ok(KeyValue {
                key: key.to_owned(),
                value,
                create_revision: revision,
                mod_revision: revision,
                version: 1,
            })
        })
    }

    fn update<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        expected_mod_revision: Option<Revision>,
    ) -> BoxFuture<'a, Result<KeyValue>> {
        Box::pin(async move {
            let full = self.full_key(key)?;
            let put = TxnOp::put(
                full,
                value.to_vec(),
                Some(etcd_client::PutOptions::new().with_prev_key()),
            );
            match self.guarded(key, expected_mod_revision, put).await? {
                Ok((TxnOpResponse::Put(put), revision)) => {
                    let prev = put
                        .prev_key()
                        .ok_or_else(|| self.unexpected("an update without the previous value"))?;
                    Ok(KeyValue {
                        key: key.to_owned(),
                        value,
                        create_revision: prev.create_revision(),
                        mod_revision: revision,
                        version: prev.version() + 1,
                    })
                }
                Ok(_) => Err(self.unexpected("a put answered with another operation")),
                Err(current) => Err(not_written(key, expected_mod_revision, current)),
            }
        })
    }

    fn delete<'a>(
        &'a self,
        key: &'a str,
        expected_mod_revision: Option<Revision>,
    ) -> BoxFuture<'a, Result<KeyValue>> {
        Box::pin(async move {
            let full = self.full_key(key)?;
            let delete = TxnOp::delete(
                full,
                Some(etcd_client::DeleteOptions::new().with_prev_key()),
            );
            match self.guarded(key, expected_mod_revision, delete).await? {
                Ok((TxnOpResponse::Delete(deleted), revision)) => {
                    let prev = deleted
                        .prev_kvs()
                        .first()
                        .ok_or_else(|| self.unexpected("a delete without the deleted value"))?;
                    let mut kv = self.convert(prev)?;
                    kv.mod_revision = revision;
                    Ok(kv)
                }
                Ok(_) => Err(self.unexpected("a delete answered with another operation")),
                Err(current) => Err(not_written(key, expected_mod_revision, current)),
            }
        })
    }

    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        from_revision: Revision,
    ) -> BoxFuture<'a, Result<WatchStream>> {
        Box::pin(watch::watch(self, prefix, from_revision))
    }

    fn current_revision(&self) -> BoxFuture<'_, Result<Revision>> {
        Box::pin(self.current_revision_inner())
    }

    fn status(&self) -> BoxFuture<'_, Result<crate::StoreStatus>> {
        Box::pin(async move {
            let prefix = format!("{}/", self.inner.prefix).into_bytes();
            let end = prefix_end(&prefix);
            let response = self
                .call(true, |mut kv| {
                    let prefix = prefix.clone();
                    let end = end.clone();
                    async move {
                        kv.get(
                            prefix,
                            Some(GetOptions::new().with_range(end).with_count_only()),
                        )
                        .await
                    }
                })
                .await
                .map_err(|e| e.into_error(0))?;
            let members = futures::future::join_all(
                self.inner
                    .options
                    .endpoints
                    .iter()
                    .map(|e| self.member_status(e)),
            )
            .await;
            Ok(crate::StoreStatus {
                backend: "etcd".into(),
                revision: header_revision(response.header()),
                compacted_revision: self.inner.compacted.load(Ordering::SeqCst),
                size_bytes: members.iter().map(|m| m.size_bytes).max(),
                keys: Some(response.count().max(0) as u64),
                members,
            })
        })
    }

    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let result = self
                .call(
                    true,
                    |mut kv| async move { kv.compact(revision, None).await },
                )
                .await;
            match result {
                Ok(_) => {
                    self.inner.compacted.fetch_max(revision, Ordering::SeqCst);
                    tracing::debug!(revision, "compacted etcd history");
                    Ok(())
                }
                Err(CallError::Compacted) => Err(self.compacted_error(revision).await),
                Err(CallError::Future) => Err(self.future_error(revision).await),
                Err(CallError::Store(e)) => Err(e),
            }
        })
    }

    /// etcd has no call that reports it; a read at revision 1 tells whether anything was
    /// compacted, and if so a watch from revision 1 is cancelled with the exact revision.
    fn compacted_revision(&self) -> BoxFuture<'_, Result<Revision>> {
        Box::pin(async move {
            if self.is_compacted(FIRST_REVISION).await? {
                self.learn_compacted().await
            } else {
                Ok(self.inner.compacted.load(Ordering::SeqCst))
            }
        })
    }
}

/// The error of a guarded write whose condition failed.
fn not_written(key: &str, expected: Option<Revision>, current: Option<KeyValue>) -> Error {
    match (expected, current) {
        (_, None) => Error::NotFound {
            key: key.to_owned(),
        },
        (Some(expected), Some(current)) => Error::Conflict {
            key: key.to_owned(),
            expected,
            current: Some(current),
        },
        // Exists and no expectation: the condition cannot fail; a concurrent delete and
        // re-create between the two reads of the transaction cannot happen inside it.
        (None, Some(_)) => Error::Backend {
            detail: format!("etcd refused an unconditional write to {key:?}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
