//! Loading a public key from PEM, the way Clerk's dashboard shows it (`CLERK_JWT_KEY`).
//!
//! Accepted: an SPKI `PUBLIC KEY` for RSA (2048 to 4096 bits), EC P-256 / P-384 or Ed25519, with or
//! without the `-----BEGIN/END PUBLIC KEY-----` lines, with real or `\n`-escaped line breaks, and
//! with quotes around the whole text (as pasted from an environment file).
//! Refused, with a message that says what is wrong and what to do: a PEM cut short (no END line),
//! damaged base64, bytes that are not a public key, private keys, certificates, PKCS#1
//! `RSA PUBLIC KEY`, small RSA keys, keys of other kinds (P-521, Ed448, …), and a key whose
//! algorithms are all outside the allowlist.

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED,
    ECDSA_P384_SHA384_FIXED_SIGNING, ED25519, EcdsaKeyPair, Ed25519KeyPair, ParsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::rsa::rsa_public_key;
use super::{PublicKey, VerifyingKey};
use crate::algorithm::AlgorithmSet;
use crate::clerk_api;
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
            "CLERK_JWT_KEY: the PEM public key is {description}, but none of the allowed \
             algorithms ({allowlist}) uses it: allow one of {} with `algorithms(…)`",
            key.family()
        )));
    }
    VerifyingKey::new(None, &key, algorithms).map_err(|reason| {
        ConfigError::new(format!(
            "CLERK_JWT_KEY: the PEM public key is unusable: {reason}"
        ))
    })
}

/// Whether two texts give the same public key (the same text, or the same SPKI bytes however
/// they are wrapped).
pub(crate) fn same_public_key(a: &str, b: &str) -> bool {
    a.trim() == b.trim() || matches!((spki_der(a), spki_der(b)), (Ok(a), Ok(b)) if a == b)
}

/// What a PEM error says to do: paste the key again from where Clerk shows it.
const PASTE_AGAIN: &str = "paste the whole key again from Clerk's dashboard (API keys → Show JWT \
                           public key); in an environment file, keep it on one line with `\\n` \
                           between its lines, or quote it across lines";

/// The DER bytes of an SPKI public key given as PEM, or as the bare base64 body of one.
/// Quotes around the whole text, as pasted from an environment file, are dropped first.
fn spki_der(text: &str) -> Result<Vec<u8>, ConfigError> {
    let text = clerk_api::setting(text)
        .replace("\\n", "\n")
        .replace("\\r", "");
    let text = text.trim();
    if text.is_empty() {
        return Err(ConfigError::new(
            "CLERK_JWT_KEY: the PEM public key is empty",
        ));
    }
    if text.contains("-----BEGIN") {
        if text.contains("PRIVATE KEY-----") {
            return Err(private_key_error());
        }
        // The PEM reader's own errors quote input lines, which for a private key pasted by
        // mistake is key material: they are never shown.
        let block = pem::parse(text).map_err(|error| pem_error(text, &error))?;
        match block.tag() {
            "PUBLIC KEY" => Ok(block.into_contents()),
            "RSA PUBLIC KEY" => Err(ConfigError::new(
                "CLERK_JWT_KEY: the PEM key is a PKCS#1 `RSA PUBLIC KEY`; give the SPKI \
                 `PUBLIC KEY` form (`openssl rsa -RSAPublicKey_in -pubout`), as Clerk's \
                 dashboard shows it",
            )),
            tag => Err(ConfigError::new(format!(
                "CLERK_JWT_KEY: the PEM block is a `{tag}`; a `PUBLIC KEY` (SPKI) block is \
                 needed, as Clerk's dashboard shows it under API keys → Show JWT public key"
            ))),
        }
    } else {
        let body: String = text.split_ascii_whitespace().collect();
        STANDARD.decode(&body).map_err(|_| {
            let base64_alphabet = body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
            if base64_alphabet && body.len() >= 64 {
                ConfigError::new(format!(
                    "CLERK_JWT_KEY: the key's base64 is damaged or cut short: {PASTE_AGAIN}"
                ))
            } else {
                ConfigError::new(
                    "CLERK_JWT_KEY: the public key is neither PEM nor base64: paste the PEM \
                     public key from Clerk's dashboard (API keys → Show JWT public key)",
                )
            }
        })
    }
}

/// What is wrong with a PEM text the PEM reader refused, and what to do; quotes nothing of it.
fn pem_error(text: &str, error: &pem::PemError) -> ConfigError {
    let what = match error {
        pem::PemError::MismatchedTags(..) => {
            "the PEM's BEGIN and END lines name different blocks (`-----BEGIN PUBLIC KEY-----` \
             needs `-----END PUBLIC KEY-----`)"
        }
        pem::PemError::InvalidData(_) | pem::PemError::NotUtf8(_) => {
            "the key's base64 between the BEGIN and END lines is damaged (a character that is \
             not base64, or characters missing)"
        }
        _ if !text.contains("-----END") => {
            "the PEM has a BEGIN line but no `-----END PUBLIC KEY-----` line (the key is cut \
             short)"
        }
        _ => {
            "the PEM's `-----BEGIN PUBLIC KEY-----` and `-----END PUBLIC KEY-----` lines are \
             damaged (each must be whole, on a line of its own)"
        }
    };
    ConfigError::new(format!("CLERK_JWT_KEY: {what}: {PASTE_AGAIN}"))
}

