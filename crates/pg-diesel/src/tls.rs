//! TLS to Postgres with rustls (ring provider), honouring `sslmode` the way
//! pg-sqlx does (libpq's modes, except that `allow` never tries TLS and
//! `require` never verifies, even with a root file):
//!
//! | `sslmode` | TLS | verifies |
//! |---|---|---|
//! | `disable`, `allow` | never | — |
//! | `prefer` (default) | if the server offers it | nothing |
//! | `require` | always (a server without TLS is refused) | nothing |
//! | `verify-ca` | always | the chain, against the roots |
//! | `verify-full` | always | the chain and the host name |
//!
//! Roots are the URL's `sslrootcert` (or `PGSSLROOTCERT`) PEM file, else
//! the Mozilla roots (webpki-roots, as pg-sqlx). `PALISADE_TLS` (the `tls`
//! setting) raises the optional modes (`prefer`, `allow`, unset) to
//! `verify-full`; an explicit stronger or weaker mode stays. Client
//! certificates (`sslcert`/`sslkey`) are not supported: naming them is a
//! `Config` error, never a silently unauthenticated connection.
//!
//! Pooled connections negotiate TLS themselves (`SSLRequest`, then
//! tokio-rustls) *below* the SQLSTATE tap, which therefore always reads
//! plaintext; the live tail's listener uses tokio-postgres-rustls with the
//! same rustls configuration, so diesel-async can deliver its notifications.

use std::sync::Arc;

use palisade_core::{Error, ErrorKind, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::BACKEND;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// The mode in effect: `tls` raises the optional modes to `verify-full`.
    pub(crate) fn effective(mode: Option<SslMode>, tls: bool) -> SslMode {
        match (mode, tls) {
            (None | Some(SslMode::Prefer | SslMode::Allow), true) => SslMode::VerifyFull,
            (None, false) => SslMode::Prefer,
            (Some(m), _) => m,
        }
    }

    /// Whether a connection without TLS is refused.
    pub(crate) fn demands_tls(self) -> bool {
        matches!(self, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull)
    }

    /// Whether TLS is asked for at all.
    pub(crate) fn asks_for_tls(self) -> bool {
        !matches!(self, SslMode::Disable | SslMode::Allow)
    }
}

/// What a connection needs to speak TLS to one server.
#[derive(Clone)]
pub(crate) struct Tls {
    pub(crate) mode: SslMode,
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) server_name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("mode", &self.mode).finish_non_exhaustive()
    }
}

fn config_error(msg: &str) -> Error {
    Error::new(ErrorKind::Config, format!("pg-diesel TLS: {msg}")).with_backend(BACKEND)
}

impl Tls {
    /// The TLS settings for `host` in `mode`, trusting the PEM roots in
    /// `rootcert` (or the Mozilla roots). `None` when TLS is never asked for.
    /// In the verifying modes a missing or unreadable root file is a
    /// `Config` error (read here, at configuration time, not per connection);
    /// the other modes ignore it.
    pub(crate) fn new(mode: SslMode, host: &str, rootcert: Option<&str>) -> Result<Option<Tls>> {
        if !mode.asks_for_tls() {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        // Roots matter only to the verifying modes: a stale root file never
        // breaks `prefer`/`require`.
        let verifies = matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull);
        match rootcert.filter(|_| verifies) {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path).map_err(|_| config_error("cannot read sslrootcert"))?;
                for cert in certs {
                    let cert = cert.map_err(|_| config_error("sslrootcert is not a PEM certificate file"))?;
                    roots.add(cert).map_err(|_| config_error("sslrootcert holds an unusable certificate"))?;
                }
                if roots.is_empty() {
                    return Err(config_error("sslrootcert holds no certificate"));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|_| config_error("no usable TLS protocol version"))?;
        let config = match mode {
            SslMode::VerifyFull => builder.with_root_certificates(roots).with_no_client_auth(),
            _ => {
                let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|_| config_error("the roots cannot verify certificates"))?;
                let verifier = Verifier { chain, check_chain: mode == SslMode::VerifyCa, provider };
                builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()
            }
        };
        let server_name =
            ServerName::try_from(host.to_owned()).map_err(|_| config_error("the host is no valid TLS server name"))?;
        Ok(Some(Tls { mode, config: Arc::new(config), server_name }))
    }
}

/// `prefer`/`require` (no verification, as libpq) and `verify-ca` (the
/// chain, not the name). Handshake signatures are always checked.
#[derive(Debug)]
struct Verifier {
    chain: Arc<WebPkiServerVerifier>,
    check_chain: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if !self.check_chain {
            return Ok(ServerCertVerified::assertion());
        }
        match self.chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_flag_raises_only_the_optional_modes() {
        use SslMode::*;
        assert_eq!(SslMode::effective(None, false), Prefer);
        assert_eq!(SslMode::effective(None, true), VerifyFull);
        assert_eq!(SslMode::effective(Some(Prefer), true), VerifyFull);
        assert_eq!(SslMode::effective(Some(Allow), true), VerifyFull);
        assert_eq!(SslMode::effective(Some(Require), true), Require);
        assert_eq!(SslMode::effective(Some(VerifyCa), true), VerifyCa);
        assert_eq!(SslMode::effective(Some(Disable), true), Disable);
        assert!(!Prefer.demands_tls() && Prefer.asks_for_tls() && !Allow.asks_for_tls());
    }

    #[test]
    fn unreadable_or_empty_root_files_are_config_errors() {
        let e = Tls::new(SslMode::VerifyFull, "db", Some("/nonexistent/root.pem")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        let empty = std::env::temp_dir().join(format!("palisade-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "").unwrap();
        let e = Tls::new(SslMode::VerifyCa, "db", empty.to_str()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        let _ = std::fs::remove_file(empty);
        assert!(Tls::new(SslMode::Disable, "db", None).unwrap().is_none());
        assert!(Tls::new(SslMode::Require, "db", Some("/nonexistent/root.pem")).is_ok(), "require never verifies");
        assert!(Tls::new(SslMode::Prefer, "127.0.0.1", None).unwrap().is_some(), "IP hosts are server names too");
    }
}
