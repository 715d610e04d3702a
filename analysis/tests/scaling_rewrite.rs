//! Rewrites on the examples: the rewritten program (formatted, analysed without errors by
//! `finish`) and its explanation, or the refusal.

mod common;
use common::{example, line};
use compart_analysis::{analyze, rewrite};

fn decouple(text: &str, component: &str, rules: &[&str], name: &str) -> String {
    let analysis = analyze(text);
    let selected = match rewrite::select_rules(&analysis, component, rules) {
        Ok(r) => r,
        Err(refusal) => return format!("refused: {}", refusal.reason),
    };
    match rewrite::decouple(&analysis, component, &selected, name) {
        Ok(result) => format!("{}\n---\n{}", result.explanation.join("\n"), result.new_text),
        Err(refusal) => format!("refused at {}: {}", line(text, refusal.range), refusal.reason),
    }
}

fn partition(text: &str, component: &str, key: Option<&str>) -> String {
    let analysis = analyze(text);
    match rewrite::partition(&analysis, component, key) {
        Ok(result) => format!("{}\n---\n{}", result.explanation.join("\n"), result.new_text),
        Err(refusal) => format!("refused at {}: {}", line(text, refusal.range), refusal.reason),
    }
}

#[test]
fn voting_decouple_broadcaster() {
    insta::assert_snapshot!(decouple(&example("voting.ded"), "leader", &["ballot"], "broadcaster"));
}

#[test]
fn voting_partition_leader() {
    insta::assert_snapshot!(partition(&example("voting.ded"), "leader", Some("id")));
}

#[test]
fn two_phase_commit_decouple_acks() {
    insta::assert_snapshot!(decouple(
        &example("two_phase_commit.ded"),
        "coordinator",
        &["ack_log", "ack_count", "done", "finished"],
        "ack_collector"
    ));
}

#[test]
fn paxos_decouple_proxy_leader() {
    insta::assert_snapshot!(decouple(&example("paxos.ded"), "proposer", &["p2a"], "proxy_leader"));
}

#[test]
fn paxos_acceptor_partition_refused() {
    insta::assert_snapshot!(partition(&example("paxos.ded"), "acceptor", Some("slot")));
}

fn sealed(text: &str, component: &str, key: Option<&str>) -> String {
    let analysis = analyze(text);
    match rewrite::partition_sealed(&analysis, component, key) {
        Ok(result) => format!("{}\n---\n{}", result.explanation.join("\n"), result.new_text),
        Err(refusal) => format!("refused at {}: {}", line(text, refusal.range), refusal.reason),
    }
}

#[test]
fn paxos_acceptor_sealed_partition_by_slot() {
    insta::assert_snapshot!(sealed(&example("paxos.ded"), "acceptor", Some("slot")));
}

/// The commit path of Paxos decoupled: p2b goes straight to the new part, which passes back to
/// the proposer only real preemptions (`max_ballot > ballot`).
#[test]
fn paxos_decouple_commit_path_with_filtered_nack() {
    let out = decouple(
        &example("paxos.ded"),
        "proposer",
        &["proposals", "accepted_by", "accept_count", "commit", "committed", "reply"],
        "commit_part",
    );
    assert!(out.contains("p2b(acceptor, ballot, slot, max_ballot, origin),\n        max_ballot > ballot."), "{out}");
    insta::assert_snapshot!(out);
}
