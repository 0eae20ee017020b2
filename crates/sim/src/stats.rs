//! Classical tests the peer rules use, written against SciPy's definitions
//! (golden values in `tests/fixtures`).

/// Survival function of the standard normal.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// Survival function of χ² with one degree of freedom.
pub fn chi2_1_sf(x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    libm::erfc((x / 2.0).sqrt())
}

/// Pearson's χ² test of a 2×2 table `[[a, b], [c, d]]` with Yates'
/// continuity correction, as `scipy.stats.chi2_contingency` does by
/// default: returns (statistic, p-value), or `None` when a margin is zero.
pub fn chi2_2x2(a: f64, b: f64, c: f64, d: f64) -> Option<(f64, f64)> {
    let n = a + b + c + d;
    let rows = [a + b, c + d];
    let cols = [a + c, b + d];
    if rows.contains(&0.0) || cols.contains(&0.0) {
        return None;
    }
    let observed = [[a, b], [c, d]];
    let mut stat = 0.0;
    for (i, row) in observed.iter().enumerate() {
        for (j, &o) in row.iter().enumerate() {
            let e = rows[i] * cols[j] / n;
            let diff = ((o - e).abs() - 0.5).max(0.0);
            stat += diff * diff / e;
        }
    }
    Some((stat, chi2_1_sf(stat)))
}

/// Mann–Whitney U test, one-sided "x tends to be greater than y", with the
/// normal approximation, tie correction and continuity correction
/// (`scipy.stats.mannwhitneyu(x, y, alternative="greater",
/// method="asymptotic")`): returns (U of x, p-value).
pub fn mann_whitney_greater(x: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    let (n1, n2) = (x.len() as f64, y.len() as f64);
    if x.is_empty() || y.is_empty() {
        return None;
    }
    let mut all: Vec<(f64, bool)> = x
        .iter()
        .map(|&v| (v, true))
        .chain(y.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum_x = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        let count = (j - i + 1) as f64;
        tie_term += count * count * count - count;
        rank_sum_x += all[i..=j].iter().filter(|v| v.1).count() as f64 * avg_rank;
        i = j + 1;
    }
    let u = rank_sum_x - n1 * (n1 + 1.0) / 2.0;
    let n = n1 + n2;
    let mean = n1 * n2 / 2.0;
    let var = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    if var <= 0.0 {
        return Some((u, 1.0));
    }
    let z = (u - mean - 0.5) / var.sqrt();
    Some((u, normal_sf(z)))
}
