//! Cluster DNS against a real `skiff server`: records follow Services, EndpointSlices and Pods
//! written through the API, and outside names reach an upstream resolver run by the test.
//!
//! Needs the server binary: `cargo build -p skiff` (or `SKIFF_BIN=/path/to/skiff`).

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use skiff_dns::DnsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

/// A `skiff server --disable-agent` in a temp dir, killed on drop.
struct SkiffServer {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for SkiffServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn skiff_bin() -> PathBuf {
    std::env::var_os("SKIFF_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/skiff")
        })
}

impl SkiffServer {
    fn start() -> SkiffServer {
        let bin = skiff_bin();
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build -p skiff` first",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log");
        let mut child = Command::new(bin)
            .args([
                "server",
                "--disable-agent",
                "--https-listen-port",
                "0",
                "--data-dir",
            ])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn skiff server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let server = SkiffServer { child, dir };
        assert!(
            line.contains("skiff server ready"),
            "server did not start: {line:?}"
        );
        server
    }

    async fn client(&self) -> Client {
        let raw = kube::config::Kubeconfig::read_from(self.dir.path().join("kubeconfig.yaml"))
            .expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(raw, &Default::default())
            .await
            .expect("client config");
        Client::try_from(config).expect("client")
    }
}

/// A one-name upstream resolver: `outside.example.` A 192.0.2.7, NXDOMAIN for the rest.
async fn fake_upstream(token: CancellationToken) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, peer) = tokio::select! {
                r = socket.recv_from(&mut buf) => match r { Ok(x) => x, Err(_) => return },
                () = token.cancelled() => return,
            };
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
            reply.metadata.recursion_available = true;
            reply.add_queries(query.queries.clone());
            let q = &query.queries[0];
            if q.name().to_ascii() == "outside.example." && q.query_type() == RecordType::A {
                reply.add_answer(Record::from_rdata(
                    q.name().clone(),
                    300,
                    RData::A(A("192.0.2.7".parse().expect("ip"))),
                ));
            } else {
                reply.metadata.response_code = ResponseCode::NXDomain;
            }
            let _ = socket.send_to(&reply.to_vec().expect("encode"), peer).await;
        }
    });
    addr
}

fn query_message(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    m.metadata.recursion_desired = true;
    m
}

async fn ask_udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let q = query_message(name, qtype);
    socket
        .send_to(&q.to_vec().expect("encode"), server)
        .await
        .expect("send");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .expect("no answer within 5 s")
        .expect("recv");
    let m = Message::from_vec(&buf[..n]).expect("decode");
    assert_eq!(m.metadata.id, q.metadata.id);
    m
}

async fn ask_tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let mut stream = TcpStream::connect(server).await.expect("connect");
    let bytes = query_message(name, qtype).to_vec().expect("encode");
    let mut framed = u16::try_from(bytes.len())
        .expect("len")
        .to_be_bytes()
        .to_vec();
    framed.extend(bytes);
    stream.write_all(&framed).await.expect("write");
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.expect("len");
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await.expect("body");
    Message::from_vec(&buf).expect("decode")
}

fn answers(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
    v.sort();
    v
}

/// Ask until `ok` holds for the answer, or panic after `limit`.
async fn until(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    limit: Duration,
    ok: impl Fn(&Message) -> bool,
) -> Message {
    let start = Instant::now();
    loop {
        let m = ask_udp(server, name, qtype).await;
        if ok(&m) {
            return m;
        }
        assert!(
            start.elapsed() < limit,
            "{name} {qtype}: still {:?} {:?} after {limit:?}",
            m.metadata.response_code,
            answers(&m)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_dns_follows_the_api_and_forwards_the_rest() {
    let skiff = SkiffServer::start();
    let client = skiff.client().await;
    let token = CancellationToken::new();
    let _stop = token.clone().drop_guard();
    let upstream = fake_upstream(token.clone()).await;
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = DnsConfig::new(vec![listen], "cluster.local", vec![upstream]);
    let dns = tokio::spawn(skiff_dns::run(client.clone(), config, token.clone()));

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let web = services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "web"},
                "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
            }))
            .expect("service"),
        )
        .await
        .expect("create web");
    let web_ip: IpAddr = web
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("allocated cluster IP")
        .parse()
        .expect("ip");
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "db"},
                "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}
            }))
            .expect("service"),
        )
        .await
        .expect("create db");
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "ext"},
                "spec": {"type": "ExternalName", "externalName": "outside.example"}
            }))
            .expect("service"),
        )
        .await
        .expect("create ext");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    slices
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "db-1", "labels": {"kubernetes.io/service-name": "db"}},
                "addressType": "IPv4",
                "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
                "endpoints": [
                    {"addresses": ["10.244.1.10"], "hostname": "db-0", "conditions": {"ready": true}},
                    {"addresses": ["10.244.1.11"], "hostname": "db-1", "conditions": {"ready": true}},
                    {"addresses": ["10.244.1.12"], "hostname": "db-2", "conditions": {"ready": false}}
                ]
            }))
            .expect("slice"),
        )
        .await
        .expect("create slice");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "client"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}
        }))
        .expect("pod"),
    )
    .await
    .expect("create pod");
    // Play kubelet: the pod got an IP.
    pods.patch_status(
        "client",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "podIP": "10.244.1.7",
                                        "podIPs": [{"ip": "10.244.1.7"}]}})),
    )
    .await
    .expect("pod status");

    let limit = Duration::from_secs(10);
    let m = until(
        listen,
        "web.default.svc.cluster.local.",
        RecordType::A,
        limit,
        |m| !m.answers.is_empty(),
    )
    .await;
    assert_eq!(answers(&m), [web_ip.to_string()]);
    assert!(m.metadata.authoritative);
    assert_eq!(m.answers[0].ttl, 5);

    let m = until(
        listen,
        "db.default.svc.cluster.local.",
        RecordType::A,
        limit,
        |m| m.answers.len() == 2,
    )
    .await;
    assert_eq!(answers(&m), ["10.244.1.10", "10.244.1.11"]);

    let m = ask_udp(
        listen,
        "_pg._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(
        answers(&m),
        [
            "0 50 5432 db-0.db.default.svc.cluster.local.",
            "0 50 5432 db-1.db.default.svc.cluster.local."
        ]
    );
    let m = ask_udp(
        listen,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(answers(&m), ["0 100 80 web.default.svc.cluster.local."]);
    let m = ask_udp(listen, "db-1.db.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(answers(&m), ["10.244.1.11"]);

    let m = until(
        listen,
        "10-244-1-7.default.pod.cluster.local.",
        RecordType::A,
        limit,
        |m| !m.answers.is_empty(),
    )
    .await;
    assert_eq!(answers(&m), ["10.244.1.7"]);

    let m = ask_udp(listen, "missing.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.authorities.len(), 1, "SOA in the authority section");

    // TCP serves the same zone.
    let m = ask_tcp(listen, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(answers(&m), [web_ip.to_string()]);

    // Outside names go to the upstream; its NXDOMAIN comes back as is.
    let m = ask_udp(listen, "outside.example.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answers(&m), ["192.0.2.7"]);
    let m = ask_udp(listen, "nothing.example.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    // ExternalName: the CNAME, then the target's records from upstream.
    let m = ask_udp(listen, "ext.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(answers(&m), ["192.0.2.7", "outside.example."]);

    // PTR for the service IP, AAAA of an IPv4 service is NODATA with the SOA.
    let IpAddr::V4(v4) = web_ip else {
        panic!("IPv4 cluster IP expected")
    };
    let [a, b, c, d] = v4.octets();
    let m = ask_udp(
        listen,
        &format!("{d}.{c}.{b}.{a}.in-addr.arpa."),
        RecordType::PTR,
    )
    .await;
    assert_eq!(answers(&m), ["web.default.svc.cluster.local."]);
    let m = ask_udp(listen, "web.default.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities.len(), 1);

    // A deleted Service disappears from DNS.
    services
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete web");
    let deleted = Instant::now();
    until(
        listen,
        "web.default.svc.cluster.local.",
        RecordType::A,
        limit,
        |m| m.metadata.response_code == ResponseCode::NXDomain,
    )
    .await;
    eprintln!("service delete → NXDOMAIN after {:?}", deleted.elapsed());

    token.cancel();
    dns.await.expect("join").expect("dns server");
}

#[tokio::test]
async fn forwarding_failure_is_servfail() {
    // An upstream that never answers (a bound socket nobody reads).
    let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let mut config = DnsConfig::new(
        vec![([127, 0, 0, 1], 0).into()],
        "cluster.local",
        vec![silent.local_addr().expect("addr")],
    );
    config.upstream_timeout = Duration::from_millis(200);
    let server = skiff_dns::DnsServer::bind(&config).await.expect("bind dns");
    let addr = server.local_addrs()[0];
    let m = ask_udp(addr, "outside.example.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    server.shutdown().await;
}

#[tokio::test]
async fn large_answers_truncate_over_udp_and_come_whole_over_tcp() {
    let config = DnsConfig::new(vec![([127, 0, 0, 1], 0).into()], "cluster.local", vec![]);
    let server = skiff_dns::DnsServer::bind(&config).await.expect("bind dns");
    let addr = server.local_addrs()[0];
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "big", "namespace": "default"},
        "spec": {"clusterIP": "None"}
    }))
    .expect("service");
    let endpoints: Vec<serde_json::Value> = (1..=100)
        .map(|i| json!({"addresses": [format!("10.244.0.{i}")]}))
        .collect();
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "big-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "big"}},
        "addressType": "IPv4",
        "endpoints": endpoints
    }))
    .expect("slice");
    server
        .snapshot_handle()
        .set(skiff_dns::Snapshot::build([&service], [&slice], [], 1));
    // 100 A records do not fit the 512 bytes of a client without EDNS.
    let udp = ask_udp(addr, "big.default.svc.cluster.local.", RecordType::A).await;
    assert!(udp.metadata.truncation, "UDP answer not truncated");
    assert!(udp.answers.len() < 100);
    let tcp = ask_tcp(addr, "big.default.svc.cluster.local.", RecordType::A).await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 100);
    server.shutdown().await;
}
