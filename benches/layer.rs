//! What `MachineAuthLayer` costs per request on an in-process Axum 0.8 router, against the floor
//! of each path: the bare route, the raw signature check, `jsonwebtoken::decode`, one raw HTTP
//! POST.
//!
//! ```sh
//! cargo bench --bench layer
//! ```
//!
//! Criterion group `layer`:
//!
//! | benchmark | what one iteration is |
//! |---|---|
//! | `bare` | the route alone, the request carrying the same `Authorization: Bearer <RS256>` header |
//! | `hit` | the route behind the layer, one reused valid RS256 token (a cache hit) |
//! | `miss_rs256`, `miss_es256`, `miss_eddsa` | the route behind the layer, a token not seen before every request |
//! | `raw_verify_rs256`, `raw_verify_es256`, `raw_verify_eddsa` | aws-lc-rs verifying the same tokens' signatures with a key parsed once, signatures already decoded: the floor of a miss |
//! | `jsonwebtoken_decode` | `jsonwebtoken::decode` of the same RS256 tokens into a `serde_json::Value`, with the PEM key |
//! | `opaque_uncached` | the route behind the layer, an opaque `mt_…` token verified by a loopback stand-in for Clerk's `/m2m_tokens/verify` (result cache off, the default) |
//! | `raw_post` | one POST of the same request to the same server with a reused `reqwest` client: the floor of an uncached opaque token |
//! | `opaque_cached` | the same opaque token with the result cache on (a hit) |
//!
//! Routers are driven in-process: a current-thread Tokio runtime, `router.clone().oneshot(request)`
//! per request; building the request and dropping the response are not timed. A miss pays what it
//! pays in production: the cache is on (a tenth of the pool, entries served for 1 ms), so each miss
//! also looks up and inserts into a full cache; afterwards the verifiers' counters show that misses
//! never hit and hits never checked a signature.
//!
//! After the group, each ratio is printed twice: from this run's criterion medians, and interleaved
//! (every round times a short batch of each variant in turn, and a ratio is the median over rounds
//! of the ratio within a round, so a burst of load on a shared machine lands on both sides).
//!
//! Under `cargo test --benches` every routine runs once, with a tiny pool and the cache of the
//! miss variants off.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::ParsedPublicKey;
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{BatchSize, Criterion};
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, StatusCode};
use jsonwebtoken::{DecodingKey, Validation};
use tower::ServiceExt;
use tower_machine_auth::{Algorithm, MachineAuthLayer, MachineVerifier};

#[path = "support/mod.rs"]
mod support;
#[path = "support/tokens.rs"]
mod tokens;
use support::{benchmarking, criterion_home, median_ns, paired_ratios};
use tokens::{Signer, bearer, payload, split, tampered};

const GROUP: &str = "layer";
/// The opaque token the loopback Clerk stand-in knows.
const OPAQUE_TOKEN: &str = "mt_0123456789abcdef0123456789abcdef0123456789abcdef";
const MACHINE_SECRET_KEY: &str = "ak_bench_machine_secret";
const PATH: &str = "/cron/run";

/// Distinct tokens per algorithm for the miss variants when benchmarking (RS256 ones are ~1 KB).
const POOL_SIZE: usize = 3_000;
/// The pool under `cargo test --benches` / `cargo bench -- --test`, where each routine runs once.
const TEST_POOL_SIZE: usize = 4;
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

async fn status(router: &Router, authorization: &HeaderValue) -> StatusCode {
    router
        .clone()
        .oneshot(request(authorization))
        .await
        .expect("infallible")
        .status()
}

/// The miss variant of one algorithm: its pool, its layer, and the raw verification of the pool.
struct MissPath {
    name: &'static str,
    headers: Vec<HeaderValue>,
    split: Vec<(Vec<u8>, Vec<u8>)>,
    router: Router,
    verifier: MachineVerifier,
    raw_key: ParsedPublicKey,
}

