//! The cluster CA lives in the datastore as well as in each server's data dir, so that several
//! servers on one etcd issue certificates from one CA: a kubeconfig or node credential from any
//! server works against every other. The first server to start publishes its CA; later ones
//! adopt it before they issue their own serving and admin certificates.

use std::path::Path;
use std::sync::Arc;

use skiff_store::Store;

use crate::pki::{self, Pki};

/// The datastore key of the CA certificate and key (outside `/registry/`, so no API lists it).
pub const KEY: &str = "/skiff/bootstrap/ca";

/// Why the shared CA could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or publishing the CA in the datastore failed.
    #[error("the datastore: {0}")]
    Store(#[from] skiff_store::Error),
    /// The stored record is not ours.
    #[error("the CA record at {KEY} in the datastore is unreadable: {0}")]
    Record(#[from] serde_json::Error),
    /// Files under the data dir could not be written.
    #[error("{0}")]
    Pki(#[from] pki::Error),
    /// Reading a certificate file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    cert: String,
    key: String,
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Write the datastore's CA into `dir` unless it is already there. Certificates signed by a
/// different local CA are removed so `Pki::load_or_create` issues them again from this one.
fn adopt(dir: &Path, record: &Record) -> Result<(), Error> {
    let cert_path = dir.join("ca.crt");
    if std::fs::read_to_string(&cert_path).ok().as_deref() == Some(record.cert.as_str()) {
        return Ok(());
    }
    if cert_path.exists() {
        tracing::warn!(
            dir = %dir.display(),
            "this data dir has a CA of its own; replacing it with the cluster's CA from the datastore"
        );
    }
    for stale in ["admin.crt", "admin.key"] {
        let path = dir.join(stale);
        if let Err(source) = std::fs::remove_file(&path)
            && source.kind() != std::io::ErrorKind::NotFound
        {
            return Err(Error::Io {
                path: path.display().to_string(),
                source,
            });
        }
    }
    pki::write_secret_file(&dir.join("ca.key"), &record.key)?;
    pki::write_secret_file(&cert_path, &record.cert)?;
    Ok(())
}

/// The server's PKI under `dir`, issued from the cluster CA in `store` (published from this
/// data dir's CA when the datastore has none yet).
pub async fn load(store: &Arc<dyn Store>, dir: &Path, sans: &[String]) -> Result<Pki, Error> {
    // Two servers starting at once race to publish; the loser adopts the winner's CA.
    for _ in 0..3 {
        if let Some(kv) = store.get(KEY).await? {
            let record: Record = serde_json::from_slice(&kv.value)?;
            adopt(dir, &record)?;
            return Ok(Pki::load_or_create(dir, sans)?);
        }
        let pki = Pki::load_or_create(dir, sans)?;
        let record = Record {
            cert: pki.ca_cert_pem.clone(),
            key: read(&dir.join("ca.key"))?,
        };
        let value = serde_json::to_vec(&record)?;
        match store.create(KEY, value.into()).await {
            Ok(_) => return Ok(pki),
            Err(skiff_store::Error::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    // Three lost races in a row cannot happen (a key once created stays); be explicit anyway.
    Err(Error::Store(skiff_store::Error::AlreadyExists {
        key: KEY.into(),
    }))
}
