//! Figures from run directories, as PNG and SVG.
//!
//! For one run (written into its `plots/` when training ends) and across runs
//! (`ebda report --plots DIR`, one set of figures per task column):
//! - `accuracy`: target and source test accuracy vs iteration, one line per
//!   method, the mean over seeds with a band of ± one sample std;
//! - `losses`: every training statistic of `metrics.jsonl`'s `train` object,
//!   one panel each;
//! - `energy`: the energy gap (mean target − mean source critic energy on
//!   the test sets) and both means, for methods with a critic;
//! - `proxy-a-distance`: the alignment diagnostic of every method;
//! - `energy-hist`: per-sample source vs target critic energies at the first
//!   and the last evaluation (runs whose `energies/` holds snapshots).
//!
//! Text is set in DejaVu Sans, compiled in, so figures look the same on
//! every machine and need no system fonts.

use crate::{Error, Result, Run, Status, column, mean_std};
use ebda_records::{EnergySnapshot, MetricsLine, read_energies, read_metrics};
use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// A scalar of a metrics line, if the line has it.
type Field = Box<dyn Fn(&MetricsLine) -> Option<f64>>;

fn field(f: fn(&MetricsLine) -> Option<f64>) -> Field {
    Box::new(f)
}

/// A step statistic of the line's `train` map (names are the method's own).
fn train_field(name: String) -> Field {
    Box::new(move |l| l.train.get(&name).copied())
}

/// One line of a panel: mean over runs, with a band when several.
#[derive(Clone, Debug)]
struct Line {
    label: String,
    color: RGBColor,
    dashed: bool,
    /// (x, mean, std over runs)
    points: Vec<(f64, f64, f64)>,
}

#[derive(Clone, Debug)]
enum Panel {
    Lines {
        title: String,
        y_desc: String,
        lines: Vec<Line>,
    },
    Histogram {
        title: String,
        /// (label, color, values)
        sets: Vec<(String, RGBColor, Vec<f32>)>,
    },
}

#[derive(Clone, Debug)]
struct Figure {
    title: String,
    panels: Vec<Panel>,
    cols: usize,
    /// A legend even for a single line (across runs it names the method).
    legend_always: bool,
}

const SERIES_COLORS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// The colour of the `index`-th method in a report's method order (the
/// first, usually the baseline, in grey), so one order gives one colouring.
fn method_color(index: usize) -> RGBColor {
    match index {
        0 => RGBColor(0x55, 0x55, 0x55),
        i => SERIES_COLORS[(i - 1) % SERIES_COLORS.len()],
    }
}

const SOURCE_COLOR: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const TARGET_COLOR: RGBColor = RGBColor(0xd6, 0x27, 0x28);

/// Runs of one method within a task column, with their metrics lines.
struct Group {
    method: String,
    /// Position of the method in the report's method order (its colour).
    index: usize,
    curves: Vec<Vec<MetricsLine>>,
}

impl Group {
    fn label(&self) -> String {
        if self.curves.len() > 1 {
            format!("{} (n={})", self.method, self.curves.len())
        } else {
            self.method.clone()
        }
    }

    /// Mean and std over runs of `key` at each iteration every run reached.
    fn stat(&self, key: &Field, scale: f64) -> Vec<(f64, f64, f64)> {
        let Some(first) = self.curves.first() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for it in first.iter().map(|l| l.iteration) {
            let mut vals = Vec::new();
            for c in &self.curves {
                let Some(line) = c.iter().find(|l| l.iteration == it) else {
                    vals.clear();
                    break;
                };
                match key(line) {
                    Some(x) if x.is_finite() => vals.push(x * scale),
                    _ => {
                        vals.clear();
                        break;
                    }
                }
            }
            if let Some((m, s)) = mean_std(&vals) {
                out.push((it as f64, m, s));
            }
        }
        out
    }
}

fn lines_for(groups: &[Group], key: &Field, scale: f64, dashed: bool, suffix: &str) -> Vec<Line> {
    groups
        .iter()
        .map(|g| Line {
            label: format!("{}{suffix}", g.label()),
            color: method_color(g.index),
            dashed,
            points: g.stat(key, scale),
        })
        .filter(|l| !l.points.is_empty())
        .collect()
}

