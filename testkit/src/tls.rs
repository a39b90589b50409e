//! Test certificates made in the test with rcgen (no openssl): a CA, a server
//! certificate for 127.0.0.1 / localhost and a client certificate, all signed
//! by the CA, written as PEM files into a folder.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// PEM file paths (as text, for configs and flags).
pub struct TlsFiles {
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
    /// A client certificate with subject `CN=<client_cn>`.
    pub client_cert: String,
    pub client_key: String,
}

impl TlsFiles {
    /// Makes the CA and both certificates in `dir`; the client's subject is `CN=client_cn`.
    pub fn new(dir: &Path, client_cn: &str) -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "govledger test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let server =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server_cert = server.signed_by(&server_key, &ca, &ca_key).unwrap();
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client.distinguished_name = rcgen::DistinguishedName::new();
        client
            .distinguished_name
            .push(DnType::CommonName, client_cn);
        let client_key = KeyPair::generate().unwrap();
        let client_cert = client.signed_by(&client_key, &ca, &ca_key).unwrap();
        let write = |name: &str, pem: String| {
            let p = dir.join(name);
            std::fs::write(&p, pem).unwrap();
            p.to_str().unwrap().to_owned()
        };
        Self {
            ca: write("ca.pem", ca.pem()),
            server_cert: write("server.pem", server_cert.pem()),
            server_key: write("server-key.pem", server_key.serialize_pem()),
            client_cert: write("client.pem", client_cert.pem()),
            client_key: write("client-key.pem", client_key.serialize_pem()),
        }
    }
}