impl MissPath {
    fn new(signer: &Signer, tokens: &[String]) -> Self {
        // The cache is on, a tenth of the pool, and serves an entry for 1 ms only: each request
        // looks its token up, verifies it, and inserts it into a full cache (evicting another),
        // as a token never seen before does, while cycling through the pool (60 ms or more a
        // round) never finds an entry still served. Under `--test` the pool is tiny, and the
        // cache is off so that it still holds.
        let capacity = if benchmarking() {
            tokens.len() as u64 / 10
        } else {
            0
        };
        let verifier = MachineVerifier::builder()
            .pem_key(signer.public_pem())
            .algorithms([signer.algorithm])
            .token_cache(capacity, Duration::from_millis(1))
            .build()
            .expect("verifier");
        Self {
            name: signer.name,
            headers: tokens.iter().map(|token| bearer(token)).collect(),
            split: tokens.iter().map(|token| split(token)).collect(),
            router: route().layer(MachineAuthLayer::new(verifier.clone())),
            verifier,
            raw_key: signer.parsed_public_key(),
        }
    }

    fn raw_verify(&self, n: usize) -> bool {
        let (message, signature) = &self.split[n % self.split.len()];
        self.raw_key.verify_sig(message, signature).is_ok()
    }
}

/// `count` requests with this `Authorization` value.
fn requests(authorization: &HeaderValue, count: usize) -> Vec<Request<Body>> {
    (0..count).map(|_| request(authorization)).collect()
}

