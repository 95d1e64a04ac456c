//! A real `skiff server` process for scenario tests, and the real kubectl to drive it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod cluster;
pub mod netns_host;

#[path = "../../../store/tests/etcd_support/mod.rs"]
pub mod etcd_support;

/// The pinned kubectl binaries the scenarios use.
pub const KUBECTL_132: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32";
pub const KUBECTL_133: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

/// A running server with its own data dir, killed when dropped.
pub struct Server {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub kubeconfig: PathBuf,
    stderr_log: PathBuf,
    /// With `SKIFF_TEST_DATASTORE=etcd`, the server's own etcd (stopped after the server).
    etcd: Option<etcd_support::Etcd>,
}

impl Server {
    /// Start `skiff server` on a free port in a fresh data dir.
    pub fn start() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir)
    }

    /// Start `skiff server` on a free port in `dir` (reused across restarts).
    pub fn start_in(dir: tempfile::TempDir) -> Server {
        Self::start_in_with(dir, &[])
    }

    /// Stop the server (SIGKILL) and hand back its data dir.
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"))
    }

    /// A kubectl of `binary` with a fresh discovery cache.
    pub fn kubectl(&self, binary: &str) -> Kubectl {
        let cache = self.dir.path().join(format!(
            "cache-{}",
            binary.rsplit('.').next().unwrap_or("x")
        ));
        Kubectl {
            binary: binary.to_string(),
            kubeconfig: self.kubeconfig.clone(),
            cache,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One pinned kubectl pointed at a server.
pub struct Kubectl {
    pub binary: String,
    pub kubeconfig: PathBuf,
    pub cache: PathBuf,
}

/// What a kubectl run printed.
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Kubectl {
    fn command(&self, args: &[&str]) -> Command {
        assert!(
            Path::new(&self.binary).exists(),
            "{} is missing: these tests need the real kubectl",
            self.binary
        );
        let mut c = Command::new(&self.binary);
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache);
        c.args(args);
        c
    }

    /// Run and return whatever happened.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run kubectl"))
    }

    /// Run with extra environment variables.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        Run::from(c.output().expect("run kubectl"))
    }

    /// Run with `stdin` piped in.
    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        Run::from(child.wait_with_output().expect("kubectl output"))
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(
            r.status, 0,
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            r.stdout, r.stderr
        );
        r.stdout
    }

    /// Run with stdin and require success.
    pub fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        let r = self.run_stdin(args, stdin);
        assert_eq!(
            r.status, 0,
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            r.stdout, r.stderr
        );
        r.stdout
    }

    /// Run and require failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_ne!(
            r.status, 0,
            "kubectl {args:?} unexpectedly succeeded:\n{}",
            r.stdout
        );
        r.stderr
    }

    /// Spawn a long-running kubectl (e.g. `get -w`), output to files.
    pub fn spawn(&self, args: &[&str], out: &Path) -> Child {
        let f = std::fs::File::create(out).expect("output file");
        self.command(args)
            .stdout(f)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kubectl")
    }
}

/// Poll `f` until it returns `Some`, or panic after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Server {
    /// Start `skiff server` on a free port in a fresh data dir, with `extra` server flags.
    pub fn start_with(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in_with(dir, extra)
    }

    /// Start `skiff server` in `dir` with `extra` flags (the flag-less form is `start_in`).
    pub fn start_in_with(dir: tempfile::TempDir, extra: &[&str]) -> Server {
        let stderr_log = dir.path().join("server.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_log)
            .expect("log file");
        // `SKIFF_TEST_DATASTORE=etcd` runs the same scenarios on a fresh etcd per server.
        let etcd = (std::env::var("SKIFF_TEST_DATASTORE").as_deref() == Ok("etcd")
            && !extra.contains(&"--datastore-endpoint"))
        .then(etcd_support::Etcd::single);
        let endpoints: Vec<String> = etcd
            .iter()
            .flat_map(|e| ["--datastore-endpoint".to_string(), e.endpoints().join(",")])
            .collect();
        let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args([
                "server",
                "--disable-agent",
                "--https-listen-port",
                "0",
                "--data-dir",
            ])
            .arg(dir.path())
            .args(extra)
            .args(&endpoints)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn skiff server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let port = line
            .split("https://127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&stderr_log).unwrap_or_default();
            panic!("server with {extra:?} did not become ready: {line:?}\n{log}")
        };
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        if etcd.is_some() {
            let log = std::fs::read_to_string(&stderr_log).unwrap_or_default();
            assert!(log.contains("connected to etcd"), "not on etcd:\n{log}");
        }
        Server {
            child,
            dir,
            port,
            kubeconfig,
            stderr_log,
            etcd,
        }
    }
}

/// The admin credentials of a server's kubeconfig as PEM files, for raw HTTPS clients (curl).
pub struct Credentials {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub base: String,
}

