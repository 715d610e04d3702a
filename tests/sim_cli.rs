//! `compart sim` from the command line: exit codes, the replay line, determinism.

use std::process::Command;

fn sim(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_compart"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("sim")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn clean_example_exits_zero() {
    let (code, text) = sim(&["examples/voting.ded", "--deploy", "examples/voting.toml", "--schedules", "5"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("5 schedule(s) from seed 0: no violation"), "{text}");
}

#[test]
fn broken_paxos_exits_one_and_replays() {
    let args = ["tests/fixtures/paxos_quorum_of_one.ded", "--deploy", "examples/paxos.toml", "--schedules", "40"];
    let (code, text) = sim(&args);
    assert_eq!(code, 1, "{text}");
    let replay = text.lines().find_map(|l| l.strip_prefix("replay with: ")).expect("replay line").to_string();
    let mut again: Vec<&str> = args[..3].to_vec();
    again.extend(replay.split_whitespace());
    let (code2, text2) = sim(&again);
    assert_eq!(code2, 1);
    // The replayed run reports the same violation and minimised trace.
    let tail = |t: &str| t[t.find("violation at").unwrap_or(0)..].to_string();
    assert_eq!(tail(&text2), tail(&text));
}

#[test]
fn bad_deployment_is_a_usage_error() {
    let (code, text) = sim(&["examples/voting.ded", "--deploy", "examples/paxos.toml"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("not a component"), "{text}");
}

/// The replay line dropped `--inputs`, `--workload` and `--no-faults`: a printed replay of a
/// kvs violation found nothing. Every option that changes the run is on the line now, and
/// copying it (with the program and deployment) finds the same violation.
#[test]
fn the_replay_line_carries_every_option_and_replays() {
    let args = [
        "examples/kvs.ded",
        "--deploy",
        "examples/kvs.toml",
        "--schedules",
        "300",
        "--steps",
        "150",
        "--inputs",
        "25",
        "--workload",
        "put=3,get=1",
        // Without durability a crashed kvs leader numbers writes again (crashes inside a tick
        // no longer break the durable kvs: tests/sim_examples.rs).
        "--no-durability",
    ];
    replays(&args, &["--inputs 25", "--workload put=3,get=1", "--no-durability"]);
    // A broken Paxos (a quorum of one) violates agreement without any fault.
    let args = [
        "tests/fixtures/paxos_quorum_of_one.ded",
        "--deploy",
        "examples/paxos.toml",
        "--schedules",
        "40",
        "--no-faults",
        "--inputs",
        "20",
    ];
    replays(&args, &["--no-faults", "--inputs 20"]);
}

/// Runs `args` (program and deployment first), expects a violation and a replay line holding
/// `carried`, runs the line and expects the same violation and trace.
fn replays(args: &[&str], carried: &[&str]) {
    let (code, text) = sim(args);
    assert_eq!(code, 1, "{text}");
    let replay = text.lines().find_map(|l| l.strip_prefix("replay with: ")).expect("replay line").to_string();
    for option in carried {
        assert!(replay.contains(option), "{option} missing: {replay}");
    }
    let mut again: Vec<&str> = args[..3].to_vec();
    again.extend(replay.split_whitespace());
    let (code2, text2) = sim(&again);
    assert_eq!(code2, 1, "{text2}");
    let tail = |t: &str| t[t.find("violation at").unwrap_or(0)..].to_string();
    assert_eq!(tail(&text2), tail(&text));
}
