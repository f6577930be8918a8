//! Tokens the target builds and signs itself, so that inputs with a valid signature are common:
//! the fuzzer chooses the header and the claims (raw JSON, or generated from structured input),
//! the signing key and algorithm, and whether to tamper with the result.
//!
//! Input: byte 0 chooses the signer, byte 1 the tampering, byte 2 the mode. In raw mode (byte 2
//! even) the rest is the header JSON, a NUL byte, then the claims JSON; in generated mode (odd)
//! the rest is read with `arbitrary` into a header and claims.
//!
//! Invariants: a token is accepted only if the test key signed it untampered with the algorithm
//! its header names, that algorithm is allowed, and its claims pass (see
//! `assert_acceptable`); in generated mode, a token that meets every rule is accepted; the
//! verifier and the crate's JWT path called directly agree.

#![no_main]

use std::sync::LazyLock;

use arbitrary::{Arbitrary, Unstructured};
use aws_lc_rs::signature;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use tower_machine_auth::fuzzing::{JwtChecks, Key, key_from_pem, verify_jwt};
use tower_machine_auth::{AuthError, AuthenticatedMachine, MachineId, MachineVerifier};
use tower_machine_auth_fuzz::{
    ALLOWED, LEEWAY_MS, NOW_MS, NOW_S, OWN_MACHINE_ID, PUBLIC_PEM, assert_acceptable, b64,
    p256_sign, pem_verifier, rsa_sign, runtime, signers,
};

/// Clerk's M2M `cat`.
const M2M_CATEGORY: &str = "cl_B7d4PD333AAA";

struct State {
    verifier: MachineVerifier,
    key: Key,
    checks: JwtChecks,
}

