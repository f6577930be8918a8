//! What the benchmarks share.

use std::time::Duration;

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
