//! Public test vectors through the verifier's real key and signature path: C2SP Wycheproof
//! `json_web_signature_test.json` and `json_web_key_test.json`, and the RFC 7520 JOSE cookbook
//! (`jose-cookbook/jws/*.json`).
//!
//! Keys are served as a JWK set by a loopback HTTP server and read by a real JWKS verifier (a PEM
//! verifier, with the JWK turned into SPKI, only where the token carries no `kid`). The vectors'
//! payloads are not machine-token claims, so an authentic token still fails the claim checks; a
//! vector counts as *accepted* when the error shows that the header and the signature passed (see
//! [`outcome`]).
//!
//! The vectors are read from `../shared/vectors` beside the project root, or from the folder named
//! by `MACHINE_AUTH_VECTORS`. Without them each test says so on stderr and passes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::common::{JwksReply, JwksServer};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ParsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tower_machine_auth::error::{InvalidToken, TypeMismatch};
use tower_machine_auth::{Algorithm, AuthError, AuthenticatedMachine, MachineVerifier};

/// Every algorithm the verifier supports: the allowlist of every verifier here, so that what is
/// tested is the binding of keys to algorithms, not a narrow allowlist.
const ALL_ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// JWK members that only private or symmetric keys have.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

// ---------------------------------------------------------------------------------------------
// Skip lists and expectation overrides. Every entry names its case and says why.
// ---------------------------------------------------------------------------------------------

const ES512_UNSUPPORTED: &str =
    "ES512 (P-521) is supported by neither jsonwebtoken 11 nor this verifier";
const MISLABELLED: &str =
    "mislabelled: byte-identical to tc357 (labelled valid) but labelled invalid";
const KEY_BOUND_TO_ALG: &str = "PS384 token against a JWK whose `alg` is PS256: a key is used with \
                                exactly one algorithm (RFC 8725 §3.1), so a strict verifier rejects";
const QUESTION_MARK: &str = "a `?` inside a segment is not base64url: a strict decoder rejects it";
const EMPTY_PAYLOAD: &str = "empty payload: a JWT's claims set must be a JSON object (RFC 7519 \
                             §7.2), so the verifier refuses the token's shape before any signature \
                             check (TokenTypeMismatch(UnknownFormat))";

/// Rule: a vector signed with a symmetric key is never accepted here.
const HMAC_RULE: &str = "HMAC: the verifier refuses symmetric keys (JWKS `oct` keys are skipped, \
                         HS* is never allowed), so even a correct MAC is rejected";
/// Rule: JSON serializations are not compact JWS, the only form a bearer JWT takes.
const JSON_SERIALIZATION_RULE: &str =
    "JWS JSON serialization: only compact JWS is accepted (Wycheproof tc17 expects the same)";
/// Rule: a signature with only an unprotected header has no compact form.
const NO_PROTECTED_HEADER_RULE: &str =
    "no protected header: the compact form has an empty header, so `alg` is unauthenticated";

/// `json_web_signature_test.json` vectors not run.
const JWS_SKIPS: &[(u32, &str)] = &[
    (347, ES512_UNSUPPORTED),
    (351, ES512_UNSUPPORTED),
    (367, MISLABELLED),
    (370, MISLABELLED),
];

/// `json_web_signature_test.json` vectors whose expected outcome differs from their label.
const JWS_OVERRIDES: &[(u32, Expect, &str)] = &[
    (346, Expect::Reject, KEY_BOUND_TO_ALG),
    (350, Expect::Reject, KEY_BOUND_TO_ALG),
    (372, Expect::Reject, QUESTION_MARK),
    (373, Expect::Reject, QUESTION_MARK),
    (259, Expect::Reject, EMPTY_PAYLOAD),
    (264, Expect::Reject, EMPTY_PAYLOAD),
    (268, Expect::Reject, EMPTY_PAYLOAD),
    (272, Expect::Reject, EMPTY_PAYLOAD),
    (320, Expect::Reject, EMPTY_PAYLOAD),
    (325, Expect::Reject, EMPTY_PAYLOAD),
];

