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

use crate::{Error, Result, Run, Status, column};
use ebda_records::{read_energies, read_metrics};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod draw;
mod figures;

use draw::*;
use figures::*;

/// One line of a panel: mean over runs, with a band when several.
#[derive(Clone, Debug)]
pub(super) struct Line {
    pub(super) label: String,
    pub(super) color: RGBColor,
    pub(super) dashed: bool,
    /// (x, mean, std over runs)
    pub(super) points: Vec<(f64, f64, f64)>,
}

#[derive(Clone, Debug)]
pub(super) enum Panel {
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
pub(super) struct Figure {
    pub(super) title: String,
    pub(super) panels: Vec<Panel>,
    pub(super) cols: usize,
    /// A legend even for a single line (across runs it names the method).
    pub(super) legend_always: bool,
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

/// One series of [`line_chart`]: a label and its `(x, y)` points.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Writes one panel of lines as `dir/stem.png` and `dir/stem.svg`, in the
/// style of the run figures (for programs outside `ebda train`, such as the
/// critic crate's examples); returns the files.
pub fn line_chart(
    dir: &Path,
    stem: &str,
    title: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<Vec<PathBuf>> {
    create_dir(dir)?;
    let lines = series
        .iter()
        .enumerate()
        .map(|(i, s)| Line {
            label: s.label.clone(),
            color: method_color(i),
            dashed: false,
            points: s.points.iter().map(|&(x, y)| (x, y, 0.0)).collect(),
        })
        .collect();
    let fig = Figure {
        title: title.to_string(),
        panels: vec![Panel::Lines {
            title: String::new(),
            y_desc: y_desc.to_string(),
            lines,
        }],
        cols: 1,
        legend_always: true,
    };
    write_figure(dir, stem, &fig)
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
    use ebda_records::MetricsLine;

    /// Panels without a finite point (a metric a run does not record, e.g.
    /// source accuracy without a source test set) draw with unit axes; they
    /// once hung plotters' tick search on a reversed range.
    #[test]
    fn empty_and_degenerate_panels_draw() {
        assert_eq!(draw::padded(f64::MAX, f64::MIN), (0.0, 1.0));
        assert_eq!(draw::padded(-f64::MAX, f64::MAX), (0.0, 1.0));
        assert_eq!(draw::padded(f64::NAN, 1.0), (0.0, 1.0));
        let (lo, hi) = draw::padded(2.0, 2.0);
        assert!(lo < 2.0 && hi > 2.0);
        let line = |points: Vec<(f64, f64, f64)>| Line {
            label: "x".into(),
            color: RGBColor(0, 0, 0),
            dashed: false,
            points,
        };
        let fig = Figure {
            title: "empty".into(),
            panels: vec![
                Panel::Lines {
                    title: "no points".into(),
                    y_desc: "y".into(),
                    lines: vec![line(vec![])],
                },
                Panel::Lines {
                    title: "NaN only".into(),
                    y_desc: "y".into(),
                    lines: vec![line(vec![(1.0, f64::NAN, f64::NAN)])],
                },
                Panel::Histogram {
                    title: "no finite values".into(),
                    sets: vec![("a".into(), RGBColor(1, 2, 3), vec![f32::NAN, f32::INFINITY])],
                },
                Panel::Histogram {
                    title: "nothing".into(),
                    sets: vec![],
                },
            ],
            cols: 2,
            legend_always: false,
        };
        let dir = std::env::temp_dir().join(format!("ebda-empty-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        draw::write_figure(&dir, "empty", &fig).unwrap();
        assert!(dir.join("empty.png").is_file());
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
