//! What the fuzz targets share: the fixed test keys, a fixed clock, one Tokio runtime per
//! process, and helpers to build and check tokens independently of the crate.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;
use tower_machine_auth::clock::Clock;
use tower_machine_auth::error::InvalidToken;
use tower_machine_auth::introspect::{IntrospectedToken, IntrospectionFuture, Introspector};
use tower_machine_auth::{Algorithm, AuthError, MachineVerifier};

/// The instant every target checks tokens at: 2026-01-01T00:00:00Z.
pub const NOW_S: i64 = 1_767_225_600;
/// [`NOW_S`] in milliseconds.
pub const NOW_MS: i64 = NOW_S * 1000;
/// The verifier's default clock skew.
pub const LEEWAY_MS: i64 = 5_000;
/// The receiving machine of the verifiers (tokens must name it in `scopes`).
pub const OWN_MACHINE_ID: &str = "mch_reports_api";
/// The algorithms the targets' verifiers allow.
pub const ALLOWED: [Algorithm; 2] = [Algorithm::RS256, Algorithm::PS256];

/// The test suite's RSA-2048 public key.
pub const PUBLIC_PEM: &str = include_str!("../../tests/data/rsa_public.pem");
/// Its private key, to sign tokens the verifiers must accept.
pub const PRIVATE_PEM: &str = include_str!("../../tests/data/rsa_private.pem");

/// A clock that always says [`NOW_S`], so that a token's fate never depends on the day.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW_S as u64)
    }
}

/// One current-thread Tokio runtime for the whole process.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a Tokio runtime")
    });
    &RUNTIME
}

/// A verifier with the fixed PEM key, clock, [`ALLOWED`] algorithms and receiver check;
/// `cache` turns its verified-token cache on or off.
pub fn pem_verifier(cache: bool) -> MachineVerifier {
    let capacity = if cache { 1_000 } else { 0 };
    runtime().block_on(async {
        MachineVerifier::builder()
            .pem_key(PUBLIC_PEM)
            .algorithms(ALLOWED)
            .own_machine_id(OWN_MACHINE_ID)
            .clock(FixedClock)
            .token_cache(capacity, Duration::from_secs(300))
            .build()
            .expect("the fixed PEM verifier")
    })
}

/// Unpadded base64url.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The DER body of a PEM text.
pub fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    STANDARD.decode(body).expect("a PEM body")
}

/// The keys the structured JWT target signs with.
pub struct Signers {
    /// The test suite's key: its signatures verify under [`PUBLIC_PEM`].
    pub rsa: RsaKeyPair,
    /// Another RSA-2048 key, made for this process.
    pub other_rsa: RsaKeyPair,
    /// A P-256 key, made for this process.
    pub p256: EcdsaKeyPair,
}

/// The signing keys, made once per process.
pub fn signers() -> &'static Signers {
    static SIGNERS: LazyLock<Signers> = LazyLock::new(|| Signers {
        rsa: RsaKeyPair::from_pkcs8(&pem_der(PRIVATE_PEM)).expect("the test RSA key"),
        other_rsa: RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("a fresh RSA key"),
        p256: EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
            .expect("a fresh P-256 key"),
    });
    &SIGNERS
}

/// Signs `message` with an RSA key under `padding`.
pub fn rsa_sign(
    key: &RsaKeyPair,
    padding: &'static dyn signature::RsaEncoding,
    message: &[u8],
) -> Vec<u8> {
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(padding, &SystemRandom::new(), message, &mut signature)
        .expect("RSA signing");
    signature
}

/// Signs `message` with a P-256 key (fixed-length `r || s`).
pub fn p256_sign(key: &EcdsaKeyPair, message: &[u8]) -> Vec<u8> {
    key.sign(&SystemRandom::new(), message)
        .expect("ECDSA signing")
        .as_ref()
        .to_vec()
}