/// `json_web_key_test.json`: the only vectors an asymmetric-only verifier accepts.
const JWK_ACCEPTED: &[u32] = &[5];

/// What a key-set probe (see [`Probes`]) expects of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyUse {
    /// The verifier verifies with the key.
    Used,
}

/// Key-set probes whose expectation is not the default, by (first tcId of the group, kid). By
/// default a key is expected used only in the group of an accepted vector (tc5), refused elsewhere.
const PROBE_EXCEPTIONS: &[(u32, &str, KeyUse, &str)] = &[(
    1,
    "kid-ec-sign",
    KeyUse::Used,
    "the mixed set's EC key is a sound public key: the verifier skips only the `oct` member \
         (one unusable key never spoils the set, src/keys/jwk.rs), and tc1's HS256 token is \
         rejected all the same",
)];

/// RFC 7520 signatures not run, by `file#signature`.
const COOKBOOK_SKIPS: &[(&str, &str)] =
    &[("4_3#0", ES512_UNSUPPORTED), ("4_8#1", ES512_UNSUPPORTED)];

// ---------------------------------------------------------------------------------------------
// Outcomes and bookkeeping
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Accept,
    Reject,
}

/// What the test expects of one case.
#[derive(Debug, Clone, Copy)]
enum Plan {
    Run {
        expect: Expect,
        /// Why `expect` differs from the vector's label, if it does.
        because: Option<&'static str>,
    },
    Skip(&'static str),
}

impl Plan {
    fn from_label(result: &str) -> Self {
        let expect = match result {
            "valid" => Expect::Accept,
            "invalid" => Expect::Reject,
            other => panic!("unknown vector result {other:?}"),
        };
        Plan::Run {
            expect,
            because: None,
        }
    }

    /// Expect a rejection whatever the label says.
    fn reject(label: &str, reason: &'static str) -> Self {
        Plan::Run {
            expect: Expect::Reject,
            because: (label != "invalid").then_some(reason),
        }
    }
}

/// What the verifier did with one token.
struct Observed {
    accepted: bool,
    error: Option<AuthError>,
    signature_checks: u64,
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.accepted {
            "accepted"
        } else {
            "rejected"
        };
        match &self.error {
            None => write!(f, "{verdict} (Ok)"),
            Some(error) => write!(
                f,
                "{verdict} ({error:?}, signature checks: {})",
                self.signature_checks
            ),
        }
    }
}

/// Whether the header and the signature passed, judged by the verifier's answer.
///
/// In `MachineVerifier::finish` the `signature_checks` counter is incremented just before
/// `UnverifiedJwt::verify`, which checks, in order: the key's algorithms
/// (`KeyAlgorithmMismatch`), the signature (`BadSignature`), then decodes the payload as a JSON
/// object (`Malformed` / `DuplicateMember`) and only then the claims. So:
/// - a claim error (or `Ok`) means the signature passed;
/// - a JSON payload without a machine `sub` is a type mismatch before the signature (no vector
///   has one, but then it says nothing about the signature, so it counts only after a check);
/// - `Malformed` / `DuplicateMember` after one signature check means the signature passed and the
///   payload (here always a non-JSON vector payload such as `foo`) is not a JSON object;
/// - `Malformed` without a signature check is a parse failure, a rejection;
/// - anything else is a rejection.
fn outcome(result: &Result<AuthenticatedMachine, AuthError>, signature_checks: u64) -> bool {
    match result {
        Ok(_) => true,
        Err(
            AuthError::InvalidToken(
                InvalidToken::MissingClaim(_) | InvalidToken::MalformedClaim(_),
            )
            | AuthError::ClaimMismatch(_)
            | AuthError::Expired
            | AuthError::NotYetActive,
        ) => true,
        // A JSON payload whose `sub` is not a machine id is told apart before the signature.
        Err(
            AuthError::InvalidToken(InvalidToken::Malformed | InvalidToken::DuplicateMember)
            | AuthError::TokenTypeMismatch(TypeMismatch::NotAMachineSubject),
        ) => signature_checks == 1,
        Err(_) => false,
    }
}

