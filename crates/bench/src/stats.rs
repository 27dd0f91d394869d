//! Descriptive statistics, the Mann–Whitney U test and the ECDF.
//!
//! Everything works on `f64` samples (latencies in ms, sizes, ...). Empty
//! inputs give NaN rather than panicking, so a scenario that measured
//! nothing still produces a (visibly empty) report.

use serde::Serialize;

/// Summary of one sample.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    /// Number of observations.
    pub n: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median (p50).
    pub median: f64,
    /// Sample standard deviation (n − 1).
    pub sd: f64,
    /// Coefficient of variation, `sd / mean`.
    pub cv: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// 25th percentile.
    pub p25: f64,
    /// 75th percentile.
    pub p75: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Summary {
    /// Summarise `xs` (any order).
    pub fn of(xs: &[f64]) -> Summary {
        let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let mean = mean(&v);
        let sd = sd(&v);
        Summary {
            n,
            mean,
            median: percentile_sorted(&v, 50.0),
            sd,
            cv: if mean != 0.0 { sd / mean } else { f64::NAN },
            min: v.first().copied().unwrap_or(f64::NAN),
            max: v.last().copied().unwrap_or(f64::NAN),
            p25: percentile_sorted(&v, 25.0),
            p75: percentile_sorted(&v, 75.0),
            p95: percentile_sorted(&v, 95.0),
            p99: percentile_sorted(&v, 99.0),
        }
    }
}

/// Arithmetic mean (NaN when empty).
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample standard deviation with Bessel's correction (0 for one value, NaN when empty).
pub fn sd(xs: &[f64]) -> f64 {
    match xs.len() {
        0 => f64::NAN,
        1 => 0.0,
        n => {
            let m = mean(xs);
            (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1) as f64).sqrt()
        }
    }
}

/// Percentile `p` (0–100) of an already sorted sample, linear interpolation
/// between closest ranks (NumPy's default, R type 7).
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let h = (n - 1) as f64 * (p / 100.0).clamp(0.0, 1.0);
            let lo = h.floor() as usize;
            let hi = h.ceil() as usize;
            sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
        }
    }
}

/// Percentile `p` (0–100) of an unsorted sample.
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    percentile_sorted(&v, p)
}

/// Geometric mean of positive values (NaN when empty or any value ≤ 0).
pub fn geo_mean(xs: &[f64]) -> f64 {
    if xs.is_empty() || xs.iter().any(|x| x.is_nan() || *x <= 0.0) {
        return f64::NAN;
    }
    (xs.iter().map(|x| x.ln()).sum::<f64>() / xs.len() as f64).exp()
}

/// Least-squares line `y = a + b·x`; returns `(a, b)`.
pub fn linear_fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    if points.len() < 2 {
        return (f64::NAN, f64::NAN);
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    let b = sxy / sxx;
    (my - b * mx, b)
}

/// Empirical CDF: sorted distinct values with the fraction of observations ≤ each.
pub fn ecdf(xs: &[f64]) -> Vec<(f64, f64)> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len() as f64;
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (i, x) in v.iter().enumerate() {
        let y = (i + 1) as f64 / n;
        match out.last_mut() {
            Some(last) if last.0 == *x => last.1 = y,
            _ => out.push((*x, y)),
        }
    }
    out
}

/// At most `max` points of an ECDF, evenly spaced in rank (for plots).
pub fn ecdf_thin(xs: &[f64], max: usize) -> Vec<(f64, f64)> {
    let e = ecdf(xs);
    if e.len() <= max || max < 2 {
        return e;
    }
    let step = (e.len() - 1) as f64 / (max - 1) as f64;
    (0..max)
        .map(|i| e[((i as f64 * step).round() as usize).min(e.len() - 1)])
        .collect()
}

/// Result of a two-sided Mann–Whitney U test.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MannWhitney {
    /// U of the first sample (number of pairs where a > b, ties count ½).
    pub u1: f64,
    /// U of the second sample, `n1·n2 − u1`.
    pub u2: f64,
    /// Standardised statistic (continuity- and tie-corrected).
    pub z: f64,
    /// Two-sided p-value from the normal approximation.
    pub p: f64,
    /// Common-language effect size: P(a > b) + ½·P(a = b) = `u1 / (n1·n2)`.
    pub effect: f64,
}

/// Two-sided Mann–Whitney U test of `a` against `b`: normal approximation
/// with tie correction and continuity correction (as SciPy's
/// `mannwhitneyu(method="asymptotic", use_continuity=True)`).
/// Returns `None` if either sample is empty.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|&x| (x, true))
        .chain(b.iter().map(|&x| (x, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    let mut r1 = 0.0; // rank sum of a
    let mut tie_term = 0.0; // Σ (t³ − t)
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j + 2) as f64 / 2.0; // ranks are 1-based
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        for item in &all[i..=j] {
            if item.1 {
                r1 += rank;
            }
        }
        i = j + 1;
    }
    let (n1f, n2f, nf) = (n1 as f64, n2 as f64, n as f64);
    let u1 = r1 - n1f * (n1f + 1.0) / 2.0;
    let u2 = n1f * n2f - u1;
    let mu = n1f * n2f / 2.0;
    let var = n1f * n2f / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)));
    let (z, p) = if var <= 0.0 {
        (0.0, 1.0)
    } else {
        let u = u1.max(u2);
        let z = (u - mu - 0.5) / var.sqrt();
        (
            if u1 >= u2 { z } else { -z },
            (2.0 * normal_sf(z.abs().max(0.0))).min(1.0),
        )
    };
    Some(MannWhitney {
        u1,
        u2,
        z,
        p,
        effect: u1 / (n1f * n2f),
    })
}

