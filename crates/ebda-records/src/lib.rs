//! The run records: what the trainer writes into a run directory and what
//! the report reads back, as one set of serde types (DESIGN.md §3).
//!
//! ```text
//! runs/<name>/
//!   config.json     the resolved config; [`RunHead`] is the part a report reads
//!   manifest.json   [`Manifest`]: versions, code revision, device, data checksums
//!   metrics.jsonl   one [`MetricsLine`] per evaluation
//!   summary.json    [`Summary`]: complete (headline + labelled oracle), diverged or stopped
//!   energies/       [`EnergySnapshot`]s, `iter-XXXXXXXX.json`
//! ```
//!
//! Because both sides use these types, a renamed field is a compile error
//! rather than an empty figure. Numbers are written as JSON numbers when
//! finite and as strings (`"NaN"`, `"inf"`) otherwise, and read back from
//! either; every reader names the file (and line) it could not read.
//!
//! ```
//! use ebda_records::MetricsLine;
//! let line = MetricsLine { iteration: 500, target_acc: 0.9, ..MetricsLine::default() };
//! let text = line.to_json_line();
//! assert_eq!(MetricsLine::parse(&text).unwrap().target_acc, 0.9);
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A record that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Rounds to 6 decimals, the precision records are written with.
pub fn round6(v: f64) -> f64 {
    if v.is_finite() {
        (v * 1e6).round() / 1e6
    } else {
        v
    }
}

/// Serde for `f64` fields: finite values as numbers, others as strings.
pub mod scalar {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_str(&v.to_string())
        }
    }

    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(f64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Number(v) => Ok(v),
            Raw::Text(t) => t.parse().map_err(|_| {
                serde::de::Error::custom(format!("expected a number or \"NaN\"/\"inf\", got {t:?}"))
            }),
        }
    }

    /// The same for `Option<f64>` (absent or `null` is `None`).
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => super::serialize(v, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
            #[derive(serde::Deserialize)]
            struct Wrap(#[serde(with = "super")] f64);
            Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
        }
    }

    /// The same for maps of named scalars.
    pub mod map {
        use serde::ser::SerializeMap;
        use serde::{Deserialize, Deserializer, Serializer};
        use std::collections::BTreeMap;

        #[derive(serde::Serialize, serde::Deserialize)]
        struct Wrap(#[serde(with = "super")] f64);

        pub fn serialize<S: Serializer>(
            v: &BTreeMap<String, f64>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(v.len()))?;
            for (k, x) in v {
                m.serialize_entry(k, &Wrap(*x))?;
            }
            m.end()
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<BTreeMap<String, f64>, D::Error> {
            let raw = BTreeMap::<String, Wrap>::deserialize(d)?;
            Ok(raw.into_iter().map(|(k, w)| (k, w.0)).collect())
        }
    }
}

/// What a method with an energy critic adds to an evaluation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CriticEval {
    /// The margin `m` at this iteration.
    #[serde(with = "scalar")]
    pub margin: f64,
    /// Mean critic energy on the target test set.
    #[serde(with = "scalar")]
    pub target_energy: f64,
    /// Mean critic energy on the source test set (when there is one).
    #[serde(
        default,
        with = "scalar::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_energy: Option<f64>,
    /// `target_energy − source_energy`.
    #[serde(
        default,
        with = "scalar::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub energy_gap: Option<f64>,
}

/// One evaluation of a run: a line of `metrics.jsonl`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsLine {
    /// Iterations done.
    pub iteration: u64,
    /// `iteration / iterations`.
    #[serde(with = "scalar")]
    pub progress: f64,
    /// Learning rate of the last step.
    #[serde(with = "scalar")]
    pub lr: f64,
    /// Adaptation weight `λ_p` of the last step.
    #[serde(with = "scalar")]
    pub lambda: f64,
    /// Target test accuracy in [0, 1]: the headline.
    #[serde(with = "scalar")]
    pub target_acc: f64,
    /// Source test accuracy (when there is a source test set).
    #[serde(
        default,
        with = "scalar::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_acc: Option<f64>,
    /// Mean feature norm on the target test set.
    #[serde(with = "scalar")]
    pub feat_norm_target_test: f64,
    #[serde(
        default,
        with = "scalar::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub feat_norm_source_test: Option<f64>,
    /// Proxy A-distance between source and target test features.
    #[serde(
        default,
        with = "scalar::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub proxy_a_distance: Option<f64>,
    /// Accuracy of the method's domain discriminator on the test sets.
    #[serde(
        default,
        with = "scalar::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub domain_acc: Option<f64>,
    /// Critic energies (methods with an energy critic).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub critic: Option<CriticEval>,
    /// Means of the step statistics over the evaluation interval; the names
    /// are the method's own (`ce`, `loss`, `critic_loss`, …).
    #[serde(with = "scalar::map")]
    pub train: BTreeMap<String, f64>,
    /// Training throughput over the interval.
    #[serde(with = "scalar")]
    pub images_per_s: f64,
}

