//! Plots as self-contained SVG (no font or drawing dependencies): grouped
//! bars with error bars, box plots, and line/step charts (ECDF, cold start
//! vs concurrency, memory vs functions, latency vs rate).

use std::fmt::Write;

const W: f64 = 760.0;
const H: f64 = 420.0;
const L: f64 = 78.0; // left margin
const R: f64 = 170.0; // right margin (legend)
const T: f64 = 40.0;
const B: f64 = 80.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A value axis.
#[derive(Clone, Copy, Debug)]
struct Scale {
    lo: f64,
    hi: f64,
    log: bool,
}

impl Scale {
    fn new(values: impl Iterator<Item = f64>, log: bool, zero: bool) -> Scale {
        let vals: Vec<f64> = values
            .filter(|v| v.is_finite() && (!log || *v > 0.0))
            .collect();
        let (mut lo, mut hi) = vals
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(*v), b.max(*v))
            });
        if vals.is_empty() {
            (lo, hi) = if log { (1.0, 10.0) } else { (0.0, 1.0) };
        }
        if log {
            lo = 10f64.powf(lo.log10().floor());
            hi = 10f64.powf(hi.log10().ceil());
            if hi <= lo {
                hi = lo * 10.0;
            }
        } else {
            if zero {
                lo = lo.min(0.0);
            }
            if hi <= lo {
                hi = lo + 1.0;
            }
            let step = nice_step((hi - lo) / 5.0);
            lo = (lo / step).floor() * step;
            hi = (hi / step).ceil() * step;
        }
        Scale { lo, hi, log }
    }
    /// 0..1
    fn frac(&self, v: f64) -> f64 {
        if self.log {
            let v = v.max(self.lo * 1e-3);
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }
    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let (a, b) = (
                self.lo.log10().round() as i32,
                self.hi.log10().round() as i32,
            );
            let mut t: Vec<f64> = (a..=b).map(|e| 10f64.powi(e)).collect();
            if b - a <= 2 {
                t = (a..=b)
                    .flat_map(|e| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e)))
                    .filter(|v| *v <= self.hi * 1.0001)
                    .collect();
            }
            t
        } else {
            let step = nice_step((self.hi - self.lo) / 5.0);
            let mut t = Vec::new();
            let mut v = self.lo;
            while v <= self.hi + step * 1e-6 {
                t.push(v);
                v += step;
            }
            t
        }
    }
}

fn nice_step(raw: f64) -> f64 {
    if raw.is_nan() || raw <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    mag * if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    }
}

/// A short label for a tick value.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e6 {
        format!("{:.0}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

struct Canvas {
    s: String,
}

impl Canvas {
    fn new(title: &str) -> Canvas {
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>
"#,
            (L + W - R) / 2.0,
            esc(title)
        );
        Canvas { s }
    }
    fn px(&self, fx: f64) -> f64 {
        L + fx * (W - L - R)
    }
    fn py(&self, fy: f64) -> f64 {
        H - B - fy * (H - T - B)
    }
    fn y_axis(&mut self, y: &Scale, label: &str) {
        for t in y.ticks() {
            let py = self.py(y.frac(t));
            let _ = writeln!(
                self.s,
                r##"<line x1="{L}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                W - R,
                L - 6.0,
                py + 4.0,
                fmt_num(t)
            );
        }
        let _ = writeln!(
            self.s,
            r#"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            (T + H - B) / 2.0,
            esc(label)
        );
        let _ = writeln!(
            self.s,
            r##"<line x1="{L}" x2="{L}" y1="{T}" y2="{}" stroke="#333"/>"##,
            H - B
        );
        let _ = writeln!(
            self.s,
            r##"<line x1="{L}" x2="{}" y1="{}" y2="{}" stroke="#333"/>"##,
            W - R,
            H - B,
            H - B
        );
    }
    fn x_label(&mut self, label: &str) {
        let _ = writeln!(
            self.s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            (L + W - R) / 2.0,
            H - 12.0,
            esc(label)
        );
    }
    fn legend(&mut self, names: &[String]) {
        for (i, n) in names.iter().enumerate() {
            let y = T + 10.0 + i as f64 * 18.0;
            let _ = writeln!(
                self.s,
                r#"<rect x="{}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
                W - R + 12.0,
                y - 10.0,
                COLORS[i % COLORS.len()],
                W - R + 30.0,
                y,
                esc(n)
            );
        }
    }
    fn finish(mut self) -> String {
        self.s.push_str("</svg>\n");
        self.s
    }
}

/// One series of a bar chart: a name and, per category, (value, error).
pub type BarSeries = (String, Vec<(f64, f64)>);

