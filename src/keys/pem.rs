//! Loading a public key from PEM, the way Clerk's dashboard shows it (`CLERK_JWT_KEY`).
//!
//! Accepted: an SPKI `PUBLIC KEY` for RSA (2048 to 4096 bits), EC P-256 / P-384 or Ed25519, with or
//! without the `-----BEGIN/END PUBLIC KEY-----` lines, with real or `\n`-escaped line breaks.
//! Refused, with a message that says why: private keys, certificates, PKCS#1 `RSA PUBLIC KEY`,
//! small RSA keys, and a key whose algorithms are all outside the allowlist.

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED,
    ECDSA_P384_SHA384_FIXED_SIGNING, ED25519, EcdsaKeyPair, Ed25519KeyPair, ParsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::rsa::rsa_public_key;
use super::{PublicKey, VerifyingKey};
use crate::algorithm::AlgorithmSet;
use crate::error::ConfigError;

/// Parses a PEM (or bare base64 SPKI) public key for the algorithms in `allowlist`.
pub(crate) fn key_from_pem(
    text: &str,
    allowlist: AlgorithmSet,
) -> Result<VerifyingKey, ConfigError> {
    let der = spki_der(text)?;
    let (key, description) = classify(der)?;
    let algorithms = allowlist.intersection(key.family());
    if algorithms.is_empty() {
        return Err(ConfigError::new(format!(
            "the PEM public key is {description}, but none of the allowed algorithms ({allowlist}) \
             uses it: allow one of {} with `algorithms(…)`",
            key.family()
        )));
    }
    VerifyingKey::new(None, &key, algorithms)
        .map_err(|reason| ConfigError::new(format!("the PEM public key is unusable: {reason}")))
}

/// Whether two texts give the same public key (the same text, or the same SPKI bytes however
/// they are wrapped).
pub(crate) fn same_public_key(a: &str, b: &str) -> bool {
    a.trim() == b.trim() || matches!((spki_der(a), spki_der(b)), (Ok(a), Ok(b)) if a == b)
}

/// The DER bytes of an SPKI public key given as PEM, or as the bare base64 body of one.
fn spki_der(text: &str) -> Result<Vec<u8>, ConfigError> {
    let text = text.trim().replace("\\n", "\n").replace("\\r", "");
    if text.is_empty() {
        return Err(ConfigError::new("the PEM public key is empty"));
    }
    if text.contains("-----BEGIN") {
        // The PEM reader's own errors quote input lines, which for a private key pasted by
        // mistake is key material: they are never shown.
        let block = pem::parse(&text).map_err(|_| {
            if text.contains("PRIVATE KEY-----") {
                private_key_error()
            } else {
                ConfigError::new(
                    "the PEM public key cannot be read: check its `-----BEGIN PUBLIC KEY-----` \
                     and `-----END PUBLIC KEY-----` lines and that only base64 lies between them",
                )
            }
        })?;
        match block.tag() {
            "PUBLIC KEY" => Ok(block.into_contents()),
            tag if tag.contains("PRIVATE") => Err(private_key_error()),
            "RSA PUBLIC KEY" => Err(ConfigError::new(
                "the PEM key is a PKCS#1 `RSA PUBLIC KEY`; give the SPKI `PUBLIC KEY` form \
                 (`openssl rsa -RSAPublicKey_in -pubout`), as Clerk's dashboard shows it",
            )),
            tag => Err(ConfigError::new(format!(
                "the PEM block is a `{tag}`; a `PUBLIC KEY` (SPKI) block is needed, as Clerk's \
                 dashboard shows it under API keys → Show JWT public key"
            ))),
        }
    } else {
        let body: String = text.split_ascii_whitespace().collect();
        STANDARD.decode(body).map_err(|_| {
            ConfigError::new(
                "the public key is neither PEM nor base64: paste the PEM public key from Clerk's \
                 dashboard (API keys → Show JWT public key)",
            )
        })
    }
}

fn private_key_error() -> ConfigError {
    ConfigError::new(
        "a private key was given where the public key belongs: use the PEM *public* key \
         (Clerk's dashboard: API keys → Show JWT public key), and keep the private key secret",
    )
}

/// The key in an SPKI document, and a description of it.
fn classify(der: Vec<u8>) -> Result<(PublicKey, &'static str), ConfigError> {
    if let Ok(rsa) = aws_lc_rs::rsa::PublicKey::from_der(&der) {
        let components = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(&rsa);
        let key = rsa_public_key(&components.n, &components.e).map_err(|problem| {
            ConfigError::new(format!("the PEM public key is {}", problem.describe()))
        })?;
        return Ok((key, "an RSA key"));
    }
    if ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &der).is_ok() {
        let key = PublicKey::Ec {
            family: AlgorithmSet::P256,
            encoded: der,
        };
        return Ok((key, "an EC P-256 key"));
    }
    if ParsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &der).is_ok() {
        let key = PublicKey::Ec {
            family: AlgorithmSet::P384,
            encoded: der,
        };
        return Ok((key, "an EC P-384 key"));
    }
    if ParsedPublicKey::new(&ED25519, &der).is_ok() {
        return Ok((PublicKey::Ed25519 { encoded: der }, "an Ed25519 key"));
    }
    if is_private_key(&der) {
        return Err(private_key_error());
    }
    Err(ConfigError::new(
        "the PEM public key is not an RSA, EC P-256, EC P-384 or Ed25519 public key",
    ))
}

/// Whether `der` is a PKCS#8 or PKCS#1 private key of a kind we know.
fn is_private_key(der: &[u8]) -> bool {
    aws_lc_rs::rsa::KeyPair::from_pkcs8(der).is_ok()
        || aws_lc_rs::rsa::KeyPair::from_der(der).is_ok()
        || EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).is_ok()
        || EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, der).is_ok()
        || Ed25519KeyPair::from_pkcs8(der).is_ok()
}
