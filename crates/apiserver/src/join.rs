//! Join tokens and node credentials, as k3s hands them out. The cluster's secret lives in the
//! datastore (shared by every server); each server writes `<data-dir>/server/node-token` as
//! `K10<sha256 of the CA certificate>::server:<secret>`. An agent holding the token fetches
//! `/cacerts` without trusting anyone, checks the hash against the token (so a man in the
//! middle cannot pose as the server), then asks `/skiff/v1/node-credentials` with the secret as
//! a bearer token for a client certificate `system:node:<name>` in group `system:nodes`.

use std::path::Path;
use std::sync::Arc;

use sha2::Digest;
use skiff_store::Store;

use crate::pki;

/// The datastore key of the join secret.
pub const KEY: &str = "/skiff/bootstrap/token";

/// Why join state could not be set up or credentials not issued.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or publishing the secret failed.
    #[error("the datastore: {0}")]
    Store(#[from] skiff_store::Error),
    /// Writing the token file or issuing a certificate failed.
    #[error("{0}")]
    Pki(#[from] pki::Error),
    /// Reading the CA key failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What a server needs to admit nodes.
pub struct Joiner {
    secret: String,
    ca_cert_pem: String,
    ca_key_pem: String,
}

/// `K10<sha256 hex of the CA PEM>::server:<secret>`.
pub fn token(ca_cert_pem: &str, secret: &str) -> String {
    format!("K10{}::server:{secret}", ca_hash(ca_cert_pem))
}

/// The SHA-256 of the CA certificate's PEM text, in hex, as in a k3s token.
pub fn ca_hash(ca_cert_pem: &str) -> String {
    sha2::Sha256::digest(ca_cert_pem.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Joiner {
    /// The cluster's join secret from `store` (created by the first server), with the token
    /// file written to `server_dir/node-token`. `tls_dir` holds the CA.
    pub async fn load(
        store: &Arc<dyn Store>,
        server_dir: &Path,
        tls_dir: &Path,
        ca_cert_pem: &str,
    ) -> Result<Joiner, Error> {
        let secret = match store.get(KEY).await? {
            Some(kv) => String::from_utf8_lossy(&kv.value).into_owned(),
            None => {
                let fresh: String = (0..16)
                    .map(|_| format!("{:02x}", rand::random::<u8>()))
                    .collect();
                match store.create(KEY, fresh.clone().into()).await {
                    Ok(_) => fresh,
                    Err(skiff_store::Error::AlreadyExists { .. }) => store
                        .get(KEY)
                        .await?
                        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
                        .unwrap_or(fresh),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        pki::write_secret_file(
            &server_dir.join("node-token"),
            &format!("{}\n", token(ca_cert_pem, &secret)),
        )?;
        let key_path = tls_dir.join("ca.key");
        let ca_key_pem = std::fs::read_to_string(&key_path).map_err(|source| Error::Io {
            path: key_path.display().to_string(),
            source,
        })?;
        Ok(Joiner {
            secret,
            ca_cert_pem: ca_cert_pem.to_string(),
            ca_key_pem,
        })
    }

    /// The CA certificate clients verify this server with.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// Whether `presented` (a bearer token: the secret alone or the whole `K10…` token) is
    /// the cluster's. Compared in constant time.
    pub fn admits(&self, presented: &str) -> bool {
        let secret = presented
            .rsplit_once("::server:")
            .map_or(presented, |(_, s)| s)
            .as_bytes();
        let ours = self.secret.as_bytes();
        secret.len() == ours.len()
            && secret
                .iter()
                .zip(ours)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// Certificate and key (PEM) for node `name`.
    pub fn node_credentials(&self, name: &str) -> Result<(String, String), Error> {
        Ok(pki::issue_client_cert(
            &self.ca_cert_pem,
            &self.ca_key_pem,
            &format!("system:node:{name}"),
            Some("system:nodes"),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joiner() -> Joiner {
        Joiner {
            secret: "0123456789abcdef".into(),
            ca_cert_pem: "ca".into(),
            ca_key_pem: String::new(),
        }
    }

    #[test]
    fn the_secret_is_admitted_alone_or_inside_the_token_and_nothing_else_is() {
        let j = joiner();
        assert!(j.admits("0123456789abcdef"));
        assert!(j.admits(&token("ca", "0123456789abcdef")));
        assert!(!j.admits("0123456789abcdeF"));
        assert!(!j.admits("0123456789abcde"));
        assert!(!j.admits(""));
        assert!(!j.admits(&token("ca", "x")));
    }

    #[test]
    fn a_token_carries_the_ca_hash() {
        let t = token("pem", "s");
        assert_eq!(
            t,
            format!("K10{}::server:s", ca_hash("pem")),
            "format as k3s writes it"
        );
        assert_eq!(ca_hash("pem").len(), 64);
    }
}
