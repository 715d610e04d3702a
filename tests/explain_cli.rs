//! `compart explain` through the real binary: classes, and the sealing note for a sequential
//! component that sealed partitioning would split.

use std::process::Command;

fn explain(file: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_compart"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["explain", file])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn sequential_components_that_sealing_splits_get_a_note() {
    let paxos = explain("examples/paxos.ded");
    assert!(paxos.contains("component acceptor"), "{paxos}");
    assert!(
        paxos.contains("note: `acceptor` can be partitioned with sealing (`compart rewrite examples/paxos.ded --partition acceptor --seal`)"),
        "{paxos}"
    );
    // The proposer's maxima feed its own decisions, not replies: no sealing for it.
    assert!(!paxos.contains("note: `proposer`"), "{paxos}");
    // Partitionable components need no sealing.
    assert!(!explain("examples/voting.ded").contains("with sealing"));
}