/// Upper tail of the standard normal, `1 − Φ(z)`.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function (W. J. Cody's rational approximations via
/// the Numerical Recipes `erfcc` Chebyshev fit; relative error < 1.2e-7).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn summary_of_known_values() {
        let s = Summary::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(s.n, 8);
        assert_eq!(s.mean, 5.0);
        assert_eq!(s.median, 4.5);
        // Sample SD: sqrt(32 / 7).
        assert!(close(s.sd, (32.0f64 / 7.0).sqrt(), 1e-12));
        assert!(close(s.cv, (32.0f64 / 7.0).sqrt() / 5.0, 1e-12));
        assert_eq!((s.min, s.max), (2.0, 9.0));
        // numpy.percentile([2,4,4,4,5,5,7,9], [25, 95, 99]) = 4.0, 8.3, 8.86
        assert!(close(s.p25, 4.0, 1e-12));
        assert!(close(s.p95, 8.3, 1e-12));
        assert!(close(s.p99, 8.86, 1e-12));
    }

    #[test]
    fn percentiles_and_edge_cases() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!(close(percentile(&v, 50.0), 50.5, 1e-12));
        assert!(close(percentile(&v, 99.0), 99.01, 1e-9));
        assert_eq!(percentile(&[3.0], 90.0), 3.0);
        assert!(percentile(&[], 50.0).is_nan());
        let e = Summary::of(&[]);
        assert_eq!(e.n, 0);
        assert!(e.mean.is_nan());
        assert_eq!(Summary::of(&[1.5]).sd, 0.0);
    }

    #[test]
    fn geo_mean_and_fit() {
        assert!(close(geo_mean(&[1.0, 4.0, 16.0]), 4.0, 1e-12));
        assert!(geo_mean(&[1.0, 0.0]).is_nan());
        let (a, b) = linear_fit(&[(1.0, 3.0), (2.0, 5.0), (3.0, 7.0)]);
        assert!(close(a, 1.0, 1e-12) && close(b, 2.0, 1e-12));
    }

    #[test]
    fn ecdf_steps() {
        assert_eq!(
            ecdf(&[3.0, 1.0, 2.0, 2.0]),
            vec![(1.0, 0.25), (2.0, 0.75), (3.0, 1.0)]
        );
        let thin = ecdf_thin(&(0..1000).map(f64::from).collect::<Vec<_>>(), 11);
        assert_eq!(thin.len(), 11);
        assert_eq!(thin[0], (0.0, 0.001));
        assert_eq!(thin[10], (999.0, 1.0));
    }

    #[test]
    fn normal_tail() {
        assert!(close(normal_sf(0.0), 0.5, 1e-7));
        assert!(close(normal_sf(1.959964), 0.025, 1e-6));
        assert!(close(normal_sf(-1.0), 0.841344746, 1e-6));
        assert!(close(erfc(0.5), 0.479500122, 1e-7));
    }

    #[test]
    fn mann_whitney_textbook_no_ties() {
        // a = [19, 22, 16, 29, 24], b = [20, 11, 17, 12]: U_a = 17, U_b = 3.
        // μ = 10, σ = sqrt(5·4·10/12); z = (17 − 10 − 0.5)/σ = 1.5922;
        // SciPy mannwhitneyu(a, b, method="asymptotic") → U = 17, p = 0.11134.
        let r = mann_whitney(&[19.0, 22.0, 16.0, 29.0, 24.0], &[20.0, 11.0, 17.0, 12.0]).unwrap();
        assert_eq!((r.u1, r.u2), (17.0, 3.0));
        assert!(close(r.z, 1.592168, 1e-5), "z = {}", r.z);
        assert!(close(r.p, 0.111347, 1e-4), "p = {}", r.p);
        assert!(close(r.effect, 0.85, 1e-12));
        // Symmetric.
        let s = mann_whitney(&[20.0, 11.0, 17.0, 12.0], &[19.0, 22.0, 16.0, 29.0, 24.0]).unwrap();
        assert_eq!((s.u1, s.u2), (3.0, 17.0));
        assert!(close(s.p, r.p, 1e-12));
        assert!(close(s.z, -r.z, 1e-12));
    }

    #[test]
    fn mann_whitney_with_ties() {
        // a = [1,2,2,3], b = [2,3,3,4]. Ranks of the 8 values:
        // 1→1, 2,2,2→3, 3,3,3→6, 4→8; R_a = 1+3+3+6 = 13, U_a = 13−10 = 3.
        // Ties: two groups of 3 → Σ(t³−t) = 48; var = 16/12·(9 − 48/56) = 10.857;
        // z = (13 − 8 − 0.5)/sqrt(10.857) = 1.3657; p = 0.17203.
        let r = mann_whitney(&[1.0, 2.0, 2.0, 3.0], &[2.0, 3.0, 3.0, 4.0]).unwrap();
        assert_eq!((r.u1, r.u2), (3.0, 13.0));
        assert!(close(r.z, -1.365698, 1e-5), "z = {}", r.z);
        assert!(close(r.p, 0.172031, 1e-4), "p = {}", r.p);
    }

    #[test]
    fn mann_whitney_clear_difference_and_degenerate() {
        let a: Vec<f64> = (0..50).map(|i| 10.0 + i as f64 * 0.01).collect();
        let b: Vec<f64> = (0..50).map(|i| 1.0 + i as f64 * 0.01).collect();
        let r = mann_whitney(&a, &b).unwrap();
        assert_eq!(r.u1, 2500.0);
        assert!(r.p < 1e-15, "p = {}", r.p);
        // All equal: no evidence at all.
        let r = mann_whitney(&[1.0, 1.0], &[1.0, 1.0, 1.0]).unwrap();
        assert_eq!(r.p, 1.0);
        assert!(mann_whitney(&[], &[1.0]).is_none());
    }
}