async fn observe(verifier: &MachineVerifier, token: &str) -> Observed {
    let before = verifier.stats();
    let result = verifier.verify(token).await;
    let after = verifier.stats();
    assert_eq!(
        after.cache_hits, before.cache_hits,
        "no vector token can be in the verified-token cache"
    );
    let signature_checks = after.signature_checks - before.signature_checks;
    assert!(
        signature_checks <= 1,
        "one verify, at most one signature check"
    );
    Observed {
        accepted: outcome(&result, signature_checks),
        error: result.err(),
        signature_checks,
    }
}

/// Counts for one vector file, and the mismatches that fail the test.
struct Tally {
    file: String,
    run: usize,
    accepted: usize,
    rejected: usize,
    skipped: Vec<(String, &'static str, String)>,
    overridden: BTreeMap<&'static str, Vec<String>>,
    rejections_by_error: BTreeMap<String, usize>,
    failures: Vec<String>,
}

impl Tally {
    fn new(file: &str) -> Self {
        Self {
            file: file.to_owned(),
            run: 0,
            accepted: 0,
            rejected: 0,
            skipped: Vec::new(),
            overridden: BTreeMap::new(),
            rejections_by_error: BTreeMap::new(),
            failures: Vec::new(),
        }
    }

    /// Runs one case as planned and records the result.
    async fn case(&mut self, verifier: &MachineVerifier, id: &str, token: &str, plan: Plan) {
        match plan {
            Plan::Skip(reason) => {
                // Observed for the report only; never asserted.
                let observed = observe(verifier, token).await;
                self.skipped
                    .push((id.to_owned(), reason, observed.to_string()));
            }
            Plan::Run { expect, because } => {
                let observed = observe(verifier, token).await;
                self.run += 1;
                if let Some(reason) = because {
                    self.overridden
                        .entry(reason)
                        .or_default()
                        .push(id.to_owned());
                }
                if observed.accepted {
                    self.accepted += 1;
                } else {
                    self.rejected += 1;
                    let error = observed.error.as_ref().map_or("?".into(), short_error);
                    *self.rejections_by_error.entry(error).or_default() += 1;
                }
                let expected_accept = expect == Expect::Accept;
                if observed.accepted != expected_accept {
                    self.failures.push(format!(
                        "{id}: expected {}, got {observed}{}",
                        if expected_accept {
                            "accepted"
                        } else {
                            "rejected"
                        },
                        because.map_or(String::new(), |r| format!(" [override: {r}]")),
                    ));
                }
            }
        }
    }

    /// Prints the summary, then fails if any case did not go as expected.
    fn finish(self) {
        eprintln!(
            "\n[vectors] {}: {} run ({} accepted, {} rejected), {} skipped",
            self.file,
            self.run,
            self.accepted,
            self.rejected,
            self.skipped.len()
        );
        for (id, reason, observed) in &self.skipped {
            eprintln!("  skipped {id}: {reason} (for information, the verifier: {observed})");
        }
        for (reason, ids) in &self.overridden {
            eprintln!(
                "  expected rejected despite a `valid` label ({}): {}\n    because: {reason}",
                ids.len(),
                ids.join(" ")
            );
        }
        let reasons: Vec<String> = self
            .rejections_by_error
            .iter()
            .map(|(error, n)| format!("{error}: {n}"))
            .collect();
        eprintln!("  rejections by error: {}", reasons.join(", "));
        assert!(
            self.failures.is_empty(),
            "{}: {} vector(s) did not go as expected:\n  {}",
            self.file,
            self.failures.len(),
            self.failures.join("\n  ")
        );
        assert!(self.run > 0, "{}: no vector was run", self.file);
    }
}

/// The error without the `retry_after` noise, for the rejection histogram.
fn short_error(error: &AuthError) -> String {
    match error {
        AuthError::Unavailable { cause, .. } => format!("Unavailable({cause:?})"),
        other => format!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Vectors on disk, keys and verifiers
// ---------------------------------------------------------------------------------------------

/// The vectors folder, or `None` (after saying why) when it is absent.
fn vectors_dir(test: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("MACHINE_AUTH_VECTORS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors"),
    };
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED {test}: the public test vectors folder {} does not exist (set \
             MACHINE_AUTH_VECTORS to its path to run these tests)",
            dir.display()
        );
        None
    }
}

