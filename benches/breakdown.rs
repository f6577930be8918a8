//! Where a cache miss spends its time: the verifier without the router, and each parsing step on
//! its own, next to the raw signature check.
//!
//! ```sh
//! cargo bench --features fuzzing --bench breakdown
//! ```
//!
//! Each step runs in a tight loop over a pool of 3 000 distinct RS256 tokens (as
//! `benches/layer.rs` signs them) and prints its mean time per call, three times over:
//!
//! - `raw verify`: aws-lc-rs, key parsed once, signature already decoded (the floor);
//! - `verify(), cache off` and `verify(), full cache`: [`MachineVerifier::verify`] with no router
//!   (the cache a tenth of the pool, entries served for 1 ms, so every call inserts and evicts);
//! - `base64 payload`: decoding the payload;
//! - `JSON payload, checked`: the decoded payload checked as the verifier checks it (valid JSON,
//!   repeated names refused at every depth) with nothing built, the lower bound of reading it;
//! - `JSON payload, built`: the same into a `serde_json` map, what `AuthenticatedMachine::claims`
//!   costs the first time a handler asks (and what verification cost before it stopped building
//!   the map);
//! - `JSON header, built`: the header into a map.
//!
//! Their differences are the verifier's own costs beyond the signature. It needs the `fuzzing`
//! feature, which exposes the parser the verifier uses. Under `cargo test --benches` every step
//! runs a few times on a small pool.

#[path = "support/mod.rs"]
mod support;
#[path = "support/tokens.rs"]
mod tokens;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use machine_auth_core::strict_json::{CheckedValue, MemberReader, read_object};
use serde::de::MapAccess;
use support::benchmarking;
use tokens::payload;
use tower_machine_auth::fuzzing::strict_json_object;
use tower_machine_auth::{Algorithm, MachineVerifier};

/// Reads no member: checks the whole object.
struct CheckOnly;

impl<'de> MemberReader<'de> for CheckOnly {
    fn read<A: MapAccess<'de>>(&mut self, _: &str, access: &mut A) -> Result<(), A::Error> {
        access.next_value::<CheckedValue>().map(|_| ())
    }
}

/// Runs `step` `calls` times (after a tenth as many to warm up); prints the mean per call.
fn time(label: &str, calls: usize, mut step: impl FnMut(usize)) {
    (0..calls / 10).for_each(&mut step);
    let started = Instant::now();
    (0..calls).for_each(&mut step);
    let mean = started.elapsed().as_nanos() as f64 / calls as f64;
    println!("  {label:<26} {mean:>9.0} ns");
}

/// The decoded `index`th segment of a JWT.
fn segment(token: &str, index: usize) -> Vec<u8> {
    let segment = token.split('.').nth(index).expect("three segments");
    URL_SAFE_NO_PAD.decode(segment).expect("base64url")
}

fn main() {
    let benchmarking = benchmarking();
    let (pool_size, scale, rounds) = if benchmarking {
        (3_000, 1, 3)
    } else {
        (8, 10_000, 1)
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let signer = tokens::Signer::new(Algorithm::RS256);
    let pool = signer.mint(pool_size, |n| payload(now, n));
    let split: Vec<_> = pool.iter().map(|token| tokens::split(token)).collect();
    let headers: Vec<_> = pool.iter().map(|token| segment(token, 0)).collect();
    let payloads: Vec<_> = pool.iter().map(|token| segment(token, 1)).collect();
    let key = signer.parsed_public_key();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let verifier = |capacity: u64, ttl: Duration| {
        MachineVerifier::builder()
            .pem_key(signer.public_pem())
            .token_cache(capacity, ttl)
            .build()
            .expect("verifier")
    };
    let uncached = verifier(0, Duration::from_secs(1));
    let full_cache = verifier(pool_size as u64 / 10, Duration::from_millis(1));
    let n = |i: usize| i % pool_size;

    println!(
        "RS256 tokens of {} bytes, {pool_size} distinct:",
        pool[0].len()
    );
    for _ in 0..rounds {
        time("raw verify", 20_000 / scale, |i| {
            let (message, signature) = &split[n(i)];
            assert!(key.verify_sig(message, signature).is_ok());
        });
        time("verify(), cache off", 20_000 / scale, |i| {
            runtime
                .block_on(uncached.verify(&pool[n(i)]))
                .expect("valid");
        });
        time("verify(), full cache", 20_000 / scale, |i| {
            runtime
                .block_on(full_cache.verify(&pool[n(i)]))
                .expect("valid");
        });
        time("base64 payload", 200_000 / scale, |i| {
            std::hint::black_box(segment(&pool[n(i)], 1));
        });
        time("JSON payload, checked", 200_000 / scale, |i| {
            read_object(&payloads[n(i)], &mut CheckOnly).expect("object");
        });
        time("JSON payload, built", 200_000 / scale, |i| {
            std::hint::black_box(strict_json_object(&payloads[n(i)]).expect("object"));
        });
        time("JSON header, built", 200_000 / scale, |i| {
            std::hint::black_box(strict_json_object(&headers[n(i)]).expect("object"));
        });
    }
    assert_eq!(
        full_cache.stats().cache_hits,
        0,
        "the full cache answered a token: it measured hits"
    );
}
