//! Grid quorums (`rewrite::grid`): the rewritten Paxos, and each refusal with the line it points
//! at (2PC needs every vote; one quorum kind; a count read elsewhere; bad dimensions).

mod common;
use common::{example, line};
use compart_analysis::{analyze, rewrite};

fn rule_range(analysis: &compart_analysis::Analysis, head: &str) -> compart_analysis::TextRange {
    analysis.program.rules.iter().find(|r| r.head.relation == head).unwrap().range
}

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
/// costliest component, the batcher), with 2 and 3 rows, and prices each with the cost model and
/// the thrifty broadcasts that would follow it. Alone a grid lowers no node's messages; followed by
/// the thrifty p2a to one row, each acceptor gets 1 / rows of them. With batching (nothing
/// decouples, p2a stays in the proposer) the 3 x 1 grid and the row send, when asked for
/// (`--grid-rows 3`: unasked, a grid that survives fewer crashes than majorities is not tried),
/// are taken and predict more than the plan without a grid; without batching p2a is in a proxy
/// that cannot be thrifty, no grid pays, and the note gives the figures. 2PC's vote count needs
/// every vote: no grid.
#[test]
fn optimizer_prices_grids_and_says_why_not() {
    use compart_analysis::optimize;
    let logical: std::collections::BTreeMap<String, usize> =
        [("proposer".to_string(), 2), ("acceptor".to_string(), 3)].into_iter().collect();
    let paxos = |batch, grid| {
        let options = optimize::Options { machines: 29, logical: logical.clone(), batch, grid, ..Default::default() };
        optimize::optimize(&analyze(&example("paxos.ded")), &options)
    };
    // The requests/s in a note, in order (machine counts are below 1,000).
    let figures = |note: &str| -> Vec<f64> {
        let numbers = note.split_whitespace().filter_map(|w| w.trim_start_matches('(').replace(',', "").parse().ok());
        numbers.filter(|&n: &f64| n >= 1000.0).collect()
    };
    // Unasked, 3 x 1 is not tried: one crashed acceptor would stop every leader change.
    let plan = paxos(optimize::BatchChoice::Search, optimize::GridChoice::Search);
    assert!(
        plan.notes.iter().any(|n| n.contains("3 x 1 not tried: it tolerates 0 crash(es) in phase 1")),
        "{:?}",
        plan.notes
    );
    assert!(!plan.text.contains("acceptor_row"), "{}", plan.text);
    // Asked for (3 rows), batched: taken, then p2a to one row; p1a (phase 1) stays whole, and the
    // note says why.
    let plan = paxos(optimize::BatchChoice::Search, optimize::GridChoice::Rows(3));
    let steps: Vec<&str> = plan.steps.iter().map(|s| s.description.as_str()).collect();
    let all = steps.join("\n");
    assert!(all.contains("grid quorums over `acceptor`: 3 x 1"), "{all}");
    assert!(all.contains("sends `p2a` to one row of `acceptor`'s grid"), "{all}");
    assert!(plan.text.contains("r == hash(s, b) % n."), "{}", plan.text);
    assert!(plan.deployment.contains("acceptor = { rows = 3, columns = 1 }"), "{}", plan.deployment);
    assert!(plan.notes.iter().any(|n| n.contains("thrifty broadcast of `p1a` over the grid")), "{:?}", plan.notes);
    let without = paxos(optimize::BatchChoice::Search, optimize::GridChoice::Off);
    assert!(
        plan.estimate.throughput > without.estimate.throughput * 1.01,
        "{} against {}",
        plan.estimate.throughput,
        without.estimate.throughput
    );
    // 2 x 2 only: with its row send still below the plan without a grid (p2a and p1a thrifty).
    let plan = paxos(optimize::BatchChoice::Search, optimize::GridChoice::Rows(2));
    let [note] = plan.notes.iter().filter(|n| n.starts_with("grid quorums")).collect::<Vec<_>>()[..] else {
        panic!("one note on the acceptors' grid: {:?}", plan.notes)
    };
    assert!(note.contains(" with the thrifty broadcasts that follow)"), "{note}");
    let [grid_alone, grid_thrifty, alone, thrifty] = figures(note)[..] else { panic!("{note}") };
    assert!(grid_alone < alone && grid_thrifty > grid_alone && grid_thrifty < thrifty, "{note}");
    // Unbatched: p2a is decoupled into a proxy (no `self`: not thrifty), so a grid is priced alone.
    for rows in [2, 3] {
        let plan = paxos(optimize::BatchChoice::Off, optimize::GridChoice::Rows(rows));
        let [note] = plan.notes.iter().filter(|n| n.contains("grid")).collect::<Vec<_>>()[..] else {
            panic!("one note on the acceptors' grid: {:?}", plan.notes)
        };
        assert!(note.starts_with("grid quorums over `acceptor` not taken: "), "{note}");
        assert!(!note.contains("thrifty broadcasts that follow"), "{note}");
        assert!(!plan.text.contains("acceptor_row"), "not taken, so not in the plan");
        let [grid, without] = figures(note)[..] else { panic!("{note}") };
        assert!(grid < without, "{note}");
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

/// A grid that pays only with the thrifty broadcast to one row that follows it is dropped when
/// the check refuses that broadcast: the plan is the one without the grid, and the note says so.
#[test]
fn a_grid_that_pays_only_with_the_row_send_goes_with_it() {
    use compart_analysis::optimize;
    struct RefuseWiden;
    impl optimize::StepCheck for RefuseWiden {
        fn check(&self, _: &str, rewritten: &str, _: bool) -> Result<String, String> {
            if rewritten.contains("_widen()") {
                Err("reply(1) missing".into())
            } else {
                Ok("accepted".into())
            }
        }
    }
    // 3 rows asked for: the grid that pays with its row send.
    let options = optimize::Options {
        machines: 29,
        logical: [("proposer".to_string(), 2), ("acceptor".to_string(), 3)].into_iter().collect(),
        grid: optimize::GridChoice::Rows(3),
        ..Default::default()
    };
    let plan = optimize::optimize_checked(&analyze(&example("paxos.ded")), &options, Some(&RefuseWiden));
    assert!(!plan.text.contains("acceptor_row") && !plan.deployment.contains("[grids]"), "{}", plan.text);
    assert!(!plan.steps.iter().any(|s| s.description.contains("grid")), "{:?}", plan.notes);
    assert!(plan.notes.iter().any(|n| n.starts_with("grid quorums over `acceptor` dropped")), "{:?}", plan.notes);
    let off = optimize::optimize(
        &analyze(&example("paxos.ded")),
        &optimize::Options { grid: optimize::GridChoice::Off, thrifty: false, ..options.clone() },
    );
    assert_eq!(plan.text, off.text, "the plan without grid and thrifty broadcasts");
}

/// Grid first, then thrifty: the phase-2 broadcast (p2a, whose answers the grid counts per row
/// and tests against a row's size) goes to one row, chosen by the message's key, and to the other
/// rows on `p2a_widen()`; the unanswered p2a is dropped once a whole row answered. Phase 1's
/// broadcast (p1a, answered by a node of every row) is refused, naming the rule; the other order
/// (a majority send, then the grid) stays refused.
#[test]
fn grid_then_thrifty_sends_phase_2_to_a_row() {
    let paxos = analyze(&example("paxos.ded"));
    let gridded = analyze(&rewrite::grid(&paxos, "acceptor", 2).unwrap().new_text);
    let out = rewrite::thrifty(&gridded, "proposer", Some("p2a")).unwrap();
    let analysis = analyze(&out.new_text);
    assert!(!analysis.has_errors(), "{:?}", analysis.diagnostics);
    insta::assert_snapshot!(format!("{}\n---\n{}", out.explanation.join("\n"), out.new_text));
    let p1a = rewrite::thrifty(&gridded, "proposer", Some("p1a")).unwrap_err();
    assert!(
        p1a.reason.contains("rule 22 (`p1a`) broadcasts to `acceptor`, whose nodes are in a grid")
            && p1a.reason.contains("phase 1 waits for a node of every row"),
        "{}",
        p1a.reason
    );
    assert_eq!(line(gridded.text(), p1a.range), line(gridded.text(), rule_range(&gridded, "p1a")));
    // The grid's rows the thrifty rewrite reuses: still one row rule, still 2 rows.
    assert_eq!(rewrite::grid_rows_of(&analysis.program, "acceptor"), Some(2));
    // A majority send, then the grid: refused, the send named.
    let thrifty = rewrite::thrifty(&paxos, "proposer", Some("p2a")).unwrap().new_text;
    let out = grid(&thrifty, "acceptor", 2);
    assert!(
        out.contains("(`p2a`) is a thrifty broadcast to a majority of `acceptor`")
            && out.contains("arrange the grid before the thrifty broadcast"),
        "{out}"
    );
    // Still a quorum over the acceptors, so the optimizer tries the grid there and says why not.
    assert!(rewrite::counted_by_quorum(&analyze(&thrifty), "acceptor"));
    assert!(!rewrite::counted_by_quorum(&paxos, "proposer"));
}

/// The cost model's destinations for the sends of a thrifty broadcast over a grid: a row (the
/// nodes over the rows, rounded up when uneven) for the first send, the others on the widening;
/// and a majority for the thrifty broadcast without a grid.
#[test]
fn a_row_send_reaches_a_row_of_the_grid() {
    let paxos = analyze(&example("paxos.ded"));
    let sends = |rows: Option<usize>| {
        let base = match rows {
            Some(r) => analyze(&rewrite::grid(&paxos, "acceptor", r).unwrap().new_text),
            None => analyze(&example("paxos.ded")),
        };
        let out = analyze(&rewrite::thrifty(&base, "proposer", Some("p2a")).unwrap().new_text);
        let p2a: Vec<_> = out.program.rules.iter().filter(|r| r.head.relation == "p2a").cloned().collect();
        assert_eq!(p2a.len(), 2, "the send and the widening");
        move |of: usize| p2a.iter().map(|r| rewrite::quorum_destinations(&out.program, r, of)).collect::<Vec<_>>()
    };
    let two_rows = sends(Some(2));
    assert_eq!(two_rows(4), [Some(2), Some(2)], "2 x 2: one row of 2, the other on the widening");
    assert_eq!(two_rows(6), [Some(3), Some(3)], "2 x 3");
    assert_eq!(two_rows(3), [Some(2), Some(1)], "3 nodes in 2 rows: rows of 2 and 1");
    let three_rows = sends(Some(3));
    assert_eq!(three_rows(3), [Some(1), Some(2)], "3 x 1: a row is one node");
    assert_eq!(three_rows(9), [Some(3), Some(6)]);
    let majority = sends(None);
    assert_eq!(majority(4), [Some(3), Some(1)]);
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
