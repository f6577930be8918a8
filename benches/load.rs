//! `MachineAuthLayer` under real HTTP load on loopback, driven by `wrk`.
//!
//! ```sh
//! apt-get install wrk                        # without it the bench prints a skip line
//! cargo bench --bench load                   # 10 s per scenario
//! LOAD_SECONDS=30 cargo bench --bench load   # longer runs
//! cargo test --benches                       # quick mode: 1 s per scenario, a small token pool
//! ```
//!
//! The servers are the cron server of `examples/axum_cron.rs` (the same router,
//! `examples/shared/cron.rs`), each on `127.0.0.1:0`, all served by one multi-thread Tokio
//! runtime (one worker per core, threads named `load-server`) in this process. Each scenario
//! runs `wrk -t1 -c32 -d<seconds>s --latency` against one of them:
//!
//! - `bare`: `GET /healthz`, the public route (no layer);
//! - `jwt_reused`: `POST /cron/run` with one reused RS256 JWT, verified with the PEM key and the
//!   default token cache (10 000 tokens): after the first request every one is a cache hit;
//! - `jwt_fresh`: `POST /cron/run` with a different JWT on every request: a Lua script cycles
//!   through a pool of distinct Clerk-shaped RS256 tokens (4 000; signed on every core before the
//!   run), and this server's verifier caches only 1 000 tokens and serves each for 1 ms, so a
//!   token is never answered from the cache when it comes round again: every request is a
//!   signature check, and a miss pays the lookup and the insert into a full cache. Checked after the run with
//!   `MachineVerifier::stats()`: cache hits stay at (about) zero and signature checks match requests;
//! - `opaque_reused`: `POST /cron/run` with one reused opaque `mt_…` token, verified by calling
//!   `/m2m_tokens/verify` at the workspace's issuer (`machine_auth_issuer::Issuer`, served on
//!   loopback from its own thread, `load-issuer`), with the layer's opaque result cache left at
//!   its default, off: requests call the issuer (concurrent requests with the same token share
//!   one call, which the verifier's `introspections` counter shows).
//!
//! For each scenario: requests per second, p50 and p99 latency (wrk's `--latency`
//! distribution), and the CPU used meanwhile, in cores (CPU seconds ÷ wall seconds of the wrk
//! run):
//!
//! - server: `utime + stime` of this process from `/proc/self/stat` before and after the run
//!   (in clock ticks, `sysconf(_SC_CLK_TCK)`, which is 100 on Linux: hard-coded here rather than
//!   adding a libc dependency), less the issuer's threads. While wrk runs, the bench's main
//!   thread only polls for wrk's exit every 10 ms, so the process's CPU is the server's;
//! - issuer: `utime + stime` of the `load-issuer` thread(s), from `/proc/self/task/*/stat`;
//! - wrk: `cutime + cstime` of `/proc/self/stat` (the CPU of children waited for), before and
//!   after wrk is reaped.
//!
//! wrk and the servers share the machine's cores, so server + wrk near the core count means the
//! server only got what wrk left; the output says so when it happens.
//!
//! Then the ratios (printed, never asserted: these machines are shared and noisy):
//!
//! - `jwt_reused / bare` requests per second (goal ≥ 80 %);
//! - fresh-token verifies per second per core: `jwt_fresh` requests/s ÷ the server's cores used,
//!   against raw `aws-lc-rs` RS256 (PKCS#1 v1.5, SHA-256) verifies per second on one thread
//!   (`ParsedPublicKey::verify_sig` of the same tokens with a pre-parsed key, ~2 s in a tight loop
//!   right before and right after the load; their mean is the reference) (goal ≥ 70 %). For
//!   information, the same loop also runs on every core at once after the load: what one core
//!   yields when all are busy, as they are under load;
//! - `opaque_reused` requests/s and its ratio to `jwt_reused` (informational).
//!
//! The wrk command line of every scenario is printed. Its Lua scripts (which set the method, the
//! `Authorization` header, and for `jwt_fresh` the token pool) live in a temporary directory
//! that is removed at exit, and the tokens are signed with a key made for this run: to load a
//! server by hand, start `axum_cron` with `CLERK_JWT_KEY` and write the same two-line script
//! (`wrk.method = "POST"`, `wrk.headers["Authorization"] = "Bearer <token>"`).
//!
//! Environment: `LOAD_SECONDS`, seconds per scenario in bench mode (default 10, 1 to 600). Under
//! `cargo test --benches` (no `--bench` argument) every scenario runs for 1 s with a 400-token
//! pool and a 100-token cache, and the raw verify loops for 0.2 s. Every run is bounded: wrk's
//! `-d`, a deadline after which the wrk child is killed, time-bounded loops; the servers shut
//! down at the end.

