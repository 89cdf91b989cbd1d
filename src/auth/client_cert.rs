//! A service principal with a certificate: a signed JWT client assertion sent to Entra v2.
//!
//! The file (`certificate_path` in `[auth]`, else `AZURE_CLIENT_CERTIFICATE_PATH`), as every Azure
//! SDK accepts it: either PEM, holding the certificate and its RSA private key — PKCS#8
//! (`BEGIN PRIVATE KEY`), PKCS#1 (`BEGIN RSA PRIVATE KEY`) or password-encrypted PKCS#8
//! (`BEGIN ENCRYPTED PRIVATE KEY`) — or PKCS#12 (`.pfx`, `.p12`; told by its content, not its
//! name), modern (AES-256-CBC with PBKDF2, OpenSSL 3's default) or legacy (3DES and RC2 with
//! SHA-1, OpenSSL 1's and Windows'). The password is `[auth] certificate_password`, else
//! `AZURE_CLIENT_CERTIFICATE_PASSWORD`; a PKCS#12 file without one is tried with the empty
//! password. With a chain, the certificate used is the one the key belongs to.
//! The assertion is what the current Entra documentation and MSAL send: `PS256` (RSA-PSS with
//! SHA-256) with the certificate's SHA-256 thumbprint in `x5t#S256`; `aud` is the token URL,
//! `iss` = `sub` = the client id, a fresh `jti`, valid for 10 minutes. A new one is signed for
//! every attempt. The file is read when the source is built (so a bad file is a configuration
//! error at startup) and again for every token, so a renewed certificate is picked up.
//!
//! The private key lives only inside this module's short-lived [`Credentials`] (decrypted
//! bytes are zeroed when dropped); no message, log line or `Debug` output shows it or the
//! password.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PSS_SHA256};
use rustls_pki_types::pem::{self, PemObject, SectionKind};

use super::entra::{self, Credential, EntraApp};
use super::env::Env;
use super::pbe::Password;
use super::pkcs12;
#[cfg(test)]
use super::retry::RetrySchedule;
use super::{AccessToken, AuthConfig, AuthError, BoxFuture, TokenSource};
use crate::http::HttpClients;
use crate::secret::Secret;
use tokio::time::Instant;

const NAME: &str = "client-certificate";
/// The variable the Azure SDKs' `EnvironmentCredential` reads the PEM path from.
pub(crate) const PATH_VAR: &str = "AZURE_CLIENT_CERTIFICATE_PATH";
/// The variable the Azure SDKs read the certificate's password from.
pub(crate) const PASSWORD_VAR: &str = "AZURE_CLIENT_CERTIFICATE_PASSWORD";
/// How long an assertion is valid (MSAL's choice; Entra accepts up to 10 minutes).
const ASSERTION_LIFETIME_SECS: i64 = 600;
/// A PEM or PFX with a certificate chain is a few kilobytes; refuse to slurp anything absurd.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Tokens for a service principal with a certificate. Holds the file's path and the
/// certificate's thumbprint, never the key.
#[derive(Debug)]
pub struct ClientCertificateSource {
    app: EntraApp,
    path: PathBuf,
    password: Option<Secret>,
    /// `x5t#S256` of the certificate last read (public; for messages).
    thumbprint: std::sync::Mutex<String>,
}

impl ClientCertificateSource {
    /// Reads and checks the PEM file; sends nothing.
    ///
    /// A missing tenant, client id or path is [`AuthError::Unavailable`] (listed together); a
    /// file that cannot be read or used is [`AuthError::Config`]: the file was named, and
    /// another identity must not silently take its place.
    pub fn new(cfg: &AuthConfig, http: &HttpClients, env: &Env) -> Result<Self, AuthError> {
        let path = certificate_path(cfg, env);
        let tenant = entra::tenant(cfg, env);
        let client_id = entra::client_id(cfg, env);
        let (path, tenant, client_id) =
            match (path, tenant, client_id) {
                (Some(p), Some(t), Some(c)) => (p, t, c),
                (path, tenant, client_id) => return Err(entra::missing(
                    NAME,
                    &[
                        tenant.is_none().then_some("tenant id (AZURE_TENANT_ID)"),
                        client_id.is_none().then_some("client id (AZURE_CLIENT_ID)"),
                        path.is_none().then_some(
                            "certificate file (certificate_path or AZURE_CLIENT_CERTIFICATE_PATH)",
                        ),
                    ],
                )),
            };
        let app = EntraApp::new(NAME, cfg, http, env, &tenant, client_id)?;
        let password = cfg
            .certificate_password
            .clone()
            .filter(|p| !p.is_empty())
            .or_else(|| env.get(PASSWORD_VAR).map(Secret::new));
        let file = read_file_blocking(&path).map_err(AuthError::Config)?;
        let credentials = Credentials::from_file(&file, password.as_ref()).map_err(|reason| {
            AuthError::Config(format!("certificate file {}: {reason}", path.display()))
        })?;
        Ok(ClientCertificateSource {
            app,
            path,
            password,
            thumbprint: std::sync::Mutex::new(credentials.thumbprint),
        })
    }

