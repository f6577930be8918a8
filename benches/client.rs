//! Machine A's side: what attaching a reused token costs, and what reuse saves.
//!
//! ```sh
//! cargo bench --bench client
//! ```
//!
//! Criterion group `client`:
//!
//! - `bare`: an in-process client service (answers at once) called with `oneshot`;
//! - `layer_reused_token`: the same behind `MachineTokenLayer`, with a valid token in the source;
//! - `token_reused`: `MachineTokenSource::token()` with a valid token;
//! - `token_created`: a new token every time (the previous one dropped), created at the crate's
//!   issuer on loopback (its own thread): an HTTP round trip and an RS256 signature.
//!
//! Then, interleaved (each round times a short batch of every variant in turn; a ratio is the
//! median of the per-round ratios), `layer_reused_token / bare` and `token_reused / token_created`.

#[path = "support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::Criterion;
use http::{Request, Response};
use http_body_util::Full;
use machine_auth_issuer::{Issuer, IssuerConfig};
use tower::{Layer, ServiceExt};
use tower_machine_auth::client::{MachineTokenLayer, MachineTokenSource};

use support::paired_ratios;

const GROUP: &str = "client";

/// The crate's issuer with the demo configuration on a loopback port, served from its own thread.
fn spawn_issuer() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    listener.set_nonblocking(true).expect("non-blocking");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("issuer runtime");
        runtime.block_on(async move {
            let issuer = Issuer::builder(IssuerConfig::demo())
                .build()
                .expect("issuer");
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, issuer.router())
                .await
                .expect("issuer");
        });
    });
    url
}

fn request() -> Request<Full<Bytes>> {
    Request::post("http://reports.internal/cron/run")
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("request")
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .without_plots()
        .configure_from_args();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let api_url = spawn_issuer();
    let key = &IssuerConfig::demo().machines[0].secret_key;
    let source = |cooldown: Duration| {
        MachineTokenSource::builder()
            .api_url(&api_url)
            .machine_secret_key(key)
            .rejection_cooldown(cooldown)
            .build()
            .expect("source")
    };
    let reused = source(Duration::from_secs(30));
    let renewed = source(Duration::ZERO);
    runtime.block_on(async {
        reused.token().await.expect("the issuer creates a token");
        renewed.token().await.expect("the issuer creates a token");
    });

    let bare = tower::service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(()))
    });
    let attached = MachineTokenLayer::new(reused.clone()).layer(bare);
    let create = || async {
        let current = renewed.token().await.expect("token");
        renewed.reject(&current);
        renewed.token().await.expect("a new token")
    };

    let mut group = criterion.benchmark_group(GROUP);
    group.bench_function("bare", |b| {
        b.iter_batched(
            request,
            |request| runtime.block_on(bare.oneshot(request)),
            criterion::BatchSize::SmallInput,
        );
    });
    group.bench_function("layer_reused_token", |b| {
        b.iter_batched(
            request,
            |request| runtime.block_on(attached.clone().oneshot(request)),
            criterion::BatchSize::SmallInput,
        );
    });
    group.bench_function("token_reused", |b| {
        b.iter(|| runtime.block_on(reused.token()));
    });
    group.bench_function("token_created", |b| {
        b.iter(|| runtime.block_on(create()));
    });
    group.finish();
    eprintln!(
        "tokens created: reused source {} (1 expected), renewed source {}",
        reused.stats().created,
        renewed.stats().created
    );

    let benchmarking = std::env::args().any(|arg| arg == "--bench")
        && !std::env::args().any(|arg| arg == "--test");
    if benchmarking {
        let mut time = |variant: usize| -> Duration {
            let batch: u32 = if variant == 3 { 2 } else { 1000 };
            let requests: Vec<_> = (0..batch).map(|_| request()).collect();
            let started = Instant::now();
            runtime.block_on(async {
                for request in requests {
                    match variant {
                        0 => drop(bare.oneshot(request).await),
                        1 => drop(attached.clone().oneshot(request).await),
                        2 => drop(reused.token().await),
                        _ => drop(create().await),
                    }
                }
            });
            started.elapsed() / batch
        };
        let ratios = paired_ratios(100, &mut time, &[(1, 0), (2, 3)]);
        println!("interleaved (100 rounds), median of per-round ratios:");
        println!(
            "  layer with a reused token / bare client = {:.2}",
            ratios[0]
        );
        println!(
            "  token reused / token created = {:.5} (1 / {:.0})",
            ratios[1],
            1.0 / ratios[1]
        );
    }
}
