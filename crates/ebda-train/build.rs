//! Embeds the git revision of the source tree (and whether it had
//! uncommitted changes) so that every run's manifest names the code that
//! made it, also when the binary runs outside the repository.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let revision = git(&["rev-parse", "HEAD"]).unwrap_or_default();
    let dirty = if revision.is_empty() {
        String::new()
    } else {
        git(&["status", "--porcelain", "--untracked-files=no"])
            .map(|s| (!s.is_empty()).to_string())
            .unwrap_or_default()
    };
    println!("cargo:rustc-env=EBDA_GIT_REVISION={revision}");
    println!("cargo:rustc-env=EBDA_GIT_DIRTY={dirty}");
    // Rebuild when the commit or the tracked sources change.
    if let Some(top) = git(&["rev-parse", "--show-toplevel"]) {
        let top = std::path::Path::new(&top);
        // `--git-path` answers relative to this script's directory, as
        // cargo reads relative paths here.
        let mut files = vec!["HEAD".to_string(), "index".into(), "packed-refs".into()];
        files.extend(git(&["rev-parse", "--symbolic-full-name", "HEAD"]));
        for file in files {
            if let Some(path) = git(&["rev-parse", "--git-path", &file]) {
                println!("cargo:rerun-if-changed={path}");
            }
        }
        for dir in ["crates", "src", "Cargo.toml", "Cargo.lock"] {
            println!("cargo:rerun-if-changed={}", top.join(dir).display());
        }
    }
}
