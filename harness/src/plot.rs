//! SVG plots of a sweep (plotters' SVG backend: no system fonts or image libraries needed).
//! Per workload: throughput against processes, p50 / p99 latency against processes, and the
//! bytes per entry of the maps that can say it, one line per backend at its median, with a
//! bar from the lowest to the highest repeat. The x
//! axis has a tick at each process count measured and nothing else; references (threads in
//! one process) and the null floor are dashed; the legend sits beside the data, never on it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::record::{ns, Record, Summary};

fn colour(backend: &str) -> RGBColor {
    match backend {
        "lockfree" => RGBColor(31, 119, 180),
        "spinlock" => RGBColor(255, 127, 14),
        "mutex" => RGBColor(214, 39, 40),
        "lmdb" => RGBColor(44, 160, 44),
        "dashmap" => RGBColor(127, 127, 127),
        "null" => RGBColor(0, 0, 0),
        "redis" => RGBColor(148, 103, 189),
        _ => RGBColor(188, 189, 34),
    }
}

fn label(s: &Summary) -> String {
    match s.role.as_str() {
        "reference" => format!("{} (threads, reference)", s.backend),
        "floor" => "null (harness floor)".to_owned(),
        "remote" => format!("{} (on a server: for several machines)", s.backend),
        _ => s.backend.clone(),
    }
}

/// backend -> its cells of one workload, completed ones only, by process count.
fn series<'a>(summaries: &'a [Summary], workload: &str) -> BTreeMap<&'a str, Vec<&'a Summary>> {
    let mut s: BTreeMap<&str, Vec<&Summary>> = BTreeMap::new();
    for c in summaries
        .iter()
        .filter(|c| c.workload == workload && c.is_ok())
    {
        s.entry(c.backend.as_str()).or_default().push(c);
    }
    s.values_mut().for_each(|v| v.sort_by_key(|c| c.procs));
    s
}

fn err(e: impl std::fmt::Debug) -> String {
    format!("plot: {e:?}")
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type Chart<'a, 'b, Y> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, Y>>;

/// What one panel shows of a cell: (low, middle, high) on the y axis.
type Pick = fn(&Summary) -> (f64, f64, f64);

/// Title, subtitle (machine and parameters), and the area left below them.
fn titled<'a>(root: &Area<'a>, title: &str, subtitle: &str) -> Result<Area<'a>, String> {
    root.fill(&WHITE).map_err(err)?;
    let area = root.titled(title, ("sans-serif", 20)).map_err(err)?;
    area.draw_text(
        subtitle,
        &("sans-serif", 13).into_font().color(&BLACK.mix(0.7)),
        (12, 0),
    )
    .map_err(err)?;
    Ok(area.margin(18, 0, 0, 0))
}

/// Draws one panel: a line per backend at the middle value, a bar from low to high.
fn panel<Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, '_, Y>,
    procs: &[usize],
    s: &BTreeMap<&str, Vec<&Summary>>,
    pick: Pick,
) -> Result<(), String> {
    let x = |p: usize| procs.iter().position(|&q| q == p).unwrap_or(0) as f64;
    for (b, cells) in s {
        let c = colour(b);
        let pts: Vec<(f64, f64)> = cells.iter().map(|s| (x(s.procs), pick(s).1)).collect();
        if cells[0].role == "candidate" {
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(err)?;
        } else {
            chart
                .draw_series(DashedLineSeries::new(pts.clone(), 6, 4, c.stroke_width(2)))
                .map_err(err)?;
        }
        chart
            .draw_series(cells.iter().map(|s| {
                let (lo, mid, hi) = pick(s);
                ErrorBar::new_vertical(x(s.procs), lo, mid, hi, c.stroke_width(1), 8)
            }))
            .map_err(err)?;
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))
            .map_err(err)?;
    }
    Ok(())
}

/// Process counts as tick labels under the x positions 0, 1, 2, ...
fn x_ticks<Y: Ranged<ValueType = f64>>(
    chart: &Chart<'_, '_, Y>,
    area: &Area<'_>,
    procs: &[usize],
    y_min: f64,
) -> Result<(), String> {
    let font =
        TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    let (ox, oy) = area.get_base_pixel();
    for (i, p) in procs.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64, y_min));
        area.draw_text(&p.to_string(), &font, (px - ox, py - oy + 8))
            .map_err(err)?;
    }
    Ok(())
}

