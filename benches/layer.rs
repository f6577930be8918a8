//! End-to-end cost of `MachineAuthLayer` on an in-process Axum 0.8 router, against a bare router
//! and against `jsonwebtoken::decode` (the baseline the verifier is compared with).
//!
//! ```sh
//! cargo bench --bench layer
//! ```
//!
//! One criterion group, `layer`, with four benchmarks:
//!
//! - `bare`: the route alone, request carrying the same `Authorization: Bearer <RS256>` header;
//! - `layer_cache_hit`: the route behind the layer, one reused valid token (a cache hit);
//! - `layer_cache_miss`: the route behind the layer, a different valid token every request;
//! - `jsonwebtoken_decode`: `jsonwebtoken::decode` of the same tokens, same PEM key.
//!
//! Routers are driven in-process: a current-thread Tokio runtime, `router.clone()
//! .oneshot(request)` per request; building the request and dropping the response are not
//! timed. After the group, the ratios are computed from this run's criterion estimates
//! (`<criterion home>/layer/<bench>/new/estimates.json`, `median.point_estimate`) and printed
//! against the goals.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{BatchSize, Criterion};
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tower::ServiceExt;
use tower_machine_auth::{MachineAuthLayer, MachineVerifier};

#[path = "support/mod.rs"]
mod support;
use support::paired_ratios;

const GROUP: &str = "layer";
const BARE: &str = "bare";
const CACHE_HIT: &str = "layer_cache_hit";
const CACHE_MISS: &str = "layer_cache_miss";
const JSONWEBTOKEN: &str = "jsonwebtoken_decode";
const OPAQUE_OFF: &str = "layer_opaque_cache_off";
const OPAQUE_ON: &str = "layer_opaque_cache_on";
/// The opaque token the loopback Clerk stand-in knows.
const OPAQUE_TOKEN: &str = "mt_0123456789abcdef0123456789abcdef0123456789abcdef";

const PATH: &str = "/cron/run";
const HEADER: &str = r#"{"alg":"RS256","kid":"ins_2GIoQhbUpy0hX7B2cVkuTMinXoD","typ":"JWT","cat":"cl_B7d4PD333AAA"}"#;

/// Distinct tokens for the cache-miss and jsonwebtoken variants when benchmarking. Each is ~1 KB
/// and comes with a ~1 KB header value, so the pool (~40 MB) is far larger than the CPU caches:
/// like real traffic, a miss reads a token that is not hot.
const POOL_SIZE: usize = 20_000;
/// The pool under `cargo test --benches` / `cargo bench -- --test`, where each benchmark runs once.
const TEST_POOL_SIZE: usize = 16;
/// Requests built per batch outside the timed region (small, so they are still hot in cache).
const BATCH: BatchSize = BatchSize::NumIterations(128);

async fn handler() -> &'static str {
    "ok"
}

fn route() -> Router {
    Router::new().route(PATH, get(handler))
}

/// A request with this `Authorization` value (built outside the timed region).
fn request(authorization: &HeaderValue) -> Request<Body> {
    Request::get(PATH)
        .header(AUTHORIZATION, authorization.clone())
        .body(Body::empty())
        .expect("request")
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An RS256 token with Clerk's M2M header over `payload`, as `tests/common/mod.rs` signs them.
fn sign(key: &KeyPair, rng: &SystemRandom, payload: &str) -> String {
    let signing_input = format!("{}.{}", b64(HEADER.as_bytes()), b64(payload.as_bytes()));
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        rng,
        signing_input.as_bytes(),
        &mut signature,
    )
    .expect("RSA signing");
    format!("{signing_input}.{}", b64(&signature))
}

