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
    if let Some(ca) = &spec.ca_file {
        let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(ca).map_err(|e| format!("tls.caFile {ca}: {e}"))?.collect::<Result<_, _>>().map_err(|e| format!("tls.caFile {ca}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("tls.caFile {ca}: no certificate in it (expected PEM: -----BEGIN CERTIFICATE-----)"));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| format!("tls.caFile {ca}: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match (&spec.cert_file, &spec.key_file) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert).map_err(|e| format!("tls.certFile {cert}: {e}"))?.collect::<Result<_, _>>().map_err(|e| format!("tls.certFile {cert}: {e}"))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("tls.keyFile {key}: {e}"))?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| format!("tls.certFile {cert} with tls.keyFile {key}: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    // HTTP/1.1, as the rest of the service speaks.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