/// The figures for one task column's groups; `name` heads every title.
fn figures(name: &str, groups: &[Group], legend_always: bool) -> Vec<(String, Figure)> {
    let mut out = Vec::new();
    let acc = vec![
        Panel::Lines {
            title: "target test accuracy".into(),
            y_desc: "accuracy (%)".into(),
            lines: lines_for(groups, &field(|l| Some(l.target_acc)), 100.0, false, ""),
        },
        Panel::Lines {
            title: "source test accuracy".into(),
            y_desc: "accuracy (%)".into(),
            lines: lines_for(groups, &field(|l| l.source_acc), 100.0, false, ""),
        },
    ];
    out.push((
        "accuracy".to_string(),
        Figure {
            title: format!("{name}: accuracy (mean ± std over seeds)"),
            panels: acc,
            cols: 2,
            legend_always,
        },
    ));

    let mut train_keys: Vec<String> = groups
        .iter()
        .flat_map(|g| g.curves.iter().flatten())
        .flat_map(|l| l.train.keys())
        .cloned()
        .collect();
    train_keys.sort();
    train_keys.dedup();
    let losses: Vec<Panel> = train_keys
        .iter()
        .map(|k| Panel::Lines {
            title: k.replace('_', " "),
            y_desc: String::new(),
            lines: lines_for(groups, &train_field(k.clone()), 1.0, false, ""),
        })
        .filter(|p| matches!(p, Panel::Lines { lines, .. } if !lines.is_empty()))
        .collect();
    if !losses.is_empty() {
        out.push((
            "losses".to_string(),
            Figure {
                title: format!("{name}: training statistics (mean over each evaluation interval)"),
                cols: losses.len().clamp(1, 4),
                panels: losses,
                legend_always,
            },
        ));
    }

    let critic = |f: fn(&ebda_records::CriticEval) -> Option<f64>| -> Field {
        Box::new(move |l| l.critic.as_ref().and_then(f))
    };
    let gap = lines_for(groups, &critic(|c| c.energy_gap), 1.0, false, "");
    if !gap.is_empty() {
        let mut means = lines_for(
            groups,
            &critic(|c| Some(c.target_energy)),
            1.0,
            false,
            " target",
        );
        means.extend(lines_for(
            groups,
            &critic(|c| c.source_energy),
            1.0,
            true,
            " source",
        ));
        let margin = lines_for(groups, &critic(|c| Some(c.margin)), 1.0, true, " margin m");
        let mut gap_lines = gap;
        gap_lines.extend(margin.into_iter().map(|mut l| {
            l.color = RGBColor(0x99, 0x99, 0x99);
            l
        }));
        out.push((
            "energy".to_string(),
            Figure {
                title: format!("{name}: critic energy on the test sets"),
                panels: vec![
                    Panel::Lines {
                        title: "energy gap (mean target − mean source)".into(),
                        y_desc: "energy".into(),
                        lines: gap_lines,
                    },
                    Panel::Lines {
                        title: "mean energy (solid target, dashed source)".into(),
                        y_desc: "energy".into(),
                        lines: means,
                    },
                ],
                cols: 2,
                legend_always,
            },
        ));
    }

    let pad = lines_for(groups, &field(|l| l.proxy_a_distance), 1.0, false, "");
    if !pad.is_empty() {
        out.push((
            "proxy-a-distance".to_string(),
            Figure {
                title: format!("{name}: proxy A-distance between source and target features"),
                panels: vec![Panel::Lines {
                    title: "2(1 − 2ε) of a linear domain classifier (0 aligned, 2 separable)"
                        .into(),
                    y_desc: "proxy A-distance".into(),
                    lines: pad,
                }],
                cols: 1,
                legend_always,
            },
        ));
    }
    out
}

fn energy_figure(name: &str, snaps: &[EnergySnapshot]) -> Option<Figure> {
    let first = snaps.first()?;
    let last = snaps.last()?;
    let mut chosen = vec![first];
    if last.iteration != first.iteration {
        chosen.push(last);
    }
    let panels = chosen
        .iter()
        .map(|s| Panel::Histogram {
            title: format!("iteration {}", s.iteration),
            sets: vec![
                (
                    format!("source test (n={})", s.source.len()),
                    SOURCE_COLOR,
                    s.source.clone(),
                ),
                (
                    format!("target test (n={})", s.target.len()),
                    TARGET_COLOR,
                    s.target.clone(),
                ),
            ],
        })
        .collect::<Vec<_>>();
    Some(Figure {
        title: format!("{name}: per-sample critic energy, first and last evaluation"),
        cols: panels.len(),
        panels,
        legend_always: true,
    })
}

