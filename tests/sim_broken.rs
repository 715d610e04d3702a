//! An intentionally broken Paxos (quorum of one) is caught, minimised and replayed by seed.

use std::sync::Arc;

use compart_runtime::deploy::Deployment;
use compart_runtime::engine::CompiledProgram;
use compart_runtime::sim::{replay, report, simulate_compiled, SimConfig};

#[test]
fn quorum_of_one_breaks_agreement_and_the_trace_replays() {
    let root = env!("CARGO_MANIFEST_DIR");
    let src = std::fs::read_to_string(format!("{root}/tests/fixtures/paxos_quorum_of_one.ded")).unwrap();
    let toml = std::fs::read_to_string(format!("{root}/examples/paxos.toml")).unwrap();
    let analysis = compart_analysis::analyze(&src);
    let program = Arc::new(CompiledProgram::new(&analysis).unwrap());
    let deployment = Arc::new(Deployment::from_toml(&toml, &analysis.program).unwrap());
    let mut found = None;
    for seed in 0..300 {
        let config = SimConfig { seed, steps: 300, ..SimConfig::default() };
        let result = simulate_compiled(program.clone(), deployment.clone(), &config);
        if result.violations.iter().any(|(_, v)| v.invariant.starts_with("agreement")) {
            found = Some((config, result));
            break;
        }
    }
    let (config, result) = found.expect("no schedule of 300 breaks agreement with a quorum of one");
    let text = report(&program, &deployment, &result);
    println!("{text}");
    assert!(text.contains(&format!("--seed {}", config.seed)));
    // Every line names nodes alike (`acceptor/2`), in events, facts and violations: no bare
    // address (`#2`) anywhere but a message's pick.
    assert!(text.lines().all(|l| !l.contains('#') || l.contains("message #")), "{text}");
    assert!(text.contains("violated: agreement("), "{text}");
    let minimized = result.minimized.clone().expect("minimised trace");
    assert!(minimized.len() < result.trace.len(), "minimisation removed events");
    let first = &result.violations[0].1.invariant;
    assert!(replay(&program, &deployment, true, &minimized, Some(first)).is_some(), "the minimised trace still fails");
    // Same seed, same run: the trace replays event for event.
    let again = simulate_compiled(program.clone(), deployment.clone(), &config);
    assert_eq!(again.trace, result.trace);
    assert_eq!(again.violations, result.violations);

    // The correct protocol survives the very same schedule.
    let good = std::fs::read_to_string(format!("{root}/examples/paxos.ded")).unwrap();
    let good = compart_analysis::analyze(&good);
    let good = Arc::new(CompiledProgram::new(&good).unwrap());
    assert!(replay(&good, &deployment, true, &result.trace, None).is_none());
}

/// Crashes that lose the tables (no durability) break even correct Paxos: an acceptor forgets
/// its promises. The same events with durable tables keep agreement.
#[test]
fn amnesia_breaks_paxos_and_durability_fixes_the_same_schedule() {
    let root = env!("CARGO_MANIFEST_DIR");
    let src = std::fs::read_to_string(format!("{root}/examples/paxos.ded")).unwrap();
    let toml = std::fs::read_to_string(format!("{root}/examples/paxos.toml")).unwrap();
    let analysis = compart_analysis::analyze(&src);
    let program = Arc::new(CompiledProgram::new(&analysis).unwrap());
    let deployment = Arc::new(Deployment::from_toml(&toml, &analysis.program).unwrap());
    let broken = (100..400)
        .map(|seed| {
            let config = SimConfig { seed, steps: 400, durability: false, minimize: false, ..SimConfig::default() };
            simulate_compiled(program.clone(), deployment.clone(), &config)
        })
        .find(|r| r.violations.iter().any(|(_, v)| v.invariant.starts_with("agreement")))
        .expect("some amnesia schedule breaks agreement");
    assert!(broken.trace.iter().any(|e| matches!(e, compart_runtime::sim::Event::Crash { .. })));
    assert!(replay(&program, &deployment, false, &broken.trace, Some("agreement")).is_some());
    assert_eq!(replay(&program, &deployment, true, &broken.trace, None), None);
}
