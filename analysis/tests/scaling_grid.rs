//! Grid quorums (`rewrite::grid`): the rewritten Paxos, and each refusal with the line it points
//! at (2PC needs every vote; one quorum kind; a count read elsewhere; bad dimensions).

mod common;
use common::{example, line};
use compart_analysis::{analyze, rewrite};

fn grid(text: &str, component: &str, rows: usize) -> String {
    let analysis = analyze(text);
    match rewrite::grid(&analysis, component, rows) {
        Ok(result) => format!("{}\n---\n{}", result.explanation.join("\n"), result.new_text),
        Err(refusal) => format!("refused at {}: {}", line(text, refusal.range), refusal.reason),
    }
}

#[test]
fn paxos_grid_acceptors() {
    insta::assert_snapshot!(grid(&example("paxos.ded"), "acceptor", 2));
}

#[test]
fn rewritten_paxos_analyses_and_names_its_grid() {
    let out = rewrite::grid(&analyze(&example("paxos.ded")), "acceptor", 3).unwrap();
    let analysis = analyze(&out.new_text);
    assert!(!analysis.has_errors(), "{:?}", analysis.diagnostics);
    // The deployment updater reads the rows off the rules the rewrite added.
    assert_eq!(rewrite::grid_rows_of(&analysis.program, "acceptor"), Some(3));
    assert_eq!(rewrite::grid_rows_of(&analyze(&example("paxos.ded")).program, "acceptor"), None);
    // The majority tests are gone, and so is the node count nothing reads any more.
    assert!(!out.new_text.contains("2 * c > n") && !out.new_text.contains("n_acceptors"), "{}", out.new_text);
    // A second grid finds no threshold left to replace.
    let again = rewrite::grid(&analysis, "acceptor", 2).unwrap_err();
    assert!(again.reason.contains("no rule counts the nodes of `acceptor`"), "{}", again.reason);
}

/// Quorums in the shape of Paxos' (phase 1 gates what phase 2 counts), small enough to vary.
const QUORUMS: &str = "component leader {
    input start()
    input request(id: int)
    output done(id: int)
    channel ack1(a: addr)
    channel ack2(a: addr, id: int)
    table leading()
    n_voters(count(a)) :- nodes(\"voter\", a).
    ask1@a(self) :~ start(), nodes(\"voter\", a).
    got1(count(a)) :- ack1(a).
    elected() :- got1(c), n_voters(n), 2 * c > n.
    leading() :+ elected().
    ask2@a(self, id) :~ request(id), leading(), nodes(\"voter\", a).
    got2(id, count(a)) :- ack2(a, id).
    done(id) :- got2(id, c), n_voters(n), 2 * c > n.
}

component voter {
    channel ask1(l: addr)
    channel ask2(l: addr, id: int)
    ack1@l(self) :~ ask1(l).
    ack2@l(self, id) :~ ask2(l, id).
}
";

#[test]
fn refusals() {
    let tpc = example("two_phase_commit.ded");
    let one_quorum = QUORUMS.replace("2 * c > n.\n    leading()", "c >= 1.\n    leading()");
    let reader = QUORUMS.replace("    leading() :+", "    seen(c) :- got2(_, c).\n    leading() :+");
    let nothing_flows = QUORUMS.replace("request(id), leading(),", "request(id),");
    let out: Vec<String> = [
        grid(&tpc, "participant", 2),
        grid(&tpc, "coordinator", 2),
        grid(QUORUMS, "nobody", 2),
        grid(QUORUMS, "voter", 0),
        grid(&one_quorum, "voter", 2),
        grid(&reader, "voter", 2),
        grid(&nothing_flows, "voter", 2),
    ]
    .into_iter()
    .collect();
    insta::assert_snapshot!(out.join("\n"));
}

#[test]
fn paxos_shaped_quorums_are_arranged() {
    let out = grid(QUORUMS, "voter", 2);
    assert!(out.contains("got2(id, r, count(a)) :- ack2(a, id), voter_row(a, r)."), "{out}");
    assert!(out.contains("got1(count(r)) :- ack1(a), voter_row(a, r)."), "{out}");
    assert!(out.contains("elected() :- got1(c), voter_rows(c)."), "{out}");
    assert!(out.contains("done(id) :- got2(id, r, c), voter_row_size(r, c)."), "{out}");
}

/// The optimizer considers a grid when asked and prices it with the cost model: on Paxos every
/// acceptor still receives every p2a, and a 2 x 2 grid needs a fourth acceptor, so it predicts
/// less throughput and says why it did not take it; 2PC's quorum needs every vote.
#[test]
fn optimizer_prices_grids_and_says_why_not() {
    use compart_analysis::optimize;
    let logical = [("proposer".to_string(), 2), ("acceptor".to_string(), 3)].into_iter().collect();
    let options = optimize::Options { machines: 29, logical, grid: Some(2), ..Default::default() };
    let plan = optimize::optimize(&analyze(&example("paxos.ded")), &options);
    let note = plan.notes.iter().find(|n| n.contains("grid quorums over `acceptor`")).expect("a note on the grid");
    assert!(note.contains("(2 x 2) not taken"), "{note}");
    assert!(!plan.text.contains("acceptor_row"), "not taken, so not in the plan");
    let tpc = optimize::Options { machines: 16, grid: Some(2), ..Default::default() };
    let plan = optimize::optimize(&analyze(&example("two_phase_commit.ded")), &tpc);
    assert!(
        plan.notes.iter().any(|n| n.contains("do not apply") && n.contains("needs every node")),
        "{:?}",
        plan.notes
    );
    // Without the option, no grid is considered.
    let plan =
        optimize::optimize(&analyze(&example("paxos.ded")), &optimize::Options { machines: 29, ..Default::default() });
    assert!(!plan.notes.iter().any(|n| n.contains("grid")), "{:?}", plan.notes);
}

/// The grid composes with the other Paxos rewrites: over sealed acceptor groups (logical
/// acceptors: `nodes` lists one address per group), and with the commit path decoupled, where the
/// two quorums live in different components and each gets its own row rules.
#[test]
fn grids_compose_with_sealing_and_decoupling() {
    let paxos = analyze(&example("paxos.ded"));
    let sealed = rewrite::partition_sealed(&paxos, "acceptor", Some("slot")).unwrap();
    let gridded = rewrite::grid(&analyze(&sealed.new_text), "acceptor", 2).unwrap();
    assert!(!analyze(&gridded.new_text).has_errors());
    assert!(gridded.new_text.contains("partitioned by"), "still sealed");
    let rules = rewrite::select_rules(
        &paxos,
        "proposer",
        &["proposals", "accepted_by", "accept_count", "commit", "committed", "reply"],
    )
    .unwrap();
    let decoupled = rewrite::decouple(&paxos, "proposer", &rules, "commit_part").unwrap();
    let gridded = rewrite::grid(&analyze(&decoupled.new_text), "acceptor", 2).unwrap();
    let analysis = analyze(&gridded.new_text);
    assert!(!analysis.has_errors(), "{:?}", analysis.diagnostics);
    let owner = |rel: &str| {
        let id = analysis.program.relation_by_name(rel).unwrap();
        analysis.program.component(analysis.program.relation(id).component.unwrap()).name.clone()
    };
    assert_eq!(owner("acceptor_rows"), "proposer");
    assert_eq!(owner("acceptor_row_size"), "commit_part");
    assert_eq!(owner("acceptor_row2"), "commit_part");
}