/// Makes the compiled-in font the one plotters draws "sans-serif" with.
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (style, bytes) in [
            (FontStyle::Normal, dejavu::sans::regular()),
            (FontStyle::Bold, dejavu::sans::bold()),
        ] {
            // The font is compiled in and known to parse (tested).
            plotters::style::register_font("sans-serif", style, bytes)
                .unwrap_or_else(|_| unreachable!("DejaVu Sans parses"));
        }
    });
}

const PANEL_W: u32 = 560;
const PANEL_H: u32 = 380;
const TITLE_H: u32 = 40;
const MIN_W: u32 = 840;

fn size_of(fig: &Figure) -> (u32, u32) {
    let cols = fig.cols.max(1);
    let rows = fig.panels.len().div_ceil(cols).max(1);
    // One panel gets the width of a long title.
    (
        (PANEL_W * cols as u32).max(MIN_W),
        TITLE_H + PANEL_H * rows as u32,
    )
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    fig: &Figure,
) -> std::result::Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let body = root
        .titled(
            &fig.title,
            ("sans-serif", 22).into_font().style(FontStyle::Bold),
        )
        .map_err(e)?;
    let cols = fig.cols.max(1);
    let rows = fig.panels.len().div_ceil(cols).max(1);
    let areas = body.split_evenly((rows, cols));
    for (panel, area) in fig.panels.iter().zip(areas) {
        match panel {
            Panel::Lines {
                title,
                y_desc,
                lines,
            } => draw_lines(&area, title, y_desc, lines, fig.legend_always).map_err(e)?,
            Panel::Histogram { title, sets } => draw_histogram(&area, title, sets).map_err(e)?,
        }
    }
    root.present().map_err(e)
}

fn padded(lo: f64, hi: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    if span <= f64::EPSILON * hi.abs().max(1.0) {
        let d = hi.abs().max(1.0) * 0.05;
        return (lo - d, hi + d);
    }
    (lo - 0.05 * span, hi + 0.05 * span)
}

fn draw_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    lines: &[Line],
    legend_always: bool,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let pts = lines.iter().flat_map(|l| l.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, m, s) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(m - s);
        y1 = y1.max(m + s);
    }
    if x0 > x1 {
        (x0, x1) = (0.0, 1.0);
    }
    if x0 == x1 {
        x1 = x0 + 1.0;
    }
    let (y0, y1) = padded(y0, y1);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(38)
        .y_label_area_size(62)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc("iteration")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc(y_desc)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .light_line_style(RGBColor(0xf3, 0xf3, 0xf3))
        .draw()?;
    for line in lines {
        if line.points.len() > 1 && line.points.iter().any(|p| p.2 > 0.0) {
            let mut band: Vec<(f64, f64)> = line.points.iter().map(|p| (p.0, p.1 + p.2)).collect();
            band.extend(line.points.iter().rev().map(|p| (p.0, p.1 - p.2)));
            chart.draw_series(std::iter::once(Polygon::new(
                band,
                line.color.mix(0.18).filled(),
            )))?;
        }
        let xy: Vec<(f64, f64)> = line.points.iter().map(|p| (p.0, p.1)).collect();
        let style = line.color.stroke_width(2);
        let color = line.color;
        let dashed = line.dashed;
        let legend = move |(x, y): (i32, i32)| {
            PathElement::new(
                vec![(x, y), (x + if dashed { 8 } else { 18 }, y)],
                color.stroke_width(2),
            )
        };
        if line.dashed {
            chart
                .draw_series(DashedLineSeries::new(xy, 6, 4, style))?
                .label(&line.label)
                .legend(legend);
        } else {
            chart
                .draw_series(LineSeries::new(xy, style))?
                .label(&line.label)
                .legend(legend);
        }
        if line.points.len() == 1 {
            let (x, y, _) = line.points[0];
            chart.draw_series(std::iter::once(Circle::new((x, y), 4, color.filled())))?;
        }
    }
    if lines.len() > 1 || (legend_always && !lines.is_empty()) {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 13))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(0xbb, 0xbb, 0xbb))
            .draw()?;
    }
    Ok(())
}

