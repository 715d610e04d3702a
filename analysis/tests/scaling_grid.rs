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

/// The default search tries a grid over the nodes the quorums count (Paxos' acceptors, not the
/// costliest component, the batcher), with 2 and 3 rows, and prices each with the cost model:
/// every acceptor still receives every p2a, so no grid predicts more, with or without batching
/// (without it, after the proxies, the proposer stays the costliest instance), and the note says
/// so with the figures. 2PC's vote count needs every vote: no quorum, so no grid is tried.
#[test]
fn optimizer_prices_grids_and_says_why_not() {
    use compart_analysis::optimize;
    let logical: std::collections::BTreeMap<String, usize> =
        [("proposer".to_string(), 2), ("acceptor".to_string(), 3)].into_iter().collect();
    let paxos = |batch, grid| {
        let options = optimize::Options { machines: 29, logical: logical.clone(), batch, grid, ..Default::default() };
        optimize::optimize(&analyze(&example("paxos.ded")), &options)
    };
    for batch in [optimize::BatchChoice::Search, optimize::BatchChoice::Off] {
        let plan = paxos(batch, optimize::GridChoice::Search);
        let grid_notes: Vec<&String> = plan.notes.iter().filter(|n| n.contains("grid")).collect();
        let [note] = grid_notes[..] else { panic!("one note on the acceptors' grid: {:?}", plan.notes) };
        assert!(note.starts_with("grid quorums over `acceptor` not taken: 2 x 2 predicts"), "{note}");
        assert!(note.contains(", 3 x 1 predicts"), "{note}");
        assert!(!plan.text.contains("acceptor_row"), "not taken, so not in the plan");
        // The figures in the note: each grid below the plan without it.
        let figures: Vec<f64> = note
            .split(" predicts ")
            .skip(1)
            .chain(note.split(", against ").skip(1))
            .map(|s| s.split(' ').next().unwrap().replace(',', "").parse().unwrap())
            .collect();
        let (without, grids) = figures.split_last().unwrap();
        assert!(grids.len() == 2 && grids.iter().all(|g| g < without), "{note}");
    }
    // Rows as told: only those.
    let plan = paxos(optimize::BatchChoice::Off, optimize::GridChoice::Rows(2));
    assert!(plan.notes.iter().any(|n| n.contains("2 x 2 predicts") && !n.contains("3 x 1")), "{:?}", plan.notes);
    let tpc = optimize::Options { machines: 16, ..Default::default() };
    let plan = optimize::optimize(&analyze(&example("two_phase_commit.ded")), &tpc);
    assert!(!plan.notes.iter().any(|n| n.contains("grid")), "{:?}", plan.notes);
    // Turned off, no grid is considered.
    let plan = paxos(optimize::BatchChoice::Search, optimize::GridChoice::Off);
    assert!(!plan.notes.iter().any(|n| n.contains("grid")), "{:?}", plan.notes);
}

/// Grid and thrifty broadcast do not compose, in either order, and each refusal says why: over a
/// grid a phase-2 quorum is a row, and thrifty compares counts with a majority only; a thrifty
/// send goes to a majority, which over a grid need not hold a row (it is not a third quorum).
#[test]
fn grid_and_thrifty_refuse_each_other() {
    let paxos = analyze(&example("paxos.ded"));
    let thrifty = rewrite::thrifty(&paxos, "proposer", Some("p2a")).unwrap().new_text;
    let out = grid(&thrifty, "acceptor", 2);
    assert!(
        out.contains("(`p2a`) is a thrifty broadcast to a majority of `acceptor`")
            && out.contains("arrange the grid before the thrifty broadcast"),
        "{out}"
    );
    let gridded = rewrite::grid(&paxos, "acceptor", 2).unwrap().new_text;
    let refusal = rewrite::thrifty(&analyze(&gridded), "proposer", Some("p2a")).unwrap_err();
    assert!(
        refusal.reason.contains("joins the count of answers `c` of `accept_count` with `acceptor_row_size`"),
        "{}",
        refusal.reason
    );
    // Still a quorum over the acceptors, so the optimizer tries the grid there and says why not.
    assert!(rewrite::counted_by_quorum(&analyze(&thrifty), "acceptor"));
    assert!(!rewrite::counted_by_quorum(&paxos, "proposer"));
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
