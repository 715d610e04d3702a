//! The optimizer on the examples, with no hints: the steps it takes, the predicted gains, and the
//! deployment it proposes (the derivation in docs/compartmentalization.md).

use compart_analysis::{analyze, optimize};

fn plan(path: &str, machines: usize, logical: &[(&str, usize)]) -> String {
    let text = std::fs::read_to_string(format!("{}/../examples/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    plan_text(&text, machines, logical)
}

fn plan_text(text: &str, machines: usize, logical: &[(&str, usize)]) -> String {
    let options = optimize::Options {
        machines,
        logical: logical.iter().map(|&(c, n)| (c.to_string(), n)).collect(),
        ..Default::default()
    };
    let plan = optimize::optimize(&analyze(text), &options);
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

/// No step: the leader is sequential and no decoupling of it pays. Static frequencies also see
/// no proposal at all: `propose` waits on `start_round`, which holds every tick but is derived
/// on a cycle through the network (skips follow commits of other leaders), which the static
/// model resolves to zero (docs/compartmentalization.md, Mencius).
#[test]
fn mencius() {
    insta::assert_snapshot!(plan("mencius.ded", 12, &[("leader", 3), ("acceptor", 3)]));
}

#[test]
fn pbft() {
    insta::assert_snapshot!(plan("pbft.ded", 12, &[("client_proxy", 1), ("replica", 4)]));
}

#[test]
fn a_profile_replaces_static_frequencies_by_rule_text() {
    let text = std::fs::read_to_string(format!("{}/../examples/voting.ded", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let analysis = analyze(&text);
    let program = &analysis.program;
    let static_load = optimize::loads(program, &optimize::Options::default());
    let static_traffic = optimize::traffic(program, &optimize::Options::default());
    let vote_log = program.rule_ids().find(|&r| program.rule(r).head.relation == "vote_log").unwrap();
    let mut profile = optimize::Profile::default();
    profile.rule_facts.insert(optimize::Profile::key(program.rule(vote_log)), 100.0);
    let options = optimize::Options { profile: Some(profile), ..Default::default() };
    let measured = optimize::loads(program, &options);
    let measured_traffic = optimize::traffic(program, &options);
    let leader = program.component_by_name("leader").unwrap().index();
    let participant = program.component_by_name("participant").unwrap().index();
    assert!(measured[leader] > static_load[leader] * 5.0, "{measured:?} vs {static_load:?}");
    // The participant's own traffic is untouched; its CPU per request is not (it ticks at the
    // pace of a now much slower leader), so compare what it does, not what it costs.
    assert_eq!(measured_traffic[participant], static_traffic[participant]);
    assert!(measured[participant] <= static_load[participant], "{measured:?} vs {static_load:?}");
}

/// A replicated log whose nodes each keep the highest slot they hold (a max over every slot) and
/// their size (a count): sequential, and the bottleneck behind a light client. The optimizer
/// gives it sealed partitioning by slot, and the client recombines the status replies. (The
/// client ignores the `high` of each ack: one instance's bound, which it must not compare across
/// replies; were it kept in `stored`, sealing would be refused.)
#[test]
fn sealed_partitioning_when_the_sequential_part_is_the_bottleneck() {
    let text = "
component client {
    input write(id: int, slot: int, payload: string) key(id)
    input probe(round: int)
    output size(round: int, log: addr, high: int, entries: int)
    output stored(id: int, high: int)
    channel status(log: addr, round: int, high: int, entries: int)
    channel ack(id: int, high: int)
    store@l(self, id, s, p) :~ write(id, s, p), nodes(\"log\", l).
    ask@l(self, r) :~ probe(r), nodes(\"log\", l).
    size(r, l, h, n) :- status(l, r, h, n).
    stored(id, 0) :- ack(id, _).
}
component log {
    channel store(from: addr, id: int, slot: int, payload: string)
    channel ask(from: addr, round: int)
    table entries(slot: int, id: int, payload: string) key(slot)
    table by_id(id: int, slot: int) key(id)
    entries(s, id, p) :+ store(_, id, s, p).
    by_id(id, s) :+ store(_, id, s, _).
    fresh(s, id) :- store(_, id, s, _), !entries(s, _, _).
    overwrite(s, id, old) :- store(_, id, s, _), entries(s, old, _), old != id.
    delete entries(s, old, p) :- entries(s, old, p), overwrite(s, _, old).
    slot_in(s) :- entries(s, _, _).
    slot_in(s) :- store(_, _, s, _).
    high(max(s)) :- slot_in(s).
    entry_count(count(s)) :- entries(s, _, _).
    status@f(self, r, h, n) :~ ask(f, r), high(h), entry_count(n).
    ack@f(id, h) :~ store(f, id, s, _), fresh(s, id), high(h).
}
";
    let out = plan_text(text, 12, &[("client", 1), ("log", 3)]);
    assert!(out.contains("sealed partitioning of `log`"), "{out}");
    insta::assert_snapshot!(out);
}

/// A gate that refuses every decoupling moving `commit` (as if the bounded check had found a
/// counterexample), and records what it was asked.
struct RefuseCommit {
    asked: std::cell::RefCell<Vec<bool>>,
}

impl optimize::StepCheck for RefuseCommit {
    fn check(&self, original: &str, rewritten: &str, invariants_only: bool) -> Result<String, String> {
        assert!(analyze(original).program.component_by_name("proposer").is_some());
        self.asked.borrow_mut().push(invariants_only);
        let moved_commit = analyze(rewritten).program.components.iter().any(|c| {
            c.name != "proposer"
                && c.rules.iter().any(|&r| analyze(rewritten).program.rule(r).head.relation == "commit")
        });
        if moved_commit {
            Err("commit(1) differs\nshortest schedule: ...".into())
        } else {
            Ok("accepted".into())
        }
    }
}

#[test]
fn a_step_the_gate_refuses_is_not_taken_and_is_listed() {
    let text = std::fs::read_to_string(format!("{}/../examples/paxos.ded", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let options = optimize::Options {
        machines: 29,
        logical: [("proposer".to_string(), 2), ("acceptor".to_string(), 3)].into_iter().collect(),
        // The gate on decouplings, which are refinements: without the batching that would
        // come first and make every later step invariants-only.
        batch: optimize::BatchChoice::Off,
        ..Default::default()
    };
    let gate = RefuseCommit { asked: Default::default() };
    let plan = optimize::optimize_checked(&analyze(&text), &options, Some(&gate));
    assert!(!gate.asked.borrow().is_empty(), "the gate was asked");
    assert!(gate.asked.borrow().iter().all(|&invariants_only| !invariants_only));
    // Without the gate the first step moves the commit path; with it, that step is refused, its
    // counterexample kept, and the search goes on with other candidates.
    assert!(!plan.refused.is_empty(), "{}", optimize::render_steps(&plan));
    assert!(plan.refused.iter().all(|r| r.counterexample.starts_with("commit(1) differs")));
    let rendered = optimize::render_steps(&plan);
    assert!(rendered.contains("refused by the bounded check: functional decoupling: move proposals"), "{rendered}");
    let final_program = analyze(&plan.text);
    assert!(!final_program.has_errors());
    let commit_moved = final_program.program.components.iter().any(|c| {
        c.name != "proposer" && c.rules.iter().any(|&r| final_program.program.rule(r).head.relation == "commit")
    });
    assert!(!commit_moved, "a refused step was taken:\n{rendered}");
    assert!(plan.steps.iter().skip(1).all(|s| s.checked.as_deref() == Some("accepted")), "{rendered}");
}

/// The bundled voting program with its broadcast going through a helper holding the
/// participants' addresses: the same traffic, so the same cost (it used to cost 10x less, the
/// helper being neither an event nor a broadcast to the model).
#[test]
fn a_helper_derived_from_nodes_costs_what_the_broadcast_costs() {
    let text = std::fs::read_to_string(format!("{}/../examples/voting.ded", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let helper = text.replace(
        "ballot@p(id, payload, self) :~ client_request(id, payload), nodes(\"participant\", p).",
        "voters(p) :- nodes(\"participant\", p).\n    ballot@p(id, payload, self) :~ client_request(id, payload), voters(p).",
    );
    assert_ne!(helper, text);
    let options = optimize::Options {
        logical: [("leader".to_string(), 1), ("participant".to_string(), 3)].into_iter().collect(),
        ..Default::default()
    };
    let (a, b) = (analyze(&text), analyze(&helper));
    assert!(!b.has_errors());
    let (bundled, variant) = (optimize::traffic(&a.program, &options), optimize::traffic(&b.program, &options));
    for name in ["leader", "participant"] {
        let (i, j) = (a.program.component_by_name(name).unwrap(), b.program.component_by_name(name).unwrap());
        let (x, y) = (bundled[i.index()], variant[j.index()]);
        assert_eq!((x.facts_in, x.facts_out), (y.facts_in, y.facts_out), "{name}");
        // One more rule (the helper), over a built-in: it fires only when the deployment changes.
        assert!((x.work - y.work).abs() < 1e-9, "{name}: {x:?} vs {y:?}");
    }
    let plan = |t: &str| optimize::optimize(&analyze(t), &optimize::Options { machines: 12, ..options.clone() });
    let (p, q) = (plan(&text), plan(&helper));
    assert_eq!(p.estimate.throughput, q.estimate.throughput);
    assert_eq!(p.deployment, q.deployment);
}

/// Every step listed raises the prediction; why the search stopped is said.
#[test]
fn no_plan_has_a_step_without_gain() {
    type Case = (&'static str, usize, &'static [(&'static str, usize)]);
    let cases: [Case; 3] = [
        ("voting.ded", 12, &[("leader", 1), ("participant", 3)]),
        ("two_phase_commit.ded", 16, &[("coordinator", 1), ("participant", 3)]),
        ("paxos.ded", 29, &[("proposer", 2), ("acceptor", 3)]),
    ];
    for (file, machines, logical) in cases {
        let text = std::fs::read_to_string(format!("{}/../examples/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let options = optimize::Options {
            machines,
            logical: logical.iter().map(|&(c, n)| (c.to_string(), n)).collect(),
            ..Default::default()
        };
        let plan = optimize::optimize(&analyze(&text), &options);
        let rendered = optimize::render_steps(&plan);
        assert!(plan.steps.len() > 1, "{file}: {rendered}");
        for pair in plan.steps.windows(2) {
            assert!(pair[1].throughput > pair[0].throughput * 1.01, "{file}: a step without gain\n{rendered}");
        }
        assert!(!plan.stopped.is_empty() && rendered.contains("search stopped: "), "{rendered}");
        assert!(plan.estimate.machines <= machines, "{rendered}");
    }
}

/// A budget below the original deployment is said in words, and nothing is added.
#[test]
fn a_budget_below_the_deployment_is_said() {
    let text = std::fs::read_to_string(format!("{}/../examples/voting.ded", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let options = optimize::Options {
        machines: 2,
        logical: [("leader".to_string(), 1), ("participant".to_string(), 3)].into_iter().collect(),
        ..Default::default()
    };
    let plan = optimize::optimize(&analyze(&text), &options);
    assert_eq!(plan.steps.len(), 1);
    assert_eq!(plan.text, text);
    let rendered = optimize::render_steps(&plan);
    assert!(rendered.contains("--machines 2 is below the original deployment's 4 machines"), "{rendered}");
}

/// Inputs outside the workload's mix (timers, operator commands) cost nothing per request.
#[test]
fn only_the_workloads_inputs_count_per_request() {
    let text =
        std::fs::read_to_string(format!("{}/../examples/two_phase_commit.ded", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let a = analyze(&text);
    let participant = a.program.component_by_name("participant").unwrap().index();
    let every = optimize::traffic(&a.program, &optimize::Options::default());
    let mix =
        optimize::Options { inputs: Some([("begin".to_string(), 1.0)].into_iter().collect()), ..Default::default() };
    let driven = optimize::traffic(&a.program, &mix);
    // `refuse` is an operator command: one fact less per request at each participant.
    assert_eq!(every[participant].facts_in - driven[participant].facts_in, 1.0);
}

/// Batching, when asked for (`Options::batch`): Paxos' proposer is batched first (after
/// decoupling its reply path would be gone), its per-request cost divided by the batch fill, and
/// the batcher, partitioned by the request id, scaled out. Every step after it is gated on
/// invariants only.
#[test]
fn paxos_batched_when_asked() {
    let text = std::fs::read_to_string(format!("{}/../examples/paxos.ded", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let options = optimize::Options {
        machines: 29,
        logical: [("proposer".to_string(), 2), ("acceptor".to_string(), 3)].into_iter().collect(),
        batch: optimize::BatchChoice::Size(16),
        ..Default::default()
    };
    let gate = RefuseCommit { asked: Default::default() };
    let plan = optimize::optimize_checked(&analyze(&text), &options, Some(&gate));
    let rendered = optimize::render_steps(&plan);
    assert!(plan.steps[1].description.starts_with("batching of `proposer`"), "{rendered}");
    assert!(gate.asked.borrow().iter().all(|&invariants_only| invariants_only), "{rendered}");
    assert!(!analyze(&plan.text).has_errors());
    insta::assert_snapshot!(format!("{rendered}\n{}\n{}", plan.deployment, components(&plan.text)));
    // Not asked: no batching (it changes the positions replies carry).
    let unasked =
        optimize::optimize(&analyze(&text), &optimize::Options { batch: optimize::BatchChoice::Off, ..options });
    assert!(!optimize::render_steps(&unasked).contains("batching"));
}

/// 2PC's coordinator decides once per transaction, on the last yes vote or on a no: the static
/// frequencies count the decision (and the outcome broadcast and acks it causes) once per
/// request, as the runs measure (14 facts per request), not once per vote.
#[test]
fn alternative_branches_are_not_each_counted_in_full() {
    let text =
        std::fs::read_to_string(format!("{}/../examples/two_phase_commit.ded", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let analysis = analyze(&text);
    let program = &analysis.program;
    let options = optimize::Options {
        logical: [("coordinator".to_string(), 1), ("participant".to_string(), 3)].into_iter().collect(),
        // The bench's workload: transactions only (no operator `refuse`).
        inputs: Some([("begin".to_string(), 1.0)].into_iter().collect()),
        ..Default::default()
    };
    let traffic = optimize::traffic(program, &options);
    let coordinator = traffic[program.component_by_name("coordinator").unwrap().index()];
    let participant = traffic[program.component_by_name("participant").unwrap().index()];
    // In: the request, three votes, three acks; out: three prepares, three outcomes, the reply;
    // the reply's `done` is counted with the ack path's aggregates (16 in all).
    assert!(coordinator.facts_in <= 7.0 + 1e-9, "{coordinator:?}");
    assert!(coordinator.facts_in + coordinator.facts_out <= 16.0 + 1e-9, "{coordinator:?}");
    // A prepare and an outcome in, a vote and an ack out.
    assert!((participant.facts_in - 2.0).abs() < 1e-9 && (participant.facts_out - 2.0).abs() < 1e-9, "{participant:?}");
    assert_eq!(coordinator.visits, 3.0, "the request, its votes, its acks: three ticks");
}

/// Once the voting leader is partitioned, its instances and the participants are all busy: the
/// participants, that ticked once per burst of the lone leader's 700-fact ticks, now tick per
/// request far more often, and their CPU per request rises (1.0 to 1.4 CPU-µs measured,
/// bench/emulated.md); the gain is less than the leader's share alone would give.
#[test]
fn partitioning_the_bottleneck_makes_the_rest_tick_more() {
    let text = std::fs::read_to_string(format!("{}/../examples/voting.ded", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let analysis = analyze(&text);
    let program = &analysis.program;
    let options = optimize::Options {
        logical: [("leader".to_string(), 1), ("participant".to_string(), 3)].into_iter().collect(),
        ..Default::default()
    };
    let cost =
        |e: &optimize::Estimate, name: &str| e.components.iter().find(|c| c.name == name).unwrap().instance_cpu_us;
    let original = optimize::estimate_deployed(program, &options, &Default::default());
    let partitioned =
        optimize::estimate_deployed(program, &options, &[("leader".to_string(), 8)].into_iter().collect());
    let ticks = |e: &optimize::Estimate| e.components.iter().find(|c| c.name == "participant").unwrap().ticks;
    assert!(ticks(&partitioned) > ticks(&original) * 1.05, "{} vs {}", ticks(&partitioned), ticks(&original));
    assert!(
        cost(&partitioned, "participant") > cost(&original, "participant") * 1.03,
        "{} vs {}",
        cost(&partitioned, "participant"),
        cost(&original, "participant")
    );
    // The lone leader spends its whole quota, the other instances less.
    let quota_us = options.calibration.cpu_per_node * 1e6 / original.throughput;
    assert!((cost(&original, "leader") - quota_us).abs() < 1e-6 * quota_us);
    assert!(cost(&original, "participant") < quota_us);
    let share_alone = cost(&original, "leader") / (cost(&original, "leader") / 8.0).max(cost(&original, "participant"));
    let gain = partitioned.throughput / original.throughput;
    assert!(gain > 1.5 && gain < share_alone, "gain {gain}, share alone {share_alone}");
}

/// A gate that refuses every thrifty broadcast (its rewrite adds a `_widen()` timer input).
struct RefuseThrifty;

impl optimize::StepCheck for RefuseThrifty {
    fn check(&self, _original: &str, rewritten: &str, _invariants_only: bool) -> Result<String, String> {
        if rewritten.contains("_widen()") {
            Err("reply(1) missing\nshortest schedule: ...".into())
        } else {
            Ok("accepted".into())
        }
    }
}

/// Thrifty broadcasts in the default search, once decoupling has stopped: without batching,
/// Paxos' p2a moves to a proxy first (a thrifty p2a taken first would keep the count of its
/// answers in the proposer and block the commit part's decoupling, 1.2x against 1.8x), so the
/// plan is predicted at least as high as with thrifty turned off. With batching nothing
/// decouples and the thrifty p2a goes to a quorum of the three acceptors, each then receiving
/// 2/3 of the p2a it did (the cost model's messages: a quorum instead of every node); each step
/// is gated (below), and its description says the trade-off. Without grids: the default search
/// takes one there, and sends p2a to one row (tests/scaling_grid.rs).
#[test]
fn paxos_thrifty_in_the_default_search() {
    let text = std::fs::read_to_string(format!("{}/../examples/paxos.ded", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let logical: std::collections::BTreeMap<String, usize> =
        [("proposer".to_string(), 2), ("acceptor".to_string(), 3)].into_iter().collect();
    let options = |batch, thrifty| optimize::Options {
        machines: 29,
        logical: logical.clone(),
        thrifty,
        batch,
        grid: optimize::GridChoice::Off,
        calibration: optimize::Calibration { clients: 1024.0, ..Default::default() },
        ..Default::default()
    };
    let unbatched = optimize::optimize(&analyze(&text), &options(optimize::BatchChoice::Off, true));
    let unbatched_off = optimize::optimize(&analyze(&text), &options(optimize::BatchChoice::Off, false));
    assert!(
        unbatched.estimate.throughput >= unbatched_off.estimate.throughput,
        "{}\n{}",
        optimize::render_steps(&unbatched),
        optimize::render_steps(&unbatched_off)
    );
    assert!(unbatched.text.contains("component proposals_part"), "{}", optimize::render_steps(&unbatched));

    let plan = optimize::optimize(&analyze(&text), &options(optimize::BatchChoice::Search, true));
    let rendered = optimize::render_steps(&plan);
    let off = optimize::optimize(&analyze(&text), &options(optimize::BatchChoice::Search, false));
    assert!(plan.estimate.throughput > off.estimate.throughput * 1.01, "{rendered}");
    assert!(
        rendered.contains(
            "thrifty broadcast: `proposer` sends `p2a` to a quorum of `acceptor`, the rest on `p2a_widen()` (after a \
             crash of a quorum member, its answers wait for that timer)"
        ),
        "{rendered}"
    );
    assert!(plan.text.contains("input p2a_widen()"), "{rendered}");
    assert!(!off.text.contains("_widen()"));
    assert!(!analyze(&plan.text).has_errors());
    // The plan itself is the `paxos` snapshot.
    // The cost model: p2a reaches 2 of the 3 acceptors, so each receives 2/3 of what it did.
    let acceptor_in = |program: &str| {
        let a = analyze(program);
        let estimate =
            optimize::estimate(&a.program, &optimize::Options { logical: logical.clone(), ..Default::default() });
        estimate.components.iter().find(|c| c.name == "acceptor").unwrap().facts_in
    };
    let thrifty = compart_analysis::rewrite::thrifty(&analyze(&text), "proposer", Some("p2a")).unwrap().new_text;
    let ratio = acceptor_in(&thrifty) / acceptor_in(&text);
    assert!((ratio - 2.0 / 3.0).abs() < 1e-9, "each acceptor receives 2/3 of the p2a, not {ratio}");
    // Refused by the gate: `thrifty_broadcasts_are_checked_together_then_one_by_one`.
}

/// A gate that refuses the thrifty p1a (its widening input) and counts the checks of programs
/// with a thrifty broadcast.
#[derive(Default)]
struct RefuseThriftyP1a {
    thrifty_checks: std::cell::Cell<usize>,
}

impl optimize::StepCheck for RefuseThriftyP1a {
    fn check(&self, _original: &str, rewritten: &str, _invariants_only: bool) -> Result<String, String> {
        if rewritten.contains("_widen()") {
            self.thrifty_checks.set(self.thrifty_checks.get() + 1);
        }
        if rewritten.contains("p1a_widen()") {
            Err("reply(1) missing\nshortest schedule: ...".into())
        } else {
            Ok("accepted".into())
        }
    }
}

/// The thrifty broadcasts the model picks are checked together, one bounded check for both of
/// Paxos' (the slow part of the search); when that is refused each is checked on its own, and the
/// one that passes is taken, the other listed. Without grids (a grid that pays only with the row
/// send is dropped when that is refused: tests/scaling_grid.rs).
#[test]
fn thrifty_broadcasts_are_checked_together_then_one_by_one() {
    let text = std::fs::read_to_string(format!("{}/../examples/paxos.ded", env!("CARGO_MANIFEST_DIR"))).unwrap();
    // Sized for 256 clients, where smaller batches make both broadcasts pay.
    let options = optimize::Options {
        grid: optimize::GridChoice::Off,
        calibration: optimize::Calibration { clients: 256.0, ..Default::default() },
        ..paxos_options(29)
    };
    // Every thrifty step refused: together first, then each alone (p1a only where it pays alone).
    let none = optimize::optimize_checked(&analyze(&text), &options, Some(&RefuseThrifty));
    assert!(!none.text.contains("_widen()"));
    let refused: Vec<&str> = none.refused.iter().map(|r| r.description.as_str()).collect();
    assert!(refused[0].contains(", then thrifty broadcast"), "{refused:?}");
    assert!(refused[1..].iter().any(|r| r.starts_with("thrifty broadcast: `proposer` sends `p2a`")), "{refused:?}");
    let gate = RefuseThriftyP1a::default();
    let plan = optimize::optimize_checked(&analyze(&text), &options, Some(&gate));
    assert!(plan.text.contains("input p2a_widen()") && !plan.text.contains("p1a_widen()"));
    let refused: Vec<&str> = plan.refused.iter().map(|r| r.description.as_str()).collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused[0].contains("sends `p2a`") && refused[0].contains(", then thrifty broadcast"), "{refused:?}");
    assert!(refused[1].starts_with("thrifty broadcast: `proposer` sends `p1a`"), "{refused:?}");
    // Together (refused), p2a alone, p1a alone.
    assert_eq!(gate.thrifty_checks.get(), 3);
    // Accepted together: one check.
    struct Accept(std::cell::Cell<usize>);
    impl optimize::StepCheck for Accept {
        fn check(&self, _: &str, rewritten: &str, _: bool) -> Result<String, String> {
            self.0.set(self.0.get() + usize::from(rewritten.contains("_widen()")));
            Ok("accepted".into())
        }
    }
    let accept = Accept(std::cell::Cell::new(0));
    let plan = optimize::optimize_checked(&analyze(&text), &options, Some(&accept));
    assert!(plan.text.contains("input p2a_widen()") && plan.text.contains("input p1a_widen()"));
    assert_eq!(accept.0.get(), 1);
}

fn paxos_options(machines: usize) -> optimize::Options {
    optimize::Options {
        machines,
        logical: [("proposer".to_string(), 2), ("acceptor".to_string(), 3)].into_iter().collect(),
        ..Default::default()
    }
}

/// With no hint the search batches Paxos' proposer (its costliest sequential component), picks
/// the size among the ones it tries, and checks the batching and every later step on invariants.
#[test]
fn paxos_batched_by_default() {
    let text = std::fs::read_to_string(format!("{}/../examples/paxos.ded", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let gate = RefuseCommit { asked: Default::default() };
    let plan = optimize::optimize_checked(&analyze(&text), &paxos_options(29), Some(&gate));
    let rendered = optimize::render_steps(&plan);
    let step = &plan.steps[1].description;
    let size = optimize::BATCH_SIZES.iter().find(|n| step.starts_with(&format!("batching of `proposer` (size {n})")));
    let size = *size.unwrap_or_else(|| panic!("{rendered}"));
    assert!(step.contains(&format!("log positions are spaced by {size}")), "{step}");
    assert!(plan.invariants_only);
    assert!(gate.asked.borrow().iter().all(|&invariants_only| invariants_only), "{rendered}");
    // The batcher is split, but not so far that its batches empty: each of its instances still
    // gets 16 requests per tick or more under the calibration's load.
    let batcher = plan.estimate.components.iter().find(|c| c.name == "proposer_batcher").unwrap();
    let cal = &plan.calibration;
    assert!(batcher.partitions > 1, "{rendered}");
    assert!(cal.clients / cal.tick_window / batcher.partitions as f64 >= 16.0, "{rendered}");
    // The plan's deployment records the batching, and reading it back costs the plan as the
    // search did: the same prediction from the program and its deployment alone.
    let program = analyze(&plan.text).program;
    let read = compart_analysis::deployment::batchings(Some(&plan.deployment), &program).unwrap();
    let [b] = &read[..] else { panic!("{}", plan.deployment) };
    assert_eq!((b.batcher.as_str(), b.channel.as_str()), ("proposer_batcher", "request_batch"));
    assert_eq!((b.size, b.instances), (size, batcher.partitions), "{}", plan.deployment);
    let partitions = [("proposer_batcher".to_string(), batcher.partitions)].into_iter().collect();
    let again =
        optimize::estimate_deployed(&program, &optimize::Options { batched: read, ..paxos_options(0) }, &partitions);
    assert!(
        (again.throughput / plan.estimate.throughput - 1.0).abs() < 1e-9,
        "{} vs {}",
        again.throughput,
        plan.estimate.throughput
    );
    // Off: the plan of the unbatched search, no batcher.
    let off = optimize::optimize(
        &analyze(&text),
        &optimize::Options { batch: optimize::BatchChoice::Off, ..paxos_options(29) },
    );
    assert!(!off.invariants_only);
    assert!(analyze(&off.text).program.component_by_name("proposer_batcher").is_none());
}

/// The fill model: a batcher's instances split each tick's requests, so more of them hold fewer
/// requests per batch, and the batched proposer receives more facts per request.
#[test]
fn more_batcher_instances_empty_the_batches() {
    let text = std::fs::read_to_string(format!("{}/../examples/paxos.ded", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let delivery = compart_analysis::rewrite::Delivery::default();
    let batched = compart_analysis::rewrite::batch(&analyze(&text), "proposer", 64, delivery).unwrap();
    let a = analyze(&batched.new_text);
    let with = |instances: usize| optimize::Options {
        batched: vec![optimize::Batched {
            batcher: "proposer_batcher".into(),
            channel: "request_batch".into(),
            size: 64,
            instances,
            fill: None,
        }],
        ..paxos_options(0)
    };
    let fill = |k: usize| with(k).batch_fill(&a.program, &with(k).batched[0]);
    let proposer = a.program.component_by_name("proposer").unwrap().index();
    let received = |k: usize| optimize::traffic(&a.program, &with(k))[proposer].facts_in;
    // 1024 clients over the calibration's tick window: one instance fills its batches.
    assert_eq!(fill(1), 64.0);
    for k in 2..=32 {
        assert!(fill(k) <= fill(k - 1), "fill({k}) = {}", fill(k));
        assert!(received(k) >= received(k - 1), "proposer at {k} batcher instances: {}", received(k));
    }
    assert!(fill(32) < 16.0 && received(32) > received(1) * 2.0, "fill {} vs {}", fill(32), fill(1));
    // The estimate with a budget stops short of the instances that would empty the batches.
    let est = optimize::estimate(&a.program, &optimize::Options { machines: 29, ..with(1) });
    let k = est.components.iter().find(|c| c.name == "proposer_batcher").unwrap().partitions;
    assert!(k > 1 && fill(k) >= 16.0, "{k} batcher instances");
}
