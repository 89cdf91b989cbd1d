//! Password-based decryption of private keys: PBES2 (PBKDF2 with HMAC-SHA-1/256/384/512, then
//! AES-128/192/256-CBC or 3DES-CBC; what `openssl pkcs12 -export` and `openssl pkcs8 -topk8`
//! write by default since OpenSSL 3) and the older PKCS#12 schemes (SHA-1 with 3DES or RC2, the
//! defaults of OpenSSL 1.x and of Windows' certificate export), plus the PKCS#12 MAC check that
//! tells a wrong password from a damaged file.
//!
//! Hashing, HMAC and PBKDF2 are ring's; the block ciphers are RustCrypto's `aes`, `des` and `rc2`
//! in `cbc` mode. Decrypted keys are zeroed when dropped.

use std::num::NonZeroU32;

use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, InnerIvInit, KeyIvInit};
use ring::{digest, hmac, pbkdf2};
use zeroize::Zeroizing;

use super::der::{Malformed, Reader, OCTET_STRING};

/// Why a key could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PbeError {
    Malformed(&'static str),
    /// The MAC did not match, or the decrypted data has no valid padding.
    WrongPassword,
    /// An algorithm this reader does not implement, by name.
    Unsupported(String),
}

impl From<Malformed> for PbeError {
    fn from(m: Malformed) -> Self {
        PbeError::Malformed(m.0)
    }
}

/// More iterations than this is not a key file but an attempt to keep us busy.
const MAX_ITERATIONS: u64 = 10_000_000;

const PBES2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d];
const PBKDF2: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0c];
const HMAC_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x07];
const HMAC_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x09];
const HMAC_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x0a];
const HMAC_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x0b];
const AES128_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02];
const AES192_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x16];
const AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];
const DES_EDE3_CBC: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x03, 0x07];
const PBE_SHA1_3DES: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x03];
const PBE_SHA1_2DES: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x04];
const PBE_SHA1_RC2_128: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x05];
const PBE_SHA1_RC2_40: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x06];
const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
/// PBMAC1 (RFC 9579), an option of OpenSSL 3.4+: named in the error, not implemented.
const PBMAC1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0e];

/// A password, in the two encodings the schemes use.
pub(crate) struct Password<'a> {
    /// As typed (UTF-8): PBES2.
    pub(crate) utf8: &'a [u8],
    /// UTF-16BE with a 00 00 terminator (PKCS#12's BMPString): the PKCS#12 schemes and MAC.
    pub(crate) bmp: Zeroizing<Vec<u8>>,
}

impl<'a> Password<'a> {
    pub(crate) fn new(password: &'a str) -> Self {
        let mut bmp: Vec<u8> = password.encode_utf16().flat_map(u16::to_be_bytes).collect();
        bmp.extend([0, 0]);
        Password {
            utf8: password.as_bytes(),
            bmp: Zeroizing::new(bmp),
        }
    }

    /// The empty password as some tools write it: no bytes at all, not even the terminator.
    pub(crate) fn absent() -> Password<'static> {
        Password {
            utf8: b"",
            bmp: Zeroizing::new(Vec::new()),
        }
    }
}

/// Decrypts `data` encrypted by the scheme in the DER AlgorithmIdentifier `algorithm`.
pub(crate) fn decrypt(
    algorithm: &[u8],
    data: &[u8],
    password: &Password<'_>,
) -> Result<Zeroizing<Vec<u8>>, PbeError> {
    let mut alg = Reader::new(algorithm).sequence("algorithm")?;
    let oid = alg.oid("algorithm")?;
    let params = alg.any()?;
    if oid == PBES2 {
        return pbes2(params.body, data, password);
    }
    let (cipher, key_len) = match oid {
        PBE_SHA1_3DES => (Cipher::TdesEde3, 24),
        PBE_SHA1_2DES => (Cipher::TdesEde2, 16),
        PBE_SHA1_RC2_128 => (Cipher::Rc2 { bits: 128 }, 16),
        PBE_SHA1_RC2_40 => (Cipher::Rc2 { bits: 40 }, 5),
        other => return Err(PbeError::Unsupported(oid_name(other))),
    };
    let mut p = Reader::new(params.body);
    let salt = p.octets("salt")?;
    let iterations = iterations(p.integer("iterations")?)?;
    let hash = Hash::Sha1;
    let key = Zeroizing::new(kdf(hash, &password.bmp, &salt, 1, iterations, key_len));
    let iv = kdf(hash, &password.bmp, &salt, 2, iterations, 8);
    cipher.decrypt(&key, &iv, data)
}