impl MetricsLine {
    /// One line of JSON, keys sorted, no trailing newline.
    pub fn to_json_line(&self) -> String {
        // Through a Value: its map sorts keys, so lines are stable.
        let v = serde_json::to_value(self).expect("plain data serializes");
        serde_json::to_string(&v).expect("plain data serializes")
    }

    /// Parses one line.
    pub fn parse(line: &str) -> std::result::Result<Self, serde_json::Error> {
        serde_json::from_str(line)
    }
}

/// Reads `metrics.jsonl`; an unreadable line is an error naming its number.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsLine>> {
    let text = read_text(path)?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            MetricsLine::parse(l).map_err(|e| Error::Format {
                path: path.to_path_buf(),
                reason: format!("line {}: not a metrics line: {e}", i + 1),
            })
        })
        .collect()
}

/// A selected evaluation, with what selected it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// How the evaluation was selected, in words.
    pub what: String,
    #[serde(with = "scalar")]
    pub target_acc: f64,
    #[serde(default, with = "scalar::option")]
    pub source_acc: Option<f64>,
    pub iteration: u64,
}

/// A finished run's `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Complete {
    pub task: String,
    pub method: String,
    pub seed: u64,
    pub iterations: u64,
    /// Target test accuracy at the last iteration.
    pub headline: Selection,
    /// ORACLE: best target test accuracy over evaluations (target labels used).
    pub oracle_best_on_target: Selection,
    /// Target accuracy where the source test accuracy was best (no target labels).
    pub selected_by_source_acc: Option<Selection>,
    pub evaluations: u64,
    #[serde(with = "scalar")]
    pub wall_seconds: f64,
    #[serde(with = "scalar")]
    pub train_seconds: f64,
    #[serde(with = "scalar")]
    pub train_images_per_s: f64,
}

/// `summary.json`: how a run ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Summary {
    Complete(Box<Complete>),
    /// A non-finite loss stopped the run.
    Diverged {
        iteration: u64,
        error: String,
    },
    /// Stopped on request before the end (`stop_after`); resumable.
    Stopped {
        iteration: u64,
    },
}

impl Summary {
    /// The finished run's record, if it finished.
    pub fn complete(&self) -> Option<&Complete> {
        match self {
            Summary::Complete(c) => Some(c),
            _ => None,
        }
    }
}

/// `manifest.json`: what a run's numbers can be tied to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub ebda_version: String,
    /// The commit the binary was built from (`null` when built outside git).
    pub git_revision: Option<String>,
    /// Whether the build tree had uncommitted changes (`null`: unknown, or a
    /// run from before this was recorded).
    #[serde(default)]
    pub git_dirty: Option<bool>,
    pub device: String,
    pub cuda_compiled: bool,
    pub threads: usize,
    pub seed: u64,
    pub task: String,
    pub method: String,
    pub dataset_files_sha256: BTreeMap<String, String>,
    pub dataset_sizes: BTreeMap<String, usize>,
    /// Pretrained weights the run started from: file → sha256 (empty for
    /// random initialisation).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights_sha256: BTreeMap<String, String>,
    pub command: Vec<String>,
    /// The CPU the run was computed on (`null` in runs from before this was
    /// recorded): CPU results are reproducible bit for bit at one thread
    /// count on one kind of CPU, not across kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuInfo>,
}

/// The CPU of a run: its model name and the SIMD extensions the matrix
/// kernels choose between at run time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuInfo {
    pub model: String,
    /// Of `avx512f`, `avx2`, `fma` (x86-64) or `neon` (AArch64), those present.
    pub simd: Vec<String>,
}

impl CpuInfo {
    /// This machine's CPU (model name from `/proc/cpuinfo` where there is
    /// one, else the architecture).
    pub fn detect() -> Self {
        let model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    let (key, value) = l.split_once(':')?;
                    (key.trim() == "model name").then(|| value.trim().to_string())
                })
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        #[allow(unused_mut)]
        let mut simd: Vec<String> = Vec::new();
        #[cfg(target_arch = "x86_64")]
        for (name, present) in [
            ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("fma", std::arch::is_x86_feature_detected!("fma")),
        ] {
            if present {
                simd.push(name.to_string());
            }
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("neon") {
            simd.push("neon".to_string());
        }
        Self { model, simd }
    }
}

/// Per-sample critic energies on the test sets at one evaluation, stored as
/// `energies/iter-XXXXXXXX.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EnergySnapshot {
    pub iteration: u64,
    pub source: Vec<f32>,
    pub target: Vec<f32>,
}

impl EnergySnapshot {
    /// The file name a snapshot of `iteration` is stored under.
    pub fn file_name(iteration: u64) -> String {
        format!("iter-{iteration:08}.json")
    }
}