/// The legend, in its own area to the right of the charts, with `notes` below it.
fn legend(
    area: &Area<'_>,
    s: &BTreeMap<&str, Vec<&Summary>>,
    notes: &[String],
) -> Result<(), String> {
    let font = TextStyle::from(("sans-serif", 14).into_font());
    for (i, (b, cells)) in s.iter().enumerate() {
        let (y, c) = (60 + 24 * i as i32, colour(b));
        let style = c.stroke_width(2);
        if cells[0].role == "candidate" {
            area.draw(&PathElement::new([(0, y), (28, y)], style))
                .map_err(err)?;
        } else {
            for x0 in [0, 12, 24] {
                area.draw(&PathElement::new([(x0, y), (x0 + 6, y)], style))
                    .map_err(err)?;
            }
        }
        area.draw_text(&label(cells[0]), &font, (36, y - 8))
            .map_err(err)?;
    }
    let note = ("sans-serif", 12).into_font().color(&BLACK.mix(0.6));
    let y = 72 + 24 * s.len() as i32;
    let lines = ["line: median of repeats", "bar: lowest to highest repeat"];
    let notes = notes.iter().map(String::as_str);
    for (i, text) in lines.into_iter().chain(notes).enumerate() {
        area.draw_text(text, &note, (0, y + 16 * i as i32))
            .map_err(err)?;
    }
    Ok(())
}

/// Draws every plot for `summaries` into `dir`; `rows` give the machine and parameters for
/// the subtitles. Returns the files written.
pub fn draw_all(
    summaries: &[Summary],
    rows: &[Record],
    dir: &Path,
) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let mut workloads: Vec<&str> = summaries.iter().map(|r| r.workload.as_str()).collect();
    workloads.sort();
    workloads.dedup();
    let subtitle = rows.first().map_or_else(String::new, |r| {
        format!("{}; {}; commit {}", r.machine, r.parameters(), r.commit)
    });
    let mut files = Vec::new();
    for w in workloads {
        let s = series(summaries, w);
        if s.is_empty() {
            continue;
        }
        let mut procs: Vec<usize> = s.values().flatten().map(|c| c.procs).collect();
        procs.sort_unstable();
        procs.dedup();
        let x_range = -0.5..procs.len() as f64 - 0.5;

        let path = dir.join(format!("throughput-{w}.svg"));
        {
            // The floor runs at ~100 M ops/s per worker and would flatten every map's line:
            // it is named in a note instead (the latency plots show it on their log axis).
            let mut s = s.clone();
            let floor = s.remove("null").map(|cells| {
                let ns = cells
                    .iter()
                    .map(|c| c.median_ns_per_op)
                    .fold(f64::MAX, f64::min);
                vec![
                    format!("harness floor (null): {ns:.1} ns/op,"),
                    "off this scale".to_owned(),
                ]
            });
            let root = SVGBackend::new(&path, (1000, 560)).into_drawing_area();
            let area = titled(
                &root,
                &format!("{w}: throughput, all processes together"),
                &subtitle,
            )?;
            let (chart_area, legend_area) = area.split_horizontally(730);
            let max = s
                .values()
                .flatten()
                .map(|c| c.max_ops_per_sec)
                .fold(0.0, f64::max)
                / 1e6;
            let mut chart = ChartBuilder::on(&chart_area)
                .margin(12)
                .x_label_area_size(44)
                .y_label_area_size(64)
                .build_cartesian_2d(x_range.clone(), 0f64..(max * 1.1).max(0.001))
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_labels(0)
                .disable_x_mesh()
                .x_desc("processes (threads for references and the floor)")
                .y_desc("M ops/s")
                .draw()
                .map_err(err)?;
            panel(&mut chart, &procs, &s, |c| {
                (
                    c.min_ops_per_sec / 1e6,
                    c.median_ops_per_sec / 1e6,
                    c.max_ops_per_sec / 1e6,
                )
            })?;
            x_ticks(&chart, &chart_area, &procs, 0.0)?;
            legend(&legend_area, &s, &floor.unwrap_or_default())?;
            root.present().map_err(err)?;
        }
        files.push(path);

        let path = dir.join(format!("latency-{w}.svg"));
        {
            let root = SVGBackend::new(&path, (1200, 520)).into_drawing_area();
            let area = titled(
                &root,
                &format!("{w}: latency of one operation (sampled)"),
                &subtitle,
            )?;
            let (charts, legend_area) = area.split_horizontally(930);
            let max_ns = s
                .values()
                .flatten()
                .map(|c| c.max_p99_ns)
                .fold(10.0, f64::max);
            let min_ns = s
                .values()
                .flatten()
                .map(|c| c.min_p50_ns)
                .fold(f64::MAX, f64::min);
            let y_range = ((min_ns / 2.0).max(1.0)..max_ns * 2.0).log_scale();
            let picks: [(&str, Pick); 2] = [
                ("p50", |c| (c.min_p50_ns, c.median_p50_ns, c.max_p50_ns)),
                ("p99", |c| (c.min_p99_ns, c.median_p99_ns, c.max_p99_ns)),
            ];
            for (sub, (name, pick)) in charts.split_evenly((1, 2)).iter().zip(picks) {
                let mut chart = ChartBuilder::on(sub)
                    .caption(format!("{name} (median of repeats)"), ("sans-serif", 15))
                    .margin(12)
                    .x_label_area_size(44)
                    .y_label_area_size(70)
                    .build_cartesian_2d(x_range.clone(), y_range.clone())
                    .map_err(err)?;
                chart
                    .configure_mesh()
                    .x_labels(0)
                    .disable_x_mesh()
                    .y_label_formatter(&|v| ns(*v))
                    .x_desc("processes")
                    .draw()
                    .map_err(err)?;
                panel(&mut chart, &procs, &s, pick)?;
                x_ticks(&chart, sub, &procs, (min_ns / 2.0).max(1.0))?;
            }
            legend(&legend_area, &s, &[])?;
            root.present().map_err(err)?;
        }
        files.push(path);

        let path = dir.join(format!("memory-{w}.svg"));
        let payload = rows
            .first()
            .map(|r| r.key_size as f64 + r.value_size.mean());
        if memory(&path, w, &s, &procs, &subtitle, payload)? {
            files.push(path);
        }
    }
    Ok(files)
}

