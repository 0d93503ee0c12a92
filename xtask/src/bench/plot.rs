//! The GET latency distributions side by side, one panel per network size, as SVG
//! (plotters' SVG backend writes text as SVG `<text>`: no font library is needed).
//!
//! Our series have every sample, so they are drawn as full percentile curves; the
//! anchors print only p50, p90, p99 and max, drawn as those four points joined.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use super::report::Network;

/// Our series drawn, with their legend names.
const OUR_SERIES: [(&str, &str); 3] = [
    ("get.core.r3", "us, dht-core, r=3"),
    ("get.core.r20", "us, dht-core, r=20"),
    ("get.api.r3", "us, API, r=3"),
];
const COLORS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
];

/// A legend name, its `(percentile, ms)` points, and whether the points are marked.
type Series = (String, Vec<(f64, f64)>, bool);

/// `(percentile, ms)` points of a sample set: every sample at its rank.
pub(crate) fn curve(samples: &[f64]) -> Vec<(f64, f64)> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    sorted
        .iter()
        .enumerate()
        .map(|(i, &ms)| (100.0 * (i + 1) as f64 / n, ms))
        .collect()
}

/// An anchor's four points, when it has them.
fn anchor_points(net: &Network, which: usize) -> Option<Vec<(f64, f64)>> {
    let figures = if which == 0 {
        &net.mainline
    } else {
        &net.libp2p
    };
    let f = figures.as_ref()?.as_ref().ok()?;
    let at = |k: &str| f.get(k).copied();
    Some(vec![
        (50.0, at("get.p50")?),
        (90.0, at("get.p90")?),
        (99.0, at("get.p99")?),
        (100.0, at("get.max")?),
    ])
}

/// Writes the SVG to `path`.
pub(crate) fn write(path: &Path, nets: &[Network], libp2p_seed: &str) -> anyhow::Result<()> {
    let panels = nets.len().max(1);
    let width = u32::try_from(520 * panels).unwrap_or(1560);
    let root = SVGBackend::new(path, (width, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    for (net, area) in nets.iter().zip(root.split_evenly((1, panels))) {
        let mut series: Vec<Series> = Vec::new();
        if let Ok(ours) = &net.ours {
            for (key, name) in OUR_SERIES {
                if let Some(s) = ours.samples.iter().find(|s| s.key == key) {
                    if !s.ms.is_empty() {
                        series.push((name.to_string(), curve(&s.ms), false));
                    }
                }
            }
        }
        for (which, name) in [
            (0, "mainline".to_string()),
            (1, format!("libp2p ({libp2p_seed})")),
        ] {
            if let Some(points) = anchor_points(net, which) {
                series.push((name, points, true));
            }
        }
        let values = series
            .iter()
            .flat_map(|(_, p, _)| p.iter().map(|&(_, ms)| ms));
        let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let (lo, hi) = if lo <= hi && lo > 0.0 {
            (lo * 0.8, hi * 1.25)
        } else {
            (0.01, 100.0)
        };
        let mut chart = ChartBuilder::on(&area)
            .caption(format!("GET latency, N={}", net.n), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..100f64, (lo..hi).log_scale())
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("ms (log)")
            .draw()
            .map_err(plot_error)?;
        for (i, (name, points, markers)) in series.into_iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let style = ShapeStyle::from(&color).stroke_width(2);
            chart
                .draw_series(LineSeries::new(points.clone(), style))
                .map_err(plot_error)?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
            if markers {
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                    .map_err(plot_error)?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
    }
    root.present()
        .map_err(plot_error)
        .with_context(|| format!("writing {}", path.display()))
}

fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_curve() {
        let c = curve(&[3.0, 1.0, 2.0, 4.0]);
        assert_eq!(c, vec![(25.0, 1.0), (50.0, 2.0), (75.0, 3.0), (100.0, 4.0)]);
        assert!(curve(&[]).is_empty());
    }
}

#[cfg(test)]
mod svg_tests {
    use super::*;
    use crate::bench::report::tests::network;

    #[test]
    fn svg_with_text_and_series() {
        let dir = std::env::temp_dir().join(format!("xtask-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("get.svg");
        let mainline = std::collections::BTreeMap::from([
            ("get.p50".to_string(), 1.5),
            ("get.p90".to_string(), 2.5),
            ("get.p99".to_string(), 3.2),
            ("get.max".to_string(), 56.0),
        ]);
        write(
            &path,
            &[
                network(20, 0.5, Some(Ok(mainline))),
                network(100, 0.6, None),
            ],
            "full",
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("GET latency, N=20") && svg.contains("GET latency, N=100"));
        assert!(svg.contains("mainline") && svg.contains("us, dht-core, r=3"));
        assert!(
            svg.contains("<text"),
            "labels are SVG text, no font library"
        );
    }
}
