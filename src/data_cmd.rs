//! `ebda data inspect | check | fetch`.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ebda_data::fetch::{Fetched, FileStatus, Sources};
use ebda_data::{DataSpec, Format, InputConfig, Samples};
use std::path::{Path, PathBuf};

/// The sources shipped with this binary (data/sources.json at build time).
const BUILTIN_SOURCES: &str = include_str!("../data/sources.json");

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Count, shapes, value range and class histogram of a dataset; optionally a PNG grid.
    Inspect(InspectArgs),
    /// Verify downloaded files against the checksums in sources.json.
    Check(SourceArgs),
    /// Download a dataset from its original distribution, resumably, verifying
    /// checksums; or, with --hub OWNER/NAME, an image dataset from the Hugging
    /// Face hub (built with the `hub` feature).
    Fetch(FetchArgs),
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The dataset: FORMAT:ROOT[:SPLIT|DOMAIN] (e.g. mnist:data/mnist:test,
    /// office31:data/office31:amazon), a data-spec JSON object, or a JSON file holding one.
    spec: String,
    /// Input preprocessing as JSON (default: the stored size for images, ImageNet 224 for files).
    #[arg(long)]
    input: Option<String>,
    /// Write a PNG grid of samples (rows are classes) to this file.
    #[arg(long)]
    grid: Option<PathBuf>,
    /// Samples per class in the grid.
    #[arg(long, default_value_t = 8)]
    per_class: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct SourceArgs {
    /// Datasets to check (default: every dataset with files present).
    names: Vec<String>,
    /// The data directory.
    #[arg(long, default_value = "data")]
    dir: PathBuf,
    /// A sources.json to use instead of the built-in list.
    #[arg(long)]
    sources: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// Dataset name from sources.json (mnist, usps, svhn, mnist_m, office31).
    #[arg(required_unless_present = "hub", conflicts_with = "hub")]
    name: Option<String>,
    /// A Hugging Face hub dataset (e.g. ylecun/mnist): its parquet files are
    /// fetched through candle-datasets and written to DIR/hub/OWNER/NAME/ as
    /// images with one image list per split (format `image_list`). The
    /// endpoint is HF_ENDPOINT (default https://huggingface.co); the download
    /// cache HF_HUB_CACHE / HF_HOME.
    #[arg(long, value_name = "OWNER/NAME")]
    hub: Option<String>,
    /// With --hub: the image column (default: the first one holding image bytes).
    #[arg(long, requires = "hub")]
    image_column: Option<String>,
    /// With --hub: the label column.
    #[arg(long, requires = "hub", default_value = "label")]
    label_column: String,
    /// The data directory; files land in DIR/<dataset>/.
    #[arg(long, default_value = "data")]
    dir: PathBuf,
    /// A sources.json to use instead of the built-in list.
    #[arg(long)]
    sources: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

fn load_sources(path: Option<&Path>) -> Result<Sources> {
    match path {
        Some(p) => Ok(ebda_data::fetch::read_sources(p)?),
        None => {
            serde_json::from_str(BUILTIN_SOURCES).context("the built-in sources.json is invalid")
        }
    }
}

/// Parses FORMAT:ROOT[:PART], a JSON object, or a JSON file into a spec.
pub(crate) fn parse_spec(text: &str) -> Result<DataSpec> {
    let json = if text.trim_start().starts_with('{') {
        Some(text.to_string())
    } else if text.ends_with(".json") && Path::new(text).is_file() {
        Some(std::fs::read_to_string(text).with_context(|| format!("cannot read {text}"))?)
    } else {
        None
    };
    if let Some(json) = json {
        let value: serde_json::Value = serde_json::from_str(&json)
            .with_context(|| format!("data spec {text:?} is not valid JSON"))?;
        return Ok(ebda_config::from_value(value)?);
    }
    let mut parts = text.splitn(3, ':');
    let format = parts.next().unwrap_or_default();
    let root = parts.next().with_context(|| {
        format!("data spec {text:?}: expected FORMAT:ROOT[:SPLIT|DOMAIN] or JSON")
    })?;
    let format: Format = serde_json::from_value(serde_json::Value::String(format.to_string()))
        .with_context(|| format!("data spec {text:?}: unknown format {format:?} (mnist, usps, svhn, mnist_m, office31, image_list, features)"))?;
    let mut spec = DataSpec {
        format,
        root: root.into(),
        ..DataSpec::default()
    };
    if let Some(part) = parts.next() {
        match format {
            Format::Office31 => spec.domain = part.to_string(),
            Format::ImageList => spec.list = part.into(),
            _ => spec.split = part.to_string(),
        }
    }
    Ok(spec)
}

fn default_input(samples: &Samples) -> InputConfig {
    match samples {
        Samples::Images {
            dims: [c, h, w], ..
        } => InputConfig {
            channels: *c,
            height: *h,
            width: *w,
            ..InputConfig::default()
        },
        Samples::Files { .. } => InputConfig::imagenet(false),
        Samples::Vectors { .. } => InputConfig::default(),
    }
}

fn inspect(args: &InspectArgs) -> Result<()> {
    let spec = parse_spec(&args.spec)?;
    let t0 = std::time::Instant::now();
    let data = spec.load()?;
    let load_s = t0.elapsed().as_secs_f64();
    let input = match &args.input {
        Some(json) => {
            let value: serde_json::Value =
                serde_json::from_str(json).context("--input is not valid JSON")?;
            ebda_config::from_value(value)?
        }
        None => default_input(&data.samples),
    };
    input.validate().context("--input")?;
    let counts = data.class_counts();
    // Range after preprocessing, over up to 1000 samples in order.
    let (mut lo, mut hi, mut shape) = (f32::INFINITY, f32::NEG_INFINITY, Vec::new());
    let take = data.len().min(1000);
    let indices: Vec<usize> = (0..take).collect();
    let batch = ebda_data::assemble(&data, &input, &indices, false, 0, &candle_core::Device::Cpu)?;
    shape.extend_from_slice(&batch.inputs.dims()[1..]);
    lo = lo.min(batch.inputs.min_all()?.to_scalar::<f32>()?);
    hi = hi.max(batch.inputs.max_all()?.to_scalar::<f32>()?);
    if args.json {
        let summary = serde_json::json!({
            "name": data.name,
            "count": data.len(),
            "num_classes": data.num_classes,
            "class_names": data.class_names,
            "stored_dims": data.stored_dims(),
            "value_range_on_disk": data.value_range.map(|(a, b)| [a, b]),
            "input_dims": shape,
            "input_range": [lo, hi],
            "class_counts": counts,
            "files": data.files,
            "load_seconds": load_s,
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "dataset: {} ({} samples, {} classes, read in {:.3} s)",
            data.name,
            data.len(),
            data.num_classes,
            load_s
        );
        for f in &data.files {
            println!("  file: {}", f.display());
        }
        match data.stored_dims() {
            Some(d) => println!("stored sample: {d:?}"),
            None => println!("stored sample: image files, decoded per batch"),
        }
        if let Some((a, b)) = data.value_range {
            println!("value range on disk: [{a}, {b}]");
        }
        println!(
            "input after preprocessing: {shape:?}, range [{lo:.4}, {hi:.4}] over the first {take} samples"
        );
        println!("class histogram:");
        let most = counts.iter().copied().max().unwrap_or(1).max(1);
        for (k, n) in counts.iter().enumerate() {
            let name = data
                .class_names
                .as_ref()
                .map(|c| c[k].as_str())
                .unwrap_or("");
            let bar = "#".repeat((n * 40).div_ceil(most));
            println!("  {k:>3} {name:<18} {n:>7} {bar}");
        }
    }
    if let Some(path) = &args.grid {
        ebda_data::write_grid(&data, &input, args.per_class.max(1), path)?;
        eprintln!("grid written to {}", path.display());
    }
    Ok(())
}

fn check(args: &SourceArgs) -> Result<()> {
    let sources = load_sources(args.sources.as_deref())?;
    let names: Vec<String> = if args.names.is_empty() {
        sources.keys().cloned().collect()
    } else {
        args.names.clone()
    };
    let mut bad = 0;
    for name in &names {
        let source = sources.get(name).with_context(|| {
            format!(
                "unknown dataset {name:?} (known: {:?})",
                sources.keys().collect::<Vec<_>>()
            )
        })?;
        if source.files.is_empty() {
            println!(
                "{name}: no checksummed files ({})",
                source.manual.as_deref().unwrap_or("manual download")
            );
            continue;
        }
        let results = ebda_data::fetch::check(&args.dir, source)?;
        let present = results
            .iter()
            .filter(|(_, s)| *s != FileStatus::Missing)
            .count();
        if present == 0 && args.names.is_empty() {
            println!("{name}: not downloaded");
            continue;
        }
        for (path, status) in results {
            let line = match &status {
                FileStatus::Ok => "ok".to_string(),
                FileStatus::Missing => "MISSING".to_string(),
                FileStatus::Unverified => "present (no published checksum)".to_string(),
                FileStatus::Mismatch {
                    algorithm,
                    expected,
                    found,
                } => format!("MISMATCH {algorithm}: expected {expected}, found {found}"),
            };
            if matches!(status, FileStatus::Missing | FileStatus::Mismatch { .. }) {
                bad += 1;
            }
            println!("{name}: {} {line}", path.display());
        }
    }
    if bad > 0 {
        bail!("{bad} file(s) missing or not matching their published checksum");
    }
    Ok(())
}

#[cfg(feature = "hub")]
fn fetch_hub(args: &FetchArgs, repo: &str) -> Result<()> {
    let out = args.dir.join("hub").join(repo);
    let opts = ebda_hub::HubOptions {
        image_column: args.image_column.clone(),
        label_column: Some(args.label_column.clone()),
        ..Default::default()
    };
    let fetched = ebda_hub::fetch(repo, &out, &opts)?;
    for s in &fetched.splits {
        println!(
            "{}: {} images, {} classes → {}",
            s.name,
            s.count,
            s.class_counts.len(),
            out.join(&s.list).display()
        );
    }
    println!(
        "read a split with {{\"format\": \"image_list\", \"root\": \"{}\", \"list\": \"{}\"}}",
        out.display(),
        fetched
            .splits
            .first()
            .map_or("train.txt", |s| s.list.as_str())
    );
    Ok(())
}

#[cfg(not(feature = "hub"))]
fn fetch_hub(_: &FetchArgs, repo: &str) -> Result<()> {
    bail!(
        "--hub {repo}: this ebda was built without the `hub` feature \
         (cargo build --release --features hub)"
    )
}

fn fetch(args: &FetchArgs) -> Result<()> {
    let name = match (&args.name, &args.hub) {
        (_, Some(repo)) => return fetch_hub(args, repo),
        (Some(name), None) => name,
        (None, None) => bail!("name a dataset from sources.json, or --hub OWNER/NAME"),
    };
    let sources = load_sources(args.sources.as_deref())?;
    let source = sources.get(name).with_context(|| {
        format!(
            "unknown dataset {:?} (known: {:?})",
            name,
            sources.keys().collect::<Vec<_>>()
        )
    })?;
    let progress = !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr());
    for done in ebda_data::fetch::fetch(&args.dir, name, source, progress)? {
        match done {
            Fetched::Present(p) => println!("{}: already present, checksum ok", p.display()),
            Fetched::Downloaded { path, url } => {
                println!("{}: downloaded from {url}, checksum ok", path.display())
            }
        }
    }
    Ok(())
}

pub fn run(cmd: &DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Inspect(a) => inspect(a),
        DataCommand::Check(a) => check(a),
        DataCommand::Fetch(a) => fetch(a),
    }
}