fn private_key_error() -> ConfigError {
    ConfigError::new(
        "CLERK_JWT_KEY: a private key was given where the public key belongs: use the PEM *public* key \
         (Clerk's dashboard: API keys → Show JWT public key), and keep the private key secret",
    )
}

/// The key in an SPKI document, and a description of it.
fn classify(der: Vec<u8>) -> Result<(PublicKey, &'static str), ConfigError> {
    if let Ok(rsa) = aws_lc_rs::rsa::PublicKey::from_der(&der) {
        let components = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(&rsa);
        let key = rsa_public_key(&components.n, &components.e).map_err(|problem| {
            ConfigError::new(format!(
                "CLERK_JWT_KEY: the PEM public key is {}",
                problem.describe()
            ))
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
    Err(unusable_der(&der))
}

/// Why DER that none of the key parsers took is unusable: a well-formed SPKI of an algorithm
/// this crate does not verify with, or bytes that are not a whole public key.
fn unusable_der(der: &[u8]) -> ConfigError {
    const SUPPORTED: &str = "RSA (2048 to 4096 bits), EC P-256, EC P-384 or Ed25519";
    // Algorithm identifiers (DER of the OIDs) of public keys people may paste by mistake.
    const OTHER_KEYS: [(&[u8], &str); 5] = [
        (&[0x2b, 0x81, 0x04, 0x00, 0x23], "an EC P-521 key"),
        (&[0x2b, 0x81, 0x04, 0x00, 0x0a], "an EC secp256k1 key"),
        (&[0x2b, 0x65, 0x71], "an Ed448 key"),
        (&[0x2b, 0x65, 0x6e], "an X25519 key (for key agreement)"),
        (&[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01], "a DSA key"),
    ];
    if is_whole_der_sequence(der) {
        let head = &der[..der.len().min(32)];
        let kind = OTHER_KEYS
            .iter()
            .find(|(oid, _)| head.windows(oid.len()).any(|window| window == *oid))
            .map_or(
                "a key of a kind this crate cannot use, or damaged inside",
                |(_, kind)| kind,
            );
        return ConfigError::new(format!(
            "CLERK_JWT_KEY: the PEM public key is {kind}; it must be {SUPPORTED}: give the JWT \
             public key of Clerk's dashboard (API keys → Show JWT public key)"
        ));
    }
    ConfigError::new(format!(
        "CLERK_JWT_KEY: the key's base64 decodes, but not to a public key (SPKI): it is damaged \
         or cut short, or not a public key at all: {PASTE_AGAIN}"
    ))
}

/// Whether `der` is one DER SEQUENCE whose length covers it exactly, as every SPKI is.
fn is_whole_der_sequence(der: &[u8]) -> bool {
    let [0x30, first, rest @ ..] = der else {
        return false;
    };
    let (len, rest) = match *first {
        len @ 0..=0x7f => (u64::from(len), rest),
        0x81..=0x84 => {
            let count = usize::from(first & 0x7f);
            if rest.len() < count {
                return false;
            }
            let len = rest[..count]
                .iter()
                .fold(0u64, |len, byte| (len << 8) | u64::from(*byte));
            (len, &rest[count..])
        }
        _ => return false,
    };
    u64::try_from(rest.len()).is_ok_and(|rest_len| rest_len == len)
}

/// Whether `der` is a PKCS#8 or PKCS#1 private key of a kind we know.
fn is_private_key(der: &[u8]) -> bool {
    aws_lc_rs::rsa::KeyPair::from_pkcs8(der).is_ok()
        || aws_lc_rs::rsa::KeyPair::from_der(der).is_ok()
        || EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).is_ok()
        || EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, der).is_ok()
        || Ed25519KeyPair::from_pkcs8(der).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_are_read_without_panicking() {
        assert!(is_whole_der_sequence(&[0x30, 0x00]));
        assert!(is_whole_der_sequence(&[0x30, 0x81, 0x01, 0xff]));
        assert!(is_whole_der_sequence(&[0x30, 0x82, 0x00, 0x01, 0xff]));
        for bad in [
            &[][..],
            &[0x30],
            &[0x31, 0x00],
            &[0x30, 0x01],
            &[0x30, 0x80],
            &[0x30, 0x85, 1, 2, 3, 4, 5],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x83, 0x01],
        ] {
            assert!(!is_whole_der_sequence(bad), "{bad:?}");
        }
    }

    #[test]
    fn unusable_der_is_told_apart_from_damaged_der() {
        // An SPKI of an unknown algorithm: SEQUENCE { SEQUENCE { OID 1.2.3 }, BIT STRING }.
        let unknown = [
            0x30, 0x0a, 0x30, 0x04, 0x06, 0x02, 0x2a, 0x03, 0x03, 0x02, 0x00, 0x00,
        ];
        let message = unusable_der(&unknown).to_string();
        assert!(
            message.contains("a key of a kind this crate cannot use"),
            "{message}"
        );
        let message = unusable_der(&unknown[..8]).to_string();
        assert!(message.contains("not to a public key"), "{message}");
    }
}
