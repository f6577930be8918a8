//! The verified-token cache under two threads, and what each cached token costs in memory.
//!
//! ```sh
//! cargo bench --bench cache
//! ```
//!
//! - **Contention.** 10 000 distinct RS256 tokens, all cached, answered through `MachineAuthLayer`
//!   (in-process Axum 0.8 router, a current-thread runtime and a router per thread, one verifier
//!   and so one cache shared by both). Each round times one
//!   thread answering every token once, then two threads doing the same at once (each with its own
//!   copy of the requests, the second starting half-way through the tokens); the printed figure is
//!   the median over rounds of
//!   `two-thread throughput / one-thread throughput` (goal ≥ 1.7 on two free cores). The verifier's
//!   counters show that no signature was checked during the rounds. The same rounds measure the
//!   bare route's scaling (the same requests, no layer), the layer's with one router shared by
//!   both threads (as `axum::serve` shares one: every request clones it, and both threads write
//!   its reference counts), and the machine's (SHA-256 digests of the tokens, nothing shared).
//! - **Memory.** A counting allocator measures the bytes the heap grows by while a verifier with
//!   room for 100 000 tokens verifies (and caches) 100 000 distinct RS256 tokens, and checks that
//!   all of them are then answered from the cache. The result is printed per entry and for the
//!   default capacity (10 000 tokens).
//!
//! Under `cargo test --benches` both run once at a small scale.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, StatusCode};
use tower::ServiceExt;
use tower_machine_auth::{Algorithm, MachineAuthLayer, MachineVerifier};

#[path = "support/mod.rs"]
mod support;
#[path = "support/tokens.rs"]
mod tokens;
use support::benchmarking;
use tokens::{Signer, bearer, payload};

/// Counts the bytes allocated and freed through it while [`COUNTING`] is set (only then: a
/// counter written by every allocation of two threads would itself be contended).
struct CountingAllocator;

static ALLOCATED: AtomicIsize = AtomicIsize::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