/// The memory plot of workload `w`: bytes per entry at the end of each run, for the targets
/// that can say it (ours, LMDB, Redis), beside the key and value bytes the entries hold
/// (`payload`, dotted). `false`, and nothing drawn, when none could.
fn memory(
    path: &Path,
    w: &str,
    s: &BTreeMap<&str, Vec<&Summary>>,
    procs: &[usize],
    subtitle: &str,
    payload: Option<f64>,
) -> Result<bool, String> {
    let held: BTreeMap<&str, Vec<&Summary>> = s
        .iter()
        .map(|(b, cells)| {
            let c: Vec<&Summary> = cells
                .iter()
                .copied()
                .filter(|c| c.median_bytes_per_entry.is_some())
                .collect();
            (*b, c)
        })
        .filter(|(_, c)| !c.is_empty())
        .collect();
    if held.is_empty() {
        return Ok(false);
    }
    let root = SVGBackend::new(path, (1000, 560)).into_drawing_area();
    let area = titled(
        &root,
        &format!("{w}: memory per entry at the end of the run"),
        subtitle,
    )?;
    let (chart_area, legend_area) = area.split_horizontally(730);
    let top = held
        .values()
        .flatten()
        .filter_map(|c| c.max_bytes_per_entry)
        .chain(payload)
        .fold(0.0, f64::max);
    let x_range = -0.5..procs.len() as f64 - 0.5;
    let mut chart = ChartBuilder::on(&chart_area)
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range.clone(), 0f64..(top * 1.15).max(1.0))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(0)
        .disable_x_mesh()
        .x_desc("processes")
        .y_desc("bytes per entry")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(err)?;
    let mut notes = vec![
        "ours: the pages of the map's files".to_owned(),
        "lmdb: its pages in use".to_owned(),
        "redis: MEMORY USAGE of its hashes".to_owned(),
    ];
    if let Some(p) = payload {
        chart
            .draw_series(DashedLineSeries::new(
                [(x_range.start, p), (x_range.end, p)],
                2,
                4,
                BLACK.mix(0.5).stroke_width(1),
            ))
            .map_err(err)?;
        notes.push(format!("dotted: key + value, {p:.0} B (mean)"));
    }
    panel(&mut chart, procs, &held, |c| {
        let b = |x: Option<f64>| x.unwrap_or(f64::NAN);
        (
            b(c.min_bytes_per_entry),
            b(c.median_bytes_per_entry),
            b(c.max_bytes_per_entry),
        )
    })?;
    x_ticks(&chart, &chart_area, procs, 0.0)?;
    legend(&legend_area, &held, &notes)?;
    root.present().map_err(err)?;
    Ok(true)
}
