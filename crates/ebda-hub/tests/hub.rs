//! `ebda_hub::fetch` against a hub-like HTTP API served on loopback, with
//! small parquet files written here in the hub's layout (an image struct
//! with `bytes`, an int64 `label`); and candle-datasets' MNIST reader against
//! ebda's on the shared full MNIST.

use candle_core::Device;
use ebda_hub::{HubOptions, fetch};
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// A 28×28 grayscale digit-like image, distinct per (seed), as PNG bytes.
fn png(seed: u8) -> (Vec<u8>, Vec<u8>) {
    let pixels: Vec<u8> = (0..28 * 28)
        .map(|i| ((i * 7 + seed as usize * 31) % 256) as u8)
        .collect();
    let img = image::GrayImage::from_raw(28, 28, pixels.clone()).unwrap();
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .unwrap();
    (bytes, pixels)
}

/// A parquet file in the hub's image layout: `image {bytes}`, `label`.
fn parquet_file(images: &[Vec<u8>], labels: &[i64], label_name: &str) -> Vec<u8> {
    let schema = format!(
        "message schema {{ required group image {{ required binary bytes; }} required int64 {label_name}; }}"
    );
    let schema = Arc::new(parquet::schema::parser::parse_message_type(&schema).unwrap());
    let mut out = Vec::new();
    {
        let props = Arc::new(WriterProperties::builder().build());
        let mut w = SerializedFileWriter::new(&mut out, schema, props).unwrap();
        let mut rg = w.next_row_group().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        let values: Vec<ByteArray> = images.iter().map(|b| ByteArray::from(b.clone())).collect();
        col.typed::<ByteArrayType>()
            .write_batch(&values, None, None)
            .unwrap();
        col.close().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<Int64Type>()
            .write_batch(labels, None, None)
            .unwrap();
        col.close().unwrap();
        rg.close().unwrap();
        w.close().unwrap();
    }
    out
}

/// A hub-like API on loopback: repo info at the parquet revision, HEAD and
/// GET of files under `resolve/`. Counts file GETs.
struct Hub {
    url: String,
    file_gets: Arc<AtomicUsize>,
}

fn serve(repo: &'static str, files: BTreeMap<String, Vec<u8>>) -> Hub {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let file_gets = Arc::new(AtomicUsize::new(0));
    let gets = file_gets.clone();
    let files = Arc::new(Mutex::new(files));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let files = files.clone();
            let gets = gets.clone();
            std::thread::spawn(move || handle(stream, repo, &files, &gets));
        }
    });
    Hub { url, file_gets }
}

fn handle(
    mut stream: TcpStream,
    repo: &str,
    files: &Mutex<BTreeMap<String, Vec<u8>>>,
    gets: &AtomicUsize,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
    }
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let info = format!("/api/datasets/{repo}/revision/refs%2Fconvert%2Fparquet");
    let resolve = format!("/datasets/{repo}/resolve/refs%2Fconvert%2Fparquet/");
    let files = files.lock().unwrap();
    let (status, headers, body): (&str, Vec<String>, Vec<u8>) = if path == info {
        let siblings: Vec<serde_json::Value> = files
            .keys()
            .map(|k| serde_json::json!({ "rfilename": k }))
            .chain([serde_json::json!({ "rfilename": "README.md" })])
            .collect();
        let body = serde_json::json!({ "id": repo, "sha": COMMIT, "siblings": siblings });
        (
            "200 OK",
            vec!["Content-Type: application/json".into()],
            body.to_string().into_bytes(),
        )
    } else if let Some(name) = path.strip_prefix(&resolve)
        && let Some(bytes) = files.get(name)
    {
        if method == "GET" {
            gets.fetch_add(1, Ordering::Relaxed);
        }
        let etag = format!("{:016x}", bytes.len() * 2654435761 + name.len());
        (
            "200 OK",
            vec![
                format!("ETag: \"{etag}\""),
                format!("X-Repo-Commit: {COMMIT}"),
            ],
            bytes.clone(),
        )
    } else {
        (
            "404 Not Found",
            vec!["X-Error-Code: RepoNotFound".into()],
            b"{}".to_vec(),
        )
    };
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(&h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    if method != "HEAD" {
        let _ = stream.write_all(&body);
    }
}

