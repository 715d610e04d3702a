//! Global invariants under crashes: a crashed node counts with its durable tables, so a crash
//! alone reports nothing, while state a crash really loses is still reported.

use std::sync::Arc;

use super::*;

/// `a` grants `x` (a table, durable) and tells `b`, which holds it. `orphan` says every hold has
/// its grant. The simulator before this fix dropped a crashed node's facts from the global check,
/// so while `a` was down every hold of `b` looked orphaned.
const GRANTS: &str = "component a {
        input req(x: int) key(x)
        table granted(x: int)
        granted(x) :- req(x).
        grant@n(x) :~ req(x), nodes(\"b\", n).
    }
    component b {
        channel grant(x: int)
        table held(x: int)
        held(x) :- grant(x).
    }
    invariant orphan(x) :- held(x), !granted(x).";

/// The same protocol with a real crash bug: `a` carries its grants from tick to tick in a
/// scratch relation (`:+`), which no crash survives, durability or not.
const FORGETFUL: &str = "component a {
        input req(x: int) key(x)
        scratch granted(x: int)
        granted(x) :- req(x).
        granted(x) :+ granted(x).
        grant@n(x) :~ req(x), nodes(\"b\", n).
    }
    component b {
        channel grant(x: int)
        table held(x: int)
        held(x) :- grant(x).
    }
    invariant orphan(x) :- held(x), !granted(x).";

fn load(src: &str) -> (Arc<CompiledProgram>, Arc<Deployment>, RelationId) {
    let analysis = compart_analysis::analyze(src);
    assert!(!analysis.has_errors(), "{:?}", analysis.diagnostics);
    let program = Arc::new(CompiledProgram::new(&analysis).unwrap());
    let deployment = Arc::new(Deployment::local(&analysis.program, &[("a", 1), ("b", 1)]));
    let req = analysis.program.relation_by_name("req").unwrap();
    (program, deployment, req)
}

/// `a` grants 1 and 2; `b` holds 1; `a` crashes; `b` then receives and holds 2.
fn crash_between_deliveries(deployment: &Deployment, req: RelationId) -> Vec<Event> {
    let a = deployment.by_name("a/0").unwrap();
    let b = deployment.by_name("b/0").unwrap();
    vec![
        Event::Input { node: a, relation: req, tuple: vec![Value::Int(1)] },
        Event::Input { node: a, relation: req, tuple: vec![Value::Int(2)] },
        Event::Tick { node: a },
        Event::Deliver { pick: 0 },
        Event::Tick { node: b },
        Event::Crash { node: a },
        Event::Deliver { pick: 0 },
        Event::Tick { node: b },
        Event::Restart { node: a },
        Event::Tick { node: a },
        Event::Tick { node: b },
    ]
}

#[test]
fn a_crash_alone_orphans_nothing() {
    let (program, deployment, req) = load(GRANTS);
    let events = crash_between_deliveries(&deployment, req);
    // Before the fix: orphan(1) and orphan(2) at event 7, b's tick while a is down.
    assert_eq!(replay(&program, &deployment, true, &events, None), None);
    let lines = describe(&program, &deployment, true, &events);
    assert!(lines.iter().all(|l| !l.contains("orphan")), "{lines:#?}");
}

#[test]
fn amnesia_is_still_an_orphan() {
    // Without durability the restarted `a` really has forgotten grant 1 (b holds it): the
    // violation is reported at the crash, not only once `a` is back.
    let (program, deployment, req) = load(GRANTS);
    let events = crash_between_deliveries(&deployment, req);
    let (at, v) = replay(&program, &deployment, false, &events, None).expect("amnesia orphans the hold");
    assert_eq!(events[at], Event::Crash { node: deployment.by_name("a/0").unwrap() });
    assert_eq!((v.invariant.as_str(), v.args.clone()), ("orphan", vec![Value::Int(1)]));
}

#[test]
fn state_no_crash_survives_is_still_an_orphan() {
    // Durable tables or not, facts carried in a scratch relation are gone after a crash.
    let (program, deployment, req) = load(FORGETFUL);
    let events = crash_between_deliveries(&deployment, req);
    let (at, v) = replay(&program, &deployment, true, &events, None).expect("the scratch grants are lost");
    assert_eq!(events[at], Event::Crash { node: deployment.by_name("a/0").unwrap() });
    assert_eq!(v.invariant, "orphan");
    // Without the crash nothing is wrong.
    let no_crash: Vec<Event> =
        events.iter().filter(|e| !matches!(e, Event::Crash { .. } | Event::Restart { .. })).cloned().collect();
    assert_eq!(replay(&program, &deployment, true, &no_crash, None), None);
}