/// Grouped bars (one group per category, one bar per series) with ±error bars.
pub fn bars(
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[BarSeries],
    log_y: bool,
) -> String {
    let y = Scale::new(
        series.iter().flat_map(|s| {
            s.1.iter()
                .flat_map(|(v, e)| [*v, v + e, (v - e).max(v * 0.1)])
        }),
        log_y,
        true,
    );
    let mut c = Canvas::new(title);
    c.y_axis(&y, y_label);
    let nc = categories.len().max(1) as f64;
    let ns = series.len().max(1) as f64;
    let group_w = 1.0 / nc;
    let bar_w = group_w * 0.8 / ns;
    let base = if log_y { y.lo } else { 0f64.max(y.lo) };
    for (ci, cat) in categories.iter().enumerate() {
        let gx = ci as f64 * group_w;
        for (si, (_, vals)) in series.iter().enumerate() {
            let Some(&(v, e)) = vals.get(ci) else {
                continue;
            };
            if !v.is_finite() {
                continue;
            }
            let x0 = c.px(gx + group_w * 0.1 + si as f64 * bar_w);
            let x1 = c.px(gx + group_w * 0.1 + (si as f64 + 1.0) * bar_w);
            let (ytop, ybase) = (c.py(y.frac(v)), c.py(y.frac(base)));
            let _ = writeln!(
                c.s,
                r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                ytop.min(ybase),
                (x1 - x0 - 1.0).max(1.0),
                (ybase - ytop).abs(),
                COLORS[si % COLORS.len()],
                esc(cat),
                fmt_num(v)
            );
            if e.is_finite() && e > 0.0 {
                let xm = (x0 + x1) / 2.0;
                let (ya, yb) = (
                    c.py(y.frac(v + e)),
                    c.py(y.frac((v - e).max(if log_y { y.lo } else { f64::MIN }))),
                );
                let _ = writeln!(
                    c.s,
                    r##"<path d="M{xm:.1},{ya:.1}V{yb:.1}M{:.1},{ya:.1}H{:.1}M{:.1},{yb:.1}H{:.1}" stroke="#000" fill="none"/>"##,
                    xm - 3.0,
                    xm + 3.0,
                    xm - 3.0,
                    xm + 3.0
                );
            }
        }
        let xm = c.px(gx + group_w / 2.0);
        let _ = writeln!(
            c.s,
            r#"<text transform="translate({xm:.1},{}) rotate(-30)" text-anchor="end">{}</text>"#,
            H - B + 14.0,
            esc(cat)
        );
    }
    c.legend(&series.iter().map(|s| s.0.clone()).collect::<Vec<_>>());
    c.finish()
}

/// Box plots (quartiles, median, Tukey whiskers at 1.5 IQR, outliers as dots,
/// at most 200 drawn) of raw samples.
pub fn boxes(title: &str, y_label: &str, items: &[(String, Vec<f64>)], log_y: bool) -> String {
    let y = Scale::new(items.iter().flat_map(|i| i.1.iter().copied()), log_y, false);
    let mut c = Canvas::new(title);
    c.y_axis(&y, y_label);
    let n = items.len().max(1) as f64;
    for (i, (name, xs)) in items.iter().enumerate() {
        let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            continue;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let q = |p| crate::stats::percentile_sorted(&v, p);
        let (q1, q2, q3) = (q(25.0), q(50.0), q(75.0));
        let iqr = q3 - q1;
        let lo = *v.iter().find(|x| **x >= q1 - 1.5 * iqr).unwrap();
        let hi = *v.iter().rev().find(|x| **x <= q3 + 1.5 * iqr).unwrap();
        let xm = c.px((i as f64 + 0.5) / n);
        let hw = (W - L - R) / n * 0.3;
        let color = COLORS[i % COLORS.len()];
        let p = |val: f64| H - B - y.frac(val) * (H - T - B);
        let _ = writeln!(
            c.s,
            r##"<path d="M{xm:.1},{:.1}V{:.1}M{xm:.1},{:.1}V{:.1}M{:.1},{:.1}H{:.1}M{:.1},{:.1}H{:.1}" stroke="#333" fill="none"/>"##,
            p(hi),
            p(q3),
            p(q1),
            p(lo),
            xm - hw / 2.0,
            p(hi),
            xm + hw / 2.0,
            xm - hw / 2.0,
            p(lo),
            xm + hw / 2.0
        );
        let _ = writeln!(
            c.s,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}" fill-opacity="0.35" stroke="{color}"/><line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#000" stroke-width="2"/>"##,
            xm - hw,
            p(q3),
            2.0 * hw,
            (p(q1) - p(q3)).max(0.5),
            xm - hw,
            xm + hw,
            p(q2),
            p(q2)
        );
        let outliers: Vec<f64> = v.iter().copied().filter(|x| *x < lo || *x > hi).collect();
        let step = (outliers.len() / 200).max(1);
        for o in outliers.iter().step_by(step) {
            let _ = writeln!(
                c.s,
                r#"<circle cx="{xm:.1}" cy="{:.1}" r="1.8" fill="{color}"/>"#,
                p(*o)
            );
        }
        let _ = writeln!(
            c.s,
            r#"<text transform="translate({xm:.1},{}) rotate(-30)" text-anchor="end">{}</text>"#,
            H - B + 14.0,
            esc(name)
        );
    }
    c.finish()
}