fn options(hub: &Hub, cache: &Path) -> HubOptions {
    HubOptions {
        endpoint: Some(hub.url.clone()),
        cache_dir: Some(cache.to_path_buf()),
        ..Default::default()
    }
}

#[test]
fn fetch_writes_image_lists_that_ebda_reads_back() {
    // train in two shards (5 + 4 rows), test in one (3 rows).
    let mut originals = BTreeMap::new();
    let mut files = BTreeMap::new();
    let shards = [
        ("default/train/0000.parquet", 0u8..5),
        ("default/train/0001.parquet", 5..9),
        ("default/test/0000.parquet", 20..23),
    ];
    for (name, seeds) in shards {
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        for s in seeds {
            let (bytes, pixels) = png(s);
            images.push(bytes);
            labels.push(i64::from(s % 4));
            originals
                .entry(name.split('/').nth(1).unwrap().to_string())
                .or_insert_with(Vec::new)
                .push((pixels, u32::from(s % 4)));
        }
        files.insert(name.to_string(), parquet_file(&images, &labels, "label"));
    }
    let hub = serve("test-org/digits", files);
    let cache = ebda_testkit::temp_dir("hub-cache-1");
    let out = ebda_testkit::temp_dir("hub-out-1").join("digits");

    let fetched = fetch("test-org/digits", &out, &options(&hub, &cache)).unwrap();
    assert_eq!(fetched.commit.as_deref(), Some(COMMIT));
    assert_eq!(fetched.files.len(), 3);
    assert_eq!(hub.file_gets.load(Ordering::Relaxed), 3);
    let counts: Vec<(String, usize)> = fetched
        .splits
        .iter()
        .map(|s| (s.name.clone(), s.count))
        .collect();
    assert_eq!(counts, [("test".into(), 3), ("train".into(), 9)]);
    assert_eq!(fetched.splits[1].class_counts, [3, 2, 2, 2]);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("hub.json")).unwrap()).unwrap();
    assert_eq!(manifest["repo"], "test-org/digits");
    assert!(!PathBuf::from(format!("{}.partial", out.display())).exists());

    // Read back through ebda's image_list reader and batch assembly: the
    // tensors equal the images and labels written into the parquet files.
    for (split, want) in &originals {
        let spec = ebda_data::DataSpec {
            format: ebda_data::Format::ImageList,
            root: out.clone(),
            list: format!("{split}.txt").into(),
            ..ebda_data::DataSpec::new(ebda_data::Format::ImageList, &out, split)
        };
        let data = spec.load().unwrap();
        assert_eq!(data.len(), want.len(), "{split}");
        let input = ebda_data::InputConfig {
            mean: vec![0.0],
            std: vec![1.0],
            ..Default::default()
        };
        let indices: Vec<usize> = (0..data.len()).collect();
        let batch = ebda_data::assemble(&data, &input, &indices, false, 0, &Device::Cpu).unwrap();
        let x: Vec<f32> = batch.inputs.flatten_all().unwrap().to_vec1().unwrap();
        let y: Vec<u32> = batch.labels.to_vec1().unwrap();
        for (i, (pixels, label)) in want.iter().enumerate() {
            assert_eq!(y[i], *label, "{split} row {i}");
            let got = &x[i * 784..(i + 1) * 784];
            let max_err = got
                .iter()
                .zip(pixels)
                .map(|(g, &p)| (g - f32::from(p) / 255.0).abs())
                .fold(0f32, f32::max);
            assert!(max_err < 1e-6, "{split} row {i}: max error {max_err}");
        }
    }

    // A second fetch of the same dataset reads candle-datasets' hub cache:
    // no file is downloaded again.
    let again = ebda_testkit::temp_dir("hub-out2").join("digits");
    fetch("test-org/digits", &again, &options(&hub, &cache)).unwrap();
    assert_eq!(hub.file_gets.load(Ordering::Relaxed), 3);
    assert_eq!(
        std::fs::read_to_string(again.join("train.txt")).unwrap(),
        std::fs::read_to_string(out.join("train.txt")).unwrap()
    );

    // A fetched directory is not overwritten.
    let err = fetch("test-org/digits", &out, &options(&hub, &cache)).unwrap_err();
    assert!(
        err.to_string().contains("already holds a hub fetch"),
        "{err}"
    );
}