    /// Replaces the retry schedule (tests use a short one).
    #[cfg(test)]
    pub fn with_retry(mut self, retry: RetrySchedule) -> Self {
        self.app.set_retry(retry);
        self
    }

    async fn request(&self, deadline: Option<Instant>) -> Result<AccessToken, AuthError> {
        let failed = |reason: String| AuthError::Failed {
            source_name: NAME,
            reason,
        };
        let path = self.path.clone();
        let file = tokio::task::spawn_blocking(move || read_file_blocking(&path))
            .await
            .map_err(|e| failed(format!("reading the certificate file failed: {e}")))?
            .map_err(failed)?;
        let credentials =
            Credentials::from_file(&file, self.password.as_ref()).map_err(|reason| {
                failed(format!(
                    "certificate file {}: {reason}",
                    self.path.display()
                ))
            })?;
        {
            let mut known = self
                .thumbprint
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if *known != credentials.thumbprint {
                tracing::info!(
                    source = NAME,
                    path = %self.path.display(),
                    thumbprint = %credentials.thumbprint,
                    "the certificate file holds a new certificate"
                );
                known.clone_from(&credentials.thumbprint);
            }
        }
        let audience = self.app.token_url().as_str();
        let client_id = self.app.client_id();
        self.app
            .request(deadline, || {
                let now = jiff::Timestamp::now().as_second();
                credentials
                    .assertion(client_id, audience, now)
                    .map(|jwt| Credential::Assertion(Secret::new(jwt)))
                    .map_err(failed)
            })
            .await
    }
}

impl TokenSource for ClientCertificateSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        Box::pin(self.request(None))
    }

    fn fetch_by(&self, deadline: Option<Instant>) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        Box::pin(self.request(deadline))
    }
}

/// `certificate_path` from the configuration, else `AZURE_CLIENT_CERTIFICATE_PATH`.
pub(crate) fn certificate_path(cfg: &AuthConfig, env: &Env) -> Option<PathBuf> {
    cfg.certificate_path
        .clone()
        .filter(|p| !p.as_os_str().is_empty())
        .or_else(|| env.get(PATH_VAR).map(|p| PathBuf::from(p.trim())))
}

/// The file's bytes, or a message naming the file and the cause.
fn read_file_blocking(path: &Path) -> Result<Vec<u8>, String> {
    let cannot = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("certificate file {} does not exist", path.display())
        }
        std::io::ErrorKind::PermissionDenied => format!(
            "permission denied reading certificate file {}: the service user must be able to \
             read it",
            path.display()
        ),
        _ => format!("cannot read certificate file {}: {e}", path.display()),
    };
    let size = std::fs::metadata(path).map_err(cannot)?.len();
    if size > MAX_PEM_BYTES {
        return Err(format!(
            "certificate file {} is {size} bytes: too large for a certificate and its key",
            path.display()
        ));
    }
    std::fs::read(path).map_err(cannot)
}

/// A certificate's key and thumbprint, parsed from PEM.
struct Credentials {
    key: RsaKeyPair,
    /// base64url(SHA-256(DER certificate)).
    thumbprint: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

/// A private key as found in a file, before ring parses it.
enum Key {
    Pkcs8(zeroize::Zeroizing<Vec<u8>>),
    Pkcs1(zeroize::Zeroizing<Vec<u8>>),
    Ec,
}

impl Credentials {
    /// Reads a PEM or PKCS#12 file (told apart by content). Messages say what is wrong with the
    /// file, never what is in it.
    fn from_file(file: &[u8], password: Option<&Secret>) -> Result<Self, String> {
        if pkcs12::looks_like(file) {
            let contents =
                pkcs12::parse(file, password.map_or("", Secret::expose)).map_err(|e| match e {
                    pkcs12::Pkcs12Error::WrongPassword if password.is_none() => format!(
                        "the PKCS#12 file needs a password: set {PASSWORD_VAR} or [auth] \
                         certificate_password"
                    ),
                    other => other.to_string(),
                })?;
            let Some(key) = contents.key else {
                return Err(
                    "the PKCS#12 file holds no private key (export it with the key)".into(),
                );
            };
            return Self::from_parts(Key::Pkcs8(key), &contents.certificates);
        }
        Self::from_pem(file, password)
    }