/// Whether `signature` over `message` is valid under the test suite's public key with the JOSE
/// algorithm `alg`, checked here without the crate.
pub fn signature_is_genuine(alg: &str, message: &[u8], signature: &[u8]) -> bool {
    static PUBLIC: LazyLock<Vec<u8>> =
        LazyLock::new(|| signers().rsa.public_key().as_ref().to_vec());
    let algorithm: &dyn signature::VerificationAlgorithm = match alg {
        "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
        "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
        "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
        "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
        "PS384" => &signature::RSA_PSS_2048_8192_SHA384,
        "PS512" => &signature::RSA_PSS_2048_8192_SHA512,
        _ => return false,
    };
    UnparsedPublicKey::new(algorithm, PUBLIC.as_slice())
        .verify(message, signature)
        .is_ok()
}

/// The three segments of a compact JWS, if it has exactly three.
pub fn segments(token: &str) -> Option<(&str, &str, &str)> {
    let mut parts = token.split('.');
    let parts = (parts.next()?, parts.next()?, parts.next()?, parts.next());
    match parts {
        (header, payload, signature, None) => Some((header, payload, signature)),
        _ => None,
    }
}

/// A base64url segment decoded and read as JSON, without the crate.
pub fn segment_json(segment: &str) -> Option<Value> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).ok()?).ok()
}

/// Checks what an accepted M2M JWT must satisfy, reading its header and payload without the
/// crate: a signature valid under the test key with the header's `alg` (one of [`ALLOWED`]), no
/// `crit`, a `sub` equal to the machine id, an `exp` after now (within the leeway), no `nbf` or
/// `iat` after now, and [`OWN_MACHINE_ID`] in its scopes.
pub fn assert_acceptable(token: &str, machine: &tower_machine_auth::AuthenticatedMachine) {
    let (header_b64, payload_b64, signature_b64) =
        segments(token).expect("an accepted JWT has three segments");
    let header = segment_json(header_b64).expect("an accepted JWT has a JSON header");
    let claims = segment_json(payload_b64).expect("an accepted JWT has a JSON payload");
    let alg = header["alg"]
        .as_str()
        .expect("an accepted JWT has a string alg");
    assert!(
        ALLOWED.iter().any(|allowed| format!("{allowed:?}") == alg),
        "accepted a token signed with {alg}, which is not allowed"
    );
    assert!(header.get("crit").is_none(), "accepted a token with crit");
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .expect("an accepted JWT has a base64url signature");
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    assert!(
        signature_is_genuine(alg, signing_input.as_bytes(), &signature),
        "accepted a token whose signature does not verify under the test key"
    );
    let sub = claims["sub"]
        .as_str()
        .expect("an accepted JWT has a string sub");
    assert!(sub.starts_with("mch_"), "accepted sub {sub:?}");
    assert_eq!(machine.machine_id().as_str(), sub);
    let exp = claims["exp"]
        .as_f64()
        .expect("an accepted JWT has a numeric exp");
    assert!(
        exp * 1000.0 > (NOW_MS - LEEWAY_MS - 1) as f64,
        "accepted a token that expired at {exp}"
    );
    for name in ["nbf", "iat"] {
        if let Some(at) = claims.get(name).and_then(Value::as_f64) {
            assert!(
                at * 1000.0 <= (NOW_MS + LEEWAY_MS + 1) as f64,
                "accepted a token with {name} {at} in the future"
            );
        }
    }
    assert!(
        machine.has_scope(OWN_MACHINE_ID),
        "accepted a token not scoped to this machine"
    );
}

/// What reading an introspection reply gave: the token's data or why it is not valid, or (the
/// outer error) why the reply is unusable.
pub type Reading = Result<Result<IntrospectedToken, AuthError>, String>;

/// An introspector that answers with the reading of the current reply, so that a reply target
/// can drive the verifier with it. An unusable reply is an invalid token here, so that the
/// circuit breaker never opens.
#[derive(Debug, Clone, Default)]
pub struct Replay(Arc<Mutex<Option<Reading>>>);

impl Replay {
    /// Answers every later call with `reading`.
    pub fn answer_with(&self, reading: Reading) {
        *self.0.lock().unwrap() = Some(reading);
    }
}

impl Introspector for Replay {
    fn introspect<'a>(&'a self, _token: &'a str) -> IntrospectionFuture<'a> {
        let reading = self.0.lock().unwrap().clone();
        Box::pin(async move {
            match reading {
                Some(Ok(answer)) => answer,
                _ => Err(AuthError::InvalidToken(InvalidToken::NotActiveAtIssuer)),
            }
        })
    }
}