const BINS: usize = 40;

fn draw_histogram<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    sets: &[(String, RGBColor, Vec<f32>)],
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    // Shared bins over the 0.5–99.5 percentile range of all values, so one
    // outlier cannot squash the picture; values outside land in the end bins.
    let mut all: Vec<f64> = sets
        .iter()
        .flat_map(|s| s.2.iter())
        .map(|&v| f64::from(v))
        .filter(|v| v.is_finite())
        .collect();
    all.sort_by(f64::total_cmp);
    let q = |p: f64| all[((all.len() - 1) as f64 * p).round() as usize];
    let (lo, hi) = if all.is_empty() {
        (0.0, 1.0)
    } else {
        (q(0.005), q(0.995))
    };
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, lo + 0.5)
    };
    let width = (hi - lo) / BINS as f64;
    let densities: Vec<Vec<f64>> = sets
        .iter()
        .map(|(_, _, v)| {
            let mut counts = vec![0usize; BINS];
            let mut n = 0usize;
            for &x in v {
                let x = f64::from(x);
                if !x.is_finite() {
                    continue;
                }
                let b = (((x - lo) / width).floor().max(0.0) as usize).min(BINS - 1);
                counts[b] += 1;
                n += 1;
            }
            counts
                .iter()
                .map(|&c| c as f64 / (n.max(1) as f64 * width))
                .collect()
        })
        .collect();
    let top = densities
        .iter()
        .flatten()
        .copied()
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(38)
        .y_label_area_size(62)
        .build_cartesian_2d(lo..hi, 0.0..top * 1.08)?;
    chart
        .configure_mesh()
        .x_desc("critic energy (outer 0.5 % of each side in the end bins)")
        .y_desc("density")
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .light_line_style(RGBColor(0xf3, 0xf3, 0xf3))
        .draw()?;
    for ((label, color, values), dens) in sets.iter().zip(&densities) {
        let color = *color;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len().max(1) as f64;
        chart
            .draw_series(dens.iter().enumerate().map(|(b, &d)| {
                let x0 = lo + b as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, d)], color.mix(0.35).filled())
            }))?
            .label(format!("{label}, mean {mean:.3}"))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
        // Outline of the histogram, so overlapping bars stay readable.
        let mut outline = vec![(lo, 0.0)];
        for (b, &d) in dens.iter().enumerate() {
            let x0 = lo + b as f64 * width;
            outline.push((x0, d));
            outline.push((x0 + width, d));
        }
        outline.push((hi, 0.0));
        chart.draw_series(LineSeries::new(outline, color.stroke_width(2)))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0xbb, 0xbb, 0xbb))
        .draw()?;
    Ok(())
}

