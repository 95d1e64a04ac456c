//! The DNS server: hickory-server's UDP/TCP listeners around a handler that answers the cluster
//! zone from the current [`Snapshot`] and forwards everything else.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Edns, Metadata, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};

use crate::authority::{Authority, Outcome, Response};
use crate::forward::Forwarder;
use crate::snapshot::Snapshot;
use crate::{DnsConfig, Error};

/// How long a TCP client may stay idle between queries.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The shared state queries read and the watch loop replaces.
struct State {
    snapshot: RwLock<Arc<Snapshot>>,
    /// False until the first full list of every watched kind: cluster names get SERVFAIL
    /// rather than a wrong NXDOMAIN before then.
    synced: std::sync::atomic::AtomicBool,
    authority: Authority,
    forwarder: Forwarder,
}

/// A handle to replace the snapshot the server answers from.
#[derive(Clone)]
pub struct SnapshotHandle(Arc<State>);

impl SnapshotHandle {
    /// Answer from `snapshot` from now on (and consider the caches synced).
    pub fn set(&self, snapshot: Snapshot) {
        let fresh = Arc::new(snapshot);
        match self.0.snapshot.write() {
            Ok(mut guard) => *guard = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        self.0
            .synced
            .store(true, std::sync::atomic::Ordering::Release);
    }

    fn current(&self) -> Arc<Snapshot> {
        current(&self.0)
    }
}

fn current(state: &State) -> Arc<Snapshot> {
    match state.snapshot.read() {
        Ok(guard) => guard.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

struct Handler(Arc<State>);

/// The records of one reply, whoever produced them.
struct Reply {
    code: ResponseCode,
    authoritative: bool,
    answers: Vec<Record>,
    authority: Vec<Record>,
    additionals: Vec<Record>,
}

impl Reply {
    fn servfail() -> Reply {
        Reply {
            code: ResponseCode::ServFail,
            authoritative: false,
            answers: Vec::new(),
            authority: Vec::new(),
            additionals: Vec::new(),
        }
    }
}

impl Handler {
    async fn forward(&self, name: &Name, qtype: RecordType) -> Reply {
        match self.0.forwarder.resolve(name, qtype).await {
            Ok(m) => Reply {
                code: m.metadata.response_code,
                authoritative: false,
                answers: m.answers,
                authority: m.authorities,
                additionals: m.additionals,
            },
            Err(error) => {
                tracing::warn!(%name, ?qtype, %error, "forwarding failed");
                Reply::servfail()
            }
        }
    }

    async fn reply(&self, name: &Name, qtype: RecordType) -> Reply {
        let state = &self.0;
        let synced = state.synced.load(std::sync::atomic::Ordering::Acquire);
        let snapshot = current(state);
        match state.authority.lookup(&snapshot, name, qtype) {
            Outcome::Forward => self.forward(name, qtype).await,
            Outcome::Answer(_) if !synced => Reply::servfail(),
            Outcome::Answer(Response {
                code,
                mut answers,
                authority,
                additionals,
                chase,
            }) => {
                if let Some(target) = chase {
                    let more = self.forward(&target, qtype).await;
                    answers.extend(more.answers);
                }
                Reply {
                    code,
                    authoritative: true,
                    answers,
                    authority,
                    additionals,
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut edns = Edns::new();
        let mut builder = builder;
        if let Some(req) = request.edns.as_ref() {
            edns.set_max_payload(req.max_payload().max(512));
            builder.edns(&edns);
        }
        let reply = match request.request_info() {
            Ok(info) => {
                let name: Name = info.query.original().name().clone();
                self.reply(&name, info.query.query_type()).await
            }
            Err(_) => Reply {
                code: ResponseCode::FormErr,
                ..Reply::servfail()
            },
        };
        metadata.response_code = reply.code;
        metadata.authoritative = reply.authoritative;
        let response = builder.build(
            metadata,
            reply.answers.iter(),
            reply.authority.iter(),
            std::iter::empty(),
            reply.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(%error, "sending a DNS response failed");
                let mut header = hickory_proto::op::Header {
                    metadata,
                    counts: Default::default(),
                };
                header.metadata.response_code = ResponseCode::ServFail;
                header.into()
            }
        }
    }
}

/// A bound, serving DNS server.
pub struct DnsServer {
    server: Server<Handler>,
    handle: SnapshotHandle,
    addrs: Vec<SocketAddr>,
}

impl DnsServer {
    /// Bind UDP and TCP on every listen address (TCP on the port UDP got when the port is 0)
    /// and start serving from an empty, not yet synced snapshot.
    pub async fn bind(config: &DnsConfig) -> Result<DnsServer, Error> {
        let state = Arc::new(State {
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            synced: std::sync::atomic::AtomicBool::new(false),
            authority: Authority::new(&config.domain, config.ttl),
            forwarder: Forwarder::new(config.upstreams.clone(), config.upstream_timeout),
        });
        let mut server = Server::new(Handler(state.clone()));
        let mut addrs = Vec::new();
        for listen in &config.listen {
            let udp = UdpSocket::bind(listen)
                .await
                .map_err(|source| Error::Bind {
                    addr: *listen,
                    source,
                })?;
            let addr = udp.local_addr().map_err(|source| Error::Bind {
                addr: *listen,
                source,
            })?;
            let tcp = TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, source })?;
            server.register_socket(udp);
            server.register_listener(tcp, TCP_IDLE, 64);
            tracing::info!(%addr, domain = %config.domain, "cluster DNS listening (udp+tcp)");
            addrs.push(addr);
        }
        Ok(DnsServer {
            server,
            handle: SnapshotHandle(state),
            addrs,
        })
    }

    /// The bound addresses (UDP and TCP share each).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The handle the watch loop (or a test) feeds snapshots through.
    pub fn snapshot_handle(&self) -> SnapshotHandle {
        self.handle.clone()
    }

    /// The snapshot being served.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.handle.current()
    }

    /// Stop the listeners and wait for in-flight queries.
    pub async fn shutdown(mut self) {
        if let Err(error) = self.server.shutdown_gracefully().await {
            tracing::debug!(%error, "DNS server shutdown");
        }
    }
}
