//! `compart graph` through the real binary: the component graph of Paxos for Graphviz, its JSON,
//! and a program with errors refused.

use std::process::Command;

fn compart(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_compart")).current_dir(env!("CARGO_MANIFEST_DIR")).args(args).output().unwrap()
}

#[test]
fn paxos_as_dot() {
    let out = compart(&["graph", "examples/paxos.ded"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    insta::assert_snapshot!(String::from_utf8(out.stdout).unwrap());
}

#[test]
fn json_has_every_component_and_channel() {
    let out = compart(&["graph", "examples/voting.ded", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let graph: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> =
        graph["components"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["leader", "participant"]);
    let edge = |from: &str, to: &str| {
        graph["edges"].as_array().unwrap().iter().find(|e| e["from"] == from && e["to"] == to).cloned()
    };
    assert_eq!(edge("leader", "participant").unwrap()["relations"], serde_json::json!(["ballot"]));
    assert_eq!(edge("participant", "leader").unwrap()["relations"], serde_json::json!(["vote"]));
    assert_eq!(graph["components"][1]["kind"], "parallel", "{graph}");
}

#[test]
fn programs_with_errors_and_bad_formats_are_refused() {
    let dir = std::env::temp_dir().join(format!("compart-graph-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.ded");
    std::fs::write(&broken, "component a {\n    bar(\n}\n").unwrap();
    assert_eq!(compart(&["graph", broken.to_str().unwrap()]).status.code(), Some(1));
    assert_eq!(compart(&["graph", "examples/paxos.ded", "--format", "svg"]).status.code(), Some(2));
    assert_eq!(compart(&["graph", "no/such/file.ded"]).status.code(), Some(2));
    std::fs::remove_dir_all(dir).unwrap();
}
