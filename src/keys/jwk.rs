//! Reading a JWK Set key by key, keeping only keys that are safe to verify with.
//!
//! One unusable key never spoils the set: it is skipped with a log line (no key material logged).
//! A key is kept only if it has a `kid`, is `RSA` (2048 to 4096 bits), `EC` (P-256 / P-384) or
//! `OKP` (Ed25519) with a valid public point, has no private members, `use` is absent or `sig`,
//! `key_ops` is absent or contains `verify`, and its `alg` (if any) is allowed and fits the key.
//! Keys that share a `kid` are all dropped: the token could not say which one it means.

use std::collections::HashMap;

use crate::algorithm::Algorithm;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::rsa::{RsaKeyProblem, rsa_public_key};
use super::{PublicKey, VerifyingKey};
use crate::algorithm::AlgorithmSet;
use machine_auth_core::strict_json;

/// The most keys a JWKS may hold.
pub(crate) const MAX_KEYS: usize = 100;

/// Members that only private (or symmetric) keys have.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a whole document was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JwkSetError {
    #[error("the JWKS is not a JSON object with a `keys` array")]
    NotAKeySet,
    #[error("the JWKS holds more than {MAX_KEYS} keys")]
    TooManyKeys,
    #[error("the JWKS holds no usable signing key")]
    NoUsableKey,
}

/// The usable keys of a JWKS, and why the others were skipped.
#[derive(Debug)]
pub(crate) struct ParsedJwkSet {
    pub(crate) keys: Vec<VerifyingKey>,
    /// `(kid, reason)` for every skipped key.
    pub(crate) skipped: Vec<(Option<String>, &'static str)>,
}

/// Parses a JWKS document, keeping the keys usable with `allowlist`.
pub(crate) fn parse_jwk_set(
    body: &[u8],
    allowlist: AlgorithmSet,
) -> Result<ParsedJwkSet, JwkSetError> {
    let document = strict_json::parse_object(body).map_err(|_| JwkSetError::NotAKeySet)?;
    let Some(Value::Array(entries)) = document.get("keys") else {
        return Err(JwkSetError::NotAKeySet);
    };
    if entries.len() > MAX_KEYS {
        return Err(JwkSetError::TooManyKeys);
    }
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for entry in entries {
        let kid = entry.get("kid").and_then(Value::as_str).map(str::to_owned);
        match entry
            .as_object()
            .ok_or("not a JSON object")
            .and_then(|jwk| usable_key(jwk, allowlist))
        {
            Ok(key) => keys.push(key),
            Err(reason) => skipped.push((kid, reason)),
        }
    }
    let mut kid_counts: HashMap<String, usize> = HashMap::new();
    for key in &keys {
        *kid_counts
            .entry(key.kid.clone().unwrap_or_default())
            .or_default() += 1;
    }
    keys.retain(|key| {
        let kid = key.kid.clone().unwrap_or_default();
        let unique = kid_counts[&kid] == 1;
        if !unique {
            skipped.push((key.kid.clone(), "another key has the same kid"));
        }
        unique
    });
    if keys.is_empty() {
        return Err(JwkSetError::NoUsableKey);
    }
    Ok(ParsedJwkSet { keys, skipped })
}

fn usable_key(
    jwk: &Map<String, Value>,
    allowlist: AlgorithmSet,
) -> Result<VerifyingKey, &'static str> {
    let kid = match jwk.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() && kid.len() <= 256 => kid.clone(),
        _ => return Err("no usable kid"),
    };
    if PRIVATE_MEMBERS.iter().any(|name| jwk.contains_key(*name)) {
        return Err("holds private or symmetric key material");
    }
    match jwk.get("use") {
        None => {}
        Some(Value::String(usage)) if usage == "sig" => {}
        Some(_) => return Err("not a signing key (use)"),
    }
    match jwk.get("key_ops") {
        None => {}
        Some(Value::Array(ops)) if ops.iter().any(|op| op == "verify") => {}
        Some(_) => return Err("not a verification key (key_ops)"),
    }
    let key = match string(jwk, "kty")? {
        "RSA" => rsa_key(jwk)?,
        "EC" => ec_key(jwk)?,
        "OKP" => okp_key(jwk)?,
        "oct" => return Err("symmetric key"),
        _ => return Err("unsupported kty"),
    };
    let algorithms = match jwk.get("alg") {
        None => allowlist.intersection(key.family()),
        Some(Value::String(name)) => {
            let algorithm: Algorithm = name.parse().map_err(|_| "unsupported alg")?;
            if !key.family().contains(algorithm) {
                return Err("alg does not fit the key type or curve");
            }
            if !allowlist.contains(algorithm) {
                return Err("alg is not allowed");
            }
            AlgorithmSet::of(&[algorithm])
        }
        Some(_) => return Err("alg is not a string"),
    };
    VerifyingKey::new(Some(kid), &key, algorithms)
}

fn rsa_key(jwk: &Map<String, Value>) -> Result<PublicKey, &'static str> {
    rsa_public_key(&bytes(jwk, "n")?, &bytes(jwk, "e")?).map_err(|problem| match problem {
        RsaKeyProblem::Size(_) => "RSA key size outside 2048..=4096 bits",
        RsaKeyProblem::Exponent => "unsafe RSA public exponent",
        RsaKeyProblem::Roca => "RSA key with the ROCA weakness (CVE-2017-15361)",
        RsaKeyProblem::Invalid => "invalid RSA key",
    })
}

fn ec_key(jwk: &Map<String, Value>) -> Result<PublicKey, &'static str> {
    let (family, size) = match string(jwk, "crv")? {
        "P-256" => (AlgorithmSet::P256, 32),
        "P-384" => (AlgorithmSet::P384, 48),
        _ => return Err("unsupported curve"),
    };
    let x = bytes(jwk, "x")?;
    let y = bytes(jwk, "y")?;
    if x.len() != size || y.len() != size {
        return Err("EC coordinates have the wrong length");
    }
    Ok(PublicKey::Ec {
        family,
        encoded: [&[4u8][..], &x, &y].concat(),
    })
}

fn okp_key(jwk: &Map<String, Value>) -> Result<PublicKey, &'static str> {
    if string(jwk, "crv")? != "Ed25519" {
        return Err("unsupported curve");
    }
    let x = bytes(jwk, "x")?;
    if x.len() != 32 {
        return Err("Ed25519 key has the wrong length");
    }
    Ok(PublicKey::Ed25519 { encoded: x })
}

fn string<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<&'a str, &'static str> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or("missing or non-string member")
}

fn bytes(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, &'static str> {
    URL_SAFE_NO_PAD
        .decode(string(jwk, name)?)
        .map_err(|_| "member is not base64url")
}
