//! The network probe kinds beyond plain HTTP and TCP: gRPC probes (`grpc.health.v1.Health/Check`
//! on the pod IP) and the TLS client of `httpGet` probes with `scheme: HTTPS`, which, as the
//! kubelet's, does not verify the server's certificate.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::GRPCAction;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::probes::Failure;

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

/// `grpc.health.v1.HealthCheckResponse`; `status` is the ServingStatus enum.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// ServingStatus SERVING.
pub const SERVING: i32 = 1;

const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

fn serving_status_name(s: i32) -> &'static str {
    match s {
        0 => "UNKNOWN",
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "UNKNOWN",
    }
}

/// Run a gRPC probe against `host`: healthy only when the server answers SERVING for the
/// service named in `grpc.service` (empty: the server as a whole). Messages follow upstream's.
pub async fn grpc(host: &str, g: &GRPCAction, timeout: Duration) -> Result<(), Failure> {
    let addr = if host.contains(':') {
        format!("[{host}]:{}", g.port)
    } else {
        format!("{host}:{}", g.port)
    };
    let service = g.service.clone().unwrap_or_default();
    let connect_failed = |e: String| {
        Failure(format!(
            "timeout: failed to connect service {addr:?} within {}s: {e}",
            timeout.as_secs()
        ))
    };
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| connect_failed(e.to_string()))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent("kube-probe/1.33")
        .map_err(|e| connect_failed(e.to_string()))?;
    let channel = tokio::time::timeout(timeout, endpoint.connect())
        .await
        .map_err(|_| connect_failed("context deadline exceeded".into()))?
        .map_err(|e| connect_failed(e.to_string()))?;
    let mut client = tonic::client::Grpc::new(channel);
    let call = async {
        client
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        client
            .unary(
                tonic::Request::new(HealthCheckRequest { service }),
                http::uri::PathAndQuery::from_static(HEALTH_CHECK),
                tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default(),
            )
            .await
    };
    let deadline = || {
        Failure(format!(
            "timeout: health rpc did not complete within {}s",
            timeout.as_secs()
        ))
    };
    let resp = tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| deadline())?
        .map_err(|s| match s.code() {
            tonic::Code::Unimplemented => Failure(format!(
                "this server doesn't implement the grpc health protocol (grpc.health.v1.Health): {}",
                s.message()
            )),
            tonic::Code::DeadlineExceeded => deadline(),
            _ => Failure(format!(
                "error: health rpc probe failed: rpc error: code = {:?} desc = {}",
                s.code(),
                s.message()
            )),
        })?
        .into_inner();
    if resp.status == SERVING {
        Ok(())
    } else {
        Err(Failure(format!(
            "service unhealthy (responded with {:?})",
            serving_status_name(resp.status)
        )))
    }
}

/// Accepts any server certificate: probes check liveness, not identity (kubelet sets
/// InsecureSkipVerify too).
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS connector for HTTPS probes and hooks, without certificate verification.
pub fn insecure_tls() -> Result<tokio_rustls::TlsConnector, Failure> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The name the TLS handshake presents for `host` (an IP or a DNS name).
pub fn server_name(host: &str) -> Result<ServerName<'static>, Failure> {
    ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
    .map_err(|e| Failure(format!("invalid host {host:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicI32, Ordering};

    use super::*;

    /// A minimal grpc.health.v1 server whose answer the test sets; records service names.
    #[derive(Clone)]
    struct Health {
        status: Arc<AtomicI32>,
        asked: Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl tonic::server::UnaryService<HealthCheckRequest> for Health {
        type Response = HealthCheckResponse;
        type Future = std::pin::Pin<
            Box<
                dyn std::future::Future<
                        Output = Result<tonic::Response<HealthCheckResponse>, tonic::Status>,
                    > + Send,
            >,
        >;
        fn call(&mut self, r: tonic::Request<HealthCheckRequest>) -> Self::Future {
            let me = self.clone();
            Box::pin(async move {
                let service = r.into_inner().service;
                me.asked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(service.clone());
                if service == "missing" {
                    return Err(tonic::Status::not_found("unknown service"));
                }
                Ok(tonic::Response::new(HealthCheckResponse {
                    status: me.status.load(Ordering::Relaxed),
                }))
            })
        }
    }

    impl tower::Service<http::Request<tonic::body::Body>> for Health {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
        >;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Infallible>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
            let me = self.clone();
            Box::pin(async move {
                if req.uri().path() != HEALTH_CHECK {
                    return Ok(tonic::Status::unimplemented("no such method").into_http());
                }
                let codec =
                    tonic_prost::ProstCodec::<HealthCheckResponse, HealthCheckRequest>::default();
                Ok(tonic::server::Grpc::new(codec).unary(me, req).await)
            })
        }
    }

    impl tonic::server::NamedService for Health {
        const NAME: &'static str = "grpc.health.v1.Health";
    }

    async fn health_server(status: i32) -> (u16, Health) {
        let h = Health {
            status: Arc::new(AtomicI32::new(status)),
            asked: Arc::default(),
        };
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        let incoming = futures::stream::unfold(l, |l| async move {
            let r = l.accept().await.map(|(s, _)| s);
            Some((r, l))
        });
        let svc = h.clone();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(incoming),
        );
        (port, h)
    }

    fn action(port: u16, service: Option<&str>) -> GRPCAction {
        GRPCAction {
            port: i32::from(port),
            service: service.map(String::from),
        }
    }

    #[tokio::test]
    async fn grpc_probe_passes_only_when_serving_the_named_service() {
        let t = Duration::from_secs(2);
        let (port, h) = health_server(SERVING).await;
        grpc("127.0.0.1", &action(port, None), t)
            .await
            .expect("SERVING passes");
        grpc("127.0.0.1", &action(port, Some("app.v1")), t)
            .await
            .expect("named service");
        assert_eq!(
            *h.asked.lock().unwrap_or_else(|e| e.into_inner()),
            ["", "app.v1"]
        );
        h.status.store(2, Ordering::Relaxed);
        let e = grpc("127.0.0.1", &action(port, None), t)
            .await
            .expect_err("NOT_SERVING fails");
        assert_eq!(e.0, "service unhealthy (responded with \"NOT_SERVING\")");
        let e = grpc("127.0.0.1", &action(port, Some("missing")), t)
            .await
            .expect_err("unknown service fails");
        assert!(e.0.starts_with("error: health rpc probe failed"), "{}", e.0);
    }

    #[tokio::test]
    async fn grpc_probe_reports_a_closed_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        let e = grpc("127.0.0.1", &action(port, None), Duration::from_secs(1))
            .await
            .expect_err("nothing listens");
        assert!(
            e.0.starts_with(&format!(
                "timeout: failed to connect service \"127.0.0.1:{port}\" within 1s"
            )),
            "{}",
            e.0
        );
    }
}
