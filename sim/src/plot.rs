//! The report's plots, as SVG (plotters' SVG backend writes text as SVG `<text>`: no
//! font library is needed).

use std::ops::Range;
use std::path::Path;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::Report;

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {e}")
}

/// The cumulative distribution of each run's GET latencies, on a log scale of ms.
pub(crate) fn latency_cdf(path: &Path, runs: &[(String, Vec<f64>)]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (720, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let all = runs.iter().flat_map(|(_, ms)| ms.iter().copied());
    let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    // From 1 ms: a GET its own node answers costs no simulated time at all.
    let (lo, hi) = if lo <= hi {
        (lo.max(1.0) * 0.8, hi.max(10.0) * 1.25)
    } else {
        (1.0, 1000.0)
    };
    let mut chart = ChartBuilder::on(&root)
        .caption("GET latency, cumulative", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..1f64)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("simulated ms (log)")
        .y_desc("share of GETs that succeeded")
        .draw()
        .map_err(plot_error)?;
    for (i, (name, ms)) in runs.iter().enumerate() {
        let mut sorted = ms.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        let points = sorted
            .iter()
            .enumerate()
            .map(|(rank, &v)| (v.max(lo), (rank + 1) as f64 / n));
        let style = ShapeStyle::from(&COLORS[i % COLORS.len()]).stroke_width(2);
        chart
            .draw_series(LineSeries::new(points, style))
            .map_err(plot_error)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present()
        .map_err(plot_error)
        .with_context(|| format!("writing {}", path.display()))
}

/// A named series of `(seconds, value)` points.
type Line = (&'static str, Vec<(f64, f64)>);

/// The network over time, four panels: GET success; hops and peers per GET; replicas
/// of the tracked keys; messages and connections per node.
pub(crate) fn over_time(path: &Path, report: &Report) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1040, 720)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let panels = root.split_evenly((2, 2));
    let s = &report.series;
    let line = |name: &'static str, f: &dyn Fn(&crate::samples::Sample) -> Option<f64>| -> Line {
        (name, s.iter().filter_map(|x| Some((x.t, f(x)?))).collect())
    };
    panel(
        &panels[0],
        "GET success",
        &[line("found", &|x| x.get_success)],
    )?;
    panel(
        &panels[1],
        "per GET lookup",
        &[
            line("hops", &|x| x.hops_per_get),
            line("peers asked", &|x| x.peers_per_get),
        ],
    )?;
    panel(
        &panels[2],
        "replicas of the tracked keys",
        &[
            line("fewest", &|x| Some(x.replicas_min as f64)),
            line("mean", &|x| Some(x.replicas_mean)),
        ],
    )?;
    panel(
        &panels[3],
        "per node",
        &[
            line("messages per minute", &|x| {
                Some(x.messages_per_node_per_min)
            }),
            line("connections", &|x| Some(x.connections_per_node)),
        ],
    )?;
    root.present()
        .map_err(plot_error)
        .with_context(|| format!("writing {}", path.display()))
}

/// The range `values` span, padded, never empty.
fn span(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return 0.0..1.0;
    }
    let lo = lo.min(0.0);
    let pad = ((hi - lo) * 0.1).max(0.01);
    lo..hi + pad
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    lines: &[Line],
) -> anyhow::Result<()> {
    let xs = span(lines.iter().flat_map(|(_, p)| p.iter().map(|&(t, _)| t)));
    let ys = span(lines.iter().flat_map(|(_, p)| p.iter().map(|&(_, v)| v)));
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(32)
        .y_label_area_size(48)
        .build_cartesian_2d(xs, ys)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("simulated s into the workload")
        .draw()
        .map_err(plot_error)?;
    for (i, (name, points)) in lines.iter().enumerate() {
        let style = ShapeStyle::from(&COLORS[i % COLORS.len()]).stroke_width(2);
        chart
            .draw_series(LineSeries::new(points.clone(), style))
            .map_err(plot_error)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)
}