#[path = "../examples/shared/cron.rs"]
mod cron;

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::ParsedPublicKey;
use axum::Router;
use machine_auth_issuer::{CreateTokenRequest, Issuer, IssuerConfig, TokenFormatParam};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tower_machine_auth::{Algorithm, MachineVerifier};

#[path = "support/mod.rs"]
mod support;
#[path = "support/tokens.rs"]
mod tokens;
use support::benchmarking;
use tokens::{Signer, payload, split, tampered};

/// wrk's threads: one, so that wrk leaves the other cores to the server.
const WRK_THREADS: u32 = 1;
/// wrk's connections, all kept open, each with one request in flight.
const WRK_CONNECTIONS: u32 = 32;
/// Seconds per scenario in bench mode, unless `LOAD_SECONDS` says otherwise.
const DEFAULT_SECONDS: u64 = 10;
/// The longest `LOAD_SECONDS` accepted.
const MAX_SECONDS: u64 = 600;
/// Seconds per scenario in quick mode (`cargo test --benches`).
const QUICK_SECONDS: u64 = 1;
/// How long after its `-d` wrk may take to finish before it is killed.
const WRK_GRACE: Duration = Duration::from_secs(30);
/// How often the main thread checks whether wrk has exited.
const POLL: Duration = Duration::from_millis(10);

/// `jwt_fresh`: the verifier's cache and the pool of distinct tokens cycled through (4× the cache).
/// The cache serves an entry for 1 ms only, far less than a round through the pool: every request
/// looks its token up, verifies it and inserts it into a full cache, as a token never seen before.
const FRESH_CACHE: u64 = 1_000;
const FRESH_CACHE_TTL: Duration = Duration::from_millis(1);
const FRESH_POOL: usize = 4_000;
const QUICK_FRESH_CACHE: u64 = 100;
const QUICK_FRESH_POOL: usize = 400;
/// How long each raw verify loop runs.
const RAW_TIME: Duration = Duration::from_secs(2);
const QUICK_RAW_TIME: Duration = Duration::from_millis(200);

/// Clock ticks per second of the times in `/proc/*/stat` (`sysconf(_SC_CLK_TCK)`, USER_HZ): 100
/// on Linux, hard-coded to avoid a libc dependency.
const CLOCK_TICKS: f64 = 100.0;
/// The issuer serves from one thread: at this many cores used it is saturated.
const ISSUER_SATURATED: f64 = 0.85;
/// Thread names, to tell the issuer's CPU from the server's.
const SERVER_THREAD: &str = "load-server";
const ISSUER_THREAD: &str = "load-issuer";

const BARE_PATH: &str = "/healthz";
const PROTECTED_PATH: &str = "/cron/run";
/// The JWT servers' own machine id (`CLERK_MACHINE_ID`): in the test tokens' `scopes`.
const JWT_RECEIVER: &str = "mch_1xxxxx";
/// The opaque server's own machine id, and the one that verifies with its machine secret key:
/// the demo issuer's machine B, which machine A (`mch_cron_service`) may call.
const OPAQUE_RECEIVER: &str = "mch_reports_api";

