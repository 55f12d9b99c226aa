//! The results tables in README.md are `ebda report`'s output on the committed
//! run records, verbatim: numbers in the README cannot drift from the runs.

use std::process::Command;

fn report(dir: &str) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(env!("CARGO_BIN_EXE_ebda"))
        .args(["report", &format!("{root}/{dir}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn readme_tables_are_the_reports_of_the_committed_runs() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for dir in [
        "experiments/digits/results-5k",
        "experiments/office_caltech10/results",
        "experiments/digits/results-m2mm",
    ] {
        let table = report(dir);
        assert!(table.contains("| ebda |"), "{table}");
        assert!(
            readme.contains(table.trim()),
            "README.md does not show `ebda report {dir}`:\n{table}"
        );
    }
}
