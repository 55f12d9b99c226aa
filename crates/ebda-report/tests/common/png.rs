//! Checks on figure files: decoded PNG size, not blank, colours present.

use std::path::Path;

/// Decodes `path` and checks it is `w × h` (when given) and not blank: enough
/// ink, not all ink, and more than a handful of distinct colours.
pub fn check_png(path: &Path, size: Option<(u32, u32)>) -> image::RgbImage {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()))
        .to_rgb8();
    if let Some((w, h)) = size {
        assert_eq!(img.dimensions(), (w, h), "{}", path.display());
    }
    let total = img.pixels().len() as f64;
    let ink = img.pixels().filter(|p| p.0 != [255, 255, 255]).count() as f64;
    assert!(
        ink / total > 0.02 && ink / total < 0.8,
        "{}: {:.1} % of the pixels are not white",
        path.display(),
        100.0 * ink / total
    );
    let colours: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    assert!(
        colours.len() > 20,
        "{}: only {} colours",
        path.display(),
        colours.len()
    );
    img
}

/// Pixels within `tol` of `rgb` in every channel.
pub fn count_near(img: &image::RgbImage, rgb: [u8; 3], tol: u8) -> usize {
    img.pixels()
        .filter(|p| p.0.iter().zip(rgb).all(|(&a, b)| a.abs_diff(b) <= tol))
        .count()
}

/// The SVG twin of a PNG: a real SVG document holding `texts`.
pub fn check_svg(path: &Path, texts: &[&str]) {
    let svg = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        svg.starts_with("<svg") || svg.contains("<svg "),
        "{}",
        path.display()
    );
    assert!(svg.trim_end().ends_with("</svg>"), "{}", path.display());
    for t in texts {
        assert!(svg.contains(t), "{} lacks {t:?}", path.display());
    }
}
