//! Option values and input files no command may crash on (issue 14, finding 11): out-of-range
//! durations, rates and counts, and devices or huge files as input, each refused with a clear
//! message and exit code 2, never a panic (exit 101) or an unbounded read.

use std::process::Command;

fn compart(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_compart"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn refused(args: &[&str], message: &str) {
    let (code, err) = compart(args);
    assert_eq!(code, 2, "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(err.contains(message), "{args:?}: expected `{message}` in\n{err}");
}

/// `/dev/zero` as a program was read until memory ran out (about 4 GB).
#[test]
fn devices_and_huge_files_are_read_with_a_limit() {
    if !std::path::Path::new("/dev/zero").exists() {
        return;
    }
    let zero = "/dev/zero";
    for args in [
        vec!["check", zero],
        vec!["fmt", "--check", zero],
        vec!["explain", zero],
        vec!["optimize", zero, "--machines", "4"],
        vec!["sim", zero, "--deploy", "examples/kvs.toml"],
        vec!["sim", "examples/kvs.ded", "--deploy", zero],
        vec!["verify", "examples/kvs.ded", zero],
        vec!["run", zero, "--deploy", "examples/kvs.toml", "--auto-ports", "--quiet"],
        vec!["run", "examples/kvs.ded", "--deploy", zero, "--auto-ports", "--quiet"],
    ] {
        refused(&args, "cannot read /dev/zero: larger than 64 MiB");
    }
}