/// Times `router` on prepared requests, per request.
fn time_requests(
    runtime: &tokio::runtime::Runtime,
    router: &Router,
    requests: Vec<Request<Body>>,
) -> Duration {
    let count = requests.len() as u32;
    let started = Instant::now();
    runtime.block_on(async {
        for request in requests {
            let response = router.clone().oneshot(request).await;
            std::hint::black_box(response.expect("infallible"));
        }
    });
    started.elapsed() / count
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
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let pool_size = if benchmarking() {
        POOL_SIZE
    } else {
        TEST_POOL_SIZE
    };

    // --- Fixtures -------------------------------------------------------------------------------
    let signers = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA].map(Signer::new);
    let pools: Vec<Vec<String>> = signers
        .iter()
        .map(|signer| signer.mint(pool_size, |n| payload(now, n)))
        .collect();
    let misses: Vec<MissPath> = signers
        .iter()
        .zip(&pools)
        .map(|(signer, pool)| MissPath::new(signer, pool))
        .collect();
    let rs256 = &signers[0];
    let rs256_pool = &pools[0];
    let hit_token = rs256.sign(&SystemRandom::new(), &payload(now, 999_999));
    let hit_header = bearer(&hit_token);
    eprintln!(
        "tokens: RS256 {} bytes, ES256 {} bytes, EdDSA {} bytes; {} distinct tokens per algorithm \
         for the miss variants",
        hit_token.len(),
        pools[1][0].len(),
        pools[2][0].len(),
        pool_size
    );

    let bare = route();
    // Cache hit: the default cache (10 000 tokens, 5 min): after the first request the one token
    // is always answered from the cache.
    let hit_verifier = MachineVerifier::from_pem(&rs256.public_pem()).expect("verifier");
    let hit = route().layer(MachineAuthLayer::new(hit_verifier.clone()));

    // jsonwebtoken 11 (aws_lc_rs), RS256 key from the same PEM, checks `exp`, no `aud`. Claims go
    // into a `serde_json::Value`, as the verifier keeps every claim as JSON.
    let decoding_key =
        DecodingKey::from_rsa_pem(rs256.public_pem().as_bytes()).expect("decoding key");
    let mut validation = Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_aud = false;
    let decode = |token: &str| {
        jsonwebtoken::decode::<serde_json::Value>(token, &decoding_key, &validation)
            .map(|data| data.claims)
    };

    // Opaque tokens: a loopback stand-in for Clerk's `/m2m_tokens/verify` on its own thread and
    // runtime, as a remote API would be. The layer's variants and the raw POST share a runtime of
    // their own, so the JWT variants run on a runtime with nothing else registered.
    let verify_url = spawn_clerk_verify_server(now);
    let opaque_verifier = |cache_ttl: Duration| {
        MachineVerifier::builder()
            .clerk_machine_secret_key(MACHINE_SECRET_KEY)
            .clerk_api_url(verify_url.clone())
            .opaque_token_cache(cache_ttl)
            .build()
            .expect("verifier")
    };
    let uncached_verifier = opaque_verifier(Duration::ZERO);
    let cached_verifier = opaque_verifier(Duration::from_secs(300));
    let opaque_uncached = route().layer(MachineAuthLayer::new(uncached_verifier.clone()));
    let opaque_cached = route().layer(MachineAuthLayer::new(cached_verifier.clone()));
    let opaque_header = bearer(OPAQUE_TOKEN);
    let opaque_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let raw_client = reqwest::Client::new();
    let raw_post = || {
        let request = raw_client
            .post(format!("{verify_url}/m2m_tokens/verify"))
            .bearer_auth(MACHINE_SECRET_KEY)
            .header(
                "Clerk-API-Version",
                machine_auth_core::clerk::CLERK_API_VERSION,
            )
            .header("accept", "application/json")
            .header("content-type", "application/json")
            .body(serde_json::json!({ "token": OPAQUE_TOKEN }).to_string());
        async move {
            let response = request.send().await.expect("loopback POST");
            assert!(response.status().is_success(), "raw POST");
            response.bytes().await.expect("body")
        }
    };

    // --- Checks: every variant serves its tokens, and forgeries are refused ---------------------
    runtime.block_on(async {
        assert_eq!(status(&bare, &hit_header).await, StatusCode::OK, "bare");
        assert_eq!(status(&hit, &hit_header).await, StatusCode::OK, "hit");
        assert_eq!(status(&hit, &hit_header).await, StatusCode::OK, "hit");
        for (miss, pool) in misses.iter().zip(&pools) {
            for header in &miss.headers {
                assert_eq!(
                    status(&miss.router, header).await,
                    StatusCode::OK,
                    "{}",
                    miss.name
                );
            }
            let forged = bearer(&tampered(&pool[0]));
            assert_eq!(
                status(&miss.router, &forged).await,
                StatusCode::UNAUTHORIZED
            );
            assert_eq!(status(&hit, &forged).await, StatusCode::UNAUTHORIZED);
        }
        let forged = bearer(&tampered(&hit_token));
        assert_eq!(status(&hit, &forged).await, StatusCode::UNAUTHORIZED);
    });
    for miss in &misses {
        assert!(
            (0..pool_size).all(|n| miss.raw_verify(n)),
            "raw {}",
            miss.name
        );
    }
    for token in rs256_pool {
        let claims = decode(token).expect("jsonwebtoken accepts the token");
        assert_eq!(claims["sub"], "mch_2vYVtestTESTtestTESTtestTESTtest");
    }
    assert!(decode(&tampered(&rs256_pool[0])).is_err(), "forgery");
    opaque_runtime.block_on(async {
        for router in [&opaque_uncached, &opaque_cached] {
            assert_eq!(
                status(router, &opaque_header).await,
                StatusCode::OK,
                "opaque"
            );
        }
        let unknown = bearer("mt_ffffffffffffffffffffffffffffffff");
        assert_eq!(
            status(&opaque_uncached, &unknown).await,
            StatusCode::UNAUTHORIZED
        );
        raw_post().await;
    });

    let hit_before = hit_verifier.stats();
    let misses_before: Vec<_> = misses.iter().map(|miss| miss.verifier.stats()).collect();
    let cached_before = cached_verifier.stats();
    assert!(hit_before.cache_hits >= 1, "the hit variant hits");

    // --- The group ------------------------------------------------------------------------------
    let started = SystemTime::now();
    let mut group = criterion.benchmark_group(GROUP);
    group.bench_function("bare", |b| {
        b.to_async(&runtime).iter_batched(
            || request(&hit_header),
            |r| bare.clone().oneshot(r),
            BATCH,
        );
    });
    group.bench_function("hit", |b| {
        b.to_async(&runtime).iter_batched(
            || request(&hit_header),
            |r| hit.clone().oneshot(r),
            BATCH,
        );
    });
    for miss in &misses {
        let mut next = 0;
        group.bench_function(format!("miss_{}", miss.name), |b| {
            b.to_async(&runtime).iter_batched(
                || {
                    next = (next + 1) % miss.headers.len();
                    request(&miss.headers[next])
                },
                |r| miss.router.clone().oneshot(r),
                BATCH,
            );
        });
        let mut next = 0;
        group.bench_function(format!("raw_verify_{}", miss.name), |b| {
            b.iter(|| {
                next += 1;
                miss.raw_verify(next)
            });
        });
    }
    let mut next = 0;
    group.bench_function("jsonwebtoken_decode", |b| {
        b.iter(|| {
            next = (next + 1) % rs256_pool.len();
            decode(&rs256_pool[next])
        });
    });
    group.bench_function("opaque_uncached", |b| {
        b.to_async(&opaque_runtime).iter_batched(
            || request(&opaque_header),
            |r| opaque_uncached.clone().oneshot(r),
            BATCH,
        );
    });
    group.bench_function("raw_post", |b| {
        b.to_async(&opaque_runtime).iter(&raw_post);
    });
    group.bench_function("opaque_cached", |b| {
        b.to_async(&opaque_runtime).iter_batched(
            || request(&opaque_header),
            |r| opaque_cached.clone().oneshot(r),
            BATCH,
        );
    });
    group.finish();
    criterion.final_summary();

    // --- After the run: the variants measured what they claim to --------------------------------
    let hit_after = hit_verifier.stats();
    assert_eq!(
        hit_after.signature_checks, hit_before.signature_checks,
        "the hit variant verified a signature: it measured misses"
    );
    for (miss, before) in misses.iter().zip(&misses_before) {
        let after = miss.verifier.stats();
        assert_eq!(
            after.cache_hits, before.cache_hits,
            "miss_{} was answered from the cache: it measured hits",
            miss.name
        );
        eprintln!(
            "miss_{}: {} signature checks, 0 cache hits during the group",
            miss.name,
            after.signature_checks - before.signature_checks
        );
    }
    assert_eq!(
        cached_verifier.stats().introspections,
        cached_before.introspections,
        "opaque_cached called the endpoint"
    );

    let medians = Medians::of_this_run(started);
    if !medians.any() {
        // `--test`, `--list`, a filter that matched nothing, or `--discard-baseline`.
        return;
    }
    medians.print();

    // The same ratios, interleaved: each variant gets ~2 ms of work per round.
    let mut next = 0;
    let mut miss_requests = |miss: &MissPath, count: usize| -> Vec<Request<Body>> {
        (0..count)
            .map(|_| {
                next += 1;
                request(&miss.headers[next % miss.headers.len()])
            })
            .collect()
    };
    let mut next_raw = 0;
    let mut time = |variant: usize| -> Duration {
        match variant {
            0 => time_requests(&runtime, &bare, requests(&hit_header, 1000)),
            1 => time_requests(&runtime, &hit, requests(&hit_header, 1000)),
            2..=4 => {
                let miss = &misses[variant - 2];
                let requests = miss_requests(miss, 60);
                time_requests(&runtime, &miss.router, requests)
            }
            5..=7 => {
                let miss = &misses[variant - 5];
                let started = Instant::now();
                for _ in 0..60 {
                    next_raw += 1;
                    std::hint::black_box(miss.raw_verify(next_raw));
                }
                started.elapsed() / 60
            }
            8 => {
                let started = Instant::now();
                for _ in 0..60 {
                    next_raw += 1;
                    let token = &rs256_pool[next_raw % rs256_pool.len()];
                    std::hint::black_box(decode(token).expect("valid"));
                }
                started.elapsed() / 60
            }
            9 => time_requests(
                &opaque_runtime,
                &opaque_uncached,
                requests(&opaque_header, 20),
            ),
            _ => {
                let started = Instant::now();
                opaque_runtime.block_on(async {
                    for _ in 0..20 {
                        std::hint::black_box(raw_post().await);
                    }
                });
                started.elapsed() / 20
            }
        }
    };
    let rows = ratio_rows();
    let pairs: Vec<(usize, usize)> = rows.iter().map(|row| row.interleaved).collect();
    let ratios = paired_ratios(200, &mut time, &pairs);
    println!("interleaved (200 rounds of ~2 ms per variant), median of per-round ratios:");
    for (row, ratio) in rows.iter().zip(ratios) {
        row.print(Some(ratio));
    }
}