fn load_seconds() -> u64 {
    match std::env::var("LOAD_SECONDS") {
        Err(_) => DEFAULT_SECONDS,
        Ok(value) => match value.trim().parse::<u64>() {
            Ok(seconds) if (1..=MAX_SECONDS).contains(&seconds) => seconds,
            _ => panic!(
                "LOAD_SECONDS must be a whole number of seconds from 1 to {MAX_SECONDS}, not `{value}`"
            ),
        },
    }
}

fn wrk_installed() -> bool {
    Command::new("wrk")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

// --- Servers ------------------------------------------------------------------------------------

/// A router served on a loopback port until [`stop`](Self::stop).
struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn serve(runtime: &Runtime, app: Router) -> Server {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    listener.set_nonblocking(true).expect("non-blocking");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                stopped.await.ok();
            })
            .await
            .expect("server");
    });
    Server { addr, stop, task }
}

impl Server {
    fn stop(self, runtime: &Runtime) {
        self.stop.send(()).ok();
        let stopped = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(5), self.task).await });
        if stopped.is_err() {
            eprintln!("server {} did not stop within 5 s", self.addr);
        }
    }
}

/// The issuer on a loopback port, served from its own thread (`load-issuer`) and runtime.
struct IssuerThread {
    stop: oneshot::Sender<()>,
    stopped: std::sync::mpsc::Receiver<()>,
}

fn spawn_issuer(listener: std::net::TcpListener, issuer: Issuer) -> IssuerThread {
    listener.set_nonblocking(true).expect("non-blocking");
    let (stop, stop_signal) = oneshot::channel::<()>();
    let (done, stopped) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(ISSUER_THREAD.to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(ISSUER_THREAD)
                .build()
                .expect("issuer runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                axum::serve(listener, issuer.router())
                    .with_graceful_shutdown(async {
                        stop_signal.await.ok();
                    })
                    .await
                    .expect("issuer");
            });
            done.send(()).ok();
        })
        .expect("issuer thread");
    IssuerThread { stop, stopped }
}

impl IssuerThread {
    fn stop(self) {
        self.stop.send(()).ok();
        if self.stopped.recv_timeout(Duration::from_secs(5)).is_err() {
            eprintln!("the issuer did not stop within 5 s");
        }
    }
}

/// The status of one `method path` request with an optional bearer token, on a connection of
/// its own (`Connection: close`), within 10 s.
fn status(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> u16 {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let authorization = token.map_or_else(String::new, |token| {
        format!("Authorization: Bearer {token}\r\n")
    });
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{authorization}\
         Content-Length: 0\r\n\r\n"
    )
    .expect("write request");
    let mut response = Vec::new();
    stream
        .take(1 << 20)
        .read_to_end(&mut response)
        .expect("read response");
    let response = String::from_utf8_lossy(&response);
    response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1.1 response: {response:?}"))
}

// --- CPU time -----------------------------------------------------------------------------------

/// The fields of a `/proc/…/stat` line after the command name (field 3, the state, first).
fn stat_fields(path: &Path) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(path).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(
        rest.split_whitespace()
            .skip(1) // the state letter
            .map(|field| field.parse().unwrap_or(0))
            .collect(),
    )
}

/// CPU time so far, in clock ticks.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    /// This process: `utime + stime`.
    process: u64,
    /// Children waited for: `cutime + cstime`.
    children: u64,
    /// The issuer's threads.
    issuer: u64,
}