/// Checks a PKCS#12 `MacData` over `content` (the AuthenticatedSafe).
pub(crate) fn verify_mac(
    mac_data: &[u8],
    content: &[u8],
    password: &Password<'_>,
) -> Result<(), PbeError> {
    let mut mac = Reader::new(mac_data);
    let mut digest_info = mac.sequence("MAC")?;
    let mut alg = digest_info.sequence("MAC algorithm")?;
    let oid = alg.oid("MAC algorithm")?;
    let expected = digest_info.octets("MAC")?;
    let salt = mac.octets("MAC salt")?;
    // DEFAULT 1.
    let iterations = iterations(mac.optional_integer("MAC iterations")?.unwrap_or(1))?;
    if oid == PBMAC1 {
        return Err(PbeError::Unsupported(oid_name(oid)));
    }
    let hash = Hash::from_digest_oid(oid)?;
    let key = Zeroizing::new(kdf(
        hash,
        &password.bmp,
        &salt,
        3,
        iterations,
        hash.digest().output_len(),
    ));
    let key = hmac::Key::new(hash.hmac(), &key);
    hmac::verify(&key, content, &expected).map_err(|_| PbeError::WrongPassword)
}

/// PBES2: PBKDF2 for the key, then a CBC cipher.
fn pbes2(
    params: &[u8],
    data: &[u8],
    password: &Password<'_>,
) -> Result<Zeroizing<Vec<u8>>, PbeError> {
    let mut p = Reader::new(params);
    let mut kdf_alg = p.sequence("PBES2 key derivation")?;
    if kdf_alg.oid("PBES2 key derivation")? != PBKDF2 {
        return Err(PbeError::Unsupported(
            "a PBES2 key derivation other than PBKDF2 (scrypt?)".into(),
        ));
    }
    let mut kdf_params = kdf_alg.sequence("PBKDF2 parameters")?;
    let salt = kdf_params.expect(OCTET_STRING, "PBKDF2 salt")?.body;
    let iterations = iterations(kdf_params.integer("PBKDF2 iterations")?)?;
    let key_len = kdf_params.optional_integer("PBKDF2 key length")?;
    let prf = match kdf_params.optional(super::der::SEQUENCE)? {
        Some(prf) => Reader::new(prf.body).oid("PBKDF2 PRF")?,
        None => HMAC_SHA1,
    };
    let prf = match prf {
        HMAC_SHA1 => pbkdf2::PBKDF2_HMAC_SHA1,
        HMAC_SHA256 => pbkdf2::PBKDF2_HMAC_SHA256,
        HMAC_SHA384 => pbkdf2::PBKDF2_HMAC_SHA384,
        HMAC_SHA512 => pbkdf2::PBKDF2_HMAC_SHA512,
        other => return Err(PbeError::Unsupported(oid_name(other))),
    };
    let mut scheme = p.sequence("PBES2 encryption scheme")?;
    let (cipher, len) = match scheme.oid("PBES2 encryption scheme")? {
        AES128_CBC => (Cipher::Aes128, 16),
        AES192_CBC => (Cipher::Aes192, 24),
        AES256_CBC => (Cipher::Aes256, 32),
        DES_EDE3_CBC => (Cipher::TdesEde3, 24),
        other => return Err(PbeError::Unsupported(oid_name(other))),
    };
    if key_len.is_some_and(|k| k != len as u64) {
        return Err(PbeError::Malformed(
            "the PBKDF2 key length does not fit the cipher",
        ));
    }
    let iv = scheme.expect(OCTET_STRING, "the cipher's IV")?.body;
    let mut key = Zeroizing::new(vec![0u8; len]);
    pbkdf2::derive(prf, iterations, salt, password.utf8, &mut key);
    cipher.decrypt(&key, iv, data)
}

fn iterations(n: u64) -> Result<NonZeroU32, PbeError> {
    if n > MAX_ITERATIONS {
        return Err(PbeError::Malformed(
            "asks for an absurd number of iterations",
        ));
    }
    u32::try_from(n)
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or(PbeError::Malformed("has zero iterations"))
}

#[derive(Debug, Clone, Copy)]
enum Hash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn from_digest_oid(oid: &[u8]) -> Result<Self, PbeError> {
        match oid {
            SHA1 => Ok(Hash::Sha1),
            SHA256 => Ok(Hash::Sha256),
            SHA384 => Ok(Hash::Sha384),
            SHA512 => Ok(Hash::Sha512),
            other => Err(PbeError::Unsupported(oid_name(other))),
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Hash::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Hash::Sha256 => &digest::SHA256,
            Hash::Sha384 => &digest::SHA384,
            Hash::Sha512 => &digest::SHA512,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Hash::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Hash::Sha256 => hmac::HMAC_SHA256,
            Hash::Sha384 => hmac::HMAC_SHA384,
            Hash::Sha512 => hmac::HMAC_SHA512,
        }
    }
}