    /// Finds the RSA key and the certificate it belongs to in PEM text.
    fn from_pem(pem: &[u8], password: Option<&Secret>) -> Result<Self, String> {
        if contains(pem, b"Proc-Type: 4,ENCRYPTED") {
            return Err(
                "the private key is encrypted the old OpenSSL way (Proc-Type: 4,ENCRYPTED), \
                 which is not supported; convert it to encrypted PKCS#8 (openssl pkcs8 -topk8 \
                 -v2 aes-256-cbc -in key.pem -out key-pkcs8.pem) or to a PKCS#12 file"
                    .into(),
            );
        }
        let mut certificates = Vec::new();
        let mut key = None;
        for section in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(pem) {
            let (kind, der) = section.map_err(pem_error)?;
            let der = zeroize::Zeroizing::new(der);
            match kind {
                SectionKind::Certificate => certificates.push(der.to_vec()),
                SectionKind::PrivateKey if key.is_none() => key = Some(Key::Pkcs8(der)),
                SectionKind::RsaPrivateKey if key.is_none() => key = Some(Key::Pkcs1(der)),
                SectionKind::EcPrivateKey if key.is_none() => key = Some(Key::Ec),
                _ => {}
            }
        }
        if key.is_none() {
            if let Some(encrypted) = encrypted_pem_key(pem)? {
                let Some(password) = password else {
                    return Err(format!(
                        "the private key is encrypted (BEGIN ENCRYPTED PRIVATE KEY): set \
                         {PASSWORD_VAR} or [auth] certificate_password"
                    ));
                };
                let der =
                    pkcs12::decrypt_private_key(&encrypted, &Password::new(password.expose()))
                        .map_err(|e| match e {
                            pkcs12::Pkcs12Error::WrongPassword => format!(
                                "the private key does not decrypt with the password given \
                             ({PASSWORD_VAR} or [auth] certificate_password): wrong password?"
                            ),
                            pkcs12::Pkcs12Error::Malformed(what) => {
                                format!("the encrypted private key is damaged ({what})")
                            }
                            other => format!("the encrypted private key: {other}"),
                        })?;
                key = Some(Key::Pkcs8(der));
            }
        }
        let Some(key) = key else {
            return Err(
                "no private key found (expected a BEGIN PRIVATE KEY, BEGIN RSA PRIVATE KEY or \
                 BEGIN ENCRYPTED PRIVATE KEY section next to the certificate)"
                    .into(),
            );
        };
        Self::from_parts(key, &certificates)
    }

    /// The key, and the certificate among `certificates` that it belongs to.
    fn from_parts(key: Key, certificates: &[Vec<u8>]) -> Result<Self, String> {
        let key = match key {
            Key::Pkcs8(der) => RsaKeyPair::from_pkcs8(&der).map_err(|e| {
                format!(
                    "the private key is not a usable RSA key ({e}); Entra certificate \
                     credentials need RSA (2048 bits or more)"
                )
            })?,
            Key::Pkcs1(der) => RsaKeyPair::from_der(&der)
                .map_err(|e| format!("the RSA private key is not usable ({e})"))?,
            Key::Ec => {
                return Err(
                    "the private key is an EC key; Entra certificate credentials need RSA".into(),
                )
            }
        };
        if certificates.is_empty() {
            return Err(
                "no certificate found (expected a BEGIN CERTIFICATE section, or a certificate \
                 in the PKCS#12 file, next to the key)"
                    .into(),
            );
        }
        // The public key (DER RSAPublicKey) sits verbatim inside its certificate's
        // SubjectPublicKeyInfo, so containment finds the key's certificate without an X.509
        // parser.
        let public = key.public().as_ref();
        let Some(certificate) = certificates.iter().find(|c| contains(c, public)) else {
            return Err(format!(
                "the private key does not belong to the certificate{} in the file",
                if certificates.len() > 1 { "s" } else { "" }
            ));
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, certificate);
        Ok(Credentials {
            key,
            thumbprint: URL_SAFE_NO_PAD.encode(digest.as_ref()),
        })
    }

