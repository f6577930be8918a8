//! `MachineAuthLayer` against its best-known peer, `jwt-authorizer` 0.15 (the JWT layer for Axum
//! 0.7, which verifies every request), on the same route, the same key and the same tokens.
//!
//! ```sh
//! cargo bench -p machine-auth-peer-bench
//! ```
//!
//! One criterion group, `peer`, with four benchmarks, all on Axum 0.7 (the version jwt-authorizer
//! runs on):
//!
//! - `axum07_bare`: the route alone, the request carrying the same `Authorization: Bearer
//!   <RS256>` header;
//! - `jwt_authorizer`: the route behind jwt-authorizer, configured with the same RSA public key
//!   (PEM text), checking `exp` and `nbf`, no audience; the handler takes its `JwtClaims`, so the
//!   claims are decoded and handed over as they are in an application. A different token every
//!   request (it has no cache, so reusing one would measure the same thing);
//! - `layer_miss`: the route behind `MachineAuthLayer` (PEM key), a different token every request.
//!   The token cache is on, a tenth of the pool, serving an entry for 1 ms only: each request looks
//!   its token up, verifies it and inserts it into a full cache, as a token never seen before does,
//!   and cycling through the pool never finds one still served (checked after the run: zero cache
//!   hits); the handler takes the
//!   `AuthenticatedMachine` from the request extensions;
//! - `layer_hit`: the same, one reused token, answered from the cache (checked after the run:
//!   no signature verified during the group).
//!
//! The tokens are RS256 with Clerk's M2M header (`cat`) and Clerk-like claims (`sub: "mch_…"`,
//! `exp`, `iat`, `nbf`, `jti`, `scopes` and a few custom claims), signed with an RSA-2048 key
//! generated for the run. They carry no `aud`: jwt-authorizer, like the jsonwebtoken 9 it is
//! built on, refuses a token with an audience when it is not told which audience to expect.
//!
//! Routers are driven in-process: a current-thread Tokio runtime, `router.clone()
//! .oneshot(request)` per request; building the request and dropping the response are not timed.
//! Before timing, every variant must answer 200 to its valid tokens and both layers 401 to a token
//! whose signature was tampered with. After the group, the medians of this run are read from
//! criterion's estimates (`<criterion home>/peer/<bench>/new/estimates.json`) and the ratios
//! `jwt_authorizer / layer_miss` and `jwt_authorizer / layer_hit` printed against their goals,
//! then measured again interleaved (each round times a short batch of every variant in turn).
//! Ratios are printed, never asserted. Under `cargo test --benches -p machine-auth-peer-bench`
//! (as CI runs it) each routine runs once on a 16-token pool, the miss variant's cache off, and
//! no ratio is printed.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use axum::body::Body;
use axum::routing::{MethodRouter, get};
use axum::{Extension, Router};
use criterion::{BatchSize, Criterion};
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, StatusCode};
use jwt_authorizer::{Authorizer, IntoLayer, JwtAuthorizer, JwtClaims, Validation};
use tower::ServiceExt;
use tower_machine_auth::{Algorithm, AuthenticatedMachine, MachineAuthLayer, MachineVerifier};

#[path = "../../support/mod.rs"]
mod support;
#[path = "../../support/tokens.rs"]
mod tokens;
use support::{benchmarking, criterion_home, median_ns, paired_ratios};
use tokens::{Signer, bearer, payload_without_audience, tampered};

const GROUP: &str = "peer";
const BARE: &str = "axum07_bare";
const PEER: &str = "jwt_authorizer";
const MISS: &str = "layer_miss";
const HIT: &str = "layer_hit";

const PATH: &str = "/cron/run";