/// Writes `fig` as `dir/stem.png` and `dir/stem.svg`.
fn write_figure(dir: &Path, stem: &str, fig: &Figure) -> Result<Vec<PathBuf>> {
    register_font();
    let (w, h) = size_of(fig);
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    let fail = |path: &Path, reason: String| Error::Format {
        path: path.to_path_buf(),
        reason: format!("cannot draw the figure: {reason}"),
    };
    let mut buf = vec![0u8; (w * h * 3) as usize];
    draw(
        BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area(),
        fig,
    )
    .map_err(|r| fail(&png, r))?;
    let file = std::fs::File::create(&png).map_err(|source| Error::Io {
        path: png.clone(),
        source,
    })?;
    // Best compression: figures are few, and small files are kind to repositories.
    image::codecs::png::PngEncoder::new_with_quality(
        std::io::BufWriter::new(file),
        image::codecs::png::CompressionType::Best,
        image::codecs::png::FilterType::Adaptive,
    )
    .write_image(&buf, w, h, image::ExtendedColorType::Rgb8)
    .map_err(|e| fail(&png, e.to_string()))?;
    let mut text = String::new();
    draw(
        SVGBackend::with_string(&mut text, (w, h)).into_drawing_area(),
        fig,
    )
    .map_err(|r| fail(&svg, r))?;
    std::fs::write(&svg, text).map_err(|source| Error::Io {
        path: svg.clone(),
        source,
    })?;
    Ok(vec![png, svg])
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// A name safe for a file: letters, digits, `-` and `_`.
fn file_stem(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    s.trim_matches('-').to_string()
}

/// The colour index of `method`: its place in `order`, else after it in the
/// alphabetical order of the `others`; so a method keeps its colour in every
/// figure made with one order, whichever methods a figure shows.
fn method_rank(method: &str, order: &[String], others: &[String]) -> usize {
    order.iter().position(|m| m == method).unwrap_or_else(|| {
        let extra = others.iter().filter(|m| !order.contains(m));
        order.len() + extra.take_while(|m| *m != method).count()
    })
}

/// Writes the figures of one run into `run_dir/plots/`, its method coloured
/// by its place in `order` (see [`report_plots`]); returns the files.
pub fn run_plots(run_dir: &Path, order: &[String]) -> Result<Vec<PathBuf>> {
    let run = crate::read_run(run_dir)?;
    let curves = read_metrics(&run_dir.join("metrics.jsonl"))?;
    let out = run_dir.join("plots");
    create_dir(&out)?;
    let name = format!("{} {} seed {}", run.task, run.method, run.seed);
    let groups = [Group {
        index: method_rank(&run.method, order, std::slice::from_ref(&run.method)),
        method: run.method.clone(),
        curves: vec![curves],
    }];
    let mut files = Vec::new();
    for (stem, fig) in figures(&name, &groups, false) {
        files.extend(write_figure(&out, &stem, &fig)?);
    }
    if let Some(fig) = energy_figure(&name, &read_energies(run_dir)?) {
        files.extend(write_figure(&out, "energy-hist", &fig)?);
    }
    Ok(files)
}

/// Writes figures across `runs` into `out`: per task column, the curves of
/// every method (complete runs only, mean ± std over seeds), and an energy
/// histogram figure per run that has snapshots; methods in `order` first
/// (see [`crate::method_order`]), which also fixes their colours. Returns the
/// files.
pub fn report_plots(runs: &[Run], out: &Path, order: &[String]) -> Result<Vec<PathBuf>> {
    create_dir(out)?;
    let mut methods: Vec<String> = runs.iter().map(|r| r.method.clone()).collect();
    crate::method_order(&mut methods, order);
    let mut by_task: BTreeMap<String, BTreeMap<(usize, String), Vec<&Run>>> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.status == Status::Complete) {
        by_task
            .entry(column(r, runs))
            .or_default()
            .entry((method_rank(&r.method, order, &methods), r.method.clone()))
            .or_default()
            .push(r);
    }
    let mut files = Vec::new();
    for (task, methods) in &by_task {
        let mut groups = Vec::new();
        for ((index, method), rs) in methods {
            let curves = rs
                .iter()
                .map(|r| read_metrics(&r.dir.join("metrics.jsonl")))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            groups.push(Group {
                method: method.clone(),
                index: *index,
                curves,
            });
            for r in rs {
                let name = format!("{task} {} seed {}", r.method, r.seed);
                if let Some(fig) = energy_figure(&name, &read_energies(&r.dir)?) {
                    let stem =
                        file_stem(&format!("{task}-{}-seed{}-energy-hist", r.method, r.seed));
                    files.extend(write_figure(out, &stem, &fig)?);
                }
            }
        }
        for (stem, fig) in figures(task, &groups, true) {
            files.extend(write_figure(
                out,
                &file_stem(&format!("{task}-{stem}")),
                &fig,
            )?);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(file_stem("U2M @6000-accuracy"), "U2M-6000-accuracy");
        assert_eq!(file_stem("a/b c"), "a-b-c");
    }

    #[test]
    fn band_statistics_over_runs() {
        let mk = |vals: &[f64]| -> Vec<MetricsLine> {
            vals.iter()
                .zip([10, 20])
                .map(|(&target_acc, iteration)| MetricsLine {
                    iteration,
                    target_acc,
                    ..MetricsLine::default()
                })
                .collect()
        };
        let g = Group {
            method: "ebda".into(),
            index: 1,
            curves: vec![mk(&[0.5, 0.7]), mk(&[0.7, f64::NAN])],
        };
        // Iteration 20 is missing in one run: it is left out, not averaged
        // over the runs that have it.
        let s = g.stat(&field(|l| Some(l.target_acc)), 100.0);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].0, 10.0);
        assert!((s[0].1 - 60.0).abs() < 1e-9);
        assert!((s[0].2 - (200.0f64).sqrt()).abs() < 1e-9);
    }
}