    /// A signed client assertion for `client_id` at the token URL `audience`, issued at `now`
    /// (Unix seconds).
    fn assertion(&self, client_id: &str, audience: &str, now: i64) -> Result<String, String> {
        let header = serde_json::json!({
            "alg": "PS256",
            "typ": "JWT",
            "x5t#S256": self.thumbprint,
        });
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PSS_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "signing the client assertion failed".to_string())?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// The DER of the first `ENCRYPTED PRIVATE KEY` PEM section, if there is one.
fn encrypted_pem_key(pem: &[u8]) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, String> {
    const BEGIN: &[u8] = b"-----BEGIN ENCRYPTED PRIVATE KEY-----";
    const END: &[u8] = b"-----END ENCRYPTED PRIVATE KEY-----";
    let Some(start) = find(pem, BEGIN) else {
        return Ok(None);
    };
    let body = &pem[start + BEGIN.len()..];
    let end = find(body, END).ok_or("not a valid PEM file: a section has no END line")?;
    let text: Vec<u8> = body[..end]
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(&text)
        .map(|der| Some(zeroize::Zeroizing::new(der)))
        .map_err(|_| "not a valid PEM file: a section is not valid base64".into())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// A PEM syntax error, described without the offending bytes.
fn pem_error(e: pem::Error) -> String {
    let what = match e {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a section is not valid base64",
        pem::Error::SectionTooLarge => "a section is too large",
        _ => "it could not be parsed",
    };
    format!("not a valid PEM file: {what}")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::auth::test_support::{fake_entra, fast_retry};
    use base64::engine::general_purpose::STANDARD;
    use ring::signature::{UnparsedPublicKey, RSA_PSS_2048_8192_SHA256};
    use std::time::Duration;

    /// A self-signed test certificate (CN=dcrship-test, valid to 2126) and its RSA 2048 key,
    /// made with `openssl req -x509 -newkey rsa:2048 -nodes`. Test-only: it proves nothing.
    pub(crate) const CERT_PEM: &str = include_str!("../../tests/fixtures/test-client-cert.pem");
    /// The key as PKCS#8 (`BEGIN PRIVATE KEY`).
    pub(crate) const KEY_PKCS8_PEM: &str = include_str!("../../tests/fixtures/test-client-key.pem");
    /// The same key as PKCS#1 (`openssl rsa -traditional`).
    pub(crate) const KEY_PKCS1_PEM: &str = "\
-----BEGIN RSA PRIVATE KEY-----\n\
MIIEpAIBAAKCAQEAuBGVWZziWs9uaHzVpmP5nhGoe0z7t/Dc+nsvwx1UYBMRlmiD\n\
d9FXS19MYC6zRavIqBUsUUFK9l7tzyui3FDcJfxeW+bao9oLU/ChIbuUNlfh7qow\n\
28dcOzPgq7zDhYFBavguUCVoPOv3HZTIfs4Qfgb7zDuwo+O7CRz6B4KoEkDjm6JC\n\
SE1s3mCJBS7FOnmm/7DscpQfGfFRqlHfq4A5bqs30ZHGlPGXL5Sq01dFXoW5PDJ4\n\
T4UzDnLOW4vmZtZBPlRhNYZj6F3Y6ucC6qg4T3cIANEOnl/DsSwN+8OuuFH/hd+m\n\
FNw/U9+3X5gy2p69zDfgleAFaOtAyO5x40YQvQIDAQABAoIBAChg/RcjPhmnOwRz\n\
bCf78wicvY3M6cRkc4mESApArx+DV16cL0jz1LdNYNMRs5STVmme+XGaxe/Ni9Qg\n\
cbHskBrKJcX52tlKbiU8GpDslhskxMSnM6Am+AHpw73Q40BwhjIJ3xkIV7lTl0p3\n\
NtNwb3hCHm8jYgDV5pQddfD7VdTo5XUEYLCbkLdxVsBwZZWOb+uAKVQLFFEALwRh\n\
6nYx6NRZcXNGqwgObGWlAKhy58UldYjKBuvvdIB3N+/eLbU8mIvREssOxr9a+1k4\n\
C7zL5Cig83f5ezOIklR52fdpPNO2CUzMv9c3jRssvCCQKCrXK/i/iATnyMzKLwWa\n\
u50v+KkCgYEA3Gr3J2yfp8rhwDMZrq0e9a4dn/Ublp+F3k57H8yGj8c7m3bTofE2\n\
u/aywuwGFSmgmbAcwJpJOxhYYyz5zmCBDD7B3w5Bwh40tkwYmGF1JD4gfqgzK78V\n\
cPTAnA19OsZvZVnG5NIH6xJPVGfCbb8ZgYpPDiCQFstk3+7wHlWfvPkCgYEA1chx\n\
/J5SZPFpnjD5pLPXuwLOh+J1LvxRf05Ff/4YLZ9dYWSlQMY7GYs4u+iyLlco2yXd\n\
iMVGktE1ZtlUKnS8n08u40khYy8de0+iy56z/C8yl6DZjYHpmJqBAoByAyjDSzCa\n\
9nDbVIqb9bzQj9gBYsY/XbBJWC85AN+pCcKRtuUCgYAhD5I+wZY47r9pusBxaNop\n\
85HR+kvHDepga9kf7eeJDVMtgGdB9RJGozww7IIFDpdeNgI6CWpOiNpJFefqQqNY\n\
mNkvgc3vNeSmK0fNI2EUrJTnKodyWlj29l8liQhtlnIC+7JPhAlYAwkPGfkZyP4k\n\
ZgBxmATExoE87XPquOEa0QKBgQDJ4Gn7coo99laVYowrwwSB/amIWgnsn6pZ/FDX\n\
B9xPIMGumbsPiuH+QiEGGTxBVF8pav1jDV+Sfurdv3aiTPBdxAlz6fgUUEaXzmDd\n\
xXUTPIKa+vLVlQtA5w3SjfacEx8wXqrG81W65NVX3cBZRVIxsyHdV/46vwUmVQ6s\n\
P8cYHQKBgQCZMf0h48UnHdgHIeYq9qRqF/b4hBwU//UXUA0aLFZNXV56nrfiAFUf\n\
BPdmY+tm4xmu5JQK9h3qB5tjP/XEhZMVDqL9nkEjH/PoFaCpDV2nlHk+U9A4ZGHw\n\
JMHdnuwRgWLssGgyoCIJwEcl6c0O2xvA5AsQ9ReoIrCyMwe9P6FRtA==\n\
-----END RSA PRIVATE KEY-----\n";
    /// A certificate for another key (CN=dcrship-other).
    pub(crate) const OTHER_CERT_PEM: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIDEzCCAfugAwIBAgIUU55DxTIHT8j3Oo/iRfWzjP5rh3gwDQYJKoZIhvcNAQEL\n\
BQAwGDEWMBQGA1UEAwwNZGNyc2hpcC1vdGhlcjAgFw0yNjExMjMxNjQ5MTRaGA8y\n\
MTI2MTAzMDE2NDkxNFowGDEWMBQGA1UEAwwNZGNyc2hpcC1vdGhlcjCCASIwDQYJ\n\
KoZIhvcNAQEBBQADggEPADCCAQoCggEBAJbXTMrarzxaaVln3LLKsyjz4CGof/rr\n\
GGsnSKUczmXEgstXlQ1CRGKL+2sMlmfxcBSIOhW2o2Ou7pJq0Y0K9QRp+F6trgxR\n\
okPkTHXwiOFqPAGH3lRiSXWbsWyk+RvU3HTAWeTMR869j9JpD+SwwohkjTZEYoMI\n\
257t1yePTl5VqjcWpD+mXW8wcwbgzHls+LawUKbMANwJ5AexWK+CZvmYaiXMalti\n\
jMQwxv5DpN57NnzwV1tQySqd+go9BrJcr0ry5thlGvjs9UPzdW8Xp7lDqygqFC54\n\
/o1Z52vhBq08n/eKFPJtkJ8fmEq83QJxv0PfhPNhr0jrcyWETXWvtd8CAwEAAaNT\n\
MFEwHQYDVR0OBBYEFBIE+rEyW96uhJWy5/qu7A+daKooMB8GA1UdIwQYMBaAFBIE\n\
+rEyW96uhJWy5/qu7A+daKooMA8GA1UdEwEB/wQFMAMBAf8wDQYJKoZIhvcNAQEL\n\
BQADggEBAF85QoqruQ6/zOd+niUbicDnzsTGuyTW2eqsF4V8XyF2Yi5ThFIQHQw8\n\
ZAfxeiZiIeXdmgvlsc6CeaDCpg/zgK+gf+Zth/M+nJI+nXCrMAM6dVi5NLNmkW7L\n\
+DC9E/Rlg9tWak/D5xOsagjIWaCgSktNhFI0Bjla1PUD0rDwQJsXyQYF3GdYDFng\n\
yh93EEg7BHR57q4HFZxAxCGVPF1TLJGZJ5raMPerCyXu+NzKvZSiWDw3A0DbdBhb\n\
/nZSdcuZ5GeWZSL3gOG8FPKBwZ0NZKyyTQ7pCg1egbl06f+BO2ijGeFkVbEawv/o\n\
YiCa7gmca5iB7ZePMTao4j79kq3lFlg=\n\
-----END CERTIFICATE-----\n";
    /// A P-256 key: not RSA.
    pub(crate) const EC_KEY_PEM: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgLOapuMjaTrvOUr0G\n\
iv78qJha4rVtppFEpWj2BGiXMjWhRANCAASFHuXvB1BFFVtYahrzHeGZZHHGix6p\n\
qy7hd5ftZdyOgB0rn1sSCoGXwfKE8t1SR0o9BNpv2cguXJyu95XLDPQe\n\
-----END PRIVATE KEY-----\n";
    /// The key's public half (`openssl rsa -RSAPublicKey_out -outform DER | base64`).
    pub(crate) const PUBLIC_KEY_DER_B64: &str = "MIIBCgKCAQEAuBGVWZziWs9uaHzVpmP5nhGoe0z7t/Dc+nsvwx1UYBMRlmiDd9FXS19MYC6zRavIqBUsUUFK9l7tzyui3FDcJfxeW+bao9oLU/ChIbuUNlfh7qow28dcOzPgq7zDhYFBavguUCVoPOv3HZTIfs4Qfgb7zDuwo+O7CRz6B4KoEkDjm6JCSE1s3mCJBS7FOnmm/7DscpQfGfFRqlHfq4A5bqs30ZHGlPGXL5Sq01dFXoW5PDJ4T4UzDnLOW4vmZtZBPlRhNYZj6F3Y6ucC6qg4T3cIANEOnl/DsSwN+8OuuFH/hd+mFNw/U9+3X5gy2p69zDfgleAFaOtAyO5x40YQvQIDAQAB";
    /// `openssl x509 -outform DER | openssl dgst -sha256 -binary`, base64url without padding.
    pub(crate) const X5T_S256: &str = "MaeJGhu5h29NzQCAXNHbnk8b5UrwiXFdV0cH5stPjJE";

    const OK_BODY: &str = r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"tok-cert"}"#;
    const TENANT: &str = "contoso.onmicrosoft.com";

    fn http() -> HttpClients {
        HttpClients::new(Duration::from_secs(5)).unwrap()
    }

    /// Writes `parts` joined into `cert.pem` in a fresh directory.
    pub(crate) fn pem_file(parts: &[&str]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        std::fs::write(&path, parts.concat()).unwrap();
        (dir, path)
    }

    fn cfg(authority: &str, path: &Path) -> AuthConfig {
        AuthConfig {
            tenant_id: Some(TENANT.into()),
            client_id: Some("app-id".into()),
            certificate_path: Some(path.to_path_buf()),
            authority_host: Some(authority.into()),
            ..Default::default()
        }
    }

    fn no_env() -> Env {
        Env::from_pairs::<&str, &str>([])
    }

    fn decode_json(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    /// Checks a PS256 assertion against the fixture's public key; returns (header, claims).
    pub(crate) fn verify(jwt: &str) -> (serde_json::Value, serde_json::Value) {
        let (signing_input, signature) = jwt.rsplit_once('.').unwrap();
        let public = STANDARD.decode(PUBLIC_KEY_DER_B64).unwrap();
        UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, &public)
            .verify(
                signing_input.as_bytes(),
                &URL_SAFE_NO_PAD.decode(signature).unwrap(),
            )
            .expect("the signature verifies with the certificate's public key");
        let (header, claims) = signing_input.split_once('.').unwrap();
        (decode_json(header), decode_json(claims))
    }

    #[test]
    fn pkcs8_and_pkcs1_give_a_verifiable_ps256_assertion() {
        for key in [KEY_PKCS8_PEM, KEY_PKCS1_PEM] {
            // Key before or after the certificate, and the other certificate of a chain around.
            for pem in [
                [CERT_PEM, key, OTHER_CERT_PEM].concat(),
                [key, OTHER_CERT_PEM, CERT_PEM].concat(),
            ] {
                let creds = Credentials::from_pem(pem.as_bytes(), None).unwrap();
                assert_eq!(creds.thumbprint, X5T_S256);
                let jwt = creds
                    .assertion(
                        "app-id",
                        "https://login.example/t/oauth2/v2.0/token",
                        1_800_000_000,
                    )
                    .unwrap();
                let (header, claims) = verify(&jwt);
                assert_eq!(
                    header,
                    serde_json::json!({"alg": "PS256", "typ": "JWT", "x5t#S256": X5T_S256})
                );
                assert_eq!(claims["aud"], "https://login.example/t/oauth2/v2.0/token");
                assert_eq!(claims["iss"], "app-id");
                assert_eq!(claims["sub"], "app-id");
                assert_eq!(claims["nbf"], 1_800_000_000);
                assert_eq!(claims["iat"], 1_800_000_000);
                assert_eq!(claims["exp"], 1_800_000_600);
                let jti = claims["jti"].as_str().unwrap();
                assert_eq!(uuid::Uuid::parse_str(jti).unwrap().get_version_num(), 4);
            }
        }
    }

    #[test]
    fn every_assertion_has_a_fresh_jti() {
        let creds =
            Credentials::from_pem([CERT_PEM, KEY_PKCS8_PEM].concat().as_bytes(), None).unwrap();
        let jti = |jwt: String| verify(&jwt).1["jti"].clone();
        let a = jti(creds.assertion("c", "a", 1).unwrap());
        let b = jti(creds.assertion("c", "a", 1).unwrap());
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn posts_a_signed_assertion_and_no_secret() {
        let (base, rec) = fake_entra(TENANT, vec![(200, OK_BODY.into())]).await;
        let (_dir, path) = pem_file(&[CERT_PEM, KEY_PKCS8_PEM]);
        let src = ClientCertificateSource::new(&cfg(&base, &path), &http(), &no_env()).unwrap();
        assert_eq!(*src.thumbprint.lock().unwrap(), X5T_S256);
        let before = jiff::Timestamp::now().as_second();
        assert_eq!(src.fetch().await.unwrap().token.expose(), "tok-cert");
        let (_, form) = rec.only();
        assert_eq!(form["client_id"], "app-id");
        assert_eq!(
            form["client_assertion_type"],
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        );
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form["scope"], "https://monitor.azure.com//.default");
        assert!(!form.contains_key("client_secret"));
        let (_, claims) = verify(&form["client_assertion"]);
        assert_eq!(
            claims["aud"].as_str().unwrap(),
            format!("{base}/{TENANT}/oauth2/v2.0/token")
        );
        let nbf = claims["nbf"].as_i64().unwrap();
        assert!((before..before + 5).contains(&nbf), "{nbf}");
        assert_eq!(claims["exp"].as_i64().unwrap(), nbf + 600);
    }

    #[tokio::test]
    async fn reads_the_environment_like_the_sdks() {
        let (base, rec) = fake_entra(TENANT, vec![(200, OK_BODY.into())]).await;
        let (_dir, path) = pem_file(&[KEY_PKCS1_PEM, CERT_PEM]);
        let env = Env::from_pairs([
            ("AZURE_TENANT_ID", TENANT),
            ("AZURE_CLIENT_ID", "env-app"),
            (PATH_VAR, path.to_str().unwrap()),
            ("AZURE_AUTHORITY_HOST", base.as_str()),
        ]);
        let src = ClientCertificateSource::new(&AuthConfig::default(), &http(), &env)
            .unwrap()
            .with_retry(fast_retry());
        src.fetch().await.unwrap();
        let (_, form) = rec.only();
        assert_eq!(verify(&form["client_assertion"]).1["iss"], "env-app");
    }

    #[test]
    fn unusable_files_are_config_errors_that_say_why() {
        let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let cases: [(&[&str], &str); 7] = [
            (&[CERT_PEM, encrypted], PASSWORD_VAR),
            (&[CERT_PEM, legacy], "openssl pkcs8 -topk8"),
            (&[CERT_PEM, EC_KEY_PEM], "need RSA"),
            (
                &[OTHER_CERT_PEM, KEY_PKCS8_PEM],
                "does not belong to the certificate",
            ),
            (&[CERT_PEM], "no private key"),
            (&[KEY_PKCS8_PEM], "no certificate"),
            (&["-----BEGIN CERTIFICATE-----\nAAAA\n"], "no END line"),
        ];
        for (parts, expected) in cases {
            let (_dir, path) = pem_file(parts);
            let err = ClientCertificateSource::new(
                &cfg("https://login.example/", &path),
                &http(),
                &no_env(),
            )
            .unwrap_err();
            assert!(matches!(err, AuthError::Config(_)), "{expected}: {err:?}");
            assert!(err.to_string().contains(expected), "{expected}: {err}");
        }
        let err = ClientCertificateSource::new(
            &cfg("https://login.example/", Path::new("/nonexistent/cert.pem")),
            &http(),
            &no_env(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    const PASSWORD: &str = "dcrship-test";

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn pkcs12_files_modern_legacy_and_without_password() {
        // (fixture, password): made from the PEM fixtures by `openssl pkcs12 -export` (OpenSSL
        // 3 defaults: AES-256-CBC, PBKDF2-HMAC-SHA256, SHA-256 MAC), `-legacy` (3DES key,
        // RC2-40 certificates, SHA-1 MAC) and `-passout pass:`.
        let password = Secret::new(PASSWORD);
        let empty = Secret::new("");
        for (name, password) in [
            ("test-client-aes.pfx", Some(&password)),
            ("test-client-legacy.pfx", Some(&password)),
            ("test-client-nopass.pfx", None),
            ("test-client-nopass.pfx", Some(&empty)),
        ] {
            let creds = Credentials::from_file(&fixture(name), password)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(creds.thumbprint, X5T_S256, "{name}");
            let jwt = creds
                .assertion("app-id", "https://login.example/t", 1)
                .unwrap();
            verify(&jwt);
        }
    }

    #[test]
    fn a_wrong_or_missing_password_is_said_and_never_echoed() {
        let wrong = Secret::new("not-the-password-xyz");
        for name in ["test-client-aes.pfx", "test-client-legacy.pfx"] {
            for (password, said) in [
                (Some(&wrong), "password is wrong"),
                (None, "needs a password"),
            ] {
                let err = Credentials::from_file(&fixture(name), password).unwrap_err();
                assert!(err.contains(said), "{name}: {err}");
                assert!(err.contains(PASSWORD_VAR), "{name}: {err}");
                assert!(!err.contains("not-the-password"), "{err}");
            }
        }
        // A damaged PFX (cut short) is not called a password problem.
        let mut cut = fixture("test-client-aes.pfx");
        cut.truncate(cut.len() / 2);
        let err = Credentials::from_file(&cut, Some(&Secret::new(PASSWORD))).unwrap_err();
        assert!(!err.contains("password"), "{err}");
    }

    #[test]
    fn an_encrypted_pkcs8_key_is_decrypted_with_the_password() {
        let key = String::from_utf8(fixture("test-client-key-encrypted.pem")).unwrap();
        let pem = [CERT_PEM, &key].concat();
        let creds = Credentials::from_file(pem.as_bytes(), Some(&Secret::new(PASSWORD))).unwrap();
        assert_eq!(creds.thumbprint, X5T_S256);
        let err = Credentials::from_file(pem.as_bytes(), None).unwrap_err();
        assert!(
            err.contains("encrypted") && err.contains(PASSWORD_VAR),
            "{err}"
        );
        let err =
            Credentials::from_file(pem.as_bytes(), Some(&Secret::new("nope-nope"))).unwrap_err();
        assert!(err.contains("wrong password"), "{err}");
        assert!(!err.contains("nope-nope"), "{err}");
    }

    #[tokio::test]
    async fn a_pfx_from_the_environment_signs_the_assertion() {
        let (base, rec) = fake_entra(TENANT, vec![(200, OK_BODY.into())]).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pfx");
        std::fs::write(&path, fixture("test-client-aes.pfx")).unwrap();
        let env = Env::from_pairs([
            ("AZURE_TENANT_ID", TENANT),
            ("AZURE_CLIENT_ID", "env-app"),
            (PATH_VAR, path.to_str().unwrap()),
            (PASSWORD_VAR, PASSWORD),
            ("AZURE_AUTHORITY_HOST", base.as_str()),
        ]);
        let src = ClientCertificateSource::new(&AuthConfig::default(), &http(), &env).unwrap();
        assert!(!format!("{src:?}").contains(PASSWORD));
        src.fetch().await.unwrap();
        let (_, form) = rec.only();
        assert_eq!(verify(&form["client_assertion"]).1["iss"], "env-app");
        // The configuration's password wins over the environment's.
        let cfg = AuthConfig {
            certificate_password: Some(Secret::new("wrong-one")),
            ..Default::default()
        };
        let err = ClientCertificateSource::new(&cfg, &http(), &env).unwrap_err();
        assert!(matches!(err, AuthError::Config(_)), "{err:?}");
    }

    #[test]
    fn missing_values_are_listed() {
        let err = ClientCertificateSource::new(
            &AuthConfig::default(),
            &http(),
            &Env::from_pairs([("AZURE_CLIENT_ID", "x")]),
        )
        .unwrap_err();
        assert!(matches!(err, AuthError::Unavailable { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains(PATH_VAR) && text.contains("AZURE_TENANT_ID"),
            "{text}"
        );
        assert!(!text.contains("AZURE_CLIENT_ID"), "{text}");
    }

    #[tokio::test]
    async fn a_renewed_certificate_is_picked_up_and_a_broken_one_fails_the_fetch() {
        let (base, rec) = fake_entra(TENANT, vec![(200, OK_BODY.into())]).await;
        let (_dir, path) = pem_file(&[CERT_PEM, KEY_PKCS8_PEM]);
        let src = ClientCertificateSource::new(&cfg(&base, &path), &http(), &no_env()).unwrap();
        std::fs::write(&path, [KEY_PKCS1_PEM, CERT_PEM].concat()).unwrap();
        src.fetch().await.unwrap();
        assert_eq!(rec.count(), 1);
        std::fs::write(&path, CERT_PEM).unwrap();
        let err = src.fetch().await.unwrap_err();
        assert!(matches!(err, AuthError::Failed { .. }), "{err:?}");
        assert!(err.to_string().contains("no private key"), "{err}");
        assert_eq!(rec.count(), 1);
    }
}
