//! Thrifty broadcast (`rewrite::thrifty`): the rewritten Paxos, a minimal majority protocol,
//! and each refusal with the line it points at.

mod common;
use common::line;
use compart_analysis::{analyze, rewrite};

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn example(name: &str) -> String {
    read(&format!("examples/{name}"))
}

fn thrifty(text: &str, component: &str, rule: Option<&str>) -> String {
    let analysis = analyze(text);
    match rewrite::thrifty(&analysis, component, rule) {
        Ok(result) => format!("{}\n---\n{}", result.explanation.join("\n"), result.new_text),
        Err(refusal) => format!("refused at {}: {}", line(text, refusal.range), refusal.reason),
    }
}

fn rewritten(text: &str, component: &str, rule: Option<&str>) -> String {
    let out = thrifty(text, component, rule);
    assert!(!out.starts_with("refused"), "{out}");
    out.split("\n---\n").nth(1).unwrap().to_string()
}

/// A leader asks every follower to store an entry and answers once a majority stored it.
const MAJORITY: &str = "component leader {
    input write(id: int, v: string) key(id)
    output written(id: int)
    channel stored(id: int, follower: addr)
    table acks(id: int, follower: addr)
    store@f(id, v, self) :~ write(id, v), nodes(\"follower\", f).
    acks(id, f) :- stored(id, f).
    followers(count(f)) :- nodes(\"follower\", f).
    ack_count(id, count(f)) :- acks(id, f).
    done(id) :- ack_count(id, c), followers(n), c >= n / 2 + 1.
    written(id) :- done(id).
    delete acks(id, f) :- acks(id, f), done(id).
}

component follower {
    channel store(id: int, v: string, leader: addr)
    table log(id: int, v: string)
    log(id, v) :- store(id, v, _).
    stored@l(id, self) :~ store(id, _, l).
}
";

#[test]
fn paxos_thrifty_p2a() {
    insta::assert_snapshot!(thrifty(&example("paxos.ded"), "proposer", Some("p2a")));
}

#[test]
fn rewritten_paxos_sends_p2a_to_a_quorum_and_widens_on_the_timer() {
    let text = rewritten(&example("paxos.ded"), "proposer", Some("p2a"));
    let analysis = analyze(&text);
    assert!(!analysis.has_errors());
    let program = &analysis.program;
    let widen = program.relation_by_name("p2a_widen").expect("the timer input");
    assert_eq!(program.relation(widen).kind, compart_analysis::model::RelationKind::Input);
    assert_eq!(program.relation(widen).arity(), 0);
    // Two rules send p2a: the quorum send and the widening; neither reads `nodes("acceptor", _)`.
    let p2a = program.relation_by_name("p2a").unwrap();
    let senders: Vec<_> = program.rules.iter().filter(|r| r.head.relation_id == Some(p2a)).collect();
    assert_eq!(senders.len(), 2);
    assert!(senders.iter().all(|r| r.atoms().all(|a| a.relation != "nodes")));
    assert!(senders.iter().any(|r| r.atoms().any(|a| a.relation == "p2a_widen")));
    // The proposer no longer broadcasts p2a, so a second thrifty rewrite of it is refused.
    let again = thrifty(&text, "proposer", Some("p2a"));
    assert!(again.starts_with("refused"), "{again}");
}

#[test]
fn paxos_phase_one_is_thrifty_too_and_both_compose() {
    let text = rewritten(&example("paxos.ded"), "proposer", Some("p1a"));
    assert!(text.contains("delete p1a_unanswered(proposer, ballot) :-"));
    assert!(text.contains("promise_count(ballot, c),"));
    // The other broadcast is then the only one left: no --rule needed.
    let both = rewritten(&text, "proposer", None);
    assert!(both.contains("input p2a_widen()") && both.contains("input p1a_widen()"));
    assert!(!analyze(&both).has_errors());
}

#[test]
fn majority_protocol_is_rewritten_with_its_grouping_column() {
    let text = rewritten(MAJORITY, "leader", None);
    assert!(text.contains("store_unanswered(id, v, self) :- write(id, v)."), "{text}");
    assert!(text.contains("ack_count(id, c),"), "the unanswered entry joins the count on its id: {text}");
    assert!(text.contains("(r - 1 + n - hash(id) % n) % n < n / 2 + 1"), "{text}");
    assert!(!analyze(&text).has_errors());
}

#[test]
fn refusals() {
    let paxos = example("paxos.ded");
    let cases: Vec<(&str, String, &str, Option<&str>)> = vec![
        ("paxos without a rule: two broadcasts", paxos.clone(), "proposer", None),
        ("paxos: a rule that sends nothing", paxos.clone(), "proposer", Some("commit")),
        ("paxos: acceptors answer, they do not broadcast", paxos, "acceptor", None),
        ("2pc prepare needs every vote", example("two_phase_commit.ded"), "coordinator", Some("prepare")),
        ("2pc outcome needs every ack", example("two_phase_commit.ded"), "coordinator", Some("outcome")),
        ("voting needs every vote", example("voting.ded"), "leader", None),
        ("kvs replicas answer clients", example("kvs.ded"), "leader", None),
        (
            "optimized paxos: the proxy does not count the answers",
            read("bench/emulated/paxos.profiled.ded"),
            "p2a_proxy",
            None,
        ),
        ("unknown component", MAJORITY.to_string(), "nope", None),
        ("every answer", MAJORITY.replace("c >= n / 2 + 1", "c >= n"), "leader", None),
        ("a constant threshold", MAJORITY.replace("c >= n / 2 + 1", "c >= 2"), "leader", None),
        (
            "negated count",
            MAJORITY.replace("written(id) :- done(id).", "written(id) :- write(id, _), !ack_count(id, _)."),
            "leader",
            None,
        ),
        (
            "count as a value",
            MAJORITY.replace("written(id) :- done(id).", "written(c) :- ack_count(_, c)."),
            "leader",
            None,
        ),
        (
            "destination in the message",
            MAJORITY.replace("store@f(id, v, self)", "store@f(id, str(f), self)"),
            "leader",
            None,
        ),
        (
            "no return address",
            MAJORITY.replace(
                "store@f(id, v, self) :~ write(id, v),",
                "store@f(id, v, l) :~ write(id, v), nodes(\"leader\", l),",
            ),
            "leader",
            None,
        ),
        (
            "nobody counts",
            MAJORITY.replace(
                "ack_count(id, count(f)) :- acks(id, f).",
                "ack_count(id, count(i)) :- acks(i, _), acks(id, _).",
            ),
            "leader",
            None,
        ),
        (
            "count not grouped by the message",
            MAJORITY
                .replace("stored@l(id, self) :~ store(id, _, l).", "stored@l(0, self) :~ store(_, _, l).")
                .replace("written(id) :- done(id).", "written(id) :- done(id), write(id, _)."),
            "leader",
            None,
        ),
        (
            "follower outputs",
            MAJORITY.replace("table log(id: int, v: string)", "output log(id: int, v: string)"),
            "leader",
            None,
        ),
        (
            "partitioned sender",
            MAJORITY.replace("component leader {", "component leader partitioned by id {"),
            "leader",
            None,
        ),
    ];
    let mut out = String::new();
    for (what, text, component, rule) in cases {
        assert!(!analyze(&text).has_errors(), "{what}: the case itself has errors");
        out.push_str(&format!("{what}: {}\n", thrifty(&text, component, rule)));
    }
    insta::assert_snapshot!(out);
}

#[test]
fn bad_input_never_panics() {
    let wrong_arity = MAJORITY.replace("store@f(id, v, self)", "store@f(id, self)");
    assert!(analyze(&wrong_arity).has_errors());
    let refused = thrifty(&wrong_arity, "leader", Some("store"));
    assert!(refused.contains("sends 2 values, and `store` has 3 columns"), "{refused}");
    for text in ["", "component", "component c { channel m(x: int) m@a(1) :~ nodes(\"c\", a). }"] {
        let _ = thrifty(text, "c", None);
        let _ = thrifty(text, "c", Some("1"));
    }
}