/// Claims shaped like a Clerk M2M token with a few custom claims; `n` makes the
/// `jti` unique while keeping every token the same length.
fn payload(now: u64, n: usize) -> String {
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

/// `count` valid tokens with distinct `jti`s, signed on every core (an RSA-2048 signature takes ~0.4 ms).
fn mint(key: &KeyPair, now: u64, first: usize, count: usize) -> Vec<String> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = count.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (first..first + count)
            .step_by(chunk)
            .map(|start| {
                let end = (start + chunk).min(first + count);
                scope.spawn(move || {
                    let rng = SystemRandom::new();
                    (start..end)
                        .map(|n| sign(key, &rng, &payload(now, n)))
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

/// The token with one character of its signature changed.
fn tampered(token: &str) -> String {
    let at = token.rfind('.').expect("JWT") + 10;
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ASCII")
}

fn bearer(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Bearer {token}")).expect("header value")
}

async fn status(router: &Router, authorization: &HeaderValue) -> StatusCode {
    router
        .clone()
        .oneshot(request(authorization))
        .await
        .expect("infallible")
        .status()
}

/// `--bench` without `--test` or `--list`: criterion's benchmark mode.
fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|arg| arg == flag);
    has("--bench") && !has("--test") && !has("--list")
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
    let key = KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
    let public_der = key.public_key().as_der().expect("SPKI DER");
    let public_pem = pem::encode(&pem::Pem::new("PUBLIC KEY", public_der.as_ref().to_vec()));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let pool_size = if benchmarking() {
        POOL_SIZE
    } else {
        TEST_POOL_SIZE
    };
    let hit_token = sign(&key, &SystemRandom::new(), &payload(now, 999_999));
    let pool = mint(&key, now, 0, pool_size);
    let pool_headers: Vec<HeaderValue> = pool.iter().map(|token| bearer(token)).collect();
    let hit_header = bearer(&hit_token);
    eprintln!(
        "token: {} bytes (header {} b64, payload {} b64); {} distinct tokens for the miss variants",
        hit_token.len(),
        b64(HEADER.as_bytes()).len(),
        hit_token.split('.').nth(1).map_or(0, str::len),
        pool.len()
    );

    let bare = route();

    // Cache hit: the default cache (10 000 tokens, 5 min); after the first request the one token
    // is always answered from the cache.
    let hit_verifier = MachineVerifier::from_pem(&public_pem).expect("verifier");
    let hit = route().layer(MachineAuthLayer::new(hit_verifier.clone()));

    // Cache miss: the cache stays ON with the production settings (10 000 tokens, 5 min), so a
    // miss pays what it pays in production: digest, lookup, parse, signature, claims, and the
    // insert with its eviction work in a full cache. The cache is LRU and holds half the pool, so
    // cycling through the pool never finds a token still cached (checked after the run: zero
    // hits). Under `--test` the pool is tiny, and the cache is off so that it still holds.
    let miss_capacity = if benchmarking() {
        POOL_SIZE as u64 / 2
    } else {
        0
    };
    let miss_verifier = MachineVerifier::builder()
        .pem_key(public_pem.clone())
        .token_cache(miss_capacity, Duration::from_secs(300))
        .build()
        .expect("verifier");
    let miss = route().layer(MachineAuthLayer::new(miss_verifier.clone()));

    // The baseline: jsonwebtoken 11 (aws_lc_rs), RS256 key from the same PEM, checks `exp`, no
    // `aud`. Claims go into a `serde_json::Value`, as the verifier keeps every claim as JSON.
    let decoding_key = DecodingKey::from_rsa_pem(public_pem.as_bytes()).expect("decoding key");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = true;
    validation.validate_aud = false;
    let decode = |token: &str| {
        jsonwebtoken::decode::<serde_json::Value>(token, &decoding_key, &validation)
            .map(|data| data.claims)
    };

    // --- Checks: every variant serves its tokens, and forgeries are refused ---------------------
    runtime.block_on(async {
        assert_eq!(status(&bare, &hit_header).await, StatusCode::OK, "bare");
        assert_eq!(status(&hit, &hit_header).await, StatusCode::OK, "cache hit");
        assert_eq!(status(&hit, &hit_header).await, StatusCode::OK, "cache hit");
        for header in &pool_headers {
            assert_eq!(status(&miss, header).await, StatusCode::OK, "cache miss");
        }
        for forged in [tampered(&hit_token), tampered(&pool[0])] {
            let forged = bearer(&forged);
            assert_eq!(status(&hit, &forged).await, StatusCode::UNAUTHORIZED);
            assert_eq!(status(&miss, &forged).await, StatusCode::UNAUTHORIZED);
        }
        assert_eq!(
            status(&hit, &HeaderValue::from_static("Bearer x")).await,
            StatusCode::UNAUTHORIZED
        );
    });
    for token in &pool {
        let claims = decode(token).expect("jsonwebtoken accepts the token");
        assert_eq!(claims["sub"], "mch_2vYVtestTESTtestTESTtestTESTtest");
    }
    assert!(
        decode(&tampered(&pool[0])).is_err(),
        "jsonwebtoken: forgery"
    );
    // Opaque tokens: a loopback stand-in for Clerk's `/m2m_tokens/verify` on its own thread and
    // runtime, as a remote API would be; the layer calls it on every request with the result cache
    // off (the default), once with it on.
    let verify_url = spawn_clerk_verify_server(now);
    let opaque_verifier = |cache_ttl: Duration| {
        MachineVerifier::builder()
            .clerk_machine_secret_key("ak_bench_machine_secret")
            .clerk_api_url(verify_url.clone())
            .opaque_token_cache(cache_ttl)
            .build()
            .expect("verifier")
    };
    let opaque_off_verifier = opaque_verifier(Duration::ZERO);
    let opaque_on_verifier = opaque_verifier(Duration::from_secs(300));
    let opaque_off = route().layer(MachineAuthLayer::new(opaque_off_verifier.clone()));
    let opaque_on = route().layer(MachineAuthLayer::new(opaque_on_verifier.clone()));
    let opaque_header = bearer(OPAQUE_TOKEN);
    // The opaque variants' connections live on their own runtime, so that the JWT variants run
    // on a runtime with nothing else registered, as before they were added.
    let opaque_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    opaque_runtime.block_on(async {
        assert_eq!(
            status(&opaque_off, &opaque_header).await,
            StatusCode::OK,
            "opaque"
        );
        assert_eq!(
            status(&opaque_on, &opaque_header).await,
            StatusCode::OK,
            "opaque"
        );
        let unknown = bearer("mt_ffffffffffffffffffffffffffffffff");
        assert_eq!(
            status(&opaque_off, &unknown).await,
            StatusCode::UNAUTHORIZED
        );
    });

    let hit_before = hit_verifier.stats();
    let miss_before = miss_verifier.stats();
    let opaque_off_before = opaque_off_verifier.stats();
    let opaque_on_before = opaque_on_verifier.stats();
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

    group.bench_function(CACHE_HIT, |b| {
        b.to_async(&runtime).iter_batched(
            || request(&hit_header),
            |request| hit.clone().oneshot(request),
            BATCH,
        );
    });

    let mut next = 0;
    group.bench_function(CACHE_MISS, |b| {
        b.to_async(&runtime).iter_batched(
            || {
                next = (next + 1) % pool_headers.len();
                request(&pool_headers[next])
            },
            |request| miss.clone().oneshot(request),
            BATCH,
        );
    });

    let mut next = 0;
    group.bench_function(JSONWEBTOKEN, |b| {
        b.iter(|| {
            next = (next + 1) % pool.len();
            decode(&pool[next])
        });
    });

    group.bench_function(OPAQUE_OFF, |b| {
        b.to_async(&opaque_runtime).iter_batched(
            || request(&opaque_header),
            |request| opaque_off.clone().oneshot(request),
            BATCH,
        );
    });

    group.bench_function(OPAQUE_ON, |b| {
        b.to_async(&opaque_runtime).iter_batched(
            || request(&opaque_header),
            |request| opaque_on.clone().oneshot(request),
            BATCH,
        );
    });

    group.finish();
    criterion.final_summary();

    // --- After the run: the variants measured what they claim to --------------------------------
    let hit_after = hit_verifier.stats();
    let miss_after = miss_verifier.stats();
    assert_eq!(
        hit_after.signature_checks, hit_before.signature_checks,
        "the cache-hit variant verified a signature: it measured misses"
    );
    assert_eq!(
        miss_after.cache_hits, miss_before.cache_hits,
        "the cache-miss variant was answered from the cache: it measured hits"
    );
    eprintln!(
        "verifier stats during the group: cache hit variant {} hits / {} signature checks; \
         cache miss variant {} hits / {} signature checks",
        hit_after.cache_hits - hit_before.cache_hits,
        hit_after.signature_checks - hit_before.signature_checks,
        miss_after.cache_hits - miss_before.cache_hits,
        miss_after.signature_checks - miss_before.signature_checks,
    );

    let opaque_off_calls =
        opaque_off_verifier.stats().introspections - opaque_off_before.introspections;
    let opaque_on_calls =
        opaque_on_verifier.stats().introspections - opaque_on_before.introspections;
    assert_eq!(
        opaque_on_calls, 0,
        "the opaque cache-on variant called the endpoint"
    );
    eprintln!(
        "introspection calls during the group: cache off {opaque_off_calls}, cache on {opaque_on_calls}"
    );

    print_ratios(started);

    // The same goals, measured interleaved: criterion times one variant after another, so a
    // burst of load on this shared machine can land on one side of a ratio only. Here each round
    // times a short batch of every variant in turn, and a ratio is the median over rounds of the
    // ratio within a round.
    if benchmarking() {
        let mut next = 0;
        let mut time = |variant: usize| -> Duration {
            // About 2 ms of work per batch whatever the variant, so that each batch amortises the
            // cold caches the previous variant left behind.
            let batch: u32 = if variant < 2 { 1000 } else { 60 };
            let requests: Vec<_> = (0..batch)
                .map(|_| match variant {
                    0 | 1 => request(&hit_header),
                    _ => {
                        next = (next + 1) % pool_headers.len();
                        request(&pool_headers[next])
                    }
                })
                .collect();
            let router = [&bare, &hit, &miss][variant.min(2)];
            let started = std::time::Instant::now();
            if variant == 3 {
                for request in &requests {
                    let token = request.headers()[AUTHORIZATION].to_str().expect("ASCII");
                    std::hint::black_box(decode(&token["Bearer ".len()..]).expect("valid"));
                }
            } else {
                runtime.block_on(async {
                    for request in requests {
                        let response = router.clone().oneshot(request).await;
                        std::hint::black_box(response.expect("infallible"));
                    }
                });
            }
            started.elapsed() / batch
        };
        let ratios = paired_ratios(200, &mut time, &[(1, 0), (1, 2), (2, 3)]);
        println!("interleaved (200 rounds of ~2 ms per variant), median of per-round ratios:");
        println!("  cache hit / bare = {:.2} (goal <= 3.0)", ratios[0]);
        println!(
            "  cache hit / cache miss = {:.3} (goal <= 0.067)",
            ratios[1]
        );
        println!(
            "  cache miss / jsonwebtoken::decode = {:.2} (goal <= 1.15)",
            ratios[2]
        );
    }
}

/// Serves a valid `machine_to_machine_token` for [`OPAQUE_TOKEN`] on a loopback port, from its own
/// thread and runtime; returns the base URL.
fn spawn_clerk_verify_server(now: u64) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    listener.set_nonblocking(true).expect("non-blocking");
    let resource = serde_json::json!({
        "object": "machine_to_machine_token", "id": "mt_bench", "subject": "mch_cron_service",
        "scopes": ["mch_reports_api"], "claims": null, "revoked": false, "revocation_reason": null,
        "expired": false, "expiration": (now + 3600) * 1000, "last_used_at": null,
        "created_at": now * 1000, "updated_at": now * 1000,
    })
    .to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let app = Router::new().route(
                "/m2m_tokens/verify",
                axum::routing::post(move |body: String| {
                    let resource = resource.clone();
                    async move {
                        if body.contains(OPAQUE_TOKEN) {
                            (
                                StatusCode::OK,
                                [("content-type", "application/json")],
                                resource,
                            )
                        } else {
                            (
                                StatusCode::NOT_FOUND,
                                [("content-type", "application/json")],
                                "{}".to_owned(),
                            )
                        }
                    }
                }),
            );
            axum::serve(listener, app).await.expect("server");
        });
    });
    format!("http://{addr}")
}