fn cpu_now() -> Cpu {
    // After the state: ppid(4) … utime(14) stime(15) cutime(16) cstime(17), so 10 to 13 here.
    let fields = stat_fields(Path::new("/proc/self/stat")).expect("/proc/self/stat");
    let mut issuer = 0;
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let task = task.expect("task").path();
        let named = std::fs::read_to_string(task.join("comm"))
            .is_ok_and(|name| name.trim_end() == ISSUER_THREAD);
        if named && let Some(fields) = stat_fields(&task.join("stat")) {
            issuer += fields[10] + fields[11];
        }
    }
    Cpu {
        process: fields[10] + fields[11],
        children: fields[12] + fields[13],
        issuer,
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

// --- wrk ----------------------------------------------------------------------------------------

/// What one wrk run measured.
#[derive(Debug, Clone)]
struct Measured {
    name: &'static str,
    command: String,
    requests_per_second: f64,
    p50_us: f64,
    p99_us: f64,
    requests: u64,
    socket_errors: Option<String>,
    /// Cores used over the run: server (this process less the issuer), issuer, wrk.
    server_cores: f64,
    issuer_cores: f64,
    wrk_cores: f64,
}

/// A duration as wrk prints it (`248.00us`, `1.20ms`, `2.00s`, `1.00m`), in microseconds.
fn wrk_time(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let value: f64 = text[..split].parse().ok()?;
    let unit = match &text[split..] {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => return None,
    };
    Some(value * unit)
}

/// Runs wrk against `http://{addr}{path}` (with the Lua `script`, if any) for `seconds`.
fn run_wrk(
    name: &'static str,
    addr: SocketAddr,
    path: &str,
    script: Option<&Path>,
    seconds: u64,
    scratch: &Path,
) -> Measured {
    let mut args = vec![
        format!("-t{WRK_THREADS}"),
        format!("-c{WRK_CONNECTIONS}"),
        format!("-d{seconds}s"),
        "--latency".to_owned(),
    ];
    if let Some(script) = script {
        args.push("-s".to_owned());
        args.push(script.display().to_string());
    }
    args.push(format!("http://{addr}{path}"));
    let command = format!("wrk {}", args.join(" "));
    let stdout_path = scratch.join(format!("{name}.out"));
    let stderr_path = scratch.join(format!("{name}.err"));

    eprintln!("{name}: {command}");
    let before = cpu_now();
    let started = Instant::now();
    let mut child = Command::new("wrk")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).expect("wrk output file"))
        .stderr(File::create(&stderr_path).expect("wrk error file"))
        .spawn()
        .expect("start wrk");
    let deadline = started + Duration::from_secs(seconds) + WRK_GRACE;
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait for wrk") {
            break exit;
        }
        if Instant::now() >= deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("{name}: wrk did not finish within {seconds} s + {WRK_GRACE:?}; killed");
        }
        std::thread::sleep(POLL);
    };
    let wall = started.elapsed().as_secs_f64();
    let after = cpu_now();

    let output = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let errors = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(
        exit.success(),
        "{name}: wrk failed ({exit}):\n{output}\n{errors}"
    );
    let mut requests_per_second = None;
    let mut p50_us = None;
    let mut p99_us = None;
    let mut requests = None;
    let mut non_2xx = 0;
    let mut socket_errors = None;
    for line in output.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("Requests/sec:") {
            requests_per_second = value.trim().parse().ok();
        } else if let Some(value) = line.strip_prefix("50%") {
            p50_us = wrk_time(value);
        } else if let Some(value) = line.strip_prefix("99%") {
            p99_us = wrk_time(value);
        } else if let Some((count, _)) = line.split_once(" requests in ") {
            requests = count.trim().parse().ok();
        } else if let Some(value) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = value.trim().parse().unwrap_or(u64::MAX);
        } else if line.starts_with("Socket errors:") {
            socket_errors = Some(line.to_owned());
        }
    }
    let unreadable = || format!("{name}: wrk's output is not what this bench reads:\n{output}");
    let requests: u64 = requests.unwrap_or_else(|| panic!("{}", unreadable()));
    assert!(requests > 0, "{name}: no request completed:\n{output}");
    assert_eq!(
        non_2xx, 0,
        "{name}: {non_2xx} of {requests} answers were not 2xx: the scenario did not measure what \
         it claims\n{output}"
    );
    let ticks = |from: u64, to: u64| to.saturating_sub(from) as f64 / CLOCK_TICKS;
    let issuer = ticks(before.issuer, after.issuer);
    Measured {
        name,
        command,
        requests_per_second: requests_per_second.unwrap_or_else(|| panic!("{}", unreadable())),
        p50_us: p50_us.unwrap_or_else(|| panic!("{}", unreadable())),
        p99_us: p99_us.unwrap_or_else(|| panic!("{}", unreadable())),
        requests,
        socket_errors,
        server_cores: (ticks(before.process, after.process) - issuer).max(0.0) / wall,
        issuer_cores: issuer / wall,
        wrk_cores: ticks(before.children, after.children) / wall,
    }
}