/// A JSON file of the vectors folder, or `None` (after saying why) when it is absent.
fn read_json(dir: &Path, relative: &str, test: &str) -> Option<Value> {
    let path = dir.join(relative);
    match std::fs::read(&path) {
        Ok(bytes) => Some(
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display())),
        ),
        Err(error) => {
            eprintln!("SKIPPED {test}: cannot read {} ({error})", path.display());
            None
        }
    }
}

/// The public half of a JWK: private (and symmetric) members removed.
fn public_jwk(jwk: &Value) -> Value {
    let mut jwk = jwk.clone();
    let members = jwk.as_object_mut().expect("a JWK is a JSON object");
    for name in PRIVATE_MEMBERS {
        members.remove(name);
    }
    jwk
}

fn b64_member(jwk: &Value, name: &str) -> Vec<u8> {
    let text = jwk[name]
        .as_str()
        .unwrap_or_else(|| panic!("JWK member {name}"));
    URL_SAFE_NO_PAD
        .decode(text)
        .expect("JWK member in base64url")
}

/// The SPKI PEM of an RSA or EC (P-256/P-384) JWK, built with aws-lc-rs.
fn spki_pem(jwk: &Value) -> String {
    let der = match jwk["kty"].as_str() {
        Some("RSA") => {
            let components = aws_lc_rs::rsa::PublicKeyComponents {
                n: b64_member(jwk, "n"),
                e: b64_member(jwk, "e"),
            };
            components.as_der().expect("RSA JWK").as_ref().to_vec()
        }
        Some("EC") => {
            let algorithm: &'static dyn aws_lc_rs::signature::VerificationAlgorithm =
                match jwk["crv"].as_str() {
                    Some("P-256") => &ECDSA_P256_SHA256_FIXED,
                    Some("P-384") => &ECDSA_P384_SHA384_FIXED,
                    other => panic!("no SPKI for curve {other:?}"),
                };
            let point = [vec![4], b64_member(jwk, "x"), b64_member(jwk, "y")].concat();
            let key = ParsedPublicKey::new(algorithm, point).expect("EC JWK");
            key.as_der().expect("EC SPKI").as_ref().to_vec()
        }
        other => panic!("no SPKI for kty {other:?}"),
    };
    pem::encode(&pem::Pem::new("PUBLIC KEY", der))
}

/// Serves `jwks` and builds a fresh verifier for it (keys are cached per verifier).
fn jwks_verifier(server: &JwksServer, jwks: Value) -> MachineVerifier {
    server.set(JwksReply::Keys(jwks));
    MachineVerifier::builder()
        .jwks_url(server.url())
        .algorithms(ALL_ASYMMETRIC)
        .build()
        .expect("JWKS verifier")
}

fn pem_verifier(jwk: &Value) -> MachineVerifier {
    MachineVerifier::builder()
        .pem_key(spki_pem(jwk))
        .algorithms(ALL_ASYMMETRIC)
        .build()
        .expect("PEM verifier")
}

fn tc_id(test: &Value) -> u32 {
    u32::try_from(test["tcId"].as_u64().expect("tcId")).expect("tcId fits u32")
}