/// Seeded schedules with frequent crashes: the durable protocol never reports an orphan (the
/// old simulator did from seed 0 on), its amnesiac and forgetful versions do, with a crash in
/// the minimised trace.
#[test]
fn crash_schedules_report_only_real_orphans() {
    let config = |seed, durability| SimConfig {
        seed,
        steps: 200,
        crash: 0.05,
        durability,
        workload: WorkloadSpec { input_percent: 30, ..WorkloadSpec::default() },
        ..SimConfig::default()
    };
    let (program, deployment, _) = load(GRANTS);
    let mut crashes = 0;
    for seed in 0..100 {
        let r = simulate_compiled(program.clone(), deployment.clone(), &config(seed, true));
        assert!(r.violations.is_empty(), "{}", report(&program, &deployment, &r));
        crashes += r.trace.iter().filter(|e| matches!(e, Event::Crash { .. })).count();
    }
    assert!(crashes > 100, "the schedules crash nodes: {crashes}");

    let real = |program: &Arc<CompiledProgram>, durability| {
        (0..100)
            .map(|seed| simulate_compiled(program.clone(), deployment.clone(), &config(seed, durability)))
            .find(|r| !r.violations.is_empty())
            .unwrap_or_else(|| panic!("no schedule reports the lost grants (durability {durability})"))
    };
    let (forgetful, _, _) = load(FORGETFUL);
    for (program, durability) in [(&program, false), (&forgetful, true)] {
        let r = real(program, durability);
        assert_eq!(r.violations[0].1.invariant, "orphan");
        let minimized = r.minimized.expect("minimised");
        assert!(minimized.iter().any(|e| matches!(e, Event::Crash { .. })), "{minimized:?}");
        assert!(replay(program, &deployment, durability, &minimized, Some("orphan")).is_some());
    }
}

/// A crash inside a tick (after the log write, before the sends) with durability: the record
/// holds the tick whole, as the runtime's does (table changes, sends, outputs, what it
/// processed), so the restarted node sends what the tick sent and what it consumed does not
/// come again: the tick happened, then the crash.
#[test]
fn a_crash_inside_a_tick_keeps_the_tick_whole_with_durability() {
    let (program, deployment, req) = load(GRANTS);
    let a = deployment.by_name("a/0").unwrap();
    let b = deployment.by_name("b/0").unwrap();
    let granted = program.program.relation_by_name("granted").unwrap();
    let held = program.program.relation_by_name("held").unwrap();
    let mut world = World::new(program.clone(), deployment.clone(), true, true, InitialTables::default());
    let run = |world: &mut World, events: &[Event]| {
        for (i, e) in events.iter().enumerate() {
            assert_eq!(world.apply(i, e), Vec::new(), "{e:?}");
        }
    };
    run(
        &mut world,
        &[Event::Input { node: a, relation: req, tuple: vec![Value::Int(1)] }, Event::CrashInTick { node: a }],
    );
    assert!(world.nodes[a.index()].is_none(), "the node is down");
    assert_eq!(world.flight.len(), 1, "the grant left (from the log)");
    assert!(!world.journals[a.index()].is_empty(), "granted(1) was logged");
    assert!(world.snapshots[a.index()].contains(&(granted, vec![vec![Value::Int(1)]])));
    run(&mut world, &[Event::Restart { node: a }]);
    assert!(world.inbox[a.index()].is_empty(), "req(1) was processed by a logged tick: not again");
    assert_eq!(world.nodes[a.index()].as_ref().unwrap().facts(granted), vec![vec![Value::Int(1)]]);
    run(&mut world, &[Event::Deliver { pick: 0 }, Event::CrashInTick { node: b }]);
    assert!(world.flight.is_empty(), "b processed grant(1) in its logged tick: not retransmitted");
    assert!(world.snapshots[b.index()].contains(&(held, vec![vec![Value::Int(1)]])));
    run(&mut world, &[Event::Restart { node: b }, Event::Tick { node: b }]);
    assert_eq!(world.nodes[b.index()].as_ref().unwrap().facts(held), vec![vec![Value::Int(1)]]);
}

/// Without durability nothing is logged: a crash inside a tick loses its sends with its
/// tables, and what it consumed comes again (the input from the client after the restart).
#[test]
fn a_crash_inside_a_tick_without_durability_loses_the_tick() {
    let (program, deployment, req) = load(GRANTS);
    let a = deployment.by_name("a/0").unwrap();
    let granted = program.program.relation_by_name("granted").unwrap();
    let mut world = World::new(program.clone(), deployment.clone(), false, true, InitialTables::default());
    for (i, e) in [
        Event::Input { node: a, relation: req, tuple: vec![Value::Int(1)] },
        Event::CrashInTick { node: a },
        Event::Restart { node: a },
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(world.apply(i, e), Vec::new(), "{e:?}");
    }
    assert!(world.flight.is_empty(), "the grant never left");
    assert!(world.result.outputs.is_empty());
    assert_eq!(world.inbox[a.index()], vec![(req, vec![Value::Int(1)])], "the client sent req(1) again");
    assert!(world.nodes[a.index()].as_ref().unwrap().facts(granted).is_empty());
}