#[test]
fn bad_content_is_an_error_naming_file_row_and_columns() {
    let (good, _) = png(1);
    let mut corrupt = good.clone();
    corrupt.truncate(40); // a PNG header and half a chunk
    let mut files = BTreeMap::new();
    files.insert(
        "default/train/0000.parquet".to_string(),
        parquet_file(&[good.clone(), corrupt], &[1, 2], "label"),
    );
    let hub = serve("test-org/corrupt", files);
    let cache = ebda_testkit::temp_dir("hub-cache-2");
    let out = ebda_testkit::temp_dir("hub-out-2").join("corrupt");
    let err = fetch("test-org/corrupt", &out, &options(&hub, &cache))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("default/train/0000.parquet") && err.contains("row 1"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is left at {}", out.display());

    let mut files = BTreeMap::new();
    files.insert(
        "default/train/0000.parquet".to_string(),
        parquet_file(&[good], &[1], "digit"),
    );
    let hub = serve("test-org/nolabel", files);
    let err = fetch("test-org/nolabel", &out, &options(&hub, &cache))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no label column \"label\"") && err.contains("image, digit"),
        "{err}"
    );
    // Told the column, it reads.
    let opts = HubOptions {
        label_column: Some("digit".into()),
        ..options(&hub, &cache)
    };
    let fetched = fetch("test-org/nolabel", &out, &opts).unwrap();
    assert_eq!(fetched.splits[0].class_counts, [0, 1]);

    let err = fetch(
        "test-org/missing",
        &ebda_testkit::temp_dir("hub-x-1"),
        &options(&hub, &cache),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("test-org/missing"), "{err}");
    let err = fetch(
        "mnist",
        &ebda_testkit::temp_dir("hub-x-2"),
        &options(&hub, &cache),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("OWNER/NAME"), "{err}");
}

/// candle-datasets' MNIST reader (uncompressed idx files) and ebda's give the
/// same tensors on the shared full MNIST.
#[test]
fn candle_datasets_mnist_equals_ebda_reader_on_full_mnist() {
    let Some(root) = ebda_testkit::real_data("mnist-full") else {
        return;
    };
    let plain = ebda_testkit::temp_dir("hub-mnist");
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        let bytes = ebda_data::read_maybe_compressed(&root.join(format!("{name}.gz"))).unwrap();
        std::fs::write(plain.join(name), bytes).unwrap();
    }
    let theirs = candle_datasets::vision::mnist::load_dir(&plain).unwrap();
    for (split, images, labels, n) in [
        ("train", &theirs.train_images, &theirs.train_labels, 60_000),
        ("test", &theirs.test_images, &theirs.test_labels, 10_000),
    ] {
        let ours = ebda_data::digits::mnist(&root, split).unwrap();
        assert_eq!(ours.len(), n);
        assert_eq!(images.dims(), [n, 784]);
        let ebda_data::Samples::Images { pixels, .. } = &ours.samples else {
            panic!("mnist holds images")
        };
        // candle-datasets scales by 1/255 (a multiplication); back on the
        // byte grid the two readers agree exactly.
        let x: Vec<f32> = images.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(x.len(), pixels.len());
        let differ = x
            .iter()
            .zip(pixels)
            .filter(|(a, p)| {
                (*a * 255.0).round() != f32::from(**p) || (*a - f32::from(**p) / 255.0).abs() > 1e-6
            })
            .count();
        assert_eq!(differ, 0, "{split}: {differ} pixels differ");
        let y: Vec<u8> = labels.to_vec1().unwrap();
        assert!(
            y.iter().zip(&ours.labels).all(|(a, b)| u32::from(*a) == *b),
            "{split}: labels differ"
        );
    }
    std::fs::remove_dir_all(&plain).ok();
}
