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

/// How much the median of `k` rounds moves from one run of the suite to
/// the next, estimated from the rounds seen (`vals`): draw `k` of them with
/// replacement, take the median, 4000 times; the half-width of the central
/// 90 % of those medians, relative to the median of all rounds. 0.03 means
/// the median of `k` rounds lands within ±3 % nine times out of ten.
/// Deterministic (a fixed seed), so a results file can be recomputed.
pub fn median_spread(vals: &[f64], k: usize) -> Option<f64> {
    let v: Vec<f64> = vals.iter().copied().filter(|x| x.is_finite()).collect();
    let centre = median(&v)?;
    if k == 0 || centre == 0.0 {
        return None;
    }
    let mut state = 0x5eed_5eed_5eed_5eed_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut medians = Vec::with_capacity(4000);
    let mut draw = vec![0.0; k];
    for _ in 0..4000 {
        for d in draw.iter_mut() {
            *d = v[((next() as u128 * v.len() as u128) >> 64) as usize];
        }
        medians.push(median(&draw)?);
    }
    medians.sort_by(|a, b| a.total_cmp(b));
    let lo = percentile(&medians, 5.0)?;
    let hi = percentile(&medians, 95.0)?;
    Some((hi - lo) / 2.0 / centre.abs())
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
    fn spread_shrinks_with_more_rounds() {
        let vals: Vec<f64> = (0..15)
            .map(|i| 1.0 + 0.02 * ((i * 7 % 11) as f64 - 5.0))
            .collect();
        let one = median_spread(&vals, 1).unwrap();
        let nine = median_spread(&vals, 9).unwrap();
        assert!(nine < one, "{nine} >= {one}");
        assert_eq!(median_spread(&[1.0; 5], 3), Some(0.0));
        assert_eq!(median_spread(&[], 3), None);
    }
}
