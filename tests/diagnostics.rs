//! The diagnostics corpus: every program under tests/diagnostics/ is checked by the real
//! `compart check` binary; its report is snapshot-tested and must contain the code the file is named after.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use compart_analysis::Code;

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/diagnostics");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ded"))
        .collect();
    files.sort();
    files
}

fn check(path: &Path, format: &str) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_compart"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["check", "--format", format])
        .arg(path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// The code a fixture is named after: `e0101_unknown_relation.ded` -> E0101.
fn expected_code(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    let code = stem.split('_').next()?;
    (code.len() == 5 && code[1..].chars().all(|c| c.is_ascii_digit())).then(|| code.to_uppercase())
}

#[test]
fn every_fixture_reports_its_code_and_matches_its_snapshot() {
    let files = corpus();
    assert!(files.len() >= 40, "the corpus has only {} programs", files.len());
    let mut failures = Vec::new();
    for path in files {
        let (status, _, stderr) = check(&path, "human");
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        if let Some(code) = expected_code(&path) {
            if !stderr.contains(&format!("[{code}]")) {
                failures.push(format!("{name}: expected {code} in\n{stderr}"));
            }
            if status != i32::from(code.starts_with('E')) {
                failures.push(format!("{name}: exit status {status}"));
            }
        } else if status == 0 {
            failures.push(format!("{name}: a broken program must fail the check"));
        }
        insta::assert_snapshot!(name, stderr);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_code_has_a_fixture() {
    let covered: HashSet<String> = corpus().iter().filter_map(|p| expected_code(p)).collect();
    let missing: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).filter(|c| !covered.contains(*c)).collect();
    assert!(missing.is_empty(), "codes without a fixture in tests/diagnostics: {missing:?}");
}

#[test]
fn json_reports_one_based_positions() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/diagnostics/e0101_unknown_relation.ded");
    let (status, stdout, _) = check(&path, "json");
    assert_eq!(status, 1);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let diagnostics = json[0]["diagnostics"].as_array().unwrap();
    let diagnostic = diagnostics.iter().find(|d| d["code"] == "E0101").expect("an E0101 diagnostic");
    assert_eq!(diagnostic["code"], "E0101");
    assert_eq!(diagnostic["range"]["line"], 4);
    assert_eq!(diagnostic["range"]["column"], 16);
    assert_eq!(diagnostic["fix"]["edits"][0]["new_text"], "request");
}

#[test]
fn examples_check_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "ded") {
            let (status, _, stderr) = check(&path, "human");
            assert_eq!(status, 0, "{}:\n{stderr}", path.display());
            assert!(stderr.contains("no problems"), "{}:\n{stderr}", path.display());
            let fmt = Command::new(env!("CARGO_BIN_EXE_compart")).args(["fmt", "--check"]).arg(&path).output().unwrap();
            assert!(fmt.status.success(), "{} is not canonically formatted (run `compart fmt`)", path.display());
            count += 1;
        }
    }
    assert!(count >= 4);
}

#[test]
fn usage_errors_exit_2() {
    let missing = Command::new(env!("CARGO_BIN_EXE_compart")).args(["check", "no/such/file.ded"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let bad_flag = Command::new(env!("CARGO_BIN_EXE_compart")).args(["check", "--frobnicate"]).output().unwrap();
    assert_eq!(bad_flag.status.code(), Some(2));
}
