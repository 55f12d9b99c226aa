//! How long loading every shared dataset takes (release build):
//! `cargo bench -p ebda-data --bench load` (reads `$EBDA_DATA_DIR`, default `../shared/data`).
//! Prints per-dataset medians over repeats; the decompression share is shown
//! separately so parsing and decompression can be told apart.

use ebda_data::{DataSpec, Format};
use rayon::prelude::*;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let dir = ebda_testkit::data_dir();
    let specs = [
        (Format::Mnist, "mnist", "train"),
        (Format::Mnist, "mnist", "test"),
        (Format::Usps, "usps", "train"),
        (Format::Usps, "usps", "test"),
    ];
    let repeats = 7;
    let mut total = vec![0.0; repeats];
    println!("loading {} ({repeats} repeats, median)", dir.display());
    for (format, sub, split) in specs {
        let spec = DataSpec::new(format, dir.join(sub), split);
        let mut times = Vec::new();
        let mut n = 0;
        for t in total.iter_mut() {
            let t0 = Instant::now();
            let ds = spec.load().expect("load");
            let s = t0.elapsed().as_secs_f64();
            n = ds.len();
            times.push(s);
            *t += s;
        }
        let files = spec.load().unwrap().files;
        let mut dec = Vec::new();
        for _ in 0..repeats {
            let t0 = Instant::now();
            for f in &files {
                ebda_data::read_maybe_compressed(f).unwrap();
            }
            dec.push(t0.elapsed().as_secs_f64());
        }
        println!(
            "{sub}/{split:<5} {n:>6} samples  {:>7.1} ms  (of which reading + decompressing {:>6.1} ms)",
            median(times) * 1e3,
            median(dec) * 1e3
        );
    }
    println!(
        "all shared data, one after another: {:.1} ms",
        median(total) * 1e3
    );
    // As a run loads them: every dataset on its own rayon task.
    let mut par = Vec::new();
    for _ in 0..repeats {
        let t0 = Instant::now();
        let loaded: Vec<usize> = specs
            .par_iter()
            .map(|(format, sub, split)| {
                DataSpec::new(*format, dir.join(sub), split)
                    .load()
                    .expect("load")
                    .len()
            })
            .collect();
        assert_eq!(loaded.len(), specs.len());
        par.push(t0.elapsed().as_secs_f64());
    }
    println!(
        "all shared data, in parallel ({} threads): {:.1} ms",
        rayon::current_num_threads(),
        median(par) * 1e3
    );

    // The larger sets, fewer repeats: the full MNIST (gzip idx), MNIST-M
    // (one PNG per image, decoded in parallel at load), the SURF features (.mat).
    let large = [
        (Format::Mnist, "mnist-full", "train"),
        (Format::Mnist, "mnist-full", "test"),
        (Format::MnistM, "mnist_m", "train"),
        (Format::MnistM, "mnist_m", "test"),
    ];
    for (format, sub, split) in large {
        if !dir.join(sub).is_dir() {
            println!("{sub}/{split}: not in {}, skipped", dir.display());
            continue;
        }
        let spec = DataSpec::new(format, dir.join(sub), split);
        let times: Vec<f64> = (0..3)
            .map(|_| {
                let t0 = Instant::now();
                spec.load().expect("load");
                t0.elapsed().as_secs_f64()
            })
            .collect();
        let n = spec.load().expect("load").len();
        let t = median(times);
        println!(
            "{sub}/{split:<5} {n:>6} samples  {:>7.1} ms  ({:.0} samples/s, {} threads)",
            t * 1e3,
            n as f64 / t,
            rayon::current_num_threads()
        );
    }
    let surf = dir.join("office_caltech10/surf/amazon_SURF_L10.mat");
    if surf.is_file() {
        let spec = DataSpec {
            format: Format::Features,
            root: surf,
            features_key: "fts".into(),
            labels_key: "labels".into(),
            label_base: 1,
            normalize: vec![ebda_data::VectorNorm::L1, ebda_data::VectorNorm::Zscore],
            ..DataSpec::default()
        };
        let times: Vec<f64> = (0..repeats)
            .map(|_| {
                let t0 = Instant::now();
                spec.load().expect("load");
                t0.elapsed().as_secs_f64()
            })
            .collect();
        println!(
            "office_caltech10 SURF amazon (958 × 800, L1 + z-score): {:.1} ms",
            median(times) * 1e3
        );
    }
}
