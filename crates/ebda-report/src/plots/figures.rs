//! Which figures a set of runs gets: curves chosen by typed fields of the
//! metrics lines, grouped by method, mean ± std over seeds.

use super::*;
use crate::mean_std;
use ebda_records::{EnergySnapshot, MetricsLine};

/// A scalar of a metrics line, if the line has it.
pub(super) type Field = Box<dyn Fn(&MetricsLine) -> Option<f64>>;

pub(super) fn field(f: fn(&MetricsLine) -> Option<f64>) -> Field {
    Box::new(f)
}

/// A step statistic of the line's `train` map (names are the method's own).
pub(super) fn train_field(name: String) -> Field {
    Box::new(move |l| l.train.get(&name).copied())
}

pub(super) const SERIES_COLORS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// The colour of the `index`-th method in a report's method order (the
/// first, usually the baseline, in grey), so one order gives one colouring.
pub(super) fn method_color(index: usize) -> RGBColor {
    match index {
        0 => RGBColor(0x55, 0x55, 0x55),
        i => SERIES_COLORS[(i - 1) % SERIES_COLORS.len()],
    }
}

pub(super) const SOURCE_COLOR: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
pub(super) const TARGET_COLOR: RGBColor = RGBColor(0xd6, 0x27, 0x28);

/// Runs of one method within a task column, with their metrics lines.
pub(super) struct Group {
    pub(super) method: String,
    /// Position of the method in the report's method order (its colour).
    pub(super) index: usize,
    pub(super) curves: Vec<Vec<MetricsLine>>,
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
    pub(super) fn stat(&self, key: &Field, scale: f64) -> Vec<(f64, f64, f64)> {
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

pub(super) fn lines_for(
    groups: &[Group],
    key: &Field,
    scale: f64,
    dashed: bool,
    suffix: &str,
) -> Vec<Line> {
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
pub(super) fn figures(name: &str, groups: &[Group], legend_always: bool) -> Vec<(String, Figure)> {
    let mut out = Vec::new();
    let mut acc = vec![Panel::Lines {
        title: "target test accuracy".into(),
        y_desc: "accuracy (%)".into(),
        lines: lines_for(groups, &field(|l| Some(l.target_acc)), 100.0, false, ""),
    }];
    // Runs without a source test set (data.source_test null) have no second panel.
    let source = lines_for(groups, &field(|l| l.source_acc), 100.0, false, "");
    if !source.is_empty() {
        acc.push(Panel::Lines {
            title: "source test accuracy".into(),
            y_desc: "accuracy (%)".into(),
            lines: source,
        });
    }
    let cols = acc.len();
    out.push((
        "accuracy".to_string(),
        Figure {
            title: format!("{name}: accuracy (mean ± std over seeds)"),
            panels: acc,
            cols,
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

pub(super) fn energy_figure(name: &str, snaps: &[EnergySnapshot]) -> Option<Figure> {
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
