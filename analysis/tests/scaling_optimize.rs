//! The optimizer on the examples, with no hints: the steps it takes, the predicted gains, and the
//! deployment it proposes (the derivation in docs/compartmentalization.md).

use compart_analysis::{analyze, optimize};

fn plan(path: &str, machines: usize, logical: &[(&str, usize)]) -> String {
    let text = std::fs::read_to_string(format!("{}/../examples/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let options = optimize::Options {
        machines,
        profile: None,
        logical: logical.iter().map(|&(c, n)| (c.to_string(), n)).collect(),
    };
    let plan = optimize::optimize(&analyze(&text), &options);
    assert!(!analyze(&plan.text).has_errors());
    format!("{}\n{}\n{}", optimize::render_steps(&plan), plan.deployment, components(&plan.text))
}

/// The component headers and forwarding rules of the result: its shape.
fn components(text: &str) -> String {
    text.lines()
        .filter(|l| l.starts_with("component ") || l.contains(":~") && l.contains("nodes(\""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn voting() {
    insta::assert_snapshot!(plan("voting.ded", 12, &[("leader", 1), ("participant", 3)]));
}

#[test]
fn two_phase_commit() {
    insta::assert_snapshot!(plan("two_phase_commit.ded", 16, &[("coordinator", 1), ("participant", 3)]));
}

#[test]
fn paxos() {
    insta::assert_snapshot!(plan("paxos.ded", 29, &[("proposer", 2), ("acceptor", 3)]));
}

#[test]
fn a_profile_replaces_static_frequencies_by_rule_text() {
    let text = std::fs::read_to_string(format!("{}/../examples/voting.ded", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let analysis = analyze(&text);
    let program = &analysis.program;
    let static_load = optimize::loads(program, &optimize::Options::default());
    let vote_log = program.rule_ids().find(|&r| program.rule(r).head.relation == "vote_log").unwrap();
    let mut profile = optimize::Profile::default();
    profile.rule_facts.insert(optimize::Profile::key(program.rule(vote_log)), 100.0);
    let options = optimize::Options { profile: Some(profile), ..Default::default() };
    let measured = optimize::loads(program, &options);
    let leader = program.component_by_name("leader").unwrap().index();
    let participant = program.component_by_name("participant").unwrap().index();
    assert!(measured[leader] > static_load[leader] + 100.0, "{measured:?} vs {static_load:?}");
    assert_eq!(measured[participant], static_load[participant]);
}