/// The decoded JSON header of a compact token, if it decodes.
fn header_of(token: &str) -> Option<Value> {
    let segment = token.split('.').next()?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).ok()?).ok()
}

fn is_symmetric(jwk: &Value) -> bool {
    jwk["kty"] == "oct"
}

// ---------------------------------------------------------------------------------------------
// Wycheproof json_web_signature_test.json
// ---------------------------------------------------------------------------------------------

fn jws_plan(tc: u32, label: &str, key: &Value) -> Plan {
    if let Some(&(_, reason)) = JWS_SKIPS.iter().find(|(id, _)| *id == tc) {
        return Plan::Skip(reason);
    }
    if let Some(&(_, expect, reason)) = JWS_OVERRIDES.iter().find(|(id, ..)| *id == tc) {
        return Plan::Run {
            expect,
            because: Some(reason),
        };
    }
    if is_symmetric(key) {
        return Plan::reject(label, HMAC_RULE);
    }
    Plan::from_label(label)
}

/// Checks that the skip and override lists describe the file as they claim.
fn check_jws_lists(tests: &BTreeMap<u32, String>) {
    let jws = |tc: u32| {
        tests
            .get(&tc)
            .unwrap_or_else(|| panic!("tc{tc} of the skip/override lists is not in the file"))
    };
    for &(tc, reason) in JWS_SKIPS {
        match reason {
            ES512_UNSUPPORTED => assert_eq!(
                header_of(jws(tc)).expect("tc header")["alg"],
                "ES512",
                "tc{tc} is listed as ES512"
            ),
            MISLABELLED => assert_eq!(jws(tc), jws(357), "tc{tc} is listed as identical to tc357"),
            _ => {}
        }
    }
    for &(tc, _, reason) in JWS_OVERRIDES {
        let token = jws(tc);
        match reason {
            EMPTY_PAYLOAD => assert_eq!(
                token.split('.').nth(1),
                Some(""),
                "tc{tc} is listed as having an empty payload"
            ),
            QUESTION_MARK => assert!(token.contains('?'), "tc{tc} is listed as holding a `?`"),
            KEY_BOUND_TO_ALG => assert_eq!(
                header_of(token).expect("tc header")["alg"],
                "PS384",
                "tc{tc} is listed as a PS384 token"
            ),
            _ => {}
        }
    }
}

#[tokio::test]
async fn wycheproof_json_web_signature() {
    const FILE: &str = "wycheproof/json_web_signature_test.json";
    let Some(dir) = vectors_dir("wycheproof_json_web_signature") else {
        return;
    };
    let Some(vectors) = read_json(&dir, FILE, "wycheproof_json_web_signature") else {
        return;
    };
    let groups = vectors["testGroups"].as_array().expect("testGroups");
    let all: BTreeMap<u32, String> = groups
        .iter()
        .flat_map(|g| g["tests"].as_array().expect("tests"))
        .map(|t| (tc_id(t), t["jws"].as_str().expect("jws").to_owned()))
        .collect();
    assert_eq!(
        all.len() as u64,
        vectors["numberOfTests"].as_u64().unwrap(),
        "numberOfTests"
    );
    check_jws_lists(&all);

    let server = JwksServer::start(JwksReply::Status(503)).await;
    let mut tally = Tally::new(FILE);
    for group in groups {
        // The group's public key, or the private one with its private members removed.
        let key = match group.get("public") {
            Some(public) => public.clone(),
            None => public_jwk(&group["private"]),
        };
        assert!(
            PRIVATE_MEMBERS.iter().all(|m| key.get(m).is_none()),
            "only public keys are served"
        );
        let verifier = jwks_verifier(&server, json!({ "keys": [key] }));
        for test in group["tests"].as_array().unwrap() {
            let tc = tc_id(test);
            let label = test["result"].as_str().unwrap();
            let token = test["jws"].as_str().unwrap();
            let plan = jws_plan(tc, label, &key);
            tally.case(&verifier, &format!("tc{tc}"), token, plan).await;
        }
    }
    assert_eq!(
        tally.run + tally.skipped.len(),
        all.len(),
        "every vector is run or skipped"
    );
    tally.finish();
}

