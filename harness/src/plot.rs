//! SVG plots of a sweep (plotters' SVG backend: no system fonts or image libraries needed).
//! Per workload: throughput against processes, and p50 / p99 latency against processes, one
//! line per backend.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::record::Record;

fn colour(backend: &str) -> RGBColor {
    match backend {
        "lockfree" => RGBColor(31, 119, 180),
        "spinlock" => RGBColor(255, 127, 14),
        "mutex" => RGBColor(214, 39, 40),
        "lmdb" => RGBColor(44, 160, 44),
        "dashmap" => RGBColor(127, 127, 127),
        _ => RGBColor(188, 189, 34),
    }
}

fn label(backend: &str) -> String {
    match backend {
        "dashmap" | "rwlock" => format!("{backend} (threads, reference)"),
        _ => backend.to_owned(),
    }
}

/// backend -> [(procs, row)] for one workload, successful rows only.
type Series<'a> = BTreeMap<&'a str, Vec<(usize, &'a Record)>>;

fn series<'a>(rows: &'a [Record], workload: &str) -> Series<'a> {
    let mut s: Series<'a> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.workload == workload && r.ops > 0) {
        s.entry(r.backend.as_str()).or_default().push((r.procs, r));
    }
    s.values_mut().for_each(|v| v.sort_by_key(|(p, _)| *p));
    s
}

/// Draws the legend of `chart` at `position`.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

fn err(e: impl std::fmt::Debug) -> String {
    format!("plot: {e:?}")
}

/// Draws every plot for `rows` into `dir`; returns the files written.
pub fn draw_all(rows: &[Record], dir: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let mut workloads: Vec<&str> = rows.iter().map(|r| r.workload.as_str()).collect();
    workloads.sort();
    workloads.dedup();
    let machine = rows.first().map_or("", |r| r.machine.as_str());
    let mut files = Vec::new();
    for w in workloads {
        let s = series(rows, w);
        if s.is_empty() {
            continue;
        }
        let max_procs = s.values().flatten().map(|(p, _)| *p).max().unwrap_or(1) as f64;
        let x_range = (0.8f64..max_procs * 1.25).log_scale();

        let path = dir.join(format!("throughput-{w}.svg"));
        {
            let root = SVGBackend::new(&path, (900, 560)).into_drawing_area();
            root.fill(&WHITE).map_err(err)?;
            let max_ops = s
                .values()
                .flatten()
                .map(|(_, r)| r.ops_per_sec)
                .fold(0.0, f64::max)
                / 1e6;
            let mut chart = ChartBuilder::on(&root)
                .caption(format!("{w}: throughput ({machine})"), ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(x_range.clone(), 0f64..(max_ops * 1.1).max(0.001))
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc("processes (threads for references)")
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_desc("M ops/s")
                .draw()
                .map_err(err)?;
            for (b, points) in &s {
                let c = colour(b);
                let pts: Vec<(f64, f64)> = points
                    .iter()
                    .map(|(p, r)| (*p as f64, r.ops_per_sec / 1e6))
                    .collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                    .map_err(err)?
                    .label(label(b))
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 18, y)], c.stroke_width(2))
                    });
                chart
                    .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))
                    .map_err(err)?;
            }
            legend(&mut chart, SeriesLabelPosition::LowerRight)?;
            root.present().map_err(err)?;
        }
        files.push(path);

        let path = dir.join(format!("latency-{w}.svg"));
        {
            let root = SVGBackend::new(&path, (1100, 500)).into_drawing_area();
            root.fill(&WHITE).map_err(err)?;
            let panels = root.split_evenly((1, 2));
            let max_ns = s
                .values()
                .flatten()
                .map(|(_, r)| r.p99_ns)
                .max()
                .unwrap_or(1) as f64;
            for (panel, (name, pick)) in panels.iter().zip([("p50", 0usize), ("p99", 1)]) {
                let mut chart = ChartBuilder::on(panel)
                    .caption(format!("{w}: {name} latency"), ("sans-serif", 16))
                    .margin(12)
                    .x_label_area_size(40)
                    .y_label_area_size(60)
                    .build_cartesian_2d(x_range.clone(), (10f64..max_ns * 2.0).log_scale())
                    .map_err(err)?;
                chart
                    .configure_mesh()
                    .x_desc("processes")
                    .x_label_formatter(&|x| format!("{x:.0}"))
                    .y_desc("ns")
                    .draw()
                    .map_err(err)?;
                for (b, points) in &s {
                    let c = colour(b);
                    let pts: Vec<(f64, f64)> = points
                        .iter()
                        .map(|(p, r)| {
                            (
                                *p as f64,
                                (if pick == 0 { r.p50_ns } else { r.p99_ns }).max(10) as f64,
                            )
                        })
                        .collect();
                    chart
                        .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                        .map_err(err)?
                        .label(label(b))
                        .legend(move |(x, y)| {
                            PathElement::new([(x, y), (x + 18, y)], c.stroke_width(2))
                        });
                }
                legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
            }
            root.present().map_err(err)?;
        }
        files.push(path);
    }
    Ok(files)
}
