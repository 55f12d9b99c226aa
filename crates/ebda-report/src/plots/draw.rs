//! Drawing figures with plotters (PNG and SVG), text in the compiled-in
//! DejaVu Sans.

use super::*;
use crate::{Error, Result};
use image::ImageEncoder;
use plotters::coord::Shift;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// Makes the compiled-in font the one plotters draws "sans-serif" with.
pub(super) fn register_font() {
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

pub(super) const PANEL_W: u32 = 560;
pub(super) const PANEL_H: u32 = 380;
pub(super) const TITLE_H: u32 = 40;
pub(super) const MIN_W: u32 = 840;

pub(super) fn size_of(fig: &Figure) -> (u32, u32) {
    let cols = fig.cols.max(1);
    let rows = fig.panels.len().div_ceil(cols).max(1);
    // One panel gets the width of a long title.
    (
        (PANEL_W * cols as u32).max(MIN_W),
        TITLE_H + PANEL_H * rows as u32,
    )
}

pub(super) fn draw<DB: DrawingBackend>(
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

pub(super) fn padded(lo: f64, hi: f64) -> (f64, f64) {
    // No finite points (an empty panel leaves lo = MAX, hi = MIN), or a span
    // that overflows: a unit range. plotters' tick search never ends on a
    // reversed or infinite range.
    if !(lo.is_finite() && hi.is_finite() && lo <= hi && (hi - lo).is_finite()) {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    if span <= f64::EPSILON * hi.abs().max(1.0) {
        let d = hi.abs().max(1.0) * 0.05;
        return (lo - d, hi + d);
    }
    (lo - 0.05 * span, hi + 0.05 * span)
}

pub(super) fn draw_lines<DB: DrawingBackend>(
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

pub(super) const BINS: usize = 40;

pub(super) fn draw_histogram<DB: DrawingBackend>(
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
    let top = densities.iter().flatten().copied().fold(0.0f64, f64::max);
    // No finite values: an empty panel with a unit axis (a vanishing range
    // would hang plotters' tick search).
    let top = if top.is_finite() && top > 0.0 {
        top
    } else {
        1.0
    };
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
pub(super) fn write_figure(dir: &Path, stem: &str, fig: &Figure) -> Result<Vec<PathBuf>> {
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