// ---------------------------------------------------------------------------------------------
// Wycheproof json_web_key_test.json
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn wycheproof_json_web_key() {
    const FILE: &str = "wycheproof/json_web_key_test.json";
    let Some(dir) = vectors_dir("wycheproof_json_web_key") else {
        return;
    };
    let Some(vectors) = read_json(&dir, FILE, "wycheproof_json_web_key") else {
        return;
    };
    let groups = vectors["testGroups"].as_array().expect("testGroups");
    let server = JwksServer::start(JwksReply::Status(503)).await;
    let mut tally = Tally::new(FILE);
    let mut total = 0;
    let mut expected_accepted = Vec::new();
    let mut probes = Probes::default();
    for group in groups {
        // The key set as given is what is under test: the public set when the group has one
        // (asymmetric keys), else the private set (the symmetric key sets have no public form).
        let key_set = group.get("public").unwrap_or(&group["private"]).clone();
        let symmetric = key_set["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .any(is_symmetric);
        let verifier = jwks_verifier(&server, key_set.clone());
        for test in group["tests"].as_array().unwrap() {
            total += 1;
            let tc = tc_id(test);
            let label = test["result"].as_str().unwrap();
            let plan = if JWK_ACCEPTED.contains(&tc) {
                Plan::from_label(label)
            } else if symmetric {
                Plan::reject(label, HMAC_RULE)
            } else {
                Plan::from_label(label)
            };
            if let Plan::Run {
                expect: Expect::Accept,
                ..
            } = plan
            {
                expected_accepted.push(tc);
            }
            let token = test["jws"].as_str().unwrap();
            tally.case(&verifier, &format!("tc{tc}"), token, plan).await;
        }
        // Some vectors are rejected before any key is looked up (an HS* header, an empty
        // payload), which says nothing about the key set under test: probe its keys directly.
        let tcs: Vec<u32> = group["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(tc_id)
            .collect();
        let used_by_default = tcs.iter().any(|tc| JWK_ACCEPTED.contains(tc));
        probes
            .probe(&verifier, tcs[0], &key_set, used_by_default)
            .await;
    }
    assert_eq!(
        total as u64,
        vectors["numberOfTests"].as_u64().unwrap(),
        "numberOfTests"
    );
    assert_eq!(
        expected_accepted, JWK_ACCEPTED,
        "the rules must reproduce the README's expectation: only tc5 is accepted"
    );
    probes.finish();
    tally.finish();
}

/// Whether the verifier uses each key of a key set, probed with a token naming the key.
///
/// Some vectors of `json_web_key_test.json` are rejected before any key is looked up (tc8 and
/// tc9 have an empty payload, the HMAC ones an HS* header), so they say nothing about whether
/// the verifier refuses the key set under test. These probes ask it directly.
#[derive(Default)]
struct Probes {
    run: usize,
    lines: Vec<String>,
    failures: Vec<String>,
}

impl Probes {
    /// For every key with a `kid`, sends a token whose header names that `kid` and an algorithm
    /// of the key, with a `{"sub":"mch_probe"}` payload and a dummy signature. The key is used iff the verifier
    /// reaches the signature check (`signature_checks` goes up; the answer is `BadSignature`); a
    /// refused key gives `Unavailable` (no usable key in the set) or `UnknownKeyId`.
    async fn probe(
        &mut self,
        verifier: &MachineVerifier,
        first_tc: u32,
        key_set: &Value,
        used_by_default: bool,
    ) {
        for key in key_set["keys"].as_array().unwrap() {
            let Some(kid) = key["kid"].as_str() else {
                continue;
            };
            let alg = probe_alg(key);
            let header = json!({ "alg": alg, "kid": kid }).to_string();
            let token = format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(r#"{"sub":"mch_probe"}"#),
                URL_SAFE_NO_PAD.encode([0u8; 64])
            );
            if key["kty"] == "RSA" && key["e"] == "AQ" {
                self.forge_with_exponent_one(verifier, kid).await;
            }
            let observed = observe(verifier, &token).await;
            let used = observed.signature_checks == 1;
            let id = format!("key set of tc{first_tc}, kid {kid:?} ({alg})");
            let verdict = if used { "used" } else { "refused" };
            let exception = PROBE_EXCEPTIONS
                .iter()
                .find(|(tc, k, ..)| *tc == first_tc && *k == kid);
            let expect_used = match exception {
                Some(&(_, _, KeyUse::Used, reason)) => {
                    self.lines
                        .push(format!("{id}: {verdict} (expected used: {reason})"));
                    true
                }
                None => {
                    self.lines.push(format!("{id}: {verdict}"));
                    used_by_default
                }
            };
            self.run += 1;
            if used != expect_used {
                self.failures.push(format!(
                    "{id}: expected the key to be {}, got {observed}",
                    if expect_used { "used" } else { "refused" }
                ));
            }
        }
    }

    /// tc9's attack on a JSON payload: with e = 1 a signature is its own PKCS #1 v1.5 encoded
    /// message, so anyone can "sign". Built exactly as tc9's signature (checked against it by
    /// hand: 00 01 FF…FF 00 DigestInfo(SHA-256) of the signing input), over Clerk M2M claims.
    async fn forge_with_exponent_one(&mut self, verifier: &MachineVerifier, kid: &str) {
        const SHA256_DIGEST_INFO: [u8; 19] = [
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ];
        let header =
            json!({"alg": "RS256", "kid": kid, "typ": "JWT", "cat": crate::common::M2M_CATEGORY});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(crate::common::claims().to_string())
        );
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, input.as_bytes());
        let mut encoded = vec![0x00, 0x01];
        encoded.resize(256 - 1 - SHA256_DIGEST_INFO.len() - 32, 0xff);
        encoded.push(0x00);
        encoded.extend_from_slice(&SHA256_DIGEST_INFO);
        encoded.extend_from_slice(digest.as_ref());
        assert_eq!(encoded.len(), 256, "a 2048-bit modulus");
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&encoded));
        let observed = observe(verifier, &token).await;
        let id = "tc9 forged (e = 1, signature = encoded message, M2M claims)";
        self.run += 1;
        self.lines.push(format!("{id}: {observed}"));
        if observed.accepted {
            self.failures
                .push(format!("{id}: a forged token was accepted: {observed}"));
        }
    }

    fn finish(self) {
        eprintln!(
            "\n[vectors] wycheproof/json_web_key_test.json key-set probes (derived checks, not \
             vectors): {} run",
            self.run
        );
        for line in &self.lines {
            eprintln!("  {line}");
        }
        assert!(
            self.failures.is_empty(),
            "key-set probes: {} did not go as expected:\n  {}",
            self.failures.len(),
            self.failures.join("\n  ")
        );
    }
}

