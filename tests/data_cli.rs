//! `ebda data` end to end: fetch against a local HTTP server on 127.0.0.1
//! (success, resume after a cut, checksum mismatch, 404), check, inspect.

#[path = "../crates/ebda-data/tests/common/mod.rs"]
mod common;

use sha2::Digest;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn ebda(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ebda"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A tiny HTTP/1.1 server on 127.0.0.1 for the fetch tests. Paths:
/// `/ok/*` serves `body` (with Range support), `/cut/*` sends half of the body
/// on a request without Range and then closes, `/bad/*` serves other bytes,
/// anything else is a 404. It records each request's Range header and stops
/// after `max_requests` connections.
/// Each request's path and `Range` start, in arrival order.
type RequestLog = Arc<Mutex<Vec<(String, Option<String>)>>>;

struct Server {
    port: u16,
    ranges: RequestLog,
}

fn serve(body: Vec<u8>, max_requests: usize) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let log = ranges.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max_requests) {
            let Ok(mut stream) = stream else { continue };
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .to_string();
            let mut range = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    range = Some(v.trim().trim_end_matches('-').to_string());
                }
            }
            log.lock().unwrap().push((path.clone(), range.clone()));
            let start: usize = range.as_deref().map(|r| r.parse().unwrap()).unwrap_or(0);
            let respond =
                |stream: &mut std::net::TcpStream, status: &str, payload: &[u8], length: usize| {
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(payload);
                    let _ = stream.flush();
                };
            if path.starts_with("/ok/") || (path.starts_with("/cut/") && start > 0) {
                let status = if start > 0 {
                    "206 Partial Content"
                } else {
                    "200 OK"
                };
                respond(&mut stream, status, &body[start..], body.len() - start);
            } else if path.starts_with("/cut/") {
                // Promise the whole body, send half, hang up.
                respond(&mut stream, "200 OK", &body[..body.len() / 2], body.len());
            } else if path.starts_with("/bad/") {
                let other: Vec<u8> = body.iter().map(|b| b ^ 0xff).collect();
                respond(&mut stream, "200 OK", &other, other.len());
            } else {
                respond(&mut stream, "404 Not Found", b"not found", 9);
            }
            let _ = stream.shutdown(std::net::Shutdown::Both);
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
        }
    });
    Server { port, ranges }
}

fn write_sources(dir: &Path, port: u16, sha: &str) -> std::path::PathBuf {
    let entry = |kind: &str| {
        serde_json::json!({
            "description": format!("test dataset served from /{kind}/"),
            "citation": "test",
            "dir": kind,
            "files": [{"name": "blob.bin", "sha256": sha, "urls": [format!("http://127.0.0.1:{port}/{kind}/blob.bin")]}]
        })
    };
    let sources = serde_json::json!({"ok": entry("ok"), "cut": entry("cut"), "bad": entry("bad"), "missing": entry("missing")});
    let path = dir.join("sources.json");
    std::fs::write(&path, serde_json::to_string_pretty(&sources).unwrap()).unwrap();
    path
}