impl Server {
    /// Extract the CA, client certificate and key from the kubeconfig into files.
    pub fn credentials(&self) -> Credentials {
        let text = std::fs::read_to_string(&self.kubeconfig).expect("read kubeconfig");
        let field = |name: &str| -> Vec<u8> {
            let b64 = text
                .lines()
                .find_map(|l| l.trim().strip_prefix(&format!("{name}:")))
                .unwrap_or_else(|| panic!("kubeconfig has no {name}"))
                .trim()
                .trim_matches('"');
            decode_base64(b64)
        };
        let write = |file: &str, data: Vec<u8>| {
            let p = self.dir.path().join(file);
            std::fs::write(&p, data).expect("write credential");
            p
        };
        Credentials {
            ca: write("ca.pem", field("certificate-authority-data")),
            cert: write("client.pem", field("client-certificate-data")),
            key: write("client-key.pem", field("client-key-data")),
            base: format!("https://127.0.0.1:{}", self.port),
        }
    }
}

fn decode_base64(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let Some(v) = ALPHABET.iter().position(|a| *a == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// What a raw HTTP request returned.
#[derive(Debug)]
pub struct HttpReply {
    pub code: u16,
    pub headers: String,
    pub body: String,
}

impl HttpReply {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// The body as a Status, checked for shape: kind, code, reason and message.
    pub fn status(&self, code: u16, reason: &str) -> serde_json::Value {
        assert_eq!(self.code, code, "HTTP code; body: {}", self.body);
        let s = self.json();
        assert_eq!(s["kind"], "Status", "{s}");
        assert_eq!(s["status"], "Failure", "{s}");
        assert_eq!(s["code"], code, "{s}");
        assert_eq!(s["reason"], reason, "{s}");
        s
    }
}

impl Credentials {
    /// One request with curl: `method` on `path` (with query), optional body and content type.
    /// `with_cert = false` leaves the client certificate out.
    pub fn request_as(
        &self,
        with_cert: bool,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> HttpReply {
        let dir = tempfile::tempdir().expect("temp dir");
        let header_file = dir.path().join("headers");
        let body_file = dir.path().join("body");
        let mut c = Command::new("curl");
        // HTTP/1.1: curl 7.88 fails a transfer whose HTTP/2 stream the server resets after a
        // complete early response (an error before the body was read, RFC 9113 §8.1), which Go
        // clients accept; kubectl covers HTTP/2.
        c.args(["-s", "-S", "--http1.1", "--max-time", "60", "-o"])
            .arg(&body_file)
            .arg("-D")
            .arg(&header_file)
            .args(["-w", "%{http_code}", "-X", method, "--cacert"])
            .arg(&self.ca);
        if with_cert {
            c.arg("--cert").arg(&self.cert).arg("--key").arg(&self.key);
        }
        if let Some(ct) = content_type {
            c.args(["-H", &format!("Content-Type: {ct}")]);
        }
        if let Some(b) = body {
            let in_file = dir.path().join("in");
            std::fs::write(&in_file, b).expect("write request body");
            c.arg("--data-binary")
                .arg(format!("@{}", in_file.display()));
        }
        c.arg(format!("{}{path}", self.base));
        let out = c.output().expect("run curl (is it installed?)");
        let code_text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let code = code_text
            .parse()
            .ok()
            .filter(|c| *c != 0)
            .unwrap_or_else(|| {
                panic!(
                    "curl {method} {path}: no HTTP response ({code_text:?}): {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        HttpReply {
            code,
            headers: std::fs::read_to_string(&header_file).unwrap_or_default(),
            body: std::fs::read_to_string(&body_file).unwrap_or_default(),
        }
    }

    /// A request with the admin client certificate.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> HttpReply {
        self.request_as(true, method, path, content_type, body)
    }

    /// GET with the admin certificate.
    pub fn get(&self, path: &str) -> HttpReply {
        self.request("GET", path, None, None)
    }

    /// A JSON body request with the admin certificate.
    pub fn send_json(&self, method: &str, path: &str, body: &serde_json::Value) -> HttpReply {
        let ct = if method == "PATCH" {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        self.request(method, path, Some(ct), Some(body.to_string().as_bytes()))
    }
}

/// A `skiff hollow` process (simulated nodes) against `server`, killed when dropped.
pub struct Hollow(pub Child);

impl Hollow {
    /// Start `skiff hollow` with `args` and wait for its ready line.
    pub fn start(server: &Server, args: &[&str]) -> Hollow {
        let log_path = server.dir.path().join("hollow.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("hollow")
            .arg("--kubeconfig")
            .arg(&server.kubeconfig)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn skiff hollow");
        let stdout = child.stdout.take().expect("stdout");
        let mut guard = Hollow(child);
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read ready line");
        if !line.starts_with("skiff hollow ready") {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let _ = guard.0.kill();
            panic!("hollow nodes did not become ready: {line:?}\n{log}");
        }
        guard
    }
}

impl Drop for Hollow {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