/// Options of [`lines`].
#[derive(Clone, Copy, Debug, Default)]
pub struct LineOpts {
    /// Log x axis.
    pub log_x: bool,
    /// Log y axis.
    pub log_y: bool,
    /// Draw as a step function (ECDF).
    pub step: bool,
    /// Mark the points.
    pub markers: bool,
}

/// Line (or step) chart of `(x, y)` series.
pub fn lines(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    o: LineOpts,
) -> String {
    let x = Scale::new(
        series.iter().flat_map(|s| s.1.iter().map(|p| p.0)),
        o.log_x,
        false,
    );
    let y = Scale::new(
        series.iter().flat_map(|s| s.1.iter().map(|p| p.1)),
        o.log_y,
        !o.log_y,
    );
    let mut c = Canvas::new(title);
    c.y_axis(&y, y_label);
    for t in x.ticks() {
        let px = c.px(x.frac(t));
        let _ = writeln!(
            c.s,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{T}" y2="{}" stroke="#eee"/><text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"##,
            H - B,
            H - B + 16.0,
            fmt_num(t)
        );
    }
    c.x_label(x_label);
    for (i, (_, pts)) in series.iter().enumerate() {
        let pts: Vec<(f64, f64)> = pts
            .iter()
            .copied()
            .filter(|(a, b)| {
                a.is_finite() && b.is_finite() && (!o.log_x || *a > 0.0) && (!o.log_y || *b > 0.0)
            })
            .collect();
        if pts.is_empty() {
            continue;
        }
        let color = COLORS[i % COLORS.len()];
        let mut d = String::new();
        let mut prev_y = None;
        for (k, (a, b)) in pts.iter().enumerate() {
            let (px, py) = (c.px(x.frac(*a)), c.py(y.frac(*b)));
            if k == 0 {
                let _ = write!(d, "M{px:.1},{py:.1}");
            } else if o.step {
                let _ = write!(d, "H{px:.1}V{py:.1}");
            } else {
                let _ = write!(d, "L{px:.1},{py:.1}");
            }
            prev_y = Some(py);
        }
        let _ = prev_y;
        let _ = writeln!(
            c.s,
            r#"<path d="{d}" stroke="{color}" stroke-width="2" fill="none"/>"#
        );
        if o.markers {
            for (a, b) in &pts {
                let _ = writeln!(
                    c.s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                    c.px(x.frac(*a)),
                    c.py(y.frac(*b))
                );
            }
        }
    }
    c.legend(&series.iter().map(|s| s.0.clone()).collect::<Vec<_>>());
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svgs_are_well_formed_enough() {
        let b = bars(
            "t",
            "ms",
            &["a".into(), "b".into()],
            &[
                ("x".into(), vec![(1.0, 0.1), (2.0, 0.5)]),
                ("y".into(), vec![(3.0, 0.0), (f64::NAN, 0.0)]),
            ],
            false,
        );
        assert!(b.starts_with("<svg") && b.trim_end().ends_with("</svg>"));
        assert_eq!(
            b.matches("<rect x=").count(),
            3 + 2,
            "3 bars + 2 legend swatches"
        );
        let bx = boxes(
            "t",
            "ms",
            &[
                ("a".into(), (1..100).map(f64::from).collect()),
                ("b".into(), vec![]),
            ],
            true,
        );
        assert!(bx.contains("<rect x=") && !bx.contains("NaN"));
        let l = lines(
            "t",
            "x",
            "y",
            &[("s".into(), vec![(1.0, 0.5), (10.0, 1.0)])],
            LineOpts {
                log_x: true,
                step: true,
                ..Default::default()
            },
        );
        assert!(l.contains("<path d=\"M") && !l.contains("NaN") && !l.contains("inf"));
        // Empty input still renders.
        let e = lines("t", "x", "y", &[], LineOpts::default());
        assert!(e.ends_with("</svg>\n"));
    }

    #[test]
    fn ticks_are_nice() {
        let s = Scale::new([0.3, 9.7].into_iter(), false, true);
        assert_eq!((s.lo, s.hi), (0.0, 10.0));
        assert_eq!(s.ticks(), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let l = Scale::new([0.2, 300.0].into_iter(), true, false);
        assert_eq!((l.lo, l.hi), (0.1, 1000.0));
        assert_eq!(fmt_num(0.25), "0.25");
        assert_eq!(fmt_num(12000.0), "12k");
    }
}
