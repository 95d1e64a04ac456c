//! Forwarding of names outside the cluster zone to upstream resolvers: UDP first, TCP when the
//! UDP answer is truncated, the next upstream when one fails.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Why no upstream answered.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream resolvers are configured")]
    NoUpstreams,
    #[error("upstream {upstream}: {source}")]
    Io {
        upstream: SocketAddr,
        source: std::io::Error,
    },
    #[error("upstream {upstream} timed out")]
    Timeout { upstream: SocketAddr },
    #[error("upstream {upstream} sent a malformed answer: {message}")]
    Malformed {
        upstream: SocketAddr,
        message: String,
    },
}

/// The upstream resolvers and how long to wait for each.
#[derive(Clone, Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
}

/// EDNS payload size offered upstream (the DNS flag day 2020 value).
const UPSTREAM_PAYLOAD: u16 = 1232;

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration) -> Forwarder {
        Forwarder { upstreams, timeout }
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Resolve `name`/`qtype` recursively through the upstreams; the first answer wins,
    /// whatever its response code (NXDOMAIN from upstream is an answer, not a failure).
    pub async fn resolve(&self, name: &Name, qtype: RecordType) -> Result<Message, ForwardError> {
        let mut query = Message::query();
        query.add_query(Query::query(name.clone(), qtype));
        query.metadata.recursion_desired = true;
        let mut edns = Edns::new();
        edns.set_max_payload(UPSTREAM_PAYLOAD);
        query.set_edns(edns);
        let mut last = ForwardError::NoUpstreams;
        for upstream in &self.upstreams {
            match self.exchange(*upstream, &query).await {
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    tracing::debug!(%upstream, %name, error = %e, "upstream failed");
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn exchange(
        &self,
        upstream: SocketAddr,
        query: &Message,
    ) -> Result<Message, ForwardError> {
        let io = |source| ForwardError::Io { upstream, source };
        let bytes = query.to_vec().map_err(|e| ForwardError::Malformed {
            upstream,
            message: e.to_string(),
        })?;
        let answer = tokio::time::timeout(self.timeout, async {
            let bind: SocketAddr = if upstream.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                ([0u16; 8], 0).into()
            };
            let socket = UdpSocket::bind(bind).await.map_err(io)?;
            // A connected socket drops datagrams from anyone but the upstream.
            socket.connect(upstream).await.map_err(io)?;
            socket.send(&bytes).await.map_err(io)?;
            let mut buf = vec![0u8; 65535];
            loop {
                let n = socket.recv(&mut buf).await.map_err(io)?;
                match Message::from_vec(&buf[..n]) {
                    Ok(m) if m.metadata.id == query.metadata.id => return Ok(m),
                    // A stray or late answer to an earlier query: keep waiting.
                    _ => continue,
                }
            }
        })
        .await
        .map_err(|_| ForwardError::Timeout { upstream })??;
        if !answer.metadata.truncation {
            return Ok(answer);
        }
        tokio::time::timeout(
            self.timeout,
            self.exchange_tcp(upstream, &bytes, query.metadata.id),
        )
        .await
        .map_err(|_| ForwardError::Timeout { upstream })?
    }

    async fn exchange_tcp(
        &self,
        upstream: SocketAddr,
        bytes: &[u8],
        id: u16,
    ) -> Result<Message, ForwardError> {
        let io = |source| ForwardError::Io { upstream, source };
        let mut stream = TcpStream::connect(upstream).await.map_err(io)?;
        let len = u16::try_from(bytes.len()).map_err(|_| ForwardError::Malformed {
            upstream,
            message: "query too long".into(),
        })?;
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(bytes);
        stream.write_all(&framed).await.map_err(io)?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.map_err(io)?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).await.map_err(io)?;
        let answer = Message::from_vec(&buf).map_err(|e| ForwardError::Malformed {
            upstream,
            message: e.to_string(),
        })?;
        if answer.metadata.id != id {
            return Err(ForwardError::Malformed {
                upstream,
                message: "answer id does not match the query".into(),
            });
        }
        Ok(answer)
    }
}