/// One ratio the benchmark reports, with its goal.
struct RatioRow {
    label: &'static str,
    /// Criterion benchmark names: numerator, denominator.
    criterion: (&'static str, &'static str),
    /// Interleaved variant indexes (see `time` in `main`): numerator, denominator.
    interleaved: (usize, usize),
    /// The largest acceptable ratio.
    goal: f64,
}

impl RatioRow {
    fn print(&self, value: Option<f64>) {
        match value {
            Some(value) => {
                let verdict = if value <= self.goal { "met" } else { "MISSED" };
                println!(
                    "  {:<45} {value:>6.2}  (goal <= {:.2}): {verdict}",
                    self.label, self.goal
                );
            }
            None => println!("  {:<45}    n/a (not measured in this run)", self.label),
        }
    }
}

fn ratio_rows() -> [RatioRow; 6] {
    let row = |label, criterion, interleaved, goal| RatioRow {
        label,
        criterion,
        interleaved,
        goal,
    };
    [
        row("hit / bare", ("hit", "bare"), (1, 0), 2.0),
        row(
            "miss RS256 / raw aws-lc verify",
            ("miss_rs256", "raw_verify_rs256"),
            (2, 5),
            1.2,
        ),
        row(
            "miss RS256 / jsonwebtoken::decode",
            ("miss_rs256", "jsonwebtoken_decode"),
            (2, 8),
            0.85,
        ),
        row(
            "miss ES256 / raw aws-lc verify",
            ("miss_es256", "raw_verify_es256"),
            (3, 6),
            1.2,
        ),
        row(
            "miss EdDSA / raw aws-lc verify",
            ("miss_eddsa", "raw_verify_eddsa"),
            (4, 7),
            1.2,
        ),
        row(
            "opaque uncached / raw loopback POST",
            ("opaque_uncached", "raw_post"),
            (9, 10),
            1.2,
        ),
    ]
}