/// Where criterion writes its results, found the way criterion finds it.
fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    let from_metadata = std::env::var_os("CARGO").and_then(|cargo| {
        let output = Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .ok()?;
        let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        Some(PathBuf::from(metadata["target_directory"].as_str()?))
    });
    from_metadata.map_or_else(
        || PathBuf::from("target/criterion"),
        |t| t.join("criterion"),
    )
}

/// This run's criterion median of `bench`, in nanoseconds (`None` if it was not measured now).
fn median_ns(home: &std::path::Path, bench: &str, since: SystemTime) -> Option<f64> {
    let path = home.join(GROUP).join(bench).join("new/estimates.json");
    let fresh = std::fs::metadata(&path)
        .and_then(|meta| meta.modified())
        .is_ok_and(|modified| modified >= since);
    if !fresh {
        return None;
    }
    let estimates: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}

fn print_ratios(started: SystemTime) {
    let home = criterion_home();
    let medians: Vec<Option<f64>> = [
        BARE,
        CACHE_HIT,
        CACHE_MISS,
        JSONWEBTOKEN,
        OPAQUE_OFF,
        OPAQUE_ON,
    ]
    .iter()
    .map(|bench| median_ns(&home, bench, started))
    .collect();
    let [bare, hit, miss, jwt, opaque_off, opaque_on] = medians[..] else {
        unreachable!()
    };
    if medians.iter().all(Option::is_none) {
        // `--test`, `--list`, a filter that matched nothing, or `--discard-baseline`.
        return;
    }

    println!();
    println!("medians of this run ({}):", home.join(GROUP).display());
    for (bench, median) in [
        (BARE, bare),
        (CACHE_HIT, hit),
        (CACHE_MISS, miss),
        (JSONWEBTOKEN, jwt),
        (OPAQUE_OFF, opaque_off),
        (OPAQUE_ON, opaque_on),
    ] {
        match median {
            Some(ns) if ns >= 1_000.0 => println!("  {bench:<20} {:>9.2} µs", ns / 1_000.0),
            Some(ns) => println!("  {bench:<20} {ns:>9.1} ns"),
            None => println!("  {bench:<20} (not measured in this run)"),
        }
    }
    println!("ratios:");
    let ratio =
        |label: &str, num: Option<f64>, den: Option<f64>, goal: f64, goal_text: &str| match num
            .zip(den)
        {
            Some((num, den)) => {
                let value = num / den;
                let verdict = if value <= goal { "met" } else { "MISSED" };
                let digits = if value < 1.0 { 3 } else { 2 };
                println!("  {label} = {value:.digits$} (goal <= {goal_text}): {verdict}");
            }
            None => println!("  {label} = n/a (a variant was not measured in this run)"),
        };
    ratio("cache hit / bare", hit, bare, 3.0, "3.0");
    ratio(
        "cache hit / cache miss",
        hit,
        miss,
        1.0 / 15.0,
        "1/15 = 0.067",
    );
    ratio("cache miss / jsonwebtoken::decode", miss, jwt, 1.15, "1.15");
    let informational = |label: &str, num: Option<f64>, den: Option<f64>| {
        if let Some((num, den)) = num.zip(den) {
            println!("  {label} = {:.2} (no goal)", num / den);
        }
    };
    informational("opaque, cache off / JWT cache hit", opaque_off, hit);
    informational("opaque, cache on / JWT cache hit", opaque_on, hit);
    informational("opaque, cache off / JWT cache miss", opaque_off, miss);
}
