//! Issue 15, item 5: a target on 127.0.0.1 that speaks TLS with a certificate from a
//! private CA and asks for a client certificate (mutual TLS), as internal government
//! systems do. Certificates are made for the test with `openssl`.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use actix_web::{web, App, HttpResponse, HttpServer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use crate::helpers::*;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, both signed by it.
fn make_certs(dir: &Path) {
    // Extensions make them v3 certificates, which webpki requires.
    std::fs::write(dir.join("server.cnf"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n").unwrap();
    std::fs::write(dir.join("client.cnf"), "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n").unwrap();
    openssl(dir, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=HMS Test CA"]);
    for (name, cn) in [("server", "127.0.0.1"), ("client", "hms-sync")] {
        openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &format!("{name}.key"), "-out", &format!("{name}.csr"), "-subj", &format!("/CN={cn}")]);
        let csr = format!("{name}.csr");
        let mut args = vec!["x509", "-req", "-in", &csr[..], "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2"];
        let out = format!("{name}.pem");
        let ext = format!("{name}.cnf");
        args.extend(["-out", &out, "-extfile", &ext]);
        openssl(dir, &args);
    }
}

#[actix_web::test]
async fn a_target_with_a_private_ca_and_client_certificates() {
    let dir = temp_dir("tls");
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_certs(&certs);

    // The target: TLS 1.2+, its certificate from the private CA, client certificates required.
    let ca: Vec<CertificateDer> = CertificateDer::pem_file_iter(certs.join("ca.pem")).unwrap().collect::<Result<_, _>>().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in ca {
        roots.add(c).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().unwrap();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certs.join("server.pem")).unwrap().collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(certs.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_client_cert_verifier(verifier).with_single_cert(chain, key).unwrap();
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let server = HttpServer::new(move || {
        let counter = counter.clone();
        App::new().route("/roadwork/{id}", web::patch().to(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { HttpResponse::Ok().json(json!({"ok": true})) }
        }))
    })
    .workers(1)
    .disable_signals()
    .bind_rustls_0_23(("127.0.0.1", 0), config)
    .unwrap();
    let port = server.addrs()[0].port();
    actix_web::rt::spawn(server.run());
    let base = format!("https://127.0.0.1:{port}");

    let file = |n: &str| certs.join(n).display().to_string();
    let with = |id: &str, tls: &str| permit_connector(id, &format!("{id}.t"), &base, &format!("retry: {{ max: 1, backoffMs: 10 }}\n{tls}"));
    std::fs::write(dir.join("connectors/mtls.yaml"), with("mtls", &format!("tls: {{ caFile: \"{}\", certFile: \"{}\", keyFile: \"{}\" }}\n", file("ca.pem"), file("client.pem"), file("client.key")))).unwrap();
    std::fs::write(dir.join("connectors/nocert.yaml"), with("nocert", &format!("tls: {{ caFile: \"{}\" }}\n", file("ca.pem")))).unwrap();
    std::fs::write(dir.join("connectors/noca.yaml"), with("noca", "")).unwrap();
    // The same from secrets holding the PEM, instead of files.
    for (var, f) in [("TLS_TEST_CA_PEM", "ca.pem"), ("TLS_TEST_CLIENT_PEM", "client.pem"), ("TLS_TEST_CLIENT_KEY", "client.key")] {
        unsafe { std::env::set_var(var, std::fs::read_to_string(certs.join(f)).unwrap()) };
    }
    std::fs::write(dir.join("connectors/secrets.yaml"), with("secrets", "tls: { ca: \"${TLS_TEST_CA_PEM}\", cert: \"${TLS_TEST_CLIENT_PEM}\", key: \"${TLS_TEST_CLIENT_KEY}\" }\n")).unwrap();
    let app = TestApp::spawn(test_settings(&dir)).await;

    app.publish("mtls.t", json!({"permitId": "T-1", "status": "OK"})).await;
    app.wait_tickets("connector=mtls&status=completed", 1).await;
    app.publish("secrets.t", json!({"permitId": "T-4", "status": "OK"})).await;
    app.wait_tickets("connector=secrets&status=completed", 1).await;
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);

    // Without the client certificate, or without the CA: refused, with the reason in words.
    app.publish("nocert.t", json!({"permitId": "T-2", "status": "OK"})).await;
    app.publish("noca.t", json!({"permitId": "T-3", "status": "OK"})).await;
    let why = |id: &'static str| {
        let app = &app;
        async move { app.wait_parked(id, 1).await[0]["lastError"].as_str().unwrap_or_default().to_string() }
    };
    let (nocert, noca) = (why("nocert").await, why("noca").await);
    assert!(noca.to_lowercase().contains("certificate") && noca.contains("UnknownIssuer"), "an unknown CA is named: {noca}");
    assert!(nocert.contains("CertificateRequired"), "a missing client certificate is named: {nocert}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2, "neither reached the handler");
}

/// A `tls` file that is missing or not PEM stops the connector with the file's name.
#[actix_web::test]
async fn a_missing_tls_file_is_named() {
    let dir = temp_dir("tls-missing");
    let fake = FakeSystem::start().await;
    let yaml = outbound_yaml("bad", "bad.t", &fake, "tls: { caFile: \"/nonexistent/ca.pem\" }\n");
    let (code, body) = {
        let app = TestApp::spawn(test_settings(&dir)).await;
        app.call("POST", "/connectors", Some(&yaml)).await
    };
    assert_eq!(code, 400, "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("tls.caFile /nonexistent/ca.pem"), "{body}");
}