/// Distinct tokens for `jwt_authorizer` and `layer_miss` when benchmarking (as in
/// `benches/layer.rs`).
const POOL_SIZE: usize = 3_000;
/// The pool under `cargo test --benches` / `cargo bench -- --test`, where each routine runs once.
const TEST_POOL_SIZE: usize = 16;
/// The `layer_miss` verifier's cache when benchmarking: a tenth of the pool, so that a miss pays
/// what it pays in production, the lookup and an insert with an eviction in a full cache included.
const MISS_CACHE_CAPACITY: u64 = POOL_SIZE as u64 / 10;
/// How long `layer_miss` serves an entry: much less than a round through the pool (60 ms or more),
/// so no request is ever answered from the cache.
const MISS_CACHE_TTL: Duration = Duration::from_millis(1);
/// Requests built per batch outside the timed region (small, so they are still hot in cache).
const BATCH: BatchSize = BatchSize::NumIterations(128);

async fn bare_handler() -> &'static str {
    "ok"
}

/// jwt-authorizer's claims, as its handlers take them.
async fn peer_handler(JwtClaims(claims): JwtClaims<serde_json::Value>) -> &'static str {
    std::hint::black_box(&claims["sub"]);
    "ok"
}

/// The layer's identity, as an Axum 0.7 handler takes it (the crate's own extractor is for Axum
/// 0.8).
async fn layer_handler(Extension(machine): Extension<AuthenticatedMachine>) -> &'static str {
    std::hint::black_box(machine.machine_id());
    "ok"
}

fn route(handler: MethodRouter) -> Router {
    Router::new().route(PATH, handler)
}

/// A request with this `Authorization` value (built outside the timed region).
fn request(authorization: &HeaderValue) -> Request<Body> {
    Request::get(PATH)
        .header(AUTHORIZATION, authorization.clone())
        .body(Body::empty())
        .expect("request")
}

