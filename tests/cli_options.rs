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

const RUN: [&str; 4] = ["run", "examples/kvs.ded", "--deploy", "examples/kvs.toml"];

fn run_with(extra: &[&str]) -> Vec<&'static str> {
    let mut args = RUN.to_vec();
    // Leaked: test-only, a handful of short strings.
    args.extend(extra.iter().map(|s| &*String::leak(s.to_string())));
    args
}

#[test]
fn durations_out_of_range_are_refused() {
    for value in ["inf", "NaN", "-1", "1e20"] {
        // `=`: a leading `-` would read as another option.
        let option = format!("--reply-timeout={value}");
        refused(&run_with(&[&option]), "--reply-timeout");
        refused(&["bench", &option], "--reply-timeout");
    }
    // Each of these panicked in Duration::from_secs_f64 or in adding the two durations.
    for fault in ["replica/1@1e20", "replica/1@1e19+1e19"] {
        refused(&run_with(&["--kill-and-restart", fault]), "at most 1000000 seconds");
    }
    for fault in ["replica/1@inf", "replica/1@1+NaN"] {
        refused(&run_with(&["--kill-and-restart", fault]), "expected a finite, non-negative number of seconds");
    }
}

#[test]
fn rates_and_counts_out_of_range_are_refused() {
    for rate in ["0", "-5", "inf", "NaN", "1e300"] {
        refused(&run_with(&[&format!("--rate={rate}")]), "expected a finite rate");
    }
    refused(&run_with(&["--requests", "0"]), "--requests");
    refused(&["bench", "--requests", "0"], "--requests");
}

/// `--rate 1e-9 --requests 300` sent nothing before the run ended and exited 0.
#[test]
fn a_run_that_would_send_nothing_is_refused() {
    refused(&run_with(&["--rate", "1e-9", "--requests", "300"]), "nothing would be sent");
    refused(&run_with(&["--rate", "0.05", "--reply-timeout", "10"]), "nothing would be sent");
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
