//! The little statistics the harness's verdicts rest on, chosen to be honest with the few
//! repeats a 2-core machine affords:
//!
//! - the median of repeats, with a distribution-free **order-statistic** interval (the
//!   binomial argument: the true median lies between the k-th smallest and k-th largest of n
//!   runs with a probability that depends on n and k only). With 5 runs or fewer the best such
//!   interval is [min, max]; its real coverage (93.75% for 5, 75% for 3) is reported with it;
//!   The same interval serves the verdicts, over paired ratios (backend A's run against backend
//!   B's run of the same cell and repeat, so a machine that changes speed between repeats
//!   moves both): a median, because when the machine changes speed between the two runs of a
//!   pair that one ratio is off by 2x;
//! - an exact **rank test** for "every new run is faster than every old one".

/// The confidence level every interval aims for.
pub const LEVEL: f64 = 0.95;

/// The median of `xs` (the mean of the middle two for an even count); NaN for none.
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// P(X <= k) for X ~ Binomial(n, 1/2).
fn binom_half_cdf(n: usize, k: usize) -> f64 {
    let mut term = 0.5f64.powi(n as i32); // C(n, 0) / 2^n
    let mut sum = term;
    for i in 1..=k.min(n) {
        term *= (n + 1 - i) as f64 / i as f64;
        sum += term;
    }
    sum
}

/// An interval for the median of the population `xs` was drawn from: `(low, high, coverage)`.
/// The narrowest order-statistic interval with coverage >= [`LEVEL`], or [min, max] with its
/// own (lower) coverage when there are too few values for that.
pub fn median_interval(xs: &[f64]) -> (f64, f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, 0.0);
    }
    // [x_(k), x_(n+1-k)] (1-based) covers the median with probability 1 - 2 P(X <= k - 1).
    let coverage = |k: usize| 1.0 - 2.0 * binom_half_cdf(n, k - 1);
    let mut k = 1;
    while k < n.div_ceil(2) && coverage(k + 1) >= LEVEL {
        k += 1;
    }
    (v[k - 1], v[n - k], coverage(k).max(0.0))
}

/// The arithmetic mean; NaN for none.
pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// The sample standard deviation; 0 for fewer than two values.
pub fn std_dev(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let m = mean(xs);
    (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

/// Two-sided p-value of the exact rank test that the samples `a` and `b` (of sizes n and m)
/// do not overlap at all, under the hypothesis that they come from one distribution: each of
/// the C(n+m, n) orders is equally likely, and 2 of them separate the samples.
/// `None` when they do overlap.
pub fn separation_p(a: &[f64], b: &[f64]) -> Option<f64> {
    let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    if a.is_empty() || b.is_empty() || (max(a) >= min(b) && max(b) >= min(a)) {
        return None;
    }
    let (n, m) = (a.len(), b.len());
    // C(n+m, n), computed as a float product to avoid overflow.
    let orders = (1..=n).fold(1.0, |c, i| c * (m + i) as f64 / i as f64);
    Some((2.0 / orders).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn order_statistic_interval_has_the_binomial_coverage() {
        // 5 runs: only [min, max] is possible, covering 1 - 2/32.
        let (lo, hi, c) = median_interval(&[5.0, 1.0, 4.0, 2.0, 3.0]);
        assert_eq!((lo, hi), (1.0, 5.0));
        assert!((c - 0.9375).abs() < 1e-12);
        // 3 runs cover 75%.
        assert!((median_interval(&[1.0, 2.0, 3.0]).2 - 0.75).abs() < 1e-12);
        // 20 runs: [x_6, x_15] covers 95.86%, [x_7, x_14] only 88.5%.
        let xs: Vec<f64> = (1..=20).map(f64::from).collect();
        let (lo, hi, c) = median_interval(&xs);
        assert_eq!((lo, hi), (6.0, 15.0));
        assert!((LEVEL..0.96).contains(&c), "{c}");
    }

    #[test]
    fn separation_p_is_exact() {
        assert_eq!(separation_p(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]), Some(0.1));
        assert_eq!(separation_p(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0]), Some(0.1));
        assert_eq!(separation_p(&[1.0, 5.0], &[4.0, 6.0]), None);
        assert_eq!(separation_p(&[1.0], &[2.0]), Some(1.0));
    }
}