async fn status(router: &Router, authorization: &HeaderValue) -> StatusCode {
    router
        .clone()
        .oneshot(request(authorization))
        .await
        .expect("infallible")
        .status()
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .without_plots()
        .configure_from_args();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // --- Fixtures -------------------------------------------------------------------------------
    let signer = Signer::new(Algorithm::RS256);
    let public_pem = signer.public_pem();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let pool_size = if benchmarking() {
        POOL_SIZE
    } else {
        TEST_POOL_SIZE
    };
    let hit_token = signer.sign(
        &SystemRandom::new(),
        &payload_without_audience(now, 999_999),
    );
    let pool = signer.mint(pool_size, |n| payload_without_audience(now, n));
    let pool_headers: Vec<HeaderValue> = pool.iter().map(|token| bearer(token)).collect();
    let hit_header = bearer(&hit_token);
    eprintln!(
        "token: {} bytes (header {} b64, payload {} b64); {} distinct tokens for the miss variants",
        hit_token.len(),
        hit_token.split('.').next().map_or(0, str::len),
        hit_token.split('.').nth(1).map_or(0, str::len),
        pool.len()
    );

    let bare = route(get(bare_handler));

    // The peer: RS256 key from the same PEM text; `exp` (its default) and `nbf` checked, no
    // audience or issuer. It verifies every request.
    let authorizer: Authorizer<serde_json::Value> = runtime
        .block_on(
            JwtAuthorizer::from_rsa_pem_text(&public_pem)
                .validation(Validation::new().nbf(true))
                .build(),
        )
        .expect("jwt-authorizer");
    let peer = route(get(peer_handler)).layer(authorizer.into_layer());

    // Cache miss: the cache stays on (see MISS_CACHE_CAPACITY). Under `--test` the pool is tiny
    // and runs once, and the cache is off.
    let miss_capacity = if benchmarking() {
        MISS_CACHE_CAPACITY
    } else {
        0
    };
    let miss_verifier = MachineVerifier::builder()
        .pem_key(public_pem.clone())
        .token_cache(miss_capacity, MISS_CACHE_TTL)
        .build()
        .expect("verifier");
    let miss = route(get(layer_handler)).layer(MachineAuthLayer::new(miss_verifier.clone()));

    // Cache hit: the default cache; after the first request the one token is always answered
    // from it.
    let hit_verifier = MachineVerifier::builder()
        .pem_key(public_pem.clone())
        .build()
        .expect("verifier");
    let hit = route(get(layer_handler)).layer(MachineAuthLayer::new(hit_verifier.clone()));

    // --- Checks: every variant serves its tokens, and forgeries are refused ---------------------
    runtime.block_on(async {
        assert_eq!(status(&bare, &hit_header).await, StatusCode::OK, "bare");
        for header in &pool_headers {
            assert_eq!(
                status(&peer, header).await,
                StatusCode::OK,
                "jwt-authorizer"
            );
            assert_eq!(status(&miss, header).await, StatusCode::OK, "cache miss");
        }
        assert_eq!(status(&peer, &hit_header).await, StatusCode::OK);
        assert_eq!(status(&hit, &hit_header).await, StatusCode::OK, "cache hit");
        assert_eq!(status(&hit, &hit_header).await, StatusCode::OK, "cache hit");
        for forged in [tampered(&hit_token), tampered(&pool[0])] {
            let forged = bearer(&forged);
            for (name, router) in [("jwt-authorizer", &peer), ("miss", &miss), ("hit", &hit)] {
                assert_eq!(
                    status(router, &forged).await,
                    StatusCode::UNAUTHORIZED,
                    "{name}: forgery"
                );
            }
        }
    });

    let hit_before = hit_verifier.stats();
    let miss_before = miss_verifier.stats();
    assert!(hit_before.cache_hits >= 1, "the cache-hit verifier hits");

    // --- The group ------------------------------------------------------------------------------
    let started = SystemTime::now();
    let mut group = criterion.benchmark_group(GROUP);

    group.bench_function(BARE, |b| {
        b.to_async(&runtime).iter_batched(
            || request(&hit_header),
            |request| bare.clone().oneshot(request),
            BATCH,
        );
    });

    let mut peer_next = 0;
    group.bench_function(PEER, |b| {
        b.to_async(&runtime).iter_batched(
            || {
                peer_next = (peer_next + 1) % pool_headers.len();
                request(&pool_headers[peer_next])
            },
            |request| peer.clone().oneshot(request),
            BATCH,
        );
    });

    // Kept after the group: the interleaved run goes on cycling from where this stops, so the
    // miss variant never meets a token it saw less than a pool ago.
    let mut miss_next = 0;
    group.bench_function(MISS, |b| {
        b.to_async(&runtime).iter_batched(
            || {
                miss_next = (miss_next + 1) % pool_headers.len();
                request(&pool_headers[miss_next])
            },
            |request| miss.clone().oneshot(request),
            BATCH,
        );
    });

    group.bench_function(HIT, |b| {
        b.to_async(&runtime).iter_batched(
            || request(&hit_header),
            |request| hit.clone().oneshot(request),
            BATCH,
        );
    });

    group.finish();
    criterion.final_summary();

    // --- After the run: the variants measured what they claim to --------------------------------
    let check_stats = |phase: &str| {
        let hit_after = hit_verifier.stats();
        let miss_after = miss_verifier.stats();
        assert_eq!(
            hit_after.signature_checks, hit_before.signature_checks,
            "{phase}: the cache-hit variant verified a signature: it measured misses"
        );
        assert_eq!(
            miss_after.cache_hits, miss_before.cache_hits,
            "{phase}: the cache-miss variant was answered from the cache: it measured hits"
        );
        eprintln!(
            "verifier stats after {phase}: layer_hit {} hits / {} signature checks; \
             layer_miss {} hits / {} signature checks",
            hit_after.cache_hits - hit_before.cache_hits,
            hit_after.signature_checks - hit_before.signature_checks,
            miss_after.cache_hits - miss_before.cache_hits,
            miss_after.signature_checks - miss_before.signature_checks,
        );
    };
    check_stats("the group");

    print_medians_and_ratios(started);

    // The same ratios, measured interleaved: criterion times one variant after another, so a
    // burst of load on a shared machine can land on one side of a ratio only. Here each round
    // times a short batch of every variant in turn, and a ratio is the median over rounds of the
    // ratio within a round.
    if benchmarking() {
        let routers = [&peer, &miss, &hit];
        let mut time = |variant: usize| -> Duration {
            // About 2 ms of work per batch whatever the variant, so that each batch amortises the
            // cold caches the previous variant left behind.
            let batch: u32 = if variant == 2 { 1000 } else { 60 };
            let requests: Vec<_> = (0..batch)
                .map(|_| match variant {
                    0 => {
                        peer_next = (peer_next + 1) % pool_headers.len();
                        request(&pool_headers[peer_next])
                    }
                    1 => {
                        miss_next = (miss_next + 1) % pool_headers.len();
                        request(&pool_headers[miss_next])
                    }
                    _ => request(&hit_header),
                })
                .collect();
            let router = routers[variant];
            let started = Instant::now();
            runtime.block_on(async {
                for request in requests {
                    let response = router.clone().oneshot(request).await;
                    std::hint::black_box(response.expect("infallible"));
                }
            });
            started.elapsed() / batch
        };
        let ratios = paired_ratios(200, &mut time, &[(0, 1), (0, 2)]);
        check_stats("the interleaved rounds");
        println!("interleaved (200 rounds of ~2 ms per variant), median of per-round ratios:");
        println!(
            "  {PEER} / {MISS} = {:.2} (goal >= 1.4): {}",
            ratios[0],
            verdict(ratios[0], 1.4)
        );
        println!(
            "  {PEER} / {HIT} = {:.1} (goal >= 20): {}",
            ratios[1],
            verdict(ratios[1], 20.0)
        );
    }
}

