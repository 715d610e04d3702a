//! Scaling classes and reasons of every example program, as the CLI prints them.

use compart_analysis::{analyze, scaling};

fn report(path: &str) -> String {
    let text = std::fs::read_to_string(format!("{}/../examples/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let analysis = analyze(&text);
    assert!(!analysis.has_errors(), "{path} has errors: {:?}", analysis.diagnostics);
    scaling::render(&analysis.program, &scaling::classify(&analysis.program))
}

#[test]
fn voting() {
    insta::assert_snapshot!(report("voting.ded"));
}

#[test]
fn two_phase_commit() {
    insta::assert_snapshot!(report("two_phase_commit.ded"));
}

#[test]
fn paxos() {
    insta::assert_snapshot!(report("paxos.ded"));
}

#[test]
fn kvs() {
    insta::assert_snapshot!(report("kvs.ded"));
}

#[test]
fn mencius() {
    insta::assert_snapshot!(report("mencius.ded"));
}

#[test]
fn pbft() {
    insta::assert_snapshot!(report("pbft.ded"));
}
