//! Profile-guided rounds of `compart optimize` on Paxos, from stored run reports (the commands in
//! docs/compartmentalization.md): round 1 with the original program's profile, round 2 adding the
//! profile of round 1's output run on the local cluster, whose rewritten rules (the filtered nack
//! among them) are then costed as measured. Round 2 partitions the commit part, the measured
//! bottleneck after the proposer; it leaves the acceptors whole: with the calibrated costs they
//! are well under the proposer, as measured (bench/calibration/paxos.profiled.json: sealed
//! acceptor instances at 1.7 CPU-µs per request, unsealed ones at 3.1, the proposer at 3.5).

use std::process::Command;

fn compart(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_compart")).current_dir(env!("CARGO_MANIFEST_DIR")).args(args).output().unwrap()
}

/// Without batching: these rounds are about the profiles' rules, which a batching would leave
/// to the static frequencies (they fire per batch, not per request as profiled).
fn optimize(profiles: &[&str]) -> String {
    let mut args = vec!["optimize", "examples/paxos.ded", "--machines", "29", "--no-batch"];
    for p in profiles {
        args.extend(["--profile", p]);
    }
    let out = compart(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    // The calibration, the table, why the search stopped, what the bounded check explored
    // before each step, and the components; the program text follows.
    text.split("\n\n").take(5).collect::<Vec<_>>().join("\n\n")
}

/// Both rounds' programs, written with `--out`, keep Paxos' invariants under `compart verify`.
#[test]
fn both_rounds_outputs_pass_verify() {
    let dir = std::env::temp_dir().join(format!("compart-optimize-profiles-{}", std::process::id()));
    let run1 = "tests/fixtures/profiled/paxos.run1.json";
    let run2 = "tests/fixtures/profiled/paxos.run2.json";
    for (round, profiles) in [("1", vec![run1]), ("2", vec![run1, run2])] {
        let out_dir = dir.join(round);
        let mut args = vec!["optimize", "examples/paxos.ded", "--machines", "29", "--out", out_dir.to_str().unwrap()];
        for p in &profiles {
            args.extend(["--profile", p]);
        }
        let out = compart(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let program = out_dir.join("paxos.optimized.ded");
        let verify = compart(&[
            "verify",
            "examples/paxos.ded",
            program.to_str().unwrap(),
            "--invariants-only",
            "--seeds",
            "10",
            "--inputs",
            "20",
        ]);
        let report = String::from_utf8_lossy(&verify.stdout);
        assert!(verify.status.success(), "round {round}: {report}");
        assert!(report.contains("no difference found over 10 seed(s)"), "{report}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_profiled_round_partitions_the_commit_part() {
    let first = optimize(&["tests/fixtures/profiled/paxos.run1.json"]);
    assert!(!first.contains("partition `proposals_part`"), "{first}");
    let second = optimize(&["tests/fixtures/profiled/paxos.run1.json", "tests/fixtures/profiled/paxos.run2.json"]);
    assert!(second.contains("partition `proposals_part`"), "{second}");
    assert!(!second.contains("sealed partitioning"), "{second}");
    insta::assert_snapshot!(format!("round 1\n{first}\n\nround 2\n{second}"));
}

#[test]
fn a_profile_of_an_unrelated_program_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_compart"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "optimize",
            "examples/voting.ded",
            "--machines",
            "8",
            "--profile",
            "tests/fixtures/profiled/paxos.run1.json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("none of its rules"));
}

/// With no hint the search batches Paxos' proposer, says how replies' positions change, and
/// checks it on invariants; `--no-batch` turns it off and `--batch N` forces one size.
#[test]
fn paxos_is_batched_unless_told_not_to() {
    let out = compart(&["optimize", "examples/paxos.ded", "--machines", "29"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let step = text.lines().find(|l| l.contains("batching of `proposer` (size ")).unwrap_or_else(|| panic!("{text}"));
    assert!(step.contains("log positions are spaced by") && step.contains("checked on invariants"), "{step}");
    assert!(text.contains("   1  invariants: "), "the batching checked on invariants:\n{text}");
    assert!(text.contains("\n[partitions]\nproposer_batcher = "), "{text}");

    let off = compart(&["optimize", "examples/paxos.ded", "--machines", "29", "--no-batch", "--no-check"]);
    assert!(off.status.success(), "{}", String::from_utf8_lossy(&off.stderr));
    let off = String::from_utf8(off.stdout).unwrap();
    assert!(!off.contains("batching") && !off.contains("proposer_batcher"), "{off}");

    let forced = compart(&["optimize", "examples/paxos.ded", "--machines", "29", "--batch", "16", "--no-check"]);
    assert!(String::from_utf8_lossy(&forced.stdout).contains("batching of `proposer` (size 16)"));

    for bad in [&["--batch", "1"][..], &["--batch", "16", "--no-batch"]] {
        let mut args = vec!["optimize", "examples/paxos.ded", "--machines", "29"];
        args.extend(bad);
        let out = compart(&args);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "{bad:?}");
    }
}

/// `--clients` sizes the plan for the run's clients: fewer clients, fewer requests per tick, so
/// fewer batcher instances keep the batches full.
#[test]
fn fewer_clients_fewer_batcher_instances() {
    let batchers = |extra: &[&str]| {
        let mut args = vec!["optimize", "examples/paxos.ded", "--machines", "29", "--no-check"];
        args.extend(extra);
        let out = compart(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let partitions = text.split("[partitions]").nth(1).unwrap_or("");
        let line = partitions.lines().find(|l| l.starts_with("proposer_batcher = "));
        let count = line.and_then(|l| l.trim_start_matches("proposer_batcher = ").parse::<usize>().ok());
        (count.unwrap_or_else(|| panic!("{text}")), text)
    };
    let (many, text) = batchers(&[]);
    assert!(text.contains("1024 closed-loop clients"), "{text}");
    let (few, text) = batchers(&["--clients", "256"]);
    assert!(text.contains("256 closed-loop clients"), "{text}");
    assert!(few < many, "{few} batcher instances for 256 clients, {many} for 1024");
    assert_eq!(
        compart(&["optimize", "examples/paxos.ded", "--machines", "29", "--clients", "0"]).status.code(),
        Some(2)
    );
}