fn count(bytes: isize) {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCATED.fetch_add(bytes, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` unchanged; only a counter is updated beside it.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: the caller's contract for `layout` is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: the caller's contract for `ptr`, `layout` and `new_size` is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const PATH: &str = "/whoami";

fn request(authorization: &HeaderValue) -> Request<Body> {
    Request::get(PATH)
        .header(AUTHORIZATION, authorization.clone())
        .body(Body::empty())
        .expect("request")
}

/// Answers every request once on a current-thread runtime, from when every thread is ready; the
/// time it took.
fn answer_all(router: &Router, requests: Vec<Request<Body>>, start: &Barrier) -> Duration {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    start.wait();
    let started = Instant::now();
    runtime.block_on(async {
        for request in requests {
            let response = router.clone().oneshot(request).await.expect("infallible");
            assert_eq!(response.status(), StatusCode::OK);
        }
    });
    started.elapsed()
}

/// Two threads' throughput over one thread's, each doing `work` once.
fn scaling(work: &(dyn Fn(&Barrier, usize) -> Duration + Sync)) -> f64 {
    let alone = work(&Barrier::new(1), 0);
    let start = Barrier::new(2);
    let together = std::thread::scope(|scope| {
        let other = scope.spawn(|| work(&start, 1));
        let mine = work(&start, 0);
        mine.max(other.join().expect("thread"))
    });
    // Two threads did twice the work.
    2.0 * alone.as_secs_f64() / together.as_secs_f64()
}

/// Two-thread scalings, medians over rounds.
struct Scaling {
    /// Through the layer, a router per thread: the cache and the verifier are what is shared.
    layer: f64,
    /// Through the layer, one router shared by both threads.
    shared_router: f64,
    /// Through the bare route, a router per thread.
    bare: f64,
    /// SHA-256 digests of the tokens: no shared state at all, what this machine's cores give.
    machine: f64,
}

/// The two-thread scalings of answering every header once (see [`Scaling`]), each a median over
/// `rounds`.
fn contention(
    layered: &(dyn Fn() -> Router + Sync),
    bare: &(dyn Fn() -> Router + Sync),
    headers: &[HeaderValue],
    rounds: usize,
) -> Scaling {
    // The second thread starts half-way through the tokens, as two callers with different tokens
    // would: in step, both would touch the same entry at the same moment all along.
    let answer = |router: &Router, start: &Barrier, thread: usize| {
        let (before, after) = headers.split_at(thread * headers.len() / 2);
        answer_all(
            router,
            after.iter().chain(before).map(request).collect(),
            start,
        )
    };
    let shared = layered();
    let digest = |start: &Barrier, _thread: usize| {
        start.wait();
        let started = Instant::now();
        for header in headers {
            std::hint::black_box(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                header.as_bytes(),
            ));
        }
        started.elapsed()
    };
    let mut medians: [Vec<f64>; 4] = Default::default();
    for _ in 0..rounds {
        medians[0].push(scaling(&|start, thread| answer(&layered(), start, thread)));
        medians[1].push(scaling(&|start, thread| answer(&shared, start, thread)));
        medians[2].push(scaling(&|start, thread| answer(&bare(), start, thread)));
        medians[3].push(scaling(&digest));
    }
    let [layer, shared_router, bare, machine] = medians.map(|mut values| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    });
    Scaling {
        layer,
        shared_router,
        bare,
        machine,
    }
}

fn main() {
    let benchmarking = benchmarking();
    let (contention_tokens, memory_tokens, rounds) = if benchmarking {
        (10_000, 100_000, 15)
    } else {
        (16, 1_000, 1)
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let signer = Signer::new(Algorithm::RS256);
    let pool = signer.mint(memory_tokens, |n| payload(now, n));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");

    // --- Contention -----------------------------------------------------------------------------
    // Room for twice the tokens, so that none is evicted whatever the shards' balance.
    let verifier = MachineVerifier::builder()
        .pem_key(signer.public_pem())
        .token_cache(2 * contention_tokens as u64, Duration::from_secs(300))
        .build()
        .expect("verifier");
    let bare = || Router::new().route(PATH, get(|| async { "ok" }));
    let layered = || bare().layer(MachineAuthLayer::new(verifier.clone()));
    let router = layered();
    let headers: Vec<HeaderValue> = pool[..contention_tokens]
        .iter()
        .map(|token| bearer(token))
        .collect();
    answer_all(
        &router,
        headers.iter().map(request).collect(),
        &Barrier::new(1),
    );
    let before = verifier.stats();
    let scaling = contention(&layered, &bare, &headers, rounds);
    let checks = verifier.stats().signature_checks - before.signature_checks;
    assert_eq!(
        checks, 0,
        "a cached token was verified again: it measured misses"
    );
    if benchmarking {
        println!(
            "contention: {contention_tokens} cached tokens, {rounds} rounds; two threads / one \
             thread throughput = {:.2} (goal >= 1.70); meanwhile: the bare route {:.2}, the layer \
             with one router shared by both threads {:.2}, SHA-256 digests with nothing shared \
             {:.2} (what this machine's {} cores gave)",
            scaling.layer,
            scaling.bare,
            scaling.shared_router,
            scaling.machine,
            std::thread::available_parallelism().map_or(1, usize::from)
        );
    }
    drop(router);
    drop(verifier);

    // --- Memory ---------------------------------------------------------------------------------
    // From before the verifier is built: the cache sets its tables up front.
    COUNTING.store(true, Ordering::Relaxed);
    let allocated_before = ALLOCATED.load(Ordering::Relaxed);
    let verifier = MachineVerifier::builder()
        .pem_key(signer.public_pem())
        .token_cache(memory_tokens as u64, Duration::from_secs(300))
        .build()
        .expect("verifier");
    runtime.block_on(async {
        for token in &pool {
            verifier.verify(token).await.expect("valid token");
        }
    });
    let grown = ALLOCATED.load(Ordering::Relaxed) - allocated_before;
    let before = verifier.stats();
    runtime.block_on(async {
        for token in &pool {
            verifier.verify(token).await.expect("valid token");
        }
    });
    let hits = verifier.stats().cache_hits - before.cache_hits;
    let per_entry = grown as f64 / hits.max(1) as f64;
    if benchmarking {
        println!(
            "memory: {hits} of {memory_tokens} RS256 tokens ({} bytes each) cached, heap grown by \
             {:.1} MB: {per_entry:.0} bytes per cached token; 10 000 tokens (the default capacity) \
             ≈ {:.1} MB",
            pool[0].len(),
            grown as f64 / 1e6,
            per_entry * 10_000.0 / 1e6
        );
    }
    assert!(
        hits as f64 >= 0.9 * memory_tokens as f64,
        "most tokens stay cached: {hits} of {memory_tokens}"
    );
}
