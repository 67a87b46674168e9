//! A connector's TLS (`tls:`): a private CA its targets' certificates are checked against
//! (beside the public roots), and a client certificate and key it presents (mutual TLS, as
//! internal government systems ask). TLS 1.2 and 1.3 only (rustls has nothing older).

use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::spec::model::TlsSpec;

/// The client configuration for `spec`, or why it cannot be built (a file missing, not PEM,
/// a key that does not match).
pub fn client_config(spec: &TlsSpec) -> Result<Arc<ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // A PEM from a secret (`ca: "${NAME}"`), read from the environment now.
    let secret = |what: &str, value: &str| -> Result<Vec<u8>, String> {
        let names = crate::spec::templates::secret_refs(value);
        let name = names.first().ok_or_else(|| format!("tls.{what}: expected a secret, e.g. \"${{NAME}}\""))?;
        std::env::var(name).map(String::into_bytes).map_err(|_| format!("tls.{what}: the environment variable ${{{name}}} is not set"))
    };
    // Extra roots: a PEM from a secret (`ca`) and a PEM file (`caFile`), each named in errors.
    let mut extra: Vec<(String, Vec<CertificateDer<'static>>)> = Vec::new();
    if let Some(ca) = &spec.ca {
        let what = format!("tls.ca {ca}");
        extra.push((what.clone(), CertificateDer::pem_slice_iter(&secret("ca", ca)?).collect::<Result<_, _>>().map_err(|e| format!("{what}: {e}"))?));
    }
    if let Some(ca) = &spec.ca_file {
        let what = format!("tls.caFile {ca}");
        extra.push((what.clone(), CertificateDer::pem_file_iter(ca).map_err(|e| format!("{what}: {e}"))?.collect::<Result<_, _>>().map_err(|e| format!("{what}: {e}"))?));
    }
    for (what, certs) in extra {
        if certs.is_empty() {
            return Err(format!("{what}: no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)"));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| format!("{what}: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let chain: Option<Vec<CertificateDer<'static>>> = match (&spec.cert_file, &spec.cert) {
        (Some(file), _) => Some(CertificateDer::pem_file_iter(file).map_err(|e| format!("tls.certFile {file}: {e}"))?.collect::<Result<_, _>>().map_err(|e| format!("tls.certFile {file}: {e}"))?),
        (None, Some(value)) => Some(CertificateDer::pem_slice_iter(&secret("cert", value)?).collect::<Result<_, _>>().map_err(|e| format!("tls.cert {value}: {e}"))?),
        (None, None) => None,
    };
    let key: Option<PrivateKeyDer<'static>> = match (&spec.key_file, &spec.key) {
        (Some(file), _) => Some(PrivateKeyDer::from_pem_file(file).map_err(|e| format!("tls.keyFile {file}: {e}"))?),
        (None, Some(value)) => Some(PrivateKeyDer::from_pem_slice(&secret("key", value)?).map_err(|e| format!("tls.key {value}: {e}"))?),
        (None, None) => None,
    };
    let mut config = match (chain, key) {
        (Some(chain), Some(key)) => builder.with_client_auth_cert(chain, key).map_err(|e| format!("tls: the client certificate with its key: {e}"))?,
        _ => builder.with_no_client_auth(),
    };
    // HTTP/1.1, as the rest of the service speaks.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
