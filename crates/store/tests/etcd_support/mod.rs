//! A test harness that runs Debian's `etcd` (3.4) as child processes on free loopback ports in a
//! temporary directory: one node or a cluster. Dropping it stops every member (SIGTERM, then
//! SIGKILL after 5 s: the last member of a cluster can hang on SIGTERM), so no test leaves an etcd
//! behind, also when it fails.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh member or cluster may take to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a member gets to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// One etcd member process.
struct Member {
    name: String,
    client_url: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("etcd log file");
        let err = log.try_clone().expect("etcd log file");
        let child = Command::new("etcd")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("start etcd (apt-get install etcd-server)");
        self.child = Some(child);
    }

    fn terminate(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
    }

    /// Waits for the member to exit until `deadline`, then kills it.
    fn reap(&mut self, deadline: Instant) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// PEM files of an etcd that serves TLS and requires client certificates.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// A client certificate etcd accepts.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
}

/// Run `openssl` with `args` in `dir`, panicking with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a serving certificate for 127.0.0.1 and a client certificate, made with openssl.
fn make_tls(dir: &Path) -> (TlsFiles, PathBuf, PathBuf) {
    let key_args = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(key_args);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=etcd-test-ca",
    ]);
    openssl(dir, &ca);
    for (name, usage) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        let (key, csr, crt, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        std::fs::write(dir.join(&ext), usage).expect("ext file");
        let mut req = vec!["req"];
        req.extend(key_args);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=etcd-test"]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
    (
        TlsFiles {
            ca: dir.join("ca.crt"),
            cert: dir.join("client.crt"),
            key: dir.join("client.key"),
        },
        dir.join("server.crt"),
        dir.join("server.key"),
    )
}

/// A running etcd (single node or cluster); stopped on drop.
pub struct Etcd {
    members: Vec<Member>,
    /// Set when the members serve TLS with client-certificate authentication.
    tls: Option<TlsFiles>,
    /// Owns the data directories; removed after the members stopped (field order).
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Etcd {
    /// Starts a single-node etcd and waits until it is healthy.
    pub fn single() -> Self {
        Self::cluster(1)
    }

    /// Starts a single-node etcd serving `https://` that requires client certificates
    /// (`--client-cert-auth`); [`Etcd::tls`] has the files a client needs.
    pub fn single_tls() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (files, cert, key) = make_tls(dir.path());
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("https://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let args = vec![
            "--name=m0".to_owned(),
            format!("--data-dir={}", dir.path().join("m0.etcd").display()),
            "--logger=zap".to_owned(),
            "--log-level=warn".to_owned(),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=m0={peer_url}"),
            format!("--cert-file={}", cert.display()),
            format!("--key-file={}", key.display()),
            format!("--trusted-ca-file={}", files.ca.display()),
            "--client-cert-auth".to_owned(),
        ];
        let mut member = Member {
            log: dir.path().join("m0.log"),
            name: "m0".into(),
            client_url,
            args,
            child: None,
        };
        member.spawn();
        let etcd = Self {
            members: vec![member],
            tls: Some(files),
            dir,
        };
        etcd.wait_healthy(&etcd.endpoints());
        etcd
    }

    /// The client's TLS files, for an etcd from [`Etcd::single_tls`].
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// Starts a `size`-member cluster on loopback and waits until every member is healthy.
    pub fn cluster(size: usize) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let initial = initial.join(",");
        let token = format!("skiff-test-{}", std::process::id());
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let name = format!("m{i}");
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let data_dir = dir.path().join(format!("{name}.etcd"));
            let args = vec![
                format!("--name={name}"),
                format!("--data-dir={}", data_dir.display()),
                "--logger=zap".to_owned(),
                "--log-level=warn".to_owned(),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster={initial}"),
                format!("--initial-cluster-token={token}"),
                "--initial-cluster-state=new".to_owned(),
            ];
            let mut member = Member {
                log: dir.path().join(format!("{name}.log")),
                name,
                client_url,
                args,
                child: None,
            };
            member.spawn();
            members.push(member);
        }
        let etcd = Self {
            members,
            tls: None,
            dir,
        };
        etcd.wait_healthy(&etcd.endpoints());
        etcd
    }

    /// The client URLs of the running members.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| m.client_url.clone())
            .collect()
    }

    /// The client URLs of every member, running or not (what a server is configured with).
    pub fn all_endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// The data directory of the harness (logs: `m<i>.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Waits (bounded) until `etcdctl endpoint health` passes for `endpoints`.
    pub fn wait_healthy(&self, endpoints: &[String]) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let mut etcdctl = Command::new("etcdctl");
            if let Some(tls) = &self.tls {
                etcdctl
                    .arg(format!("--cacert={}", tls.ca.display()))
                    .arg(format!("--cert={}", tls.cert.display()))
                    .arg(format!("--key={}", tls.key.display()));
            }
            let ok = etcdctl
                .arg(format!("--endpoints={}", endpoints.join(",")))
                .args(["--command-timeout=2s", "endpoint", "health"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd {endpoints:?} not healthy within {START_TIMEOUT:?}; logs in {}",
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The index of the current leader, from `etcdctl endpoint status`.
    pub fn leader(&self) -> Option<usize> {
        for (i, member) in self.members.iter().enumerate() {
            if member.child.is_none() {
                continue;
            }
            let output = Command::new("etcdctl")
                .arg(format!("--endpoints={}", member.client_url))
                .args(["--command-timeout=2s", "endpoint", "status", "-w", "json"])
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&output.stdout);
            // `"member_id":X ... "leader":Y`: the member is the leader when both are equal.
            let field = |name: &str| -> Option<String> {
                let start = text.find(&format!("\"{name}\":"))? + name.len() + 3;
                let rest = &text[start..];
                let end = rest.find([',', '}'])?;
                Some(rest[..end].to_owned())
            };
            if let (Some(id), Some(leader)) = (field("member_id"), field("leader"))
                && id == leader
            {
                return Some(i);
            }
        }
        None
    }

    /// Kills member `index` with SIGKILL.
    pub fn kill9(&mut self, index: usize) {
        self.members[index].kill9();
    }

    /// Restarts a stopped member with its data directory and waits until it is healthy.
    pub fn restart(&mut self, index: usize) {
        let member = &mut self.members[index];
        assert!(member.child.is_none(), "member {} is running", member.name);
        member.spawn();
        let url = member.client_url.clone();
        self.wait_healthy(&[url]);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // Members first, the data directory after (the TempDir field drops later).
        for member in &self.members {
            member.terminate();
        }
        let deadline = Instant::now() + STOP_GRACE;
        for member in &mut self.members {
            member.reap(deadline);
        }
    }
}
