//! Office-31 image throughput (release build): JPEG decode + antialiased
//! resize to 256 + centre crop 224 (evaluation) or random resized crop +
//! flip (training), normalised, assembled into batches of 64 on the rayon
//! threads — the path `ebda train` and `ebda features extract` take.
//! `cargo bench -p ebda-data --bench images` (reads `$EBDA_DATA_DIR`,
//! default `../shared/data`; `RAYON_NUM_THREADS` sets the threads).

use candle_core::Device;
use ebda_data::{DataSpec, Format, InputConfig, assemble};
use std::time::Instant;

fn main() {
    let dir = ebda_testkit::data_dir();
    let mut spec = DataSpec::new(Format::Office31, dir.join("office31"), "");
    spec.domain = "webcam".into();
    let data = spec.load().expect("office31 webcam");
    println!(
        "office31/webcam: {} images, {} rayon threads, batches of 64",
        data.len(),
        rayon::current_num_threads()
    );
    for (label, augment) in [
        ("eval: resize 256, centre crop 224", false),
        ("train: resize 256, random resized crop 224, flip", true),
    ] {
        let input = InputConfig::imagenet(augment);
        let mut rates = Vec::new();
        for repeat in 0..3u64 {
            let t0 = Instant::now();
            for start in (0..data.len()).step_by(64) {
                let idx: Vec<usize> = (start..(start + 64).min(data.len())).collect();
                assemble(&data, &input, &idx, augment, repeat, &Device::Cpu).expect("batch");
            }
            rates.push(data.len() as f64 / t0.elapsed().as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        println!("{label:<52} {:>8.1} images/s (median of 3)", rates[1]);
    }
}
