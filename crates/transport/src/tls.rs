//! The TLS profile: TLS 1.3 only, mutual authentication with raw Ed25519 public keys
//! (RFC 7250), no resumption, no 0-RTT, ring as the only crypto provider.
//!
//! The "certificate" each side presents is the 44-byte DER `SubjectPublicKeyInfo` of its
//! participant key ([`ed25519_spki`]). The verifiers here accept any well-formed Ed25519
//! key that proves possession in `CertificateVerify`; *who* the key belongs to is decided
//! afterwards by the credential hello, which must name exactly this key
//! (`spec/transport.md` §3).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{AlwaysResolvesClientRawPublicKeys, Resumption};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{AlwaysResolvesServerRawPublicKeys, NoServerSessionStorage};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, PeerIncompatible,
    SignatureAlgorithm, SignatureScheme,
};
use tds_core::{PublicKey, Signer};

/// The ALPN protocol id of the connector protocol.
pub const ALPN: &[u8] = b"tds/1";

/// The ALPN protocol id of the admission path (no credential needed).
pub const ALPN_JOIN: &[u8] = b"tds-join/1";

/// The ALPN protocol id of the service path: members asking a server without a
/// membership credential (the authority) for services (`crate::service`).
pub const ALPN_AUTHORITY: &[u8] = b"tds-authority/1";

/// The only signature scheme offered and accepted.
pub const SIGNATURE_SCHEMES: &[SignatureScheme] = &[SignatureScheme::ED25519];

/// The DER prefix of an Ed25519 `SubjectPublicKeyInfo` (RFC 8410): SEQUENCE (42 bytes) {
/// SEQUENCE { OID 1.3.101.112 }, BIT STRING (33 bytes, 0 unused bits) }.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Length of an Ed25519 `SubjectPublicKeyInfo`.
pub const ED25519_SPKI_LEN: usize = 44;

/// The DER `SubjectPublicKeyInfo` of an Ed25519 key: what TLS carries as the raw public
/// key.
pub fn ed25519_spki(key: &PublicKey) -> [u8; ED25519_SPKI_LEN] {
    let mut out = [0u8; ED25519_SPKI_LEN];
    let (prefix, rest) = out.split_at_mut(ED25519_SPKI_PREFIX.len());
    prefix.copy_from_slice(&ED25519_SPKI_PREFIX);
    rest.copy_from_slice(key.as_bytes());
    out
}

/// The Ed25519 key of a DER `SubjectPublicKeyInfo`, or `None` for anything else (another
/// algorithm, other lengths, a point that is not a valid Ed25519 key).
pub fn parse_ed25519_spki(der: &[u8]) -> Option<PublicKey> {
    let rest = der.strip_prefix(&ED25519_SPKI_PREFIX[..])?;
    let bytes: &[u8; 32] = rest.try_into().ok()?;
    PublicKey::from_bytes(bytes).ok()
}

/// The ring provider restricted to TLS 1.3 cipher suites, so nothing else can be
/// negotiated even by mistake.
pub fn provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites
        .retain(|s| matches!(s, rustls::SupportedCipherSuite::Tls13(_)));
    Arc::new(p)
}

/// The key TLS signs `CertificateVerify` with: the participant's [`Signer`], so a key kept
/// in a hardware module works the same as one in memory.
#[derive(Debug)]
struct TlsKey {
    signer: Arc<dyn Signer>,
    spki: [u8; ED25519_SPKI_LEN],
}

impl rustls::sign::SigningKey for TlsKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        offered
            .contains(&SignatureScheme::ED25519)
            .then(|| Box::new(TlsSigner(self.signer.clone())) as Box<dyn rustls::sign::Signer>)
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(&self.spki[..]))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ED25519
    }
}

#[derive(Debug)]
struct TlsSigner(Arc<dyn Signer>);

impl rustls::sign::Signer for TlsSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.0
            .try_sign(message)
            .map(|s| s.to_vec())
            .map_err(|e| rustls::Error::General(format!("signing key: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

fn certified_key(signer: Arc<dyn Signer>) -> Arc<CertifiedKey> {
    let spki = ed25519_spki(&signer.public_key());
    let cert = CertificateDer::from(spki.to_vec());
    Arc::new(CertifiedKey::new(
        vec![cert],
        Arc::new(TlsKey { signer, spki }),
    ))
}

/// Verifies the peer's raw public key on either side: a well-formed Ed25519 SPKI, no
/// chain, and an Ed25519 `CertificateVerify` signature checked with `verify_strict` (the
/// rule for every signature from a peer). Who the key belongs to is the hello's business.
#[derive(Debug, Default, Clone, Copy)]
pub struct PeerKeyVerifier;

impl PeerKeyVerifier {
    fn check_cert(
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        if !intermediates.is_empty() || parse_ed25519_spki(end_entity.as_ref()).is_none() {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::BadEncoding,
            ));
        }
        Ok(())
    }

    fn check_signature(
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(rustls::Error::PeerIncompatible(
                PeerIncompatible::NoSignatureSchemesInCommon,
            ));
        }
        let key = parse_ed25519_spki(cert.as_ref()).ok_or(rustls::Error::InvalidCertificate(
            CertificateError::BadEncoding,
        ))?;
        key.verify(message, dss.signature())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadSignature))?;
        Ok(HandshakeSignatureValid::assertion())
    }

    fn tls12() -> rustls::Error {
        rustls::Error::PeerIncompatible(PeerIncompatible::Tls13RequiredForQuic)
    }
}

impl ServerCertVerifier for PeerKeyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Self::check_cert(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(Self::tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Self::check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SIGNATURE_SCHEMES.to_vec()
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

impl ClientCertVerifier for PeerKeyVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Self::check_cert(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(Self::tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Self::check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SIGNATURE_SCHEMES.to_vec()
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// The server side's rustls configuration: our raw public key, client keys required,
/// `alpn` offered, no session tickets, no session cache, no early data.
pub fn server_config(
    signer: Arc<dyn Signer>,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(PeerKeyVerifier))
        .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(
            certified_key(signer),
        )));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // A resumed session skips the certificate verifier: a peer revoked since could come
    // back on its old session. No tickets, no cache, no 0-RTT.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    config.send_half_rtt_data = false;
    Ok(config)
}

/// The client side's rustls configuration: our raw public key, the server's required,
/// `alpn` offered, resumption disabled, no early data, no SNI (the server name means
/// nothing with raw keys).
pub fn client_config(
    signer: Arc<dyn Signer>,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, rustls::Error> {
    // `dangerous()` is rustls' door to a custom verifier; ours checks the raw key's
    // signature and leaves identity to the credential hello.
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerKeyVerifier))
        .with_client_cert_resolver(Arc::new(AlwaysResolvesClientRawPublicKeys::new(
            certified_key(signer),
        )));
    config.alpn_protocols = vec![alpn.to_vec()];
    config.resumption = Resumption::disabled();
    config.enable_early_data = false;
    config.enable_sni = false;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tds_core::SigningKey;

    #[test]
    fn spki_round_trips_and_refuses_other_shapes() {
        let key = SigningKey::from_seed(&[3; 32]).public_key();
        let spki = ed25519_spki(&key);
        assert_eq!(parse_ed25519_spki(&spki), Some(key));
        assert_eq!(parse_ed25519_spki(&spki[..43]), None);
        let mut longer = spki.to_vec();
        longer.push(0);
        assert_eq!(parse_ed25519_spki(&longer), None);
        let mut other_alg = spki;
        other_alg[8] = 0x71; // Ed448's OID ends in 113
        assert_eq!(parse_ed25519_spki(&other_alg), None);
    }
}
