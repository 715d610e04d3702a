//! `compart run --durable` end to end: a node whose log is damaged refuses to start (the run
//! exits 2 naming the file, the record and the offset, the file untouched) unless the run passes
//! --accept-log-loss; nodes whose names escaped alike used to share one log.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("compart-durable-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `kv` (partitioned in 2: nodes `kv/0.0`, `kv/0.1`) answers requests and tells `kv_0` (nodes
/// `kv_0/0`, `kv_0/1`); both keep what they saw in tables. Under the old file naming (`/` and
/// `.` as `_`) `kv/0.1` and `kv_0/1` wrote one file.
fn write_program(dir: &Path) -> (PathBuf, PathBuf) {
    let ded = dir.join("p.ded");
    std::fs::write(
        &ded,
        "component kv partitioned by id {
            input req(id: int, payload: string) key(id)
            output rep(id: int, payload: string)
            table kept(id: int, payload: string)
            kept(id, payload) :- req(id, payload).
            rep(id, payload) :- req(id, payload).
            note@n(id) :~ req(id, _), nodes(\"kv_0\", n).
        }
        component kv_0 {
            channel note(id: int)
            table seen(id: int)
            seen(id) :- note(id).
        }\n",
    )
    .unwrap();
    let toml = dir.join("p.toml");
    std::fs::write(&toml, "[components]\nkv = { instances = 1, partitions = 2 }\nkv_0 = 2\n").unwrap();
    (ded, toml)
}

fn run(ded: &Path, toml: &Path, log: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_compart"))
        .arg("run")
        .arg(ded)
        .arg("--deploy")
        .arg(toml)
        .args(["--requests", "300", "--clients", "4", "--auto-ports", "--quiet", "--durable"])
        .arg(log)
        .args(extra)
        .output()
        .unwrap()
}

fn show(out: &Output) -> String {
    format!("{}\n{}\n{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn logs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn durable_logs_one_file_per_node_and_damage_refused_unless_accepted() {
    let dir = temp("damage");
    let (ded, toml) = write_program(&dir);
    let log = dir.join("log");
    let out = run(&ded, &toml, &log, &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(logs(&log), ["kv%2F0%2E0.log", "kv%2F0%2E1.log", "kv_0%2F0.log", "kv_0%2F1.log"]);
    // A second run recovers every node from its own log (a shared file would be refused: its
    // header names one node).
    let out = run(&ded, &toml, &log, &[]);
    assert!(out.status.success(), "{}", show(&out));

    // One flipped bit in the middle of a log.
    let victim = log.join("kv_0%2F1.log");
    let mut bytes = std::fs::read(&victim).unwrap();
    assert!(bytes.len() > 2000, "{} bytes", bytes.len());
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&victim, &bytes).unwrap();
    let out = run(&ded, &toml, &log, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in ["kv_0%2F1.log", "is damaged at record", "byte offset", "--accept-log-loss"] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
    assert_eq!(std::fs::read(&victim).unwrap(), bytes, "the refused log is untouched");

    let out = run(&ded, &toml, &log, &["--accept-log-loss"]);
    assert!(out.status.success(), "{}", show(&out));
    let aside: Vec<String> = logs(&log).into_iter().filter(|n| n.starts_with("kv_0%2F1.log.damaged-")).collect();
    assert_eq!(aside.len(), 1, "{:?}", logs(&log));
    let kept = std::fs::read(log.join(&aside[0])).unwrap();
    assert!(kept.len() >= bytes.len() - middle, "the damaged record and everything after it are kept");
    assert_eq!(kept[..], bytes[bytes.len() - kept.len()..]);
    let _ = std::fs::remove_dir_all(&dir);
}