#[test]
fn fetch_success_resume_mismatch_and_404() {
    let dir = common::temp_dir("fetch");
    let body: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let sha = hex::encode(sha2::Sha256::digest(&body));
    let server = serve(body.clone(), 16);
    let sources = write_sources(&dir, server.port, &sha);
    let data = dir.join("data");
    let (s, d) = (sources.to_str().unwrap(), data.to_str().unwrap());

    // Success, then a second run finds the file present.
    let out = ebda(&["data", "fetch", "ok", "--dir", d, "--sources", s]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(data.join("ok/blob.bin")).unwrap(), body);
    let out = ebda(&["data", "fetch", "ok", "--dir", d, "--sources", s]);
    assert!(text(&out.stdout).contains("already present, checksum ok"));
    let out = ebda(&["data", "check", "ok", "--dir", d, "--sources", s]);
    assert!(
        out.status.success() && text(&out.stdout).contains("blob.bin ok"),
        "{}",
        text(&out.stdout)
    );

    // A cut download keeps its .part and says so; the next run resumes with Range.
    let out = ebda(&["data", "fetch", "cut", "--dir", d, "--sources", s]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("interrupted after 150000") && err.contains("resume"),
        "{err}"
    );
    assert_eq!(
        std::fs::metadata(data.join("cut/blob.bin.part"))
            .unwrap()
            .len(),
        150_000
    );
    assert!(!data.join("cut/blob.bin").exists());
    let out = ebda(&["data", "fetch", "cut", "--dir", d, "--sources", s]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(data.join("cut/blob.bin")).unwrap(), body);
    assert!(!data.join("cut/blob.bin.part").exists());
    let ranges = server.ranges.lock().unwrap().clone();
    assert!(
        ranges.contains(&("/cut/blob.bin".to_string(), Some("150000".to_string()))),
        "{ranges:?}"
    );

    // Checksum mismatch: nothing is kept.
    let out = ebda(&["data", "fetch", "bad", "--dir", d, "--sources", s]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("sha256 checksum mismatch") && err.contains(&sha),
        "{err}"
    );
    assert!(!data.join("bad/blob.bin").exists() && !data.join("bad/blob.bin.part").exists());

    // 404: the message names the URL and where to put the file by hand.
    let out = ebda(&["data", "fetch", "missing", "--dir", d, "--sources", s]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    let url = format!("http://127.0.0.1:{}/missing/blob.bin", server.port);
    assert!(
        err.contains(&url) && err.contains("404") && err.contains("place it at"),
        "{err}"
    );
    assert!(
        err.contains(&data.join("missing/blob.bin").display().to_string()),
        "{err}"
    );

    // Nothing listening: a clear message, not a hang.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sources = write_sources(&dir, dead, &sha);
    let out = ebda(&[
        "data",
        "fetch",
        "ok",
        "--dir",
        dir.join("other").to_str().unwrap(),
        "--sources",
        sources.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains(&format!("http://127.0.0.1:{dead}/ok/blob.bin")));

    // Datasets without a URL say how to get them.
    let out = ebda(&["data", "fetch", "office31", "--dir", d]);
    assert!(!out.status.success() && text(&out.stderr).contains("get it by hand"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn inspect_prints_counts_and_writes_a_grid() {
    let Some(root) = common::real_data("mnist") else {
        return;
    };
    let dir = common::temp_dir("inspect");
    let grid = dir.join("grid.png");
    let spec = format!("mnist:{}:train", root.display());
    let out = ebda(&[
        "data",
        "inspect",
        &spec,
        "--grid",
        grid.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["count"], 5000);
    assert_eq!(summary["class_counts"], serde_json::json!(vec![500; 10]));
    assert_eq!(summary["input_range"], serde_json::json!([-1.0, 1.0]));
    let img = image::open(&grid).unwrap().to_luma8();
    // 10 rows of 8 digits, each cell 56 px (28 scaled ×2) plus 2 px padding.
    assert_eq!((img.width(), img.height()), (8 * 58 + 2, 10 * 58 + 2));
    let bright = img.pixels().filter(|p| p.0[0] > 200).count();
    assert!(bright > 1000, "grid looks blank ({bright} bright pixels)");

    let out = ebda(&["data", "inspect", "mnist:/nonexistent/dir:train"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("/nonexistent/dir/train-images-idx3-ubyte.gz: file not found")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Model weights: torchvision publishes only an 8-hex-digit sha256 prefix
/// (in the file name); a file with that prefix is kept, another is deleted,
/// and the shipped `resnet50` entry names torchvision's URL and the place
/// for the file when the network is unreachable.
#[test]
fn weights_are_fetched_and_checked_by_their_sha256_prefix() {
    let dir = common::temp_dir("fetch-weights");
    let body: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let sha = hex::encode(sha2::Sha256::digest(&body));
    let server = serve(body.clone(), 8);
    let entry = |kind: &str, prefix: &str| {
        serde_json::json!({
            "description": "test weights", "citation": "test", "dir": "weights",
            "files": [{"name": format!("resnet50-{prefix}.pth"), "sha256_prefix": prefix,
                       "urls": [format!("http://127.0.0.1:{}/{kind}/w.pth", server.port)]}]
        })
    };
    let sources = dir.join("sources.json");
    let doc = serde_json::json!({"good": entry("ok", &sha[..8]), "wrong": entry("ok", "00000000")});
    std::fs::write(&sources, doc.to_string()).unwrap();
    let data = dir.join("data");
    let (s, d) = (sources.to_str().unwrap(), data.to_str().unwrap());
    let out = ebda(&["data", "fetch", "good", "--dir", d, "--sources", s]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let kept = data.join(format!("weights/resnet50-{}.pth", &sha[..8]));
    assert_eq!(std::fs::read(&kept).unwrap(), body);
    let out = ebda(&["data", "check", "good", "--dir", d, "--sources", s]);
    assert!(out.status.success(), "{}", text(&out.stdout));

    let out = ebda(&["data", "fetch", "wrong", "--dir", d, "--sources", s]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("sha256 prefix") && err.contains("00000000"),
        "{err}"
    );
    assert!(!data.join("weights/resnet50-00000000.pth").exists());

    // The shipped entry, with nothing reachable: which URL, and where to put it.
    let out = Command::new(env!("CARGO_BIN_EXE_ebda"))
        .args(["data", "fetch", "resnet50", "--dir", d])
        .env("HTTPS_PROXY", format!("http://127.0.0.1:{}", dead_port()))
        .env("ALL_PROXY", format!("http://127.0.0.1:{}", dead_port()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("https://download.pytorch.org/models/resnet50-0676ba61.pth")
            && err.contains(
                &data
                    .join("weights/resnet50-0676ba61.pth")
                    .display()
                    .to_string()
            ),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
