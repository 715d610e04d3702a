//! The example protocols under thousands of seeded schedules: every invariant must hold.

use std::sync::Arc;

use compart_runtime::deploy::Deployment;
use compart_runtime::engine::CompiledProgram;
use compart_runtime::sim::{report, simulate_compiled, SimConfig};

fn load(name: &str) -> (Arc<CompiledProgram>, Arc<Deployment>) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let src = std::fs::read_to_string(format!("{dir}/{name}.ded")).unwrap();
    let toml = std::fs::read_to_string(format!("{dir}/{name}.toml")).unwrap();
    let analysis = compart_analysis::analyze(&src);
    let program = CompiledProgram::new(&analysis).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    let deployment = Deployment::from_toml(&toml, &analysis.program).unwrap();
    (Arc::new(program), Arc::new(deployment))
}

fn run_schedules(name: &str, schedules: u64, steps: usize) -> (u64, u64) {
    let (program, deployment) = load(name);
    let (mut outputs, mut ticks) = (0, 0);
    for seed in 0..schedules {
        let config = SimConfig { seed, steps, minimize: true, ..SimConfig::default() };
        let result = simulate_compiled(program.clone(), deployment.clone(), &config);
        assert!(result.violations.is_empty(), "{name}:\n{}", report(&program, &deployment, &result));
        outputs += result.outputs.values().map(|v| v.len() as u64).sum::<u64>();
        ticks += result.ticks;
    }
    (outputs, ticks)
}

#[test]
fn voting_holds_its_invariants() {
    let (outputs, _) = run_schedules("voting", 500, 150);
    assert!(outputs > 500, "the workload gets answers: {outputs}");
}

#[test]
fn two_phase_commit_holds_its_invariants() {
    let (outputs, _) = run_schedules("two_phase_commit", 500, 150);
    assert!(outputs > 200, "{outputs}");
}

#[test]
fn paxos_holds_its_invariants() {
    let (outputs, _) = run_schedules("paxos", 500, 200);
    assert!(outputs > 100, "{outputs}");
}

#[test]
fn kvs_holds_its_invariants() {
    let (outputs, _) = run_schedules("kvs", 500, 150);
    assert!(outputs > 200, "{outputs}");
}

/// The incremental engine (views kept between ticks, aggregates maintained per table change)
/// must behave exactly like re-evaluating every rule from scratch: same seeds, same outputs.
#[test]
fn incremental_evaluation_matches_from_scratch() {
    for name in ["voting", "two_phase_commit", "paxos", "kvs"] {
        let (program, deployment) = load(name);
        for seed in 0..40 {
            let run = |incremental| {
                let config = SimConfig { seed, steps: 150, incremental, ..SimConfig::default() };
                simulate_compiled(program.clone(), deployment.clone(), &config)
            };
            let (fast, reference) = (run(true), run(false));
            assert_eq!(fast.trace, reference.trace, "{name} seed {seed}");
            assert_eq!(fast.outputs, reference.outputs, "{name} seed {seed}");
            assert_eq!(fast.violations, reference.violations, "{name} seed {seed}");
        }
    }
}