/// The PKCS#12 key derivation (RFC 7292, appendix B.2): `n` bytes for purpose `id` (1 key,
/// 2 IV, 3 MAC key).
fn kdf(
    hash: Hash,
    password: &[u8],
    salt: &[u8],
    id: u8,
    iterations: NonZeroU32,
    n: usize,
) -> Vec<u8> {
    let alg = hash.digest();
    let u = alg.output_len();
    let v = alg.block_len();
    let fill = |input: &[u8]| -> Vec<u8> {
        if input.is_empty() {
            return Vec::new();
        }
        let len = v * input.len().div_ceil(v);
        input.iter().copied().cycle().take(len).collect()
    };
    let mut i = fill(salt);
    i.extend(fill(password));
    let i = &mut Zeroizing::new(i);
    let d = vec![id; v];
    let mut out = Vec::with_capacity(n.div_ceil(u) * u);
    while out.len() < n {
        let mut ctx = digest::Context::new(alg);
        ctx.update(&d);
        ctx.update(i);
        let mut a = ctx.finish();
        for _ in 1..iterations.get() {
            a = digest::digest(alg, a.as_ref());
        }
        let a = a.as_ref();
        out.extend_from_slice(a);
        if out.len() >= n {
            break;
        }
        // I_j = (I_j + B + 1) mod 2^(8v), B = A repeated to v bytes.
        let b: Vec<u8> = a.iter().copied().cycle().take(v).collect();
        for block in i.chunks_mut(v) {
            let mut carry = 1u16;
            for (x, y) in block.iter_mut().rev().zip(b.iter().rev()) {
                let sum = u16::from(*x) + u16::from(*y) + carry;
                *x = sum as u8;
                carry = sum >> 8;
            }
        }
    }
    out.truncate(n);
    out
}

#[derive(Debug, Clone, Copy)]
enum Cipher {
    Aes128,
    Aes192,
    Aes256,
    TdesEde3,
    TdesEde2,
    Rc2 { bits: usize },
}

impl Cipher {
    /// CBC decryption with PKCS#7 padding; bad padding means a wrong password.
    fn decrypt(self, key: &[u8], iv: &[u8], data: &[u8]) -> Result<Zeroizing<Vec<u8>>, PbeError> {
        fn run<C: BlockModeDecrypt>(mode: C, data: &[u8]) -> Result<Zeroizing<Vec<u8>>, PbeError> {
            let mut buf = Zeroizing::new(data.to_vec());
            let len = mode
                .decrypt_padded::<Pkcs7>(&mut buf)
                .map_err(|_| PbeError::WrongPassword)?
                .len();
            buf.truncate(len);
            Ok(buf)
        }
        let bad = |_| PbeError::Malformed("the key or IV has the wrong length for its cipher");
        match self {
            Cipher::Aes128 => run(
                cbc::Decryptor::<aes::Aes128>::new_from_slices(key, iv).map_err(bad)?,
                data,
            ),
            Cipher::Aes192 => run(
                cbc::Decryptor::<aes::Aes192>::new_from_slices(key, iv).map_err(bad)?,
                data,
            ),
            Cipher::Aes256 => run(
                cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv).map_err(bad)?,
                data,
            ),
            Cipher::TdesEde3 => run(
                cbc::Decryptor::<des::TdesEde3>::new_from_slices(key, iv).map_err(bad)?,
                data,
            ),
            Cipher::TdesEde2 => run(
                cbc::Decryptor::<des::TdesEde2>::new_from_slices(key, iv).map_err(bad)?,
                data,
            ),
            Cipher::Rc2 { bits } => {
                let rc2 = rc2::Rc2::new_with_eff_key_len(key, bits);
                run(
                    cbc::Decryptor::inner_iv_slice_init(rc2, iv).map_err(bad)?,
                    data,
                )
            }
        }
    }
}

/// A readable name for an algorithm OID, for "not supported" messages.
fn oid_name(oid: &[u8]) -> String {
    let known: [(&[u8], &str); 4] = [
        (PBMAC1, "PBMAC1 (write the file with a classic MAC: openssl pkcs12 -export without -pbmac1_pbkdf2)"),
        (&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x03], "PBES1 with MD5 and DES"),
        (&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0a], "PBES1 with SHA-1 and DES"),
        (&[0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x04, 0x0b], "scrypt"),
    ];
    if let Some((_, name)) = known.iter().find(|(o, _)| *o == oid) {
        return (*name).to_string();
    }
    let hex: String = oid.iter().map(|b| format!("{b:02x}")).collect();
    format!("the algorithm with OID bytes {hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bmp_password_encoding() {
        assert_eq!(&*Password::new("ab").bmp, &[0, b'a', 0, b'b', 0, 0]);
        assert_eq!(&*Password::new("").bmp, &[0, 0]);
        assert_eq!(&*Password::new("é").bmp, &[0, 0xe9, 0, 0]);
        assert!(Password::absent().bmp.is_empty());
    }

    #[test]
    fn kdf_matches_a_known_answer() {
        // RFC 7292 KDF, SHA-1, password "smeg", salt 0A58CF64530D823F, id 1, 1 iteration, 24
        // bytes: the test vector published with the PKCS#12 KDF (and used by OpenSSL's tests).
        let salt = [0x0a, 0x58, 0xcf, 0x64, 0x53, 0x0d, 0x82, 0x3f];
        let key = kdf(
            Hash::Sha1,
            &Password::new("smeg").bmp,
            &salt,
            1,
            NonZeroU32::new(1).unwrap(),
            24,
        );
        let hex: String = key.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(hex, "8AAAE6297B6CB04642AB5B077851284EB7128F1A2A7FBCA3");
    }

    #[test]
    fn absurd_parameters_are_refused() {
        assert!(iterations(0).is_err());
        assert!(iterations(MAX_ITERATIONS + 1).is_err());
        assert!(iterations(2048).is_ok());
    }
}