/// Sets the method and one `Authorization` header: every request is the same.
fn reused_script(token: &str) -> String {
    format!("wrk.method = \"POST\"\nwrk.headers[\"Authorization\"] = \"Bearer {token}\"\n")
}

/// Every request carries the next token of the pool, round and round (requests are built once,
/// in `init`, so that `request()` is a table lookup).
fn fresh_script(tokens: &[String]) -> String {
    let mut script = String::from(
        "-- Each request carries the next token of the pool, round and round.\n\
         wrk.method = \"POST\"\n\
         local tokens = {\n",
    );
    for token in tokens {
        script.push_str("  \"");
        script.push_str(token);
        script.push_str("\",\n");
    }
    script.push_str(
        "}\n\
         local requests = {}\n\
         local count = 0\n\
         local next = 0\n\
         \n\
         function init(args)\n\
         \x20 for i, token in ipairs(tokens) do\n\
         \x20   wrk.headers[\"Authorization\"] = \"Bearer \" .. token\n\
         \x20   requests[i] = wrk.format()\n\
         \x20 end\n\
         \x20 count = #requests\n\
         end\n\
         \n\
         function request()\n\
         \x20 next = next % count + 1\n\
         \x20 return requests[next]\n\
         end\n",
    );
    script
}

// --- Raw signature checks -----------------------------------------------------------------------

/// RS256 verifies per second on this thread, cycling through `inputs` for about `time`.
fn raw_verifies_per_second(
    key: &ParsedPublicKey,
    inputs: &[(Vec<u8>, Vec<u8>)],
    time: Duration,
) -> f64 {
    let started = Instant::now();
    let mut verified = 0u64;
    let mut next = 0;
    while started.elapsed() < time {
        for _ in 0..16 {
            let (message, signature) = &inputs[next];
            next = (next + 1) % inputs.len();
            assert!(
                key.verify_sig(message, signature).is_ok(),
                "raw RS256 verify"
            );
            verified += 1;
        }
    }
    verified as f64 / started.elapsed().as_secs_f64()
}

// --- Output -------------------------------------------------------------------------------------

fn latency(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1_000.0)
    }
}