static STATE: LazyLock<State> = LazyLock::new(|| {
    let state = State {
        verifier: pem_verifier(false),
        key: key_from_pem(PUBLIC_PEM, &ALLOWED).expect("the test key"),
        checks: JwtChecks {
            algorithms: ALLOWED.to_vec(),
            leeway_ms: LEEWAY_MS,
            issuer: None,
            audiences: Vec::new(),
            max_lifetime_ms: None,
        },
    };
    // The target can reach acceptance at all: a plain valid token is accepted.
    let header = json!({"alg": "RS256", "typ": "JWT", "cat": M2M_CATEGORY}).to_string();
    let claims =
        json!({"sub": "mch_cron", "exp": NOW_S + 60, "scopes": OWN_MACHINE_ID}).to_string();
    let token = build(
        Signer::Rs256,
        Tamper::None,
        header.as_bytes(),
        claims.as_bytes(),
    );
    let machine = runtime()
        .block_on(state.verifier.verify(&token))
        .expect("a valid token is accepted");
    assert_acceptable(&token, &machine);
    state
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signer {
    Rs256,
    Ps256,
    /// The test key, with an algorithm the verifier does not allow.
    Rs512,
    /// Another RSA key.
    OtherRsa,
    /// A P-256 key.
    Es256,
    Empty,
    Zeros,
}

impl Signer {
    const ALL: [Self; 7] = [
        Self::Rs256,
        Self::Ps256,
        Self::Rs512,
        Self::OtherRsa,
        Self::Es256,
        Self::Empty,
        Self::Zeros,
    ];

    /// The algorithm name a genuine signature of the test key has, if it makes one.
    fn genuine_alg(self) -> Option<&'static str> {
        match self {
            Self::Rs256 => Some("RS256"),
            Self::Ps256 => Some("PS256"),
            Self::Rs512 => Some("RS512"),
            _ => None,
        }
    }

    fn sign(self, message: &[u8]) -> Vec<u8> {
        let keys = signers();
        match self {
            Self::Rs256 => rsa_sign(&keys.rsa, &signature::RSA_PKCS1_SHA256, message),
            Self::Ps256 => rsa_sign(&keys.rsa, &signature::RSA_PSS_SHA256, message),
            Self::Rs512 => rsa_sign(&keys.rsa, &signature::RSA_PKCS1_SHA512, message),
            Self::OtherRsa => rsa_sign(&keys.other_rsa, &signature::RSA_PKCS1_SHA256, message),
            Self::Es256 => p256_sign(&keys.p256, message),
            Self::Empty => Vec::new(),
            Self::Zeros => vec![0; 256],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tamper {
    None,
    FlipSignatureBit,
    ChangePayload,
    TruncateSignature,
    PadSignature,
}

impl Tamper {
    const ALL: [Self; 5] = [
        Self::None,
        Self::FlipSignatureBit,
        Self::ChangePayload,
        Self::TruncateSignature,
        Self::PadSignature,
    ];
}

/// `base64url(header).base64url(claims).base64url(signature)`, signed by `signer`, then
/// tampered with.
fn build(signer: Signer, tamper: Tamper, header: &[u8], claims: &[u8]) -> String {
    let signing_input = format!("{}.{}", b64(header), b64(claims));
    let mut signature = signer.sign(signing_input.as_bytes());
    let mut payload = b64(claims);
    let mut padding = "";
    match tamper {
        Tamper::None => {}
        Tamper::FlipSignatureBit => {
            if let Some(last) = signature.last_mut() {
                *last ^= 1;
            }
        }
        Tamper::ChangePayload => {
            let mut changed = claims.to_vec();
            changed.push(b' ');
            payload = b64(&changed);
        }
        Tamper::TruncateSignature => {
            signature.pop();
        }
        Tamper::PadSignature => padding = "=",
    }
    format!("{}.{payload}.{}{padding}", b64(header), b64(&signature))
}

#[derive(Debug, Arbitrary)]
enum AlgName {
    Rs256,
    Ps256,
    Rs512,
    Es256,
    Hs256,
    None,
    LowerRs256,
    Other(String),
}

impl AlgName {
    fn json(&self) -> Value {
        json!(match self {
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
            Self::Rs512 => "RS512",
            Self::Es256 => "ES256",
            Self::Hs256 => "HS256",
            Self::None => "none",
            Self::LowerRs256 => "rs256",
            Self::Other(name) => name,
        })
    }
}

#[derive(Debug, Arbitrary)]
enum Choice {
    Good,
    Other(String),
    Number(i8),
}

#[derive(Debug, Arbitrary)]
struct Header {
    alg: AlgName,
    typ: Option<Choice>,
    cat: Option<Choice>,
    kid: Option<String>,
    crit: bool,
    extra: Option<(String, String)>,
}

impl Header {
    fn to_json(&self) -> (Map<String, Value>, bool) {
        let mut header = Map::new();
        let mut fine = true;
        header.insert("alg".into(), self.alg.json());
        let mut choice = |name: &str, choice: &Option<Choice>, good: &str| match choice {
            None => {}
            Some(Choice::Good) => {
                header.insert(name.into(), json!(good));
            }
            Some(Choice::Other(other)) => {
                fine &= other.eq_ignore_ascii_case(good) && (name == "typ" || other == good);
                header.insert(name.into(), json!(other));
            }
            Some(Choice::Number(n)) => {
                fine = false;
                header.insert(name.into(), json!(n));
            }
        };
        choice("typ", &self.typ, "JWT");
        choice("cat", &self.cat, M2M_CATEGORY);
        if let Some(kid) = &self.kid {
            fine &= kid.len() <= 256;
            header.insert("kid".into(), json!(kid));
        }
        if self.crit {
            fine = false;
            header.insert("crit".into(), json!(["exp"]));
        }
        if let Some((name, value)) = &self.extra {
            if !header.contains_key(name) {
                // Conservative: a member the rules read makes no promise.
                fine &= !["alg", "typ", "cat", "kid", "crit", "enc", "zip", "b64"]
                    .contains(&name.as_str());
                header.insert(name.clone(), json!(value));
            }
        }
        (header, fine)
    }
}

#[derive(Debug, Arbitrary)]
enum Subject {
    /// `mch_` and these characters, kept to the machine-id alphabet.
    Machine(String),
    Raw(String),
    Number(i64),
    Null,
}

#[derive(Debug, Arbitrary)]
enum Time {
    /// Seconds from now.
    Offset(i32),
    Float(f64),
    Text(String),
    Huge(u64),
    Null,
}

impl Time {
    fn json(&self) -> Value {
        match self {
            Self::Offset(seconds) => json!(NOW_S + i64::from(*seconds)),
            Self::Float(seconds) => json!(seconds),
            Self::Text(text) => json!(text),
            Self::Huge(seconds) => json!(seconds),
            Self::Null => Value::Null,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Scopes {
    Own,
    OwnAnd(Vec<String>),
    Others(Vec<String>),
    Number(i64),
}

#[derive(Debug, Arbitrary)]
enum Audience {
    One(String),
    List(Vec<String>),
    Number(i64),
}

#[derive(Debug, Arbitrary)]
struct Claims {
    sub: Subject,
    exp: Option<Time>,
    nbf: Option<Time>,
    iat: Option<Time>,
    scopes: Option<Scopes>,
    aud: Option<Audience>,
    iss: Option<String>,
    jti: Option<String>,
    extra: Vec<(String, String)>,
}

impl Claims {
    fn to_json(&self) -> (Map<String, Value>, bool) {
        let mut claims = Map::new();
        let mut fine = true;
        let sub = match &self.sub {
            Subject::Machine(name) => {
                let name: String = name
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let sub = format!("mch_{name}");
                fine &= MachineId::is_valid(&sub);
                json!(sub)
            }
            Subject::Raw(raw) => {
                fine &= MachineId::is_valid(raw);
                json!(raw)
            }
            Subject::Number(n) => {
                fine = false;
                json!(n)
            }
            Subject::Null => {
                fine = false;
                Value::Null
            }
        };
        claims.insert("sub".into(), sub);
        match &self.exp {
            Some(exp @ Time::Offset(seconds)) => {
                fine &= *seconds > 5;
                claims.insert("exp".into(), exp.json());
            }
            Some(exp) => {
                fine = false;
                claims.insert("exp".into(), exp.json());
            }
            None => fine = false,
        }
        for (name, time) in [("nbf", &self.nbf), ("iat", &self.iat)] {
            match time {
                None | Some(Time::Null) => {}
                // Not after now, and not before 1970: a negative NumericDate is malformed.
                Some(Time::Offset(seconds)) => {
                    fine &= *seconds <= 0 && NOW_S + i64::from(*seconds) >= 0;
                }
                Some(_) => fine = false,
            }
            if let Some(time) = time {
                claims.insert(name.into(), time.json());
            }
        }
        match &self.scopes {
            None => fine = false,
            Some(Scopes::Own) => {
                claims.insert("scopes".into(), json!(OWN_MACHINE_ID));
            }
            Some(Scopes::OwnAnd(others)) => {
                let scopes = format!("{OWN_MACHINE_ID} {}", others.join(" "));
                claims.insert("scopes".into(), json!(scopes));
            }
            Some(Scopes::Others(others)) => {
                fine = false;
                claims.insert("scopes".into(), json!(others.join(" ")));
            }
            Some(Scopes::Number(n)) => {
                fine = false;
                claims.insert("scopes".into(), json!(n));
            }
        }
        match &self.aud {
            None => {}
            Some(Audience::One(aud)) => {
                claims.insert("aud".into(), json!(aud));
            }
            Some(Audience::List(auds)) => {
                claims.insert("aud".into(), json!(auds));
            }
            Some(Audience::Number(n)) => {
                fine = false;
                claims.insert("aud".into(), json!(n));
            }
        }
        if let Some(iss) = &self.iss {
            claims.insert("iss".into(), json!(iss));
        }
        if let Some(jti) = &self.jti {
            claims.insert("jti".into(), json!(jti));
        }
        const READ: [&str; 8] = ["sub", "exp", "nbf", "iat", "iss", "jti", "aud", "scopes"];
        for (name, value) in self.extra.iter().take(8) {
            if !READ.contains(&name.as_str()) {
                claims.insert(name.clone(), json!(value));
            }
        }
        (claims, fine)
    }
}

#[derive(Debug, Arbitrary)]
struct Generated {
    header: Header,
    claims: Claims,
}

fuzz_target!(|data: &[u8]| {
    let [signer, tamper, mode, rest @ ..] = data else {
        return;
    };
    let state = &*STATE;
    let signer = Signer::ALL[usize::from(*signer) % Signer::ALL.len()];
    let tamper = Tamper::ALL[usize::from(*tamper) % Tamper::ALL.len()];

    let (header, claims, meets_every_rule) = if mode % 2 == 0 {
        let split = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        let claims = rest.get(split + 1..).unwrap_or_default();
        (rest[..split].to_vec(), claims.to_vec(), false)
    } else {
        let Ok(generated) = Generated::arbitrary_take_rest(Unstructured::new(rest)) else {
            return;
        };
        let (header, header_fine) = generated.header.to_json();
        let (claims, claims_fine) = generated.claims.to_json();
        let alg_fits = header["alg"] == json!(signer.genuine_alg().unwrap_or("-"));
        let fine = header_fine
            && claims_fine
            && alg_fits
            && matches!(signer, Signer::Rs256 | Signer::Ps256)
            && tamper == Tamper::None;
        (
            Value::Object(header).to_string().into_bytes(),
            Value::Object(claims).to_string().into_bytes(),
            fine,
        )
    };
    let token = build(signer, tamper, &header, &claims);

    let outcome = runtime().block_on(state.verifier.verify(&token));
    match &outcome {
        Ok(machine) => {
            assert_acceptable(&token, machine);
            let header: Value = serde_json::from_slice(&header).expect("a JSON header");
            assert_eq!(tamper, Tamper::None, "accepted a tampered token");
            assert_eq!(
                header["alg"].as_str(),
                signer.genuine_alg(),
                "accepted a token that {signer:?} signed"
            );
        }
        Err(error) => assert!(
            !meets_every_rule || token.len() > 8 * 1024,
            "refused a valid token ({error:?}): {token}"
        ),
    }

    let direct = verify_jwt(&token, &state.key, &state.checks, NOW_MS).and_then(|machine| {
        if machine.has_scope(OWN_MACHINE_ID) {
            Ok(machine)
        } else {
            Err(AuthError::NotForThisMachine)
        }
    });
    let id = |result: &Result<AuthenticatedMachine, AuthError>| {
        result
            .as_ref()
            .map(|machine| machine.machine_id().as_str().to_owned())
            .map_err(Clone::clone)
    };
    // The verifier checks the token's characters and kind first; a built token is JWT-shaped
    // unless a segment is empty or padded.
    if tower_machine_auth::fuzzing::token_kind(&token) == Ok("jwt") {
        assert_eq!(
            id(&direct),
            id(&outcome),
            "the JWT path disagrees with the verifier"
        );
    }
});