/// This run's criterion medians of the group.
struct Medians {
    home: PathBuf,
    started: SystemTime,
}

const BENCHMARKS: [&str; 12] = [
    "bare",
    "hit",
    "miss_rs256",
    "miss_es256",
    "miss_eddsa",
    "raw_verify_rs256",
    "raw_verify_es256",
    "raw_verify_eddsa",
    "jsonwebtoken_decode",
    "opaque_uncached",
    "raw_post",
    "opaque_cached",
];

impl Medians {
    fn of_this_run(started: SystemTime) -> Self {
        Self {
            home: criterion_home(),
            started,
        }
    }

    fn any(&self) -> bool {
        BENCHMARKS.iter().any(|bench| self.get(bench).is_some())
    }

    /// This run's median of `bench`, in nanoseconds (`None` if it was not measured now).
    fn get(&self, bench: &str) -> Option<f64> {
        median_ns(&self.home, GROUP, bench, self.started)
    }

    fn print(&self) {
        println!();
        println!("medians of this run ({}):", self.home.join(GROUP).display());
        for bench in BENCHMARKS {
            match self.get(bench) {
                Some(ns) if ns >= 1_000.0 => println!("  {bench:<22} {:>9.2} µs", ns / 1_000.0),
                Some(ns) => println!("  {bench:<22} {ns:>9.1} ns"),
                None => println!("  {bench:<22} (not measured in this run)"),
            }
        }
        println!("ratios of the criterion medians:");
        for row in ratio_rows() {
            let (num, den) = row.criterion;
            row.print(self.get(num).zip(self.get(den)).map(|(n, d)| n / d));
        }
        if let Some((cached, hit)) = self.get("opaque_cached").zip(self.get("hit")) {
            println!(
                "  {:<45} {:>6.2}  (no goal)",
                "opaque cached / JWT hit",
                cached / hit
            );
        }
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
                        let (status, reply) = if body.contains(OPAQUE_TOKEN) {
                            (StatusCode::OK, resource)
                        } else {
                            // Clerk's answer for a token it does not know.
                            let unknown = r#"{"errors":[{"code":"resource_not_found","message":"not found"}]}"#;
                            (StatusCode::NOT_FOUND, unknown.to_owned())
                        };
                        (status, [("content-type", "application/json")], reply)
                    }
                }),
            );
            axum::serve(listener, app).await.expect("server");
        });
    });
    format!("http://{addr}")
}