/// Removes the scratch directory (scripts, wrk's output) however the bench ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    if !wrk_installed() {
        println!("load test skipped: wrk is not installed (apt-get install wrk)");
        return;
    }
    let benchmarking = benchmarking();
    let (seconds, pool_size, cache_capacity, raw_time) = if benchmarking {
        (load_seconds(), FRESH_POOL, FRESH_CACHE, RAW_TIME)
    } else {
        (
            QUICK_SECONDS,
            QUICK_FRESH_POOL,
            QUICK_FRESH_CACHE,
            QUICK_RAW_TIME,
        )
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let load_before = load_average();
    let scratch = Scratch(
        std::env::temp_dir().join(format!("tower-machine-auth-load-{}", std::process::id())),
    );
    std::fs::create_dir_all(&scratch.0).expect("scratch directory");

    // --- Fixtures -------------------------------------------------------------------------------
    let signer = Signer::new(Algorithm::RS256);
    let public_pem = signer.public_pem();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let reused_token = signer.sign(&SystemRandom::new(), &payload(now, 999_999));
    let pool = signer.mint(pool_size, |n| payload(now, n));
    eprintln!(
        "{} distinct tokens of {} bytes for jwt_fresh; its verifier caches {cache_capacity}",
        pool.len(),
        reused_token.len()
    );
    let raw_key = signer.parsed_public_key();
    let raw_inputs: Vec<_> = pool.iter().map(|token| split(token)).collect();

    // The issuer, with the demo configuration: machine A creates an opaque token for machine B.
    let issuer_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let issuer_url = format!("http://{}", issuer_listener.local_addr().expect("address"));
    let demo = IssuerConfig::demo();
    let machine_key = |id: &str| {
        demo.machines
            .iter()
            .find(|machine| machine.id == id)
            .unwrap_or_else(|| panic!("the demo configuration has {id}"))
            .secret_key
            .clone()
    };
    let issuer = Issuer::builder(demo.clone())
        .issuer_url(&issuer_url)
        .build()
        .expect("issuer");
    let opaque_token = issuer
        .create_token(
            &machine_key("mch_cron_service"),
            CreateTokenRequest {
                token_format: Some(TokenFormatParam::Opaque),
                ..Default::default()
            },
        )
        .expect("an opaque token")
        .token
        .expect("the token itself");
    let issuer = spawn_issuer(issuer_listener, issuer);

    // --- Servers: the cron server, one per verifier ---------------------------------------------
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(SERVER_THREAD)
        .build()
        .expect("server runtime");
    let (reused_verifier, fresh_verifier, opaque_verifier) = {
        let _context = runtime.enter();
        let jwt = || {
            MachineVerifier::builder()
                .pem_key(public_pem.clone())
                .own_machine_id(JWT_RECEIVER)
        };
        (
            // The defaults: a cache of 10 000 tokens for 5 min.
            jwt().build().expect("verifier"),
            jwt()
                .token_cache(cache_capacity, FRESH_CACHE_TTL)
                .build()
                .expect("verifier"),
            // The opaque result cache stays at its default: off.
            MachineVerifier::builder()
                .clerk_machine_secret_key(machine_key(OPAQUE_RECEIVER))
                .clerk_api_url(&issuer_url)
                .own_machine_id(OPAQUE_RECEIVER)
                .build()
                .expect("verifier"),
        )
    };
    let reused_server = serve(&runtime, cron::cron_app(reused_verifier.clone()));
    let fresh_server = serve(&runtime, cron::cron_app(fresh_verifier.clone()));
    let opaque_server = serve(&runtime, cron::cron_app(opaque_verifier.clone()));

    // --- Checks: each server serves its tokens and refuses others -------------------------------
    let post = |addr, token: Option<&str>| status(addr, "POST", PROTECTED_PATH, token);
    assert_eq!(status(reused_server.addr, "GET", BARE_PATH, None), 200);
    assert_eq!(post(reused_server.addr, Some(&reused_token)), 200);
    assert_eq!(post(reused_server.addr, None), 401);
    assert_eq!(
        post(reused_server.addr, Some(&tampered(&reused_token))),
        401
    );
    assert_eq!(post(fresh_server.addr, Some(&pool[0])), 200);
    assert_eq!(post(fresh_server.addr, Some(&tampered(&pool[1]))), 401);
    assert_eq!(post(opaque_server.addr, Some(&opaque_token)), 200);
    assert_eq!(
        post(
            opaque_server.addr,
            Some("mt_ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff")
        ),
        401
    );
    assert_eq!(post(opaque_server.addr, Some(&reused_token)), 401);

    let script = |name: &str, text: String| {
        let path = scratch.0.join(format!("{name}.lua"));
        std::fs::write(&path, text).expect("write the wrk script");
        path
    };
    let reused_script_path = script("jwt_reused", reused_script(&reused_token));
    let fresh_script_path = script("jwt_fresh", fresh_script(&pool));
    let opaque_script_path = script("opaque_reused", reused_script(&opaque_token));

    // --- The load -------------------------------------------------------------------------------
    let raw_before = raw_verifies_per_second(&raw_key, &raw_inputs, raw_time);
    eprintln!("raw aws-lc-rs RS256 verifies, one thread: {raw_before:.0}/s");

    let bare = run_wrk(
        "bare",
        reused_server.addr,
        BARE_PATH,
        None,
        seconds,
        &scratch.0,
    );

    let reused_before = reused_verifier.stats();
    let jwt_reused = run_wrk(
        "jwt_reused",
        reused_server.addr,
        PROTECTED_PATH,
        Some(&reused_script_path),
        seconds,
        &scratch.0,
    );
    let reused_after = reused_verifier.stats();

    let fresh_before = fresh_verifier.stats();
    let jwt_fresh = run_wrk(
        "jwt_fresh",
        fresh_server.addr,
        PROTECTED_PATH,
        Some(&fresh_script_path),
        seconds,
        &scratch.0,
    );
    let fresh_after = fresh_verifier.stats();

    let opaque_before = opaque_verifier.stats();
    let opaque_reused = run_wrk(
        "opaque_reused",
        opaque_server.addr,
        PROTECTED_PATH,
        Some(&opaque_script_path),
        seconds,
        &scratch.0,
    );
    let opaque_after = opaque_verifier.stats();

    let raw_after = raw_verifies_per_second(&raw_key, &raw_inputs, raw_time);
    eprintln!("raw aws-lc-rs RS256 verifies, one thread: {raw_after:.0}/s");
    // Informational: what one core yields when every core verifies at once (on a virtual
    // machine, cores may be hyperthreads or shared with other guests).
    let raw_all_cores = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..cores)
            .map(|_| scope.spawn(|| raw_verifies_per_second(&raw_key, &raw_inputs, raw_time)))
            .collect();
        threads
            .into_iter()
            .map(|thread| thread.join().expect("raw verify thread"))
            .sum::<f64>()
            / cores as f64
    });
    eprintln!("raw aws-lc-rs RS256 verifies, {cores} threads at once: {raw_all_cores:.0}/s each");
    let load_after = load_average();

    // --- Shut down ------------------------------------------------------------------------------
    for server in [reused_server, fresh_server, opaque_server] {
        server.stop(&runtime);
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    issuer.stop();

    // --- The scenarios measured what they claim to ----------------------------------------------
    let reused_checks = reused_after.signature_checks - reused_before.signature_checks;
    let reused_hits = reused_after.cache_hits - reused_before.cache_hits;
    let fresh_checks = fresh_after.signature_checks - fresh_before.signature_checks;
    let fresh_hits = fresh_after.cache_hits - fresh_before.cache_hits;
    let introspections = opaque_after.introspections - opaque_before.introspections;
    assert_eq!(
        reused_checks, 0,
        "jwt_reused verified signatures: it did not measure cache hits"
    );
    assert!(
        fresh_hits * 100 <= jwt_fresh.requests,
        "jwt_fresh: {fresh_hits} cache hits for {} requests: it did not measure signature checks",
        jwt_fresh.requests
    );
    assert!(
        fresh_checks + fresh_hits >= jwt_fresh.requests,
        "jwt_fresh: {fresh_checks} signature checks and {fresh_hits} cache hits for {} requests",
        jwt_fresh.requests
    );

    // --- Report ---------------------------------------------------------------------------------
    let results = [&bare, &jwt_reused, &jwt_fresh, &opaque_reused];
    println!();
    println!(
        "load test: wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS}, {seconds} s per scenario, loopback, \
         {cores} cores shared by wrk and the servers{}",
        if benchmarking {
            ""
        } else {
            " (quick mode: cargo test --benches)"
        }
    );
    println!("load average (1, 5, 15 min) before: {load_before}; after: {load_after}");
    if !benchmarking {
        println!(
            "quick mode runs the unoptimised test build for {QUICK_SECONDS} s per scenario: the \
             numbers show that every scenario runs, not how fast (cargo bench --bench load does)"
        );
    }
    println!();
    println!(
        "{:<14} {:>11} {:>10} {:>10} {:>11} {:>11} {:>9}",
        "scenario", "requests/s", "p50", "p99", "server CPU", "issuer CPU", "wrk CPU"
    );
    for result in results {
        let issuer_cores = if result.name == "opaque_reused" {
            format!("{:.2}", result.issuer_cores)
        } else {
            "-".to_owned()
        };
        println!(
            "{:<14} {:>11.0} {:>10} {:>10} {:>11.2} {:>11} {:>9.2}",
            result.name,
            result.requests_per_second,
            latency(result.p50_us),
            latency(result.p99_us),
            result.server_cores,
            issuer_cores,
            result.wrk_cores,
        );
    }
    println!("(CPU in cores: CPU seconds used during the run ÷ its wall seconds)");
    println!();
    println!(
        "wrk command lines (ports, scripts and tokens are this run's; the scripts are removed at exit):"
    );
    for result in results {
        println!("  {:<14} {}", result.name, result.command);
    }
    println!();
    println!("verifier counters during the runs:");
    println!(
        "  jwt_reused     {} requests: {reused_hits} cache hits, {reused_checks} signature checks",
        jwt_reused.requests
    );
    println!(
        "  jwt_fresh      {} requests: {fresh_hits} cache hits, {fresh_checks} signature checks \
         ({} distinct tokens, a cache of {cache_capacity}; requests still in flight when wrk \
         stops are checked but not counted by wrk)",
        jwt_fresh.requests,
        pool.len()
    );
    println!(
        "  opaque_reused  {} requests: {introspections} introspection calls to the issuer \
         (concurrent requests with the same token share one call)",
        opaque_reused.requests
    );
    for result in results {
        if let Some(errors) = &result.socket_errors {
            println!("  {}: wrk reported {errors}", result.name);
        }
    }

    let raw = (raw_before + raw_after) / 2.0;
    let fresh_per_core = jwt_fresh.requests_per_second / jwt_fresh.server_cores.max(f64::EPSILON);
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    let reused_ratio = jwt_reused.requests_per_second / bare.requests_per_second;
    let per_core_ratio = fresh_per_core / raw;
    let opaque_ratio = opaque_reused.requests_per_second / jwt_reused.requests_per_second;
    println!();
    println!("ratios (printed, never asserted):");
    println!(
        "  jwt_reused / bare requests/s = {:.0} / {:.0} = {:.1} % (goal >= 80 %): {}",
        jwt_reused.requests_per_second,
        bare.requests_per_second,
        reused_ratio * 100.0,
        verdict(reused_ratio >= 0.8)
    );
    println!(
        "  jwt_fresh verifies per server core = {:.0}/s / {:.2} cores = {fresh_per_core:.0}/s; \
         raw aws-lc-rs RS256 verifies on one core = {raw:.0}/s (before {raw_before:.0}, after \
         {raw_after:.0}); {:.1} % (goal >= 70 %): {}",
        jwt_fresh.requests_per_second,
        jwt_fresh.server_cores,
        per_core_ratio * 100.0,
        verdict(per_core_ratio >= 0.7)
    );
    println!(
        "    (informational: with all {cores} cores verifying at once, raw aws-lc-rs gives \
         {raw_all_cores:.0}/s per core; jwt_fresh per server core is {:.1} % of that)",
        fresh_per_core / raw_all_cores * 100.0
    );
    let issuer_saturated = opaque_reused.issuer_cores >= ISSUER_SATURATED;
    println!(
        "  opaque_reused = {:.0} requests/s, {:.1} % of jwt_reused (no goal); the issuer (one \
         thread) used {:.2} cores: {}",
        opaque_reused.requests_per_second,
        opaque_ratio * 100.0,
        opaque_reused.issuer_cores,
        if issuer_saturated {
            "it was the bottleneck"
        } else {
            "not the bottleneck"
        }
    );

    // --- What limited the runs ------------------------------------------------------------------
    let mut notes = Vec::new();
    if issuer_saturated {
        notes.push(format!(
            "opaque_reused: the issuer, on one thread, used {:.2} cores: it was the bottleneck, so \
             this scenario measures the issuer's verify endpoint more than the layer",
            opaque_reused.issuer_cores
        ));
    }
    for result in results {
        let used = result.server_cores + result.issuer_cores + result.wrk_cores;
        if used >= 0.9 * cores as f64 {
            notes.push(format!(
                "{}: server, issuer and wrk together used {used:.2} of {cores} cores: the machine \
                 was saturated, wrk and the server competed for the cores",
                result.name
            ));
        }
    }
    if !notes.is_empty() {
        println!();
        println!("notes:");
        for note in notes {
            println!("  {note}");
        }
    }
}
