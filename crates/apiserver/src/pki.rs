//! The cluster's certificates: a CA generated on first start, the API server's serving
//! certificate, the admin client certificate, and the admin kubeconfig that uses them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the PKI could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file under the data dir failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Generating or parsing a certificate or key failed.
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// A stored PEM file is unreadable.
    #[error("{path}: invalid PEM: {detail}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// rustls rejected the configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

/// A PKI result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The PEM files of the cluster, loaded or created.
pub struct Pki {
    /// CA certificate (PEM).
    pub ca_cert_pem: String,
    /// Serving certificate chain (PEM).
    pub server_cert_pem: String,
    /// Serving key (PEM).
    pub server_key_pem: String,
    /// Admin client certificate (PEM).
    pub admin_cert_pem: String,
    /// Admin client key (PEM).
    pub admin_key_pem: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(contents.as_bytes()).map_err(io(path))
}

fn read_or<F: FnOnce() -> Result<String>>(path: &Path, make: F) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let s = make()?;
            write_private(path, &s)?;
            Ok(s)
        }
        Err(e) => Err(Error::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

fn name(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    dn
}

fn validity(params: &mut CertificateParams) {
    let now = jiff::Timestamp::now().as_second();
    let ymd = |secs: i64| {
        jiff::Timestamp::from_second(secs)
            .map(|ts| ts.to_zoned(jiff::tz::TimeZone::UTC).date())
            .ok()
    };
    if let (Some(b), Some(a)) = (ymd(now - 24 * 3600), ymd(now + 10 * 365 * 24 * 3600)) {
        params.not_before = rcgen::date_time_ymd(b.year().into(), b.month() as u8, b.day() as u8);
        params.not_after = rcgen::date_time_ymd(a.year().into(), a.month() as u8, a.day() as u8);
    }
}

impl Pki {
    /// Load the PKI from `dir`, creating whatever is missing. `sans` are the serving
    /// certificate's extra names and addresses.
    pub fn load_or_create(dir: &Path, sans: &[String]) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let ca_key_path = dir.join("ca.key");
        let ca_cert_path = dir.join("ca.crt");
        let ca_key_pem = read_or(&ca_key_path, || Ok(KeyPair::generate()?.serialize_pem()))?;
        let ca_key = KeyPair::from_pem(&ca_key_pem)?;
        let ca_params = {
            let mut p = CertificateParams::new(Vec::<String>::new())?;
            p.distinguished_name = name("skiff-ca", None);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            validity(&mut p);
            p
        };
        let ca_cert_pem = read_or(&ca_cert_path, || Ok(ca_params.self_signed(&ca_key)?.pem()))?;
        let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key)?;

        let server_key_path = dir.join("server.key");
        let server_cert_path = dir.join("server.crt");
        let server_key_pem = read_or(
            &server_key_path,
            || Ok(KeyPair::generate()?.serialize_pem()),
        )?;
        let server_key = KeyPair::from_pem(&server_key_pem)?;
        // The serving certificate is re-issued on every start so new addresses are covered.
        let mut all_sans: Vec<String> = vec![
            "localhost".into(),
            "127.0.0.1".into(),
            "::1".into(),
            "kubernetes".into(),
            "kubernetes.default".into(),
            "kubernetes.default.svc".into(),
            "kubernetes.default.svc.cluster.local".into(),
            crate::admission::KUBERNETES_SERVICE_IP.into(),
        ];
        for s in sans {
            if !all_sans.contains(s) {
                all_sans.push(s.clone());
            }
        }
        let mut sp = CertificateParams::new(Vec::<String>::new())?;
        sp.distinguished_name = name("kube-apiserver", None);
        sp.subject_alt_names = all_sans
            .iter()
            .map(|s| match s.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => s.clone().try_into().map(SanType::DnsName),
            })
            .collect::<std::result::Result<_, _>>()?;
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        sp.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        validity(&mut sp);
        let server_cert_pem = sp.signed_by(&server_key, &issuer)?.pem();
        write_private(&server_cert_path, &server_cert_pem)?;

        let admin_key_path = dir.join("admin.key");
        let admin_cert_path = dir.join("admin.crt");
        let admin_key_pem = read_or(&admin_key_path, || Ok(KeyPair::generate()?.serialize_pem()))?;
        let admin_key = KeyPair::from_pem(&admin_key_pem)?;
        let admin_cert_pem = read_or(&admin_cert_path, || {
            let mut ap = CertificateParams::new(Vec::<String>::new())?;
            ap.distinguished_name = name("admin", Some("system:masters"));
            ap.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            ap.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            validity(&mut ap);
            Ok(ap.signed_by(&admin_key, &issuer)?.pem())
        })?;
        Ok(Self {
            ca_cert_pem,
            server_cert_pem,
            server_key_pem,
            admin_cert_pem,
            admin_key_pem,
        })
    }

    /// The rustls server configuration: our serving certificate; client certificates are
    /// verified against the CA when offered (requests without one are answered 401 by the API).
    pub fn server_config(&self) -> Result<rustls::ServerConfig> {
        let pem_err = |detail: String| Error::Pem {
            path: PathBuf::from("(in memory)"),
            detail,
        };
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.server_cert_pem.as_bytes())
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| pem_err(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes())
            .map_err(|e| pem_err(e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(self.ca_cert_pem.as_bytes()) {
            roots.add(ca.map_err(|e| pem_err(e.to_string()))?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| Error::Verifier(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// The admin kubeconfig for `server_url`.
    pub fn admin_kubeconfig(&self, server_url: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server_url}\n  name: skiff\ncontexts:\n- context:\n    cluster: skiff\n    user: admin\n  name: skiff\ncurrent-context: skiff\npreferences: {{}}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&self.ca_cert_pem),
            b64(&self.admin_cert_pem),
            b64(&self.admin_key_pem),
        )
    }
}

/// Write `contents` to `path` readable by the owner only.
pub fn write_secret_file(path: &Path, contents: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    write_private(path, contents)
}

/// A client certificate and key (PEM) for `cn` in group `org`, signed by the CA given as PEM:
/// how nodes that joined with a token get their credentials.
pub fn issue_client_cert(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    cn: &str,
    org: Option<&str>,
) -> Result<(String, String)> {
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, KeyPair::from_pem(ca_key_pem)?)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = name(cn, org);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    validity(&mut params);
    Ok((params.signed_by(&key, &issuer)?.pem(), key.serialize_pem()))
}
