//! HTTPS requests to an environment's hostname, with SNI and `Host` set to
//! it: through the server's proxy on its own loopback (`configuring_traefik`)
//! or at the hostname's public address (`health_check`). The request goes
//! through whatever certificate is served (a proxy serves its default one
//! until the ACME CA issued the real one); whether that certificate is
//! issued for the hostname is judged on the side, against the public roots
//! (webpki-roots) and the configured private ones (`OEC_ACME_ROOTS`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::target::{Conn, http_status_over};

/// Whether the served certificate is one issued for the hostname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Certificate {
    Issued,
    /// Why not (rustls's verdict, e.g. the proxy's self-signed default).
    NotIssued(String),
}

#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub certificate: Certificate,
}

/// Makes the requests; holds the roots a certificate is judged against.
#[derive(Clone)]
pub struct Prober {
    verifier: Arc<WebPkiServerVerifier>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl Prober {
    pub fn new(extra_roots_pem: Option<&str>) -> anyhow::Result<Prober> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(pem) = extra_roots_pem {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots
                    .add(cert.map_err(|e| anyhow::anyhow!("OEC_ACME_ROOTS: {e:?}"))?)
                    .map_err(|e| anyhow::anyhow!("OEC_ACME_ROOTS: {e}"))?;
            }
        }
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| anyhow::anyhow!("building the certificate verifier: {e}"))?;
        Ok(Prober { verifier, provider })
    }

    /// `GET https://{host}{path}` over `stream` (a TCP connection to the
    /// proxy), within `timeout`.
    pub async fn get(
        &self,
        stream: Box<dyn Conn>,
        host: &str,
        path: &str,
        timeout: Duration,
    ) -> anyhow::Result<Answer> {
        let judge = Arc::new(Judge {
            inner: self.verifier.clone(),
            verdict: Mutex::new(None),
        });
        let config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow::anyhow!("TLS configuration: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(judge.clone())
            .with_no_client_auth();
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| anyhow::anyhow!("{host} is not a host name"))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let request = async {
            let tls = connector
                .connect(name, stream)
                .await
                .map_err(|e| anyhow::anyhow!("TLS handshake with the proxy: {e}"))?;
            http_status_over(tls, host, path).await
        };
        let status = tokio::time::timeout(timeout, request)
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {timeout:?}"))??;
        let certificate = match judge.verdict.lock().ok().and_then(|mut v| v.take()) {
            Some(Ok(())) => Certificate::Issued,
            Some(Err(why)) => Certificate::NotIssued(why),
            None => Certificate::NotIssued("no certificate was presented".into()),
        };
        Ok(Answer {
            status,
            certificate,
        })
    }
}

/// Accepts every certificate for the request and records whether the real
/// verifier would have.
#[derive(Debug)]
struct Judge {
    inner: Arc<WebPkiServerVerifier>,
    verdict: Mutex<Option<Result<(), String>>>,
}

impl ServerCertVerifier for Judge {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map(|_| ())
            .map_err(|e| e.to_string());
        if let Ok(mut v) = self.verdict.lock() {
            *v = Some(verdict);
        }
        Ok(ServerCertVerified::assertion())
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
