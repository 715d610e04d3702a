//! Every rewrite of the examples that the snapshot tests show (analysis/tests/scaling_rewrite.rs),
//! and the optimizer's plans, applied through the real CLI and checked with `compart verify`:
//! voting and 2PC on outputs and invariants, Paxos on invariants (which slot a request gets depends
//! on timing). The rewritten programs get 3 instances per partitioned logical node.

use std::path::PathBuf;
use std::process::{Command, Output};

fn compart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_compart")).current_dir(env!("CARGO_MANIFEST_DIR")).args(args).output().unwrap()
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("compart-verify-rewrites-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Apply `rewrite` (arguments after the file) to `examples/NAME.ded`, then verify the result.
fn rewrite_then_verify(name: &str, rewrite: &[&str], invariants_only: bool) {
    let file = format!("examples/{name}.ded");
    let mut args = vec!["rewrite", file.as_str()];
    args.extend(rewrite);
    let out = compart(&args);
    assert!(out.status.success(), "{rewrite:?}: {}", String::from_utf8_lossy(&out.stderr));
    let d = dir(&format!("{name}-{}", rewrite.join("-").replace([':', ',', '/'], "_")));
    let rewritten = d.join(format!("{name}.ded"));
    std::fs::write(&rewritten, &out.stdout).unwrap();
    verify(&file, &rewritten, invariants_only, &format!("{rewrite:?}"));
    let _ = std::fs::remove_dir_all(&d);
}

fn verify(original: &str, rewritten: &std::path::Path, invariants_only: bool, what: &str) {
    let mut args = vec!["verify", original, rewritten.to_str().unwrap(), "--seeds", "6", "--inputs", "12"];
    if invariants_only {
        args.push("--invariants-only");
    }
    let out = compart(&args);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{what}: {report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains("no difference found over 6 seed(s)"), "{what}: {report}");
}

#[test]
fn voting_rewrites_keep_outputs() {
    rewrite_then_verify("voting", &["--decouple", "leader:ballot", "--into", "broadcaster"], false);
    rewrite_then_verify("voting", &["--partition", "leader", "--by", "id"], false);
}

#[test]
fn two_phase_commit_rewrites_keep_outputs() {
    let acks = "coordinator:ack_log,ack_count,done,finished";
    rewrite_then_verify("two_phase_commit", &["--decouple", acks, "--into", "acks"], false);
    rewrite_then_verify("two_phase_commit", &["--partition", "coordinator", "--by", "txn"], false);
}

#[test]
fn paxos_rewrites_keep_invariants() {
    rewrite_then_verify("paxos", &["--decouple", "proposer:p2a", "--into", "proxy_leader"], true);
    let commit = "proposer:proposals,accepted_by,accept_count,commit,committed,reply";
    rewrite_then_verify("paxos", &["--decouple", commit, "--into", "commit_part"], true);
    rewrite_then_verify("paxos", &["--partition", "acceptor", "--by", "slot", "--seal"], true);
    rewrite_then_verify("paxos", &["--batch", "proposer", "--size", "2"], true);
}

/// Mencius' p2a broadcast as a proxy, which the optimizer does not try (docs/compartmentalization.md,
/// Mencius): the decoupling itself is sound.
#[test]
fn mencius_p2a_proxy_keeps_outputs() {
    rewrite_then_verify("mencius", &["--decouple", "leader:p2a", "--into", "p2a_proxy"], false);
}

/// Grid quorums keep Paxos' agreement, and the check that gates them can fail: a grid whose
/// phase-1 quorum is a whole row, like phase 2's (two rows never meet), lets two leaders commit
/// different values in one slot, and `compart verify --invariants-only` finds the schedule.
#[test]
fn paxos_grid_keeps_agreement_and_a_wrong_grid_is_caught() {
    rewrite_then_verify("paxos", &["--grid", "acceptor", "--rows", "2"], true);
    let out = compart(&["rewrite", "examples/paxos.ded", "--grid", "acceptor", "--rows", "2", "--no-check"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let phase1 = "promise_count(b, count(r)) :- promise_complete(a, b), acceptor_row(a, r).";
    let test = "promise_count(b, c),\n        acceptor_rows(c),";
    assert!(text.contains(phase1) && text.contains(test), "{text}");
    let rows_for_both = text
        .replace(phase1, "promise_count(b, r, count(a)) :- promise_complete(a, b), acceptor_row(a, r).")
        .replace(test, "promise_count(b, r, c),\n        acceptor_row_size(r, c),");
    let d = dir("paxos-wrong-grid");
    let rewritten = d.join("paxos.ded");
    std::fs::write(&rewritten, rows_for_both).unwrap();
    let out = compart(&["check", rewritten.to_str().unwrap()]);
    assert!(out.status.success(), "the wrong grid is a valid program: {}", String::from_utf8_lossy(&out.stderr));
    let args = ["verify", "examples/paxos.ded", rewritten.to_str().unwrap(), "--invariants-only", "--seeds", "6"];
    let out = compart(&args);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("violated in the rewritten program: agreement("), "{report}");
    let _ = std::fs::remove_dir_all(&d);
}

/// The check that gates batching can fail: a batcher that answers only the first request of each
/// batch loses answers the original always gives, and `compart verify --invariants-only` says so.
/// On voting, whose every run answers every request; on Paxos, which request the original answers
/// depends on timing (preemptions), so the coarse comparison cannot see a lost answer there: the
/// cluster test (tests/cluster_examples.rs) checks the batched Paxos answers every request once.
#[test]
fn voting_batching_keeps_answers_and_a_broken_one_is_caught() {
    rewrite_then_verify("voting", &["--batch", "leader", "--size", "2"], true);
    let out = compart(&["rewrite", "examples/voting.ded", "--batch", "leader", "--size", "2", "--no-check"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let unbatch = "client_reply(q0, q1) :- client_reply_batch(batch, _), batch_held(batch, pos, q0, q1).";
    assert!(text.contains(unbatch), "{text}");
    let broken = text.replace(unbatch, &unbatch.replace("batch_held(batch, pos,", "batch_held(batch, 1,"));
    let d = dir("voting-broken-batch");
    let rewritten = d.join("voting.ded");
    std::fs::write(&rewritten, broken).unwrap();
    let out = compart(&["verify", "examples/voting.ded", rewritten.to_str().unwrap(), "--invariants-only"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("missing output: client_reply("), "{report}");
    let _ = std::fs::remove_dir_all(&d);
}

/// Mencius' clients send each request to one leader (examples/mencius.toml: `send_to =
/// "round-robin"`), and the batcher sends each batch to one leader. Sending every batch to every
/// leader instead, as batching once did, has each leader commit the batch in a slot of its own
/// and each request answered several times (2,416 duplicate replies in 3,000 requests on the
/// cluster): every invariant still holds, and the check refuses it for the second answer, which
/// no schedule of the original gives.
#[test]
fn mencius_batching_answers_once_and_batches_to_every_leader_are_caught() {
    rewrite_then_verify("mencius", &["--batch", "leader", "--size", "4"], true);
    let out = compart(&["rewrite", "examples/mencius.ded", "--batch", "leader", "--size", "4", "--no-check"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let to_one = "request_batch@p(batch, \"\") :~\n        batch_formed(batch, _, _, _),\n        \
                  batch_target_rank(p, r),\n        batch_targets(m),\n        r = batch % m + 1.";
    assert!(text.contains(to_one), "{text}");
    let to_every = "request_batch@p(batch, \"\") :~ batch_formed(batch, _, _, _), nodes(\"leader\", p).";
    let d = dir("mencius-batch-to-every-leader");
    let rewritten = d.join("mencius.ded");
    std::fs::write(&rewritten, text.replace(to_one, to_every)).unwrap();
    let rewritten = rewritten.to_str().unwrap();
    // The check that gates `compart rewrite` and the optimizer (`check_rewrite`).
    let out = compart(&["verify", "examples/mencius.ded", rewritten, "--invariants-only", "--quick"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("quick check failed: request ") && report.contains(" answered twice: reply("), "{report}");
    assert!(report.contains("requests go to one node of their component each, round-robin"), "{report}");
    assert!(!report.contains("violated in the rewritten program"), "invariants hold: {report}");
    // The sampled phase of `compart verify` alone finds it too.
    let out = compart(&[
        "verify",
        "examples/mencius.ded",
        rewritten,
        "--invariants-only",
        "--seeds",
        "2",
        "--workloads",
        "0",
    ]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("answered twice: reply("), "{report}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn optimizer_plans_pass_verify() {
    for (name, machines, invariants_only) in
        [("voting", "12", false), ("two_phase_commit", "16", false), ("paxos", "29", true), ("pbft", "12", false)]
    {
        let d = dir(&format!("optimize-{name}"));
        let file = format!("examples/{name}.ded");
        let out = compart(&["optimize", &file, "--machines", machines, "--out", d.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        verify(&file, &d.join(format!("{name}.optimized.ded")), invariants_only, name);
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// Thrifty broadcast keeps the answers too, not only the invariants: without crashes every
/// quorum member answers. The check that gates it can fail: a "quorum" one short of a majority
/// never commits without the widening (which no workload of the original drives), and verify
/// reports the lost replies.
#[test]
fn paxos_thrifty_keeps_answers_and_a_quorum_too_small_is_caught() {
    rewrite_then_verify("paxos", &["--thrifty", "proposer", "--rule", "p2a"], false);
    let out = compart(&["rewrite", "examples/paxos.ded", "--thrifty", "proposer", "--rule", "p2a", "--no-check"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let quorum = "(r - 1 + n - hash(s, b) % n) % n < n / 2 + 1.";
    assert!(text.contains(quorum), "{text}");
    let d = dir("paxos-small-quorum");
    let rewritten = d.join("paxos.ded");
    std::fs::write(&rewritten, text.replace(quorum, &quorum.replace("n / 2 + 1", "n / 2"))).unwrap();
    let out = compart(&["verify", "examples/paxos.ded", rewritten.to_str().unwrap(), "--seeds", "1"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("missing output: reply("), "{report}");
    let _ = std::fs::remove_dir_all(&d);
}

/// Grid, then thrifty broadcast: p2a goes to one row of a 2 x 2 grid (the deployment `--write`
/// gives the grid), and `compart verify` finds no difference from the gridded program, outputs
/// included (without crashes the row answers), nor from the original on invariants. The check can
/// fail: p2a sent to a column instead (one node of each row, never a whole row) commits nothing
/// without the widening, and verify reports the lost replies.
#[test]
fn paxos_grid_then_thrifty_sends_to_a_row_and_a_column_is_caught() {
    let d = dir("paxos-grid-thrifty");
    for f in ["paxos.ded", "paxos.toml"] {
        std::fs::copy(format!("examples/{f}"), d.join(f)).unwrap();
    }
    let paxos = d.join("paxos.ded");
    let paxos = paxos.to_str().unwrap();
    let out = compart(&["rewrite", paxos, "--grid", "acceptor", "--rows", "2", "--columns", "2", "--write"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let toml = std::fs::read_to_string(d.join("paxos.toml")).unwrap();
    assert!(toml.contains("acceptor = { rows = 2, columns = 2 }") && toml.contains("acceptor = 4"), "{toml}");
    let out = compart(&["rewrite", paxos, "--thrifty", "proposer", "--rule", "p2a"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("checked against the original"), "{stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    let row = "        acceptor_row(a, r),\n        acceptor_rows(n),\n        r == hash(s, b) % n.";
    assert!(
        text.contains(&format!("p2a@a(self, b, s, id, payload) :~\n        propose(s, b, id, payload),\n{row}")),
        "{text}"
    );
    let rewritten = d.join("thrifty.ded");
    std::fs::write(&rewritten, &text).unwrap();
    verify(paxos, &rewritten, false, "grid, then --thrifty proposer --rule p2a");
    verify("examples/paxos.ded", &rewritten, true, "grid, then thrifty, against the original");
    // Column c holds the nodes at positions 2c + 1 and 2c + 2: one of each row.
    let column = "        acceptor_position(a, i),\n        acceptor_rows(n),\n        (i - 1) / n == hash(s, b) % n.";
    let wrong = d.join("column.ded");
    std::fs::write(&wrong, text.replace(row, column)).unwrap();
    let out = compart(&["check", wrong.to_str().unwrap()]);
    assert!(out.status.success(), "the column send is a valid program: {}", String::from_utf8_lossy(&out.stderr));
    let out = compart(&["verify", paxos, wrong.to_str().unwrap(), "--seeds", "1"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("missing output: reply("), "{report}");
    let _ = std::fs::remove_dir_all(&d);
}

/// Shared proxies are an equivalence: the merged program is checked on outputs, not only
/// invariants, against two stateless broadcasters decoupled from one coordinator.
#[test]
fn shared_proxies_keep_outputs() {
    let file = "tests/fixtures/fanout_proxies.ded";
    let out = compart(&["rewrite", file, "--share", "put_proxy,get_proxy", "--into", "proxy"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("checked against the original"));
    let d = dir("fanout-share");
    let rewritten = d.join("fanout_proxies.ded");
    std::fs::write(&rewritten, &out.stdout).unwrap();
    verify(file, &rewritten, false, "--share put_proxy,get_proxy");
    let _ = std::fs::remove_dir_all(&d);
}

/// Why a part may not send its own address: the replicas below count the distinct nodes that
/// forwarded to them, two before the merge and one after. `compart rewrite --share` refuses, naming
/// the `self`; the merge made anyway (the accepted merge of the plain fixture, given the same
/// change) is caught by `compart verify` with the missing count.
#[test]
fn a_shared_return_address_is_refused_and_the_merge_is_caught() {
    let counting = |text: &str| {
        text.replace("store@r(k, v) :~", "store@r(k, v, self) :~")
            .replace("fetch@r(k) :~", "fetch@r(k, self) :~")
            .replace(
                "    channel store(k: int, v: int)\n    channel fetch(k: int)\n",
                "    channel store(k: int, v: int, via: addr)\n    channel fetch(k: int, via: addr)\n    table vias(p: addr)\n    output forwarders(n: int)\n",
            )
            .replace(
                "stored(k, v) :- store(k, v).",
                "stored(k, v) :- store(k, v, _).\n    vias(p) :+ store(_, _, p).\n    vias(p) :+ fetch(_, p).\n    forwarders(count(p)) :- vias(p).",
            )
            .replace("data(k, v) :+ store(k, v).", "data(k, v) :+ store(k, v, _).")
            .replace("got(k, v) :- fetch(k), data(k, v).", "got(k, v) :- fetch(k, _), data(k, v).")
            .replace("missing(k) :- fetch(k),", "missing(k) :- fetch(k, _),")
    };
    let file = "tests/fixtures/fanout_proxies.ded";
    let merged = compart(&["rewrite", file, "--share", "put_proxy,get_proxy", "--into", "proxy"]);
    assert!(merged.status.success(), "{}", String::from_utf8_lossy(&merged.stderr));
    let d = dir("fanout-share-self");
    let (original, rewritten) = (d.join("original.ded"), d.join("merged.ded"));
    std::fs::write(&original, counting(&std::fs::read_to_string(file).unwrap())).unwrap();
    std::fs::write(&rewritten, counting(&String::from_utf8(merged.stdout).unwrap())).unwrap();
    let refused =
        compart(&["rewrite", original.to_str().unwrap(), "--share", "put_proxy,get_proxy", "--into", "proxy"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`put_proxy` uses its own address here"), "{stderr}");
    let out = compart(&["verify", original.to_str().unwrap(), rewritten.to_str().unwrap(), "--seeds", "1"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("missing output: forwarders(2)"), "{report}");
    let _ = std::fs::remove_dir_all(&d);
}
