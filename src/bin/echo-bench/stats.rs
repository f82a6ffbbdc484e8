//! Small statistics: percentiles, medians, and how far the median of k
//! rounds can be trusted (a bootstrap of the rounds seen).

/// Percentile `p` (0..=100) of an already sorted slice (nearest rank);
/// None if empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Median of the finite values; None if there are none.
pub fn median(vals: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = vals.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The largest finite value; None if there are none.
pub fn max(vals: &[f64]) -> Option<f64> {
    vals.iter()
        .copied()
        .filter(|x| x.is_finite())
        .reduce(f64::max)
}

/// How far the median of `vals` may be from the median of endless rounds:
/// half the width of its distribution-free 90 % confidence interval, relative
/// to the median. The interval runs between the order statistics x(j) and
/// x(n+1-j), j the largest rank with P(Binomial(n, 1/2) < j) <= 5 %, so it
/// assumes nothing about how rounds scatter. 0.03 means the median is
/// known to ±3 %. None for fewer than 5 values (no such interval exists).
pub fn median_spread(vals: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = vals.iter().copied().filter(|x| x.is_finite()).collect();
    let n = v.len();
    let centre = median(&v)?;
    if n < 5 || centre == 0.0 {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    // P(B < j) for B ~ Binomial(n, 1/2), growing j while it stays <= 5 %.
    let mut below = 0.0; // P(B < j)
    let mut term = 0.5f64.powi(n as i32); // P(B = j - 1), from j = 1
    let mut j = 0;
    while j < n / 2 {
        let next = below + term;
        if next > 0.05 {
            break;
        }
        below = next;
        j += 1;
        term *= (n - (j - 1)) as f64 / j as f64;
    }
    let j = j.max(1);
    Some((v[n - j] - v[j - 1]) / 2.0 / centre.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basics() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN]), None);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 100.0), Some(4.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(max(&[1.0, 5.0, 2.0]), Some(5.0));
    }

    #[test]
    fn spread_is_the_median_confidence_interval() {
        // n = 10: P(B < 2) = 11/1024 <= 5 % < P(B < 3) = 56/1024, so the
        // interval is x(2)..x(9): (1.08 - 0.92) / 2 around the median 1.0.
        let vals = [0.5, 0.92, 0.95, 0.97, 0.99, 1.01, 1.03, 1.05, 1.08, 1.5];
        let s = median_spread(&vals).unwrap();
        assert!((s - 0.08).abs() < 1e-9, "{s}");
        // More rounds of the same scatter: a narrower interval.
        let many: Vec<f64> = vals.iter().cycle().take(40).copied().collect();
        assert!(median_spread(&many).unwrap() < s);
        assert_eq!(median_spread(&[1.0; 5]), Some(0.0));
        assert_eq!(median_spread(&[1.0, 2.0, 3.0, 4.0]), None);
    }
}
