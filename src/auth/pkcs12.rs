//! Reading a PKCS#12 (`.pfx`, `.p12`) file: its private key and certificates.
//!
//! A PFX is `SEQUENCE { version 3, authSafe ContentInfo, macData }`; the authSafe holds
//! ContentInfos of plain or password-encrypted SafeContents, whose bags are the key (usually
//! shrouded: an EncryptedPrivateKeyInfo) and the certificates. The MAC is checked first, so a
//! wrong password says so instead of failing somewhere inside. Decryption is `pbe.rs`'s.
//! Messages name the structure that is wrong, never a byte of the file.

use std::fmt;

use zeroize::Zeroizing;

use super::der::{octets_of, Malformed, Reader, OCTET_STRING, SET};
use super::pbe::{self, Password, PbeError};

const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
const ENCRYPTED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x06];
const KEY_BAG: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x01,
];
const SHROUDED_KEY_BAG: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x02,
];
const CERT_BAG: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x03,
];
const X509_CERTIFICATE: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x16, 0x01];
/// `[0]`, constructed (EXPLICIT content) and primitive (IMPLICIT OCTET STRING).
const CONTEXT_0: u8 = 0xa0;
const CONTEXT_0_PRIMITIVE: u8 = 0x80;

/// What a PKCS#12 file holds that a client certificate needs.
pub(crate) struct Contents {
    /// The first private key, as PKCS#8 `PrivateKeyInfo` DER.
    pub(crate) key: Option<Zeroizing<Vec<u8>>>,
    /// Every certificate, DER.
    pub(crate) certificates: Vec<Vec<u8>>,
}

impl fmt::Debug for Contents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contents")
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("certificates", &self.certificates.len())
            .finish()
    }
}

/// Why a PKCS#12 file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pkcs12Error {
    /// Not PKCS#12 at all, or damaged: where.
    Malformed(&'static str),
    WrongPassword,
    Unsupported(String),
}

impl fmt::Display for Pkcs12Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pkcs12Error::Malformed(what) => {
                write!(f, "not a valid PKCS#12 file ({what})")
            }
            Pkcs12Error::WrongPassword => f.write_str(
                "the password is wrong (the file's integrity check fails with it); set \
                 AZURE_CLIENT_CERTIFICATE_PASSWORD or [auth] certificate_password",
            ),
            Pkcs12Error::Unsupported(what) => {
                write!(f, "the file uses {what}, which dcrship does not support")
            }
        }
    }
}

impl From<Malformed> for Pkcs12Error {
    fn from(m: Malformed) -> Self {
        Pkcs12Error::Malformed(m.0)
    }
}

impl From<PbeError> for Pkcs12Error {
    fn from(e: PbeError) -> Self {
        match e {
            PbeError::Malformed(what) => Pkcs12Error::Malformed(what),
            PbeError::WrongPassword => Pkcs12Error::WrongPassword,
            PbeError::Unsupported(what) => Pkcs12Error::Unsupported(what),
        }
    }
}

/// Whether `bytes` look like a PFX (a DER SEQUENCE whose first element is the version 3):
/// enough to choose between PEM and PKCS#12 without trusting the file's extension.
pub(crate) fn looks_like(bytes: &[u8]) -> bool {
    let mut outer = Reader::new(bytes);
    outer
        .sequence("PFX")
        .and_then(|mut pfx| pfx.integer("version"))
        .is_ok_and(|v| v == 3)
}

