//! The few statistics every part needs (probes, the store's rollups, the detectors, the report),
//! in one place so they agree: quantiles the way numpy computes them by default (type 7).

/// The `q` quantile of values already sorted ascending, interpolating linearly between the two
/// nearest ranks; `None` when there are none.
pub fn quantile_sorted<T: Copy + Into<f64>>(sorted: &[T], q: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let (a, b) = (sorted[lo].into(), sorted[hi].into());
    Some(a + (b - a) * (pos - lo as f64))
}

/// The median of `v` in any order under `cmp`, as [`quantile_sorted`] gives it (the two middle
/// values' mean when even), reordering `v` in O(n) instead of sorting it.
fn median_by<T: Copy + Into<f64>>(v: &mut [T], cmp: impl Fn(&T, &T) -> std::cmp::Ordering) -> Option<f64> {
    let n = v.len();
    if n == 0 {
        return None;
    }
    let (left, &mut hi, _) = v.select_nth_unstable_by(n / 2, &cmp);
    let lo = if n % 2 == 1 { hi } else { *left.iter().max_by(|a, b| cmp(a, b)).expect("n >= 2") };
    let (a, b) = (lo.into(), hi.into());
    let frac = if n % 2 == 1 { 0.0 } else { 0.5 };
    Some(a + (b - a) * frac)
}

/// The `q` quantile of the finite values, in any order.
pub fn quantile(values: impl IntoIterator<Item = f64>, q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    v.sort_unstable_by(f64::total_cmp);
    quantile_sorted(&v, q)
}

/// The median of the finite values, in any order.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    quantile(values, 0.5)
}

/// The median, reordering `v` in place (the detectors' hot path: no allocation); NaN when empty.
pub fn median_in_place(v: &mut [f64]) -> f64 {
    median_by(v, f64::total_cmp).unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_in_place_median_is_the_sorted_one() {
        let mut seed = 7u64;
        for n in 0..60 {
            let v: Vec<u32> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (seed >> 40) as u32 % 500
                })
                .collect();
            let mut sorted = v.clone();
            sorted.sort_unstable();
            let mut shuffled = v.clone();
            assert_eq!(median_by(&mut shuffled, u32::cmp), quantile_sorted(&sorted, 0.5), "{v:?}");
            let mut floats: Vec<f64> = v.iter().map(|&x| f64::from(x) / 7.0).collect();
            let want = quantile_sorted(&sorted.iter().map(|&x| f64::from(x) / 7.0).collect::<Vec<_>>(), 0.5);
            assert_eq!(Some(median_in_place(&mut floats)).filter(|m| !m.is_nan()), want, "{v:?}");
        }
    }

    #[test]
    fn quantiles_match_numpy() {
        // numpy.quantile([1, 2, 3, 4], [0, .25, .5, .9, 1]) = 1, 1.75, 2.5, 3.7, 4
        let v = [1u32, 2, 3, 4];
        let got: Vec<f64> = [0.0, 0.25, 0.5, 0.9, 1.0].iter().map(|q| quantile_sorted(&v, *q).unwrap()).collect();
        for (g, want) in got.iter().zip([1.0, 1.75, 2.5, 3.7, 4.0]) {
            assert!((g - want).abs() < 1e-12, "{got:?}");
        }
        assert_eq!(quantile_sorted::<f64>(&[], 0.5), None);
        assert_eq!(quantile_sorted(&[7.0], 0.99), Some(7.0));
    }

    #[test]
    fn medians_skip_what_is_not_a_number() {
        assert_eq!(median([3.0, f64::NAN, 1.0, 2.0, f64::INFINITY]), Some(2.0));
        assert_eq!(median([]), None);
        let mut v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(median_in_place(&mut v), 2.5);
        assert!(median_in_place(&mut []).is_nan());
    }
}