/// Reads a run's energy snapshots (`energies/*.json`), sorted by iteration;
/// none if the run has no `energies/`.
pub fn read_energies(run_dir: &Path) -> Result<Vec<EnergySnapshot>> {
    let dir = run_dir.join("energies");
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        out.push(read_json::<EnergySnapshot>(&path, "an energy snapshot")?);
    }
    out.sort_by_key(|s| s.iteration);
    Ok(out)
}

/// The method of a config: its name, whether written as a string
/// (`"dann"`) or as a section keyed by the name (`{"dann": {...}}`).
#[derive(Clone, Debug, PartialEq)]
pub struct MethodName(pub String);

impl<'de> Deserialize<'de> for MethodName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(MethodName(s)),
            serde_json::Value::Object(m) if m.len() == 1 => {
                Ok(MethodName(m.keys().next().expect("one key").clone()))
            }
            other => Err(serde::de::Error::custom(format!(
                "expected a method name or a section keyed by it, got {other}"
            ))),
        }
    }
}

/// The part of a run's `config.json` that a report reads: task, method,
/// seed and planned iterations (every other key is ignored, so configs of
/// any version are read).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct RunHead {
    pub task: String,
    pub method: MethodName,
    /// The method row's name in reports, when the config gives one.
    #[serde(default)]
    pub label: Option<String>,
    pub seed: u64,
    pub train: TrainHead,
}

/// `config.json`'s `train` section, as far as a report needs it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct TrainHead {
    pub iterations: u64,
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a JSON record; `what` names the expected record in the error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        reason: format!("not {what}: {e}"),
    })
}

/// Reads `config.json`'s head.
pub fn read_head(run_dir: &Path) -> Result<RunHead> {
    read_json(&run_dir.join("config.json"), "a run config")
}

/// Reads `summary.json`, if the run has one.
pub fn read_summary(run_dir: &Path) -> Result<Option<Summary>> {
    let path = run_dir.join("summary.json");
    if !path.is_file() {
        return Ok(None);
    }
    read_json(&path, "a run summary").map(Some)
}

/// Reads `manifest.json`.
pub fn read_manifest(run_dir: &Path) -> Result<Manifest> {
    read_json(&run_dir.join("manifest.json"), "a run manifest")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_numbers_round_trip_as_strings() {
        let mut line = MetricsLine {
            iteration: 3,
            target_acc: f64::NAN,
            ..MetricsLine::default()
        };
        line.train.insert("loss".into(), f64::INFINITY);
        let text = line.to_json_line();
        assert!(text.contains(r#""target_acc":"NaN""#), "{text}");
        assert!(text.contains(r#""loss":"inf""#), "{text}");
        let back = MetricsLine::parse(&text).unwrap();
        assert!(back.target_acc.is_nan());
        assert_eq!(back.train["loss"], f64::INFINITY);
    }

    #[test]
    fn keys_are_sorted_and_optional_sections_absent() {
        let line = MetricsLine {
            iteration: 1,
            ..MetricsLine::default()
        };
        let text = line.to_json_line();
        assert!(
            !text.contains("critic") && !text.contains("margin") && !text.contains("source_acc")
        );
        let keys: Vec<String> =
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text)
                .unwrap()
                .keys()
                .cloned()
                .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        // Critic fields are flat keys of the line.
        let line = MetricsLine {
            critic: Some(CriticEval {
                margin: 1.0,
                target_energy: 0.5,
                source_energy: Some(0.25),
                energy_gap: Some(0.25),
            }),
            ..line
        };
        let v: serde_json::Value = serde_json::from_str(&line.to_json_line()).unwrap();
        assert_eq!(v["energy_gap"], 0.25);
        assert_eq!(MetricsLine::parse(&line.to_json_line()).unwrap(), line);
    }

    #[test]
    fn a_line_missing_a_required_field_is_an_error() {
        let err = MetricsLine::parse(r#"{"iteration": 1}"#).unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
    }

    #[test]
    fn method_names_read_from_strings_and_sections() {
        let a: RunHead = serde_json::from_str(
            r#"{"task": "M2U", "method": "dann", "seed": 1, "train": {"iterations": 10}, "model": {}}"#,
        )
        .unwrap();
        assert_eq!(a.method.0, "dann");
        let b: RunHead = serde_json::from_str(
            r#"{"task": "M2U", "method": {"ebda": {"critic_steps": 1}}, "seed": 1, "train": {"iterations": 10}}"#,
        )
        .unwrap();
        assert_eq!(b.method.0, "ebda");
        assert!(
            serde_json::from_str::<RunHead>(
                r#"{"task": "M2U", "method": 3, "seed": 1, "train": {"iterations": 10}}"#
            )
            .is_err()
        );
    }

    #[test]
    fn summaries_are_tagged_by_status() {
        let s: Summary =
            serde_json::from_str(r#"{"status": "diverged", "iteration": 40, "error": "nan"}"#)
                .unwrap();
        assert_eq!(
            s,
            Summary::Diverged {
                iteration: 40,
                error: "nan".into()
            }
        );
        assert!(s.complete().is_none());
    }
}