/// The key and certificates in `pfx`, decrypted with `password` (an empty password also tries
/// the "no password" encoding some tools write).
pub(crate) fn parse(pfx: &[u8], password: &str) -> Result<Contents, Pkcs12Error> {
    let mut outer = Reader::new(pfx);
    let mut seq = outer.sequence("PFX")?;
    if seq.integer("version")? != 3 {
        return Err(Pkcs12Error::Malformed("version is not 3"));
    }
    let mut auth_safe = seq.sequence("authSafe")?;
    if auth_safe.oid("authSafe type")? != DATA {
        return Err(Pkcs12Error::Unsupported(
            "public-key integrity mode (a signed authSafe)".into(),
        ));
    }
    let content = explicit_octets(&mut auth_safe, "authSafe content")?;
    let mac = seq.optional(super::der::SEQUENCE)?;
    let given = Password::new(password);
    let password = match mac {
        None => given,
        Some(mac) => match pbe::verify_mac(mac.body, &content, &given) {
            Ok(()) => given,
            Err(PbeError::WrongPassword) if password.is_empty() => {
                let absent = Password::absent();
                pbe::verify_mac(mac.body, &content, &absent)?;
                absent
            }
            Err(e) => return Err(e.into()),
        },
    };
    let mut contents = Contents {
        key: None,
        certificates: Vec::new(),
    };
    let mut infos = Reader::new(&content).sequence("AuthenticatedSafe")?;
    while !infos.is_empty() {
        let mut info = infos.sequence("ContentInfo")?;
        match info.oid("ContentInfo type")? {
            DATA => {
                let safe = explicit_octets(&mut info, "SafeContents")?;
                bags(&safe, &password, &mut contents)?;
            }
            ENCRYPTED_DATA => {
                let explicit = info.expect(CONTEXT_0, "EncryptedData")?;
                let mut encrypted = Reader::new(explicit.body).sequence("EncryptedData")?;
                encrypted.integer("EncryptedData version")?;
                let mut content_info = encrypted.sequence("EncryptedContentInfo")?;
                content_info.oid("EncryptedContentInfo type")?;
                let algorithm = content_info.expect(super::der::SEQUENCE, "cipher")?;
                let data = content_info.any()?;
                let data = octets_of(data, CONTEXT_0_PRIMITIVE, "encrypted content")?;
                let safe = pbe::decrypt(algorithm.raw, &data, &password)?;
                bags(&safe, &password, &mut contents)?;
            }
            // Enveloped (public-key privacy mode) data cannot be read with a password.
            _ => {
                return Err(Pkcs12Error::Unsupported(
                    "public-key privacy mode (enveloped contents)".into(),
                ))
            }
        }
    }
    Ok(contents)
}

/// Decrypts a PKCS#8 `EncryptedPrivateKeyInfo` (a shrouded key bag, or the body of a PEM
/// `ENCRYPTED PRIVATE KEY`) into `PrivateKeyInfo` DER.
pub(crate) fn decrypt_private_key(
    encrypted: &[u8],
    password: &Password<'_>,
) -> Result<Zeroizing<Vec<u8>>, Pkcs12Error> {
    let mut info = Reader::new(encrypted).sequence("EncryptedPrivateKeyInfo")?;
    let algorithm = info.expect(super::der::SEQUENCE, "key cipher")?;
    let data = info.octets("encrypted key")?;
    Ok(pbe::decrypt(algorithm.raw, &data, password)?)
}

/// The `[0] EXPLICIT OCTET STRING` of a data ContentInfo.
fn explicit_octets<'a>(
    info: &mut Reader<'a>,
    what: &'static str,
) -> Result<std::borrow::Cow<'a, [u8]>, Pkcs12Error> {
    let explicit = info.expect(CONTEXT_0, what)?;
    let mut inner = Reader::new(explicit.body);
    let value = inner.any()?;
    Ok(octets_of(value, OCTET_STRING, what)?)
}

/// Collects the keys and certificates of one SafeContents.
fn bags(safe: &[u8], password: &Password<'_>, contents: &mut Contents) -> Result<(), Pkcs12Error> {
    let mut bags = Reader::new(safe).sequence("SafeContents")?;
    while !bags.is_empty() {
        let mut bag = bags.sequence("SafeBag")?;
        let kind = bag.oid("SafeBag type")?;
        let value = bag.expect(CONTEXT_0, "SafeBag value")?;
        // Attributes (friendly name, local key id) are not needed.
        let _ = bag.optional(SET)?;
        let mut value = Reader::new(value.body);
        match kind {
            KEY_BAG if contents.key.is_none() => {
                let key = value.expect(super::der::SEQUENCE, "key")?;
                contents.key = Some(Zeroizing::new(key.raw.to_vec()));
            }
            SHROUDED_KEY_BAG if contents.key.is_none() => {
                let encrypted = value.expect(super::der::SEQUENCE, "shrouded key")?;
                contents.key = Some(decrypt_private_key(encrypted.raw, password)?);
            }
            CERT_BAG => {
                let mut cert_bag = value.sequence("CertBag")?;
                if cert_bag.oid("certificate type")? == X509_CERTIFICATE {
                    let explicit = cert_bag.expect(CONTEXT_0, "certificate")?;
                    let der = Reader::new(explicit.body).octets("certificate")?;
                    contents.certificates.push(der.into_owned());
                }
            }
            // CRLs, secrets, nested SafeContents: nothing a client certificate needs.
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_pkcs12_is_malformed_not_a_panic() {
        for bytes in [
            &b""[..],
            b"-----BEGIN CERTIFICATE-----",
            &[0x30, 0x03, 0x02, 0x01, 0x02],
        ] {
            assert!(!looks_like(bytes));
            assert!(matches!(parse(bytes, "x"), Err(Pkcs12Error::Malformed(_))));
        }
    }
}
