//! What the benchmarks share.

// Each benchmark uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// `--bench` without `--test` or `--list`: benchmark mode (under `cargo test --benches` each
/// routine runs once, at a small scale).
pub fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|arg| arg == flag);
    has("--bench") && !has("--test") && !has("--list")
}

/// Where criterion writes its results, found the way criterion finds it.
pub fn criterion_home() -> PathBuf {
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

/// Criterion's median of `group/bench` in nanoseconds, if it was measured since `since` (`None`
/// under `--test`, `--list`, or a filter that left it out).
pub fn median_ns(home: &Path, group: &str, bench: &str, since: SystemTime) -> Option<f64> {
    let path = home.join(group).join(bench).join("new/estimates.json");
    let fresh = std::fs::metadata(&path)
        .and_then(|meta| meta.modified())
        .is_ok_and(|modified| modified >= since);
    if !fresh {
        return None;
    }
    let estimates: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}

/// Runs `time(variant)` for every variant in turn, `rounds` times (starting each round with the
/// next variant), and returns for each `(numerator, denominator)` pair the median over rounds of
/// the ratio of their times within the round.
pub fn paired_ratios(
    rounds: usize,
    time: &mut dyn FnMut(usize) -> Duration,
    pairs: &[(usize, usize)],
) -> Vec<f64> {
    let variants = 1 + pairs.iter().map(|&(a, b)| a.max(b)).max().unwrap_or(0);
    let mut per_pair: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); pairs.len()];
    for round in 0..rounds {
        let mut times = vec![Duration::ZERO; variants];
        for offset in 0..variants {
            let variant = (round + offset) % variants;
            times[variant] = time(variant);
        }
        for (ratios, &(numerator, denominator)) in per_pair.iter_mut().zip(pairs) {
            ratios.push(times[numerator].as_secs_f64() / times[denominator].as_secs_f64());
        }
    }
    per_pair
        .into_iter()
        .map(|mut ratios| {
            ratios.sort_by(f64::total_cmp);
            ratios[ratios.len() / 2]
        })
        .collect()
}
