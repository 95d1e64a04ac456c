//! Joining a cluster with a token (`skiff agent --server URL --token-file F`), as k3s agents
//! do: fetch the server's CA without trusting anyone, check it against the hash in the token,
//! then trade the token for this node's client certificate and keep it as a kubeconfig.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use base64::Engine;

/// The parts of `K10<ca hash>::server:<secret>`.
#[derive(Debug, PartialEq, Eq)]
struct Token<'a> {
    ca_hash: &'a str,
    secret: &'a str,
}

fn parse(token: &str) -> anyhow::Result<Token<'_>> {
    let Some((head, secret)) = token.trim().split_once("::server:") else {
        bail!(
            "the join token must be the full K10…::server:… token from the server's \
             <data-dir>/server/node-token (it pins the server's CA)"
        );
    };
    let ca_hash = head
        .strip_prefix("K10")
        .context("the join token must start with K10")?;
    ensure!(
        ca_hash.len() == 64 && ca_hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "the join token's CA hash must be 64 hex digits"
    );
    ensure!(!secret.is_empty(), "the join token has no secret");
    Ok(Token { ca_hash, secret })
}

/// A kube client for `server` from a minimal kubeconfig: trusting `ca_pem` (or nothing, when
/// `None`: only for fetching the CA that is checked against the token) and sending `token`.
async fn client(server: &str, ca_pem: Option<&str>, token: &str) -> anyhow::Result<kube::Client> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let trust = match ca_pem {
        Some(ca) => format!("certificate-authority-data: {}", b64(ca)),
        None => "insecure-skip-tls-verify: true".into(),
    };
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    {trust}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: {token}\n"
    );
    let raw = kube::config::Kubeconfig::from_yaml(&yaml).context("building a kubeconfig")?;
    let config = kube::Config::from_custom_kubeconfig(raw, &Default::default())
        .await
        .context("loading the bootstrap kubeconfig")?;
    kube::Client::try_from(config).context("building the bootstrap client")
}

/// Join `server` as `node` with `token`; the node's kubeconfig is written under `data_dir`
/// (`agent/kubeconfig.yaml`, mode 0600) and its path returned.
pub async fn node_kubeconfig(
    server: &str,
    token: &str,
    node: &str,
    data_dir: &Path,
) -> anyhow::Result<PathBuf> {
    let parsed = parse(token)?;
    let insecure = client(server, None, "").await?;
    let ca = insecure
        .request_text(http::Request::get("/cacerts").body(Vec::new())?)
        .await
        .with_context(|| format!("fetching the CA from {server}/cacerts"))?;
    let hash = skiff_apiserver::join::ca_hash(&ca);
    ensure!(
        hash == parsed.ca_hash,
        "the server at {server} presented a CA (sha256 {hash}) that does not match the join \
         token's ({}); refusing to join",
        parsed.ca_hash
    );
    let trusted = client(server, Some(&ca), parsed.secret).await?;
    let body = serde_json::to_vec(&serde_json::json!({ "nodeName": node }))?;
    let request = http::Request::post("/skiff/v1/node-credentials")
        .header("content-type", "application/json")
        .body(body)?;
    let answer = trusted
        .request_text(request)
        .await
        .with_context(|| format!("asking {server} for node credentials with the join token"))?;
    let creds: serde_json::Value =
        serde_json::from_str(&answer).context("the node credentials are not JSON")?;
    let field = |name: &str| {
        creds[name]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("the node credentials lack {name}"))
    };
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server}\n  name: skiff\ncontexts:\n- context:\n    cluster: skiff\n    user: system:node:{node}\n  name: skiff\ncurrent-context: skiff\npreferences: {{}}\nusers:\n- name: system:node:{node}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(&field("caCert")?),
        b64(&field("clientCert")?),
        b64(&field("clientKey")?),
    );
    let path = data_dir.join("agent").join("kubeconfig.yaml");
    skiff_apiserver::pki::write_secret_file(&path, &kubeconfig)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// An in-process API server on an embedded store; its URL and data dir.
    async fn server(
        dir: &Path,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let server_dir = dir.join("server");
        std::fs::create_dir_all(&server_dir)?;
        let store = Arc::new(skiff_store::RedbStore::open(server_dir.join("state.redb"))?);
        let config = skiff_apiserver::Config {
            data_dir: server_dir,
            bind_address: [127, 0, 0, 1].into(),
            port: 0,
            kubeconfig_path: dir.join("kubeconfig.yaml"),
            tls_sans: Vec::new(),
            compaction_interval: skiff_apiserver::compaction::DEFAULT_INTERVAL,
        };
        let tasks = tokio_util::task::TaskTracker::new();
        let started = skiff_apiserver::start(config, store, shutdown.clone(), &tasks).await?;
        Ok(format!("https://{}", started.local_addr))
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_node_joins_with_the_token_and_is_refused_with_a_wrong_one() {
        let dir = tempfile::tempdir().expect("dir");
        let shutdown = tokio_util::sync::CancellationToken::new();
        let url = server(dir.path(), &shutdown).await.expect("server");
        let token = std::fs::read_to_string(dir.path().join("server/node-token")).expect("token");
        let agent_dir = dir.path().join("node");

        let path = node_kubeconfig(&url, &token, "node-1", &agent_dir)
            .await
            .expect("join");
        let raw = kube::config::Kubeconfig::read_from(&path).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(raw, &Default::default())
            .await
            .expect("config");
        let client = kube::Client::try_from(config).expect("client");
        let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
        let list = namespaces
            .list(&Default::default())
            .await
            .expect("the node's certificate is accepted");
        assert!(!list.items.is_empty());

        let (head, _) = token.trim().split_once("::server:").expect("token");
        let wrong_secret = format!("{head}::server:0000");
        let err = node_kubeconfig(&url, &wrong_secret, "node-2", &agent_dir)
            .await
            .expect_err("a wrong secret is refused");
        assert!(format!("{err:#}").contains("Unauthorized"), "{err:#}");
        let wrong_ca = format!("K10{}::server:x", "0".repeat(64));
        let err = node_kubeconfig(&url, &wrong_ca, "node-2", &agent_dir)
            .await
            .expect_err("a different CA is refused");
        assert!(format!("{err:#}").contains("does not match"), "{err:#}");
        let err = node_kubeconfig(&url, &token, "Bad_Name", &agent_dir)
            .await
            .expect_err("an invalid node name is refused");
        assert!(
            format!("{err:#}").contains("not a valid node name"),
            "{err:#}"
        );
        shutdown.cancel();
    }

    #[test]
    fn tokens_parse_as_k3s_writes_them_and_short_ones_are_refused() {
        let hash = "a".repeat(64);
        let token = format!("K10{hash}::server:s3cret\n");
        assert_eq!(
            parse(&token).expect("valid"),
            Token {
                ca_hash: &hash,
                secret: "s3cret"
            }
        );
        assert!(
            parse("s3cret").is_err(),
            "a bare secret does not pin the CA"
        );
        assert!(parse("K10abc::server:s").is_err(), "short hash");
        assert!(parse(&format!("K10{hash}::server:")).is_err(), "no secret");
    }
}
