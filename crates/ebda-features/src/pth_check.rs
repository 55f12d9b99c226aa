//! Bounds a PyTorch zip archive's declared sizes by its real ones before
//! candle reads it.
//!
//! candle's pickle reader allocates what the file declares before reading
//! it: a `BINUNICODE` string's length, and a tensor's element count times
//! its dtype size. A few bytes can therefore declare gigabytes. This scan
//! walks the `data.pkl` opcodes candle understands (the stream itself is
//! bounded: a stored zip entry holds no more bytes than the archive) and
//! refuses a string longer than the bytes that follow it; after candle has
//! parsed the tensor table (no large allocation left there), every tensor's
//! bytes are checked against the size of the archive entry that holds them.

use candle_core::pickle::TensorInfo;
use std::io::Read;
use std::path::Path;

/// The largest `data.pkl` read (a ResNet-152's is ≈ 100 KB).
const MAX_PICKLE_BYTES: u64 = 64 << 20;

/// A reason the archive cannot be read, without the file's name.
type Check = std::result::Result<(), String>;

/// Checks every `data.pkl` of the archive at `path`: each string it declares
/// fits in the bytes that follow. Other malformations are left to candle's
/// reader, which reports them without allocating by a declared size.
pub(crate) fn check_pickles(path: &Path) -> Check {
    let mut zip = open(path)?;
    for i in 0..zip.len() {
        let entry = zip
            .by_index(i)
            .map_err(|e| format!("cannot read zip entry {i}: {e}"))?;
        let name = entry
            .name()
            .map_err(|e| format!("zip entry {i} has an unreadable name: {e}"))?
            .to_string();
        if !name.ends_with("data.pkl") {
            continue;
        }
        let mut bytes = Vec::new();
        entry
            .take(MAX_PICKLE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read {name}: {e}"))?;
        if bytes.len() as u64 > MAX_PICKLE_BYTES {
            return Err(format!(
                "{name} is larger than {MAX_PICKLE_BYTES} bytes: not a model's tensor table"
            ));
        }
        scan(&bytes).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// Checks that each tensor's bytes (from its storage offset) fit in the
/// archive entry that holds its storage.
pub(crate) fn check_tensor_sizes(path: &Path, infos: &[TensorInfo]) -> Check {
    let mut zip = open(path)?;
    for info in infos {
        let entry = zip.by_name(&info.path).map_err(|e| {
            format!(
                "tensor {:?}: its storage {} is missing from the archive: {e}",
                info.name, info.path
            )
        })?;
        let available = entry.size();
        // candle's layout holds the storage offset in bytes.
        let needed = (info.layout.shape().elem_count() as u64)
            .checked_mul(info.dtype.size_in_bytes() as u64)
            .and_then(|n| n.checked_add(info.layout.start_offset() as u64));
        match needed {
            Some(n) if n <= available => {}
            _ => {
                return Err(format!(
                    "tensor {:?} declares shape {:?} of {:?} from byte {}, more than the {available} bytes of {}",
                    info.name,
                    info.layout.dims(),
                    info.dtype,
                    info.layout.start_offset(),
                    info.path
                ));
            }
        }
    }
    Ok(())
}

fn open(
    path: &Path,
) -> std::result::Result<zip::ZipArchive<std::io::BufReader<std::fs::File>>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| format!("not a readable zip archive: {e}"))
}

/// Walks the opcodes candle's reader knows (`candle_core::pickle::OpCode`)
/// and refuses a `BINUNICODE` whose length exceeds the bytes after it.
/// Stops at `STOP`, at an opcode candle does not know (it refuses those
/// itself) and at a truncated argument (candle reports the short read).
fn scan(b: &[u8]) -> Check {
    let mut i = 0usize;
    while i < b.len() {
        let op = b[i];
        i += 1;
        let arg = match op {
            // PROTO, BINPUT, BININT1, BINGET
            0x80 | b'q' | b'K' | b'h' => 1,
            // LONG_BINPUT, BININT, LONG_BINGET
            b'r' | b'J' | b'j' => 4,
            b'M' => 2, // BININT2
            b'G' => 8, // BINFLOAT
            b'X' => {
                // BINUNICODE: u32 length, then the bytes
                let Some(len) = b.get(i..i + 4) else {
                    return Ok(());
                };
                let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
                let left = b.len() - (i + 4);
                if len > left {
                    return Err(format!(
                        "a string at byte {} declares {len} bytes but only {left} follow",
                        i - 1
                    ));
                }
                4 + len
            }
            0x8a => match b.get(i) {
                // LONG1: u8 length, then the bytes
                Some(&n) => 1 + n as usize,
                None => return Ok(()),
            },
            b'c' => {
                // GLOBAL: module and name, each ended by a newline
                let mut j = i;
                for _ in 0..2 {
                    match b[j.min(b.len())..].iter().position(|&c| c == b'\n') {
                        Some(p) => j += p + 1,
                        None => return Ok(()),
                    }
                }
                j - i
            }
            b'.' => return Ok(()),
            b')' | b'R' | b'(' | b't' | b'Q' | 0x85 | 0x86 | 0x87 | 0x88 | 0x89 | b'N' | b's'
            | b'u' | b'}' | b'd' | b'b' | 0x81 | b']' | b'a' | b'e' => 0,
            _ => return Ok(()),
        };
        i += arg;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_longer_than_the_stream_are_refused() {
        let mut ok = vec![0x80, 2, b'X'];
        ok.extend(3u32.to_le_bytes());
        ok.extend(b"abc.");
        assert_eq!(scan(&ok), Ok(()));
        let mut bad = vec![0x80, 2, b'X'];
        bad.extend(0xffff_fff0u32.to_le_bytes());
        bad.extend(b"abc.");
        let e = scan(&bad).unwrap_err();
        assert!(
            e.contains("declares 4294967280 bytes but only 4 follow"),
            "{e}"
        );
    }

    #[test]
    fn arguments_of_every_known_opcode_are_skipped() {
        // GLOBAL, BININT, BININT2, BINFLOAT, LONG1 and a string whose bytes
        // contain opcode values: a misaligned walk would read `X` + a huge
        // length from inside them.
        let mut p =
            b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nJ\x01\x00\x00\x00M\x02\x00".to_vec();
        p.extend(b"G\x00\x00\x00\x00\x00\x00\xf0\x3f\x8a\x02\x01\x00");
        let at = p.len();
        p.push(b'X');
        p.extend(5u32.to_le_bytes());
        p.extend(b"X\xff\xff\xff\x7f");
        p.extend(b"q\x01r\x02\x00\x00\x00h\x01j\x02\x00\x00\x00K\x07.");
        assert_eq!(scan(&p), Ok(()));
        // The same string, its length off by one, swallows the next opcode.
        p[at + 1..at + 5].copy_from_slice(&50u32.to_le_bytes());
        assert!(scan(&p).is_err());
    }

    #[test]
    fn truncated_and_unknown_streams_are_left_to_candle() {
        assert_eq!(scan(b"\x80"), Ok(()));
        assert_eq!(scan(b"X\x01\x00"), Ok(()));
        assert_eq!(scan(b"cmodule"), Ok(()));
        assert_eq!(scan(b"\xfe\xff\xff"), Ok(()));
    }
}
