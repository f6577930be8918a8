//! RS256, ES256 and EdDSA tokens shaped like Clerk's M2M JWTs, signed with aws-lc-rs, for the
//! benchmarks.

// Each benchmark uses part of it.
#![allow(dead_code)]

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ParsedPublicKey, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use tower_machine_auth::Algorithm;

/// One signing algorithm of the benchmark: its key pair, and the token pool signed with it.
pub struct Signer {
    pub name: &'static str,
    pub algorithm: Algorithm,
    key: SigningKey,
}

enum SigningKey {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl Signer {
    pub fn new(algorithm: Algorithm) -> Self {
        let rng = SystemRandom::new();
        let (name, key) = match algorithm {
            Algorithm::RS256 => (
                "rs256",
                SigningKey::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key")),
            ),
            Algorithm::ES256 => {
                let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("P-256 key");
                let key = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).expect("P-256 key");
                ("es256", SigningKey::Ecdsa(key))
            }
            Algorithm::EdDSA => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("Ed25519 key");
                let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("Ed25519 key");
                ("eddsa", SigningKey::Ed25519(key))
            }
            other => unreachable!("no benchmark for {other}"),
        };
        Self {
            name,
            algorithm,
            key,
        }
    }

    /// The SPKI public key as PEM, as `CLERK_JWT_KEY` holds it.
    pub fn public_pem(&self) -> String {
        let der = match &self.key {
            SigningKey::Rsa(key) => key.public_key().as_der().map(|d| d.as_ref().to_vec()),
            SigningKey::Ecdsa(key) => key.public_key().as_der().map(|d| d.as_ref().to_vec()),
            SigningKey::Ed25519(key) => key.public_key().as_der().map(|d| d.as_ref().to_vec()),
        };
        pem::encode(&pem::Pem::new("PUBLIC KEY", der.expect("SPKI DER")))
    }

    /// The public key parsed once, for the raw verification.
    pub fn parsed_public_key(&self) -> ParsedPublicKey {
        let (algorithm, bytes): (&'static dyn signature::VerificationAlgorithm, &[u8]) =
            match &self.key {
                SigningKey::Rsa(key) => (
                    &signature::RSA_PKCS1_2048_8192_SHA256,
                    key.public_key().as_ref(),
                ),
                SigningKey::Ecdsa(key) => (
                    &signature::ECDSA_P256_SHA256_FIXED,
                    key.public_key().as_ref(),
                ),
                SigningKey::Ed25519(key) => (&signature::ED25519, key.public_key().as_ref()),
            };
        ParsedPublicKey::new(algorithm, bytes).expect("public key")
    }

    /// A token with Clerk's M2M header over `payload`.
    pub fn sign(&self, rng: &SystemRandom, payload: &str) -> String {
        let header = format!(
            r#"{{"alg":"{}","kid":"ins_2GIoQhbUpy0hX7B2cVkuTMinXoD","typ":"JWT","cat":"cl_B7d4PD333AAA"}}"#,
            self.algorithm
        );
        let signing_input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let message = signing_input.as_bytes();
        let signature = match &self.key {
            SigningKey::Rsa(key) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(&signature::RSA_PKCS1_SHA256, rng, message, &mut signature)
                    .expect("RSA signature");
                signature
            }
            SigningKey::Ecdsa(key) => key.sign(rng, message).expect("ECDSA").as_ref().to_vec(),
            SigningKey::Ed25519(key) => key.sign(message).as_ref().to_vec(),
        };
        format!("{signing_input}.{}", b64(&signature))
    }

    /// `count` valid tokens over `payload(0)` … `payload(count - 1)`, signed on every core.
    pub fn mint(&self, count: usize, payload: impl Fn(usize) -> String + Sync) -> Vec<String> {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let chunk = count.div_ceil(threads).max(1);
        let payload = &payload;
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..count)
                .step_by(chunk)
                .map(|start| {
                    let end = (start + chunk).min(count);
                    scope.spawn(move || {
                        let rng = SystemRandom::new();
                        (start..end)
                            .map(|n| self.sign(&rng, &payload(n)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|worker| worker.join().expect("minting thread"))
                .collect()
        })
    }
}

/// Claims shaped like a Clerk M2M token with a few custom claims; `n` makes the `jti` unique while
/// keeping every token the same length.
pub fn payload(now: u64, n: usize) -> String {
    format!(
        concat!(
            r#"{{"iss":"https://clerk.perf-anchors.example","sub":"mch_2vYVtestTESTtestTESTtestTESTtest","#,
            r#""aud":["mch_1xxxxx","mch_2xxxxx"],"exp":{exp},"iat":{iat},"nbf":{nbf},"#,
            r#""jti":"mt_2xKa9Bgv7NxMRDFyQw8LpZ3cTm{n:06}","scopes":"mch_1xxxxx mch_2xxxxx","#,
            r#""role":"billing-worker","env":"production","permissions":["invoices:read","invoices:write"],"#,
            r#""org_id":"org_2p94zsO6sBvVZR5Ca0KfBNLM36Z"}}"#
        ),
        exp = now + 3600,
        iat = now,
        nbf = now - 5,
        n = n,
    )
}

/// [`payload`] without its `aud` (jsonwebtoken 9 refuses a token with an audience when it is not
/// told which to expect).
pub fn payload_without_audience(now: u64, n: usize) -> String {
    payload(now, n).replace(r#""aud":["mch_1xxxxx","mch_2xxxxx"],"#, "")
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token's signing input and decoded signature: what a raw verification is given.
pub fn split(token: &str) -> (Vec<u8>, Vec<u8>) {
    let (signing_input, signature) = token.rsplit_once('.').expect("JWT");
    let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
    (signing_input.as_bytes().to_vec(), signature)
}

/// The token with one character of its signature changed.
pub fn tampered(token: &str) -> String {
    let at = token.rfind('.').expect("JWT") + 10;
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ASCII")
}

pub fn bearer(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Bearer {token}")).expect("header value")
}
