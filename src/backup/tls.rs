//! TLS of the backup channel (a service with an `ssl-policy`): loading the
//! policy's PEM files and building the rustls configurations of both ends.
//!
//! # Who is authenticated, and as what
//!
//! The session is mutual TLS 1.3 (rustls, the aws-lc-rs provider that
//! russh already links). The router that dials is the TLS client, the one
//! that accepts is the TLS server; both present the policy's
//! `certificate` and both check the other's.
//!
//! With `trusted-ca`, a peer certificate is accepted only when
//! - it chains to one of the CA certificates of `trusted-ca` (webpki path
//!   validation, validity dates included), and
//! - it names the configured peer address as a subjectAltName of type
//!   iPAddress (RFC 5280 4.2.1.6; the same check a browser makes of
//!   `https://192.0.2.1/`).
//!
//! The second rule is the decision of this module. Routers are addressed
//! by IP, and a CA that signs the certificates of many routers would
//! otherwise let any of them stand in for the partner: chain-only
//! verification authenticates "some router of ours", the address check
//! authenticates "the partner of this service". It is checked both ways
//! (the client names the server, the server names the client), so a
//! router certificate needs an IP SAN of its own `source` address and,
//! as it serves both ends of TLS, either no extendedKeyUsage or both
//! serverAuth and clientAuth. A certificate with the right CA but the
//! wrong address is refused with "certificate not valid for name".
//!
//! Without `trusted-ca` (allowed by the YANG: "encrypted only") the peer
//! is not authenticated: any certificate is taken (its handshake
//! signature still checked), and its subject is recorded all the same.
//!
//! The files are read anew at each dial (connections accepted meanwhile
//! use what the last read found), so a renewed certificate is picked up
//! at the next reconnect without a configuration change. A file that is missing, not PEM, or holds nothing of the
//! expected kind is a [`TlsError`] naming the file: the channel shows it
//! as its failure reason and retries with backoff.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// The PEM files of an `ssl-policy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// This router's certificate (chain, leaf first).
    pub certificate: PathBuf,
    pub private_key: PathBuf,
    /// CA certificates the peer's certificate must chain to; `None`: the
    /// peer is not authenticated (the session is encrypted only).
    pub trusted_ca: Option<PathBuf>,
}

/// Why the TLS material of a policy cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {err}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        err: rustls_pki_types::pem::Error,
    },
    #[error("{what} {path} holds no {kind}")]
    Empty {
        what: &'static str,
        path: PathBuf,
        kind: &'static str,
    },
    #[error("trusted-ca {path}: {err}")]
    BadCa { path: PathBuf, err: rustls::Error },
    #[error("certificate {certificate} with private key {private_key}: {err}")]
    BadKey {
        certificate: PathBuf,
        private_key: PathBuf,
        err: rustls::Error,
    },
    #[error("tls setup: {0}")]
    Setup(String),
}

/// Both ends' configurations, for one service (the expected peer address
/// is part of them).
#[derive(Debug, Clone)]
pub struct TlsSetup {
    pub client: Arc<ClientConfig>,
    pub server: Arc<ServerConfig>,
    /// The name the client asks the server's certificate to carry.
    pub server_name: ServerName<'static>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn load_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |err| TlsError::Pem {
        what,
        path: path.to_owned(),
        err,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_owned(),
            kind: "CERTIFICATE",
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|err| match err {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            what: "private-key",
            path: path.to_owned(),
            kind: "PRIVATE KEY",
        },
        err => TlsError::Pem {
            what: "private-key",
            path: path.to_owned(),
            err,
        },
    })
}

impl TlsSetup {
    /// Read the policy's files and build both ends for a service whose
    /// partner is `peer`.
    pub fn load(paths: &TlsPaths, peer: Ipv4Addr) -> Result<TlsSetup, TlsError> {
        let chain = load_certs("certificate", &paths.certificate)?;
        let key = load_key(&paths.private_key)?;
        let provider = provider();
        let peer_name = ServerName::IpAddress(IpAddr::V4(peer).into());
        let bad_key = |err| TlsError::BadKey {
            certificate: paths.certificate.clone(),
            private_key: paths.private_key.clone(),
            err,
        };
        let setup = |e: rustls::Error| TlsError::Setup(e.to_string());

        let (client_verifier, server_verifier): (
            Arc<dyn ClientCertVerifier>,
            Arc<dyn ServerCertVerifier>,
        ) = match &paths.trusted_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in load_certs("trusted-ca", ca)? {
                    roots.add(cert).map_err(|err| TlsError::BadCa {
                        path: ca.clone(),
                        err,
                    })?;
                }
                let roots = Arc::new(roots);
                let client =
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                        .build()
                        .map_err(|e| TlsError::Setup(e.to_string()))?;
                let server = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    roots,
                    provider.clone(),
                )
                .build()
                .map_err(|e| TlsError::Setup(e.to_string()))?;
                (
                    Arc::new(ClientNamedAs {
                        inner: client,
                        name: peer_name.clone(),
                    }),
                    server,
                )
            }
            None => {
                let any = Arc::new(AnyCertificate {
                    provider: provider.clone(),
                });
                (any.clone(), any)
            }
        };

        let versions = [&rustls::version::TLS13];
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(setup)?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(bad_key)?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(setup)?
            .dangerous()
            .with_custom_certificate_verifier(server_verifier)
            .with_client_auth_cert(chain, key)
            .map_err(bad_key)?;
        Ok(TlsSetup {
            client: Arc::new(client),
            server: Arc::new(server),
            server_name: peer_name,
        })
    }
}

/// Subject of the certificate the peer presented on a TLS connection
/// (either end), if any.
pub fn peer_subject(conn: &rustls::CommonState) -> Option<String> {
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(subject)
}

/// The subject of a DER certificate, as RFC 4514 text (for the state).
pub fn subject(cert: &CertificateDer<'_>) -> String {
    match x509_parser::parse_x509_certificate(cert.as_ref()) {
        Ok((_, c)) => c.subject().to_string(),
        Err(e) => format!("(unparsable certificate: {e})"),
    }
}

/// The webpki client verifier, plus the check that the client certificate
/// names the configured peer address (see the module header).
#[derive(Debug)]
struct ClientNamedAs {
    inner: Arc<dyn ClientCertVerifier>,
    name: ServerName<'static>,
}

impl ClientCertVerifier for ClientNamedAs {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        cert.verify_is_valid_for_subject_name(&self.name)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::NotValidForName))?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// No `trusted-ca`: the peer must present a certificate and prove it holds
/// its key, but nothing vouches for it.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl AnyCertificate {
    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for AnyCertificate {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(self, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls13_signature(self, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}