/// An algorithm to name in a probe: the key's own `alg` if the verifier supports it, else one
/// that fits the key type.
fn probe_alg(jwk: &Value) -> &'static str {
    const NAMES: [&str; 9] = [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ];
    if let Some(name) = NAMES.iter().find(|n| jwk["alg"] == **n) {
        return name;
    }
    match (jwk["kty"].as_str(), jwk["crv"].as_str()) {
        (Some("EC"), Some("P-384")) => "ES384",
        (Some("EC"), _) => "ES256",
        (Some("OKP"), _) => "EdDSA",
        _ => "RS256",
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 7520 JOSE cookbook, jws/*.json
// ---------------------------------------------------------------------------------------------

/// A one-or-many member of a cookbook file as a list.
fn one_or_many(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        one => vec![one.clone()],
    }
}

#[tokio::test]
async fn rfc7520_cookbook_jws() {
    let Some(dir) = vectors_dir("rfc7520_cookbook_jws") else {
        return;
    };
    let jws_dir = dir.join("jose-cookbook/jws");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&jws_dir) {
        Ok(entries) => entries
            .map(|e| e.expect("directory entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(error) => {
            eprintln!(
                "SKIPPED rfc7520_cookbook_jws: cannot read {} ({error})",
                jws_dir.display()
            );
            return;
        }
    };
    files.sort();
    assert!(!files.is_empty(), "no cookbook JWS file");

    let server = JwksServer::start(JwksReply::Status(503)).await;
    let mut tally = Tally::new("jose-cookbook/jws/*.json");
    let mut listed_skips_seen = 0;
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let stem = name.split('.').next().unwrap().to_owned();
        let file: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let keys = one_or_many(&file["input"]["key"]);
        let signings = one_or_many(&file["signing"]);
        assert_eq!(keys.len(), signings.len(), "{name}: one key per signature");
        let single = signings.len() == 1;

        for (index, (private_key, signing)) in keys.iter().zip(&signings).enumerate() {
            let id = format!("{stem}#{index}");
            let key = public_jwk(private_key);
            // The compact serialization: the file's own when it has one (it may detach the
            // payload), else `protected.payload.signature` as signed.
            let token = match file["output"]["compact"].as_str() {
                Some(compact) if single => compact.to_owned(),
                _ => format!(
                    "{}.{}",
                    signing["sig-input"].as_str().expect("sig-input"),
                    signing["sig"].as_str().expect("sig")
                ),
            };
            let protected = signing.get("protected");
            let plan = if let Some(&(_, reason)) = COOKBOOK_SKIPS.iter().find(|(s, _)| *s == id) {
                listed_skips_seen += 1;
                let alg = protected
                    .and_then(|p| p.get("alg"))
                    .or_else(|| signing["unprotected"].get("alg"));
                assert_eq!(alg, Some(&json!("ES512")), "{id} is listed as ES512");
                Plan::Skip(reason)
            } else if is_symmetric(&key) {
                Plan::reject("valid", HMAC_RULE)
            } else if protected.is_none() {
                Plan::reject("valid", NO_PROTECTED_HEADER_RULE)
            } else {
                Plan::from_label("valid")
            };

            let kid_in_token = header_of(&token).is_some_and(|h| h.get("kid").is_some());
            let pem_capable = matches!(key["kty"].as_str(), Some("RSA"))
                || matches!(key["crv"].as_str(), Some("P-256" | "P-384"));
            if kid_in_token || !pem_capable {
                let verifier = jwks_verifier(&server, json!({ "keys": [key] }));
                tally
                    .case(&verifier, &format!("{id} compact (JWKS)"), &token, plan)
                    .await;
            }
            if pem_capable {
                // Also (or, without a kid, only) through the PEM path, with the JWK as SPKI.
                let verifier = pem_verifier(&key);
                tally
                    .case(&verifier, &format!("{id} compact (PEM)"), &token, plan)
                    .await;
            }
        }

        // The JSON serializations of the same signatures: never a bearer token.
        let verifier = jwks_verifier(&server, json!({ "keys": [public_jwk(&keys[0])] }));
        for form in ["json", "json_flat"] {
            if let Some(serialized) = file["output"].get(form) {
                let token = serialized.to_string();
                let plan = Plan::reject("valid", JSON_SERIALIZATION_RULE);
                tally
                    .case(&verifier, &format!("{stem} {form}"), &token, plan)
                    .await;
            }
        }
    }
    assert_eq!(
        listed_skips_seen,
        COOKBOOK_SKIPS.len(),
        "every listed cookbook skip names a signature in the files"
    );
    tally.finish();
}