fn verdict(ratio: f64, goal: f64) -> &'static str {
    if ratio >= goal { "met" } else { "MISSED" }
}

fn print_medians_and_ratios(started: SystemTime) {
    let home = criterion_home();
    let benches = [BARE, PEER, MISS, HIT];
    let medians: Vec<Option<f64>> = benches
        .iter()
        .map(|bench| median_ns(&home, GROUP, bench, started))
        .collect();
    if medians.iter().all(Option::is_none) {
        // `--test`, `--list`, a filter that matched nothing, or `--discard-baseline`.
        return;
    }
    let [bare, peer, miss, hit] = medians[..] else {
        unreachable!()
    };

    println!();
    println!("medians of this run ({}):", home.join(GROUP).display());
    for (bench, median) in benches.iter().zip(&medians) {
        match median {
            Some(ns) if *ns >= 1_000.0 => println!("  {bench:<16} {:>9.2} µs", ns / 1_000.0),
            Some(ns) => println!("  {bench:<16} {ns:>9.1} ns"),
            None => println!("  {bench:<16} (not measured in this run)"),
        }
    }
    println!("ratios (criterion medians):");
    let ratio = |num: &str, den: &str, values: Option<(f64, f64)>, goal: Option<f64>| match (
        values, goal,
    ) {
        (Some((num_ns, den_ns)), Some(goal)) => {
            let value = num_ns / den_ns;
            println!(
                "  {num} / {den} = {value:.2} (goal >= {goal}): {}",
                verdict(value, goal)
            );
        }
        (Some((num_ns, den_ns)), None) => {
            println!("  {num} / {den} = {:.2} (no goal)", num_ns / den_ns);
        }
        (None, _) => println!("  {num} / {den} = n/a (a variant was not measured in this run)"),
    };
    ratio(PEER, MISS, peer.zip(miss), Some(1.4));
    ratio(PEER, HIT, peer.zip(hit), Some(20.0));
    ratio(HIT, BARE, hit.zip(bare), None);
    ratio(PEER, BARE, peer.zip(bare), None);
}
