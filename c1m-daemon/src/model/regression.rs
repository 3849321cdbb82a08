//! Least-squares line through (connections, bytes) samples: the slope is
//! the marginal cost of one more connection, r² says how well a line fits.

/// Slope and fit quality of `y = a + slope * x`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearFit {
    pub slope: f64,
    pub intercept: f64,
    /// Coefficient of determination, 0..=1 (1 = all points on the line).
    pub r2: f64,
}

/// `None` with fewer than 2 distinct x values: no slope can be told.
///
/// Example: points (0, 1000), (10, 1160), (20, 1320) give slope 16,
/// intercept 1000, r² 1.
pub fn fit_line(points: &[(f64, f64)]) -> Option<LinearFit> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let syy: f64 = points.iter().map(|p| (p.1 - mean_y).powi(2)).sum();
    let slope = sxy / sxx;
    let r2 = if syy == 0.0 {
        1.0
    } else {
        (sxy * sxy) / (sxx * syy)
    };
    Some(LinearFit {
        slope,
        intercept: mean_y - slope * mean_x,
        r2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_line() {
        let fit = fit_line(&[(0.0, 1000.0), (10.0, 1160.0), (20.0, 1320.0)]).unwrap();
        assert!((fit.slope - 16.0).abs() < 1e-9);
        assert!((fit.intercept - 1000.0).abs() < 1e-9);
        assert!((fit.r2 - 1.0).abs() < 1e-9);
    }

    #[test]
    fn noisy_line_has_lower_r2() {
        let fit = fit_line(&[(0.0, 0.0), (1.0, 3.0), (2.0, 1.0), (3.0, 4.0)]).unwrap();
        assert!(fit.slope > 0.0 && fit.r2 < 0.9, "{fit:?}");
    }

    #[test]
    fn no_slope_without_two_distinct_x() {
        assert_eq!(fit_line(&[(5.0, 1.0)]), None);
        assert_eq!(fit_line(&[(5.0, 1.0), (5.0, 2.0)]), None);
    }
}
