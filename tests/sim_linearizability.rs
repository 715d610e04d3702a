//! Client histories of the KV example, recorded by the simulator and checked per key with the
//! Wing–Gong linearizability checker.

use std::sync::Arc;

use compart_runtime::deploy::Deployment;
use compart_runtime::engine::CompiledProgram;
use compart_runtime::sim::lincheck::{check, kvs_history, OpKind};
use compart_runtime::sim::{simulate_compiled, SimConfig, WorkloadSpec};

fn kvs() -> (Arc<CompiledProgram>, compart_analysis::Program) {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/kvs.ded")).unwrap();
    let analysis = compart_analysis::analyze(&src);
    (Arc::new(CompiledProgram::new(&analysis).unwrap()), analysis.program)
}

fn config(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        steps: 250,
        workload: WorkloadSpec { input_percent: 25, max_inputs: 30, ..WorkloadSpec::default() },
        ..SimConfig::default()
    }
}

#[test]
fn one_replica_is_linearizable() {
    let (program, model) = kvs();
    let deployment = Arc::new(Deployment::local(&model, &[("leader", 1), ("replica", 1)]));
    let (mut gets, mut puts) = (0, 0);
    for seed in 0..150 {
        let config = config(seed);
        let result = simulate_compiled(program.clone(), deployment.clone(), &config);
        assert!(result.violations.is_empty());
        let ops = kvs_history(&program, &result).unwrap();
        gets += ops.iter().filter(|o| matches!(o.kind, OpKind::Get { .. })).count();
        puts += ops.iter().filter(|o| o.response.is_some() && matches!(o.kind, OpKind::Put { .. })).count();
        if let Err(key) = check(&ops) {
            panic!("seed {seed}: key {key:?} not linearizable: {ops:#?}");
        }
    }
    assert!(gets > 300 && puts > 300, "the histories are not trivial: {gets} gets, {puts} acknowledged puts");
}

/// With three replicas a read may be served by a lagging replica (kvs.ded says reads may be
/// stale): the checker must find such a stale read.
#[test]
fn three_replicas_serve_stale_reads() {
    let (program, model) = kvs();
    let deployment = Arc::new(Deployment::local(&model, &[("leader", 1), ("replica", 3)]));
    let stale = (0..300).find(|&seed| {
        let result = simulate_compiled(program.clone(), deployment.clone(), &config(seed));
        check(&kvs_history(&program, &result).unwrap()).is_err()
    });
    assert!(stale.is_some(), "no stale read found in 300 schedules");
}
