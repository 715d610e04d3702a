//! Engine benchmarks (`cargo bench -p compart-runtime --bench engine`), medians printed:
//!
//! 1. Transitive closure (recursive join) over a random graph: facts derived per second by the
//!    engine, against a hand-written semi-naive Rust implementation of the same two rules.
//! 2. A Paxos acceptor (the acceptor of examples/paxos.ded) holding 1k and then 1M accepted slots:
//!    the cost of one p2a message must not grow with the table.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use compart_runtime::deploy::Deployment;
use compart_runtime::engine::{CompiledProgram, Node, NodeOptions};
use compart_runtime::sim::Rng;
use compart_runtime::{NodeAddr, Value};

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn graph(nodes: i64, edges: usize, seed: u64) -> Vec<(i64, i64)> {
    let mut rng = Rng::new(seed);
    let mut set = HashSet::new();
    while set.len() < edges {
        let a = rng.below(nodes as u64) as i64;
        let b = rng.below(nodes as u64) as i64;
        set.insert((a, b));
    }
    let mut v: Vec<_> = set.into_iter().collect();
    v.sort();
    v
}

/// The same rules by hand: path = edge; path(a, c) <- path(a, b), edge(b, c), semi-naive.
fn hand_closure(edges: &[(i64, i64)]) -> usize {
    let mut by_src: HashMap<i64, Vec<i64>> = HashMap::new();
    for &(a, b) in edges {
        by_src.entry(a).or_default().push(b);
    }
    let mut path: HashSet<(i64, i64)> = edges.iter().copied().collect();
    let mut recent: Vec<(i64, i64)> = edges.to_vec();
    while !recent.is_empty() {
        let mut next = Vec::new();
        for &(a, b) in &recent {
            if let Some(cs) = by_src.get(&b) {
                for &c in cs {
                    if path.insert((a, c)) {
                        next.push((a, c));
                    }
                }
            }
        }
        recent = next;
    }
    path.len()
}

const CLOSURE: &str = "component g {
    input e(a: int, b: int)
    table edge(a: int, b: int)
    edge(a, b) :- e(a, b).
    path(a, b) :- edge(a, b).
    path(a, c) :- path(a, b), edge(b, c).
}";

fn compile(src: &str) -> (Arc<CompiledProgram>, compart_analysis::Program) {
    let analysis = compart_analysis::analyze(src);
    (Arc::new(CompiledProgram::new(&analysis).expect("program compiles")), analysis.program)
}

fn closure_bench() {
    let (program, model) = compile(CLOSURE);
    let deployment = Arc::new(Deployment::local(&model, &[]));
    let e = model.relation_by_name("e").unwrap();
    let path = model.relation_by_name("path").unwrap();
    let edges = graph(600, 900, 1);
    let expected = hand_closure(&edges);
    let (mut engine, mut hand) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        let mut node = Node::with_options(
            program.clone(),
            NodeAddr(0),
            deployment.clone(),
            NodeOptions { check_invariants: false },
        );
        let inputs: Vec<_> = edges.iter().map(|&(a, b)| (e, vec![Value::Int(a), Value::Int(b)])).collect();
        let t = Instant::now();
        node.tick(inputs);
        engine.push(t.elapsed());
        assert_eq!(node.facts(path).len(), expected);
        let t = Instant::now();
        assert_eq!(hand_closure(&edges), expected);
        hand.push(t.elapsed());
    }
    let (me, mh) = (median(engine), median(hand));
    let rate = |d: Duration| expected as f64 / d.as_secs_f64() / 1e6;
    println!(
        "transitive closure: {} edges -> {expected} path facts; engine {:.1} ms ({:.2} M facts/s), hand-written {:.1} ms ({:.2} M facts/s), ratio {:.2}x",
        edges.len(),
        me.as_secs_f64() * 1e3,
        rate(me),
        mh.as_secs_f64() * 1e3,
        rate(mh),
        me.as_secs_f64() / mh.as_secs_f64()
    );
}

fn acceptor_bench() {
    let src =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/paxos.ded")).expect("paxos.ded");
    let (program, model) = compile(&src);
    let deployment = Arc::new(Deployment::local(&model, &[("proposer", 1), ("acceptor", 1)]));
    let acceptor = deployment.by_name("acceptor/0").unwrap();
    let proposer = Value::Addr(deployment.by_name("proposer/0").unwrap());
    let p2a = model.relation_by_name("p2a").unwrap();
    let accepted = model.relation_by_name("accepted").unwrap();
    let mut node = Node::with_options(program, acceptor, deployment, NodeOptions { check_invariants: false });
    let msg =
        |slot: i64| (p2a, vec![proposer.clone(), Value::Int(1), Value::Int(slot), Value::Int(slot), Value::str("v")]);
    node.tick(vec![]);
    let mut filled = 0i64;
    let report = |node: &mut Node, filled: i64| {
        let mut times = Vec::new();
        for i in 0..2000 {
            let t = Instant::now();
            let out = node.tick(vec![msg(filled + i)]);
            times.push(t.elapsed());
            assert_eq!(out.sends.len(), 1, "one p2b per p2a");
        }
        node.tick(vec![]);
        let m = median(times);
        println!(
            "acceptor with {:>8} accepted slots: {:.1} us per p2a message (median of 2000)",
            node.facts_len(accepted),
            m.as_secs_f64() * 1e6
        );
        m
    };
    {
        let batch: Vec<_> = (0..1000).map(msg).collect();
        node.tick(batch);
        node.tick(vec![]);
        filled += 1000;
    }
    let small = report(&mut node, filled);
    filled += 2000;
    while filled < 1_000_000 {
        let batch: Vec<_> = (filled..filled + 20_000).map(msg).collect();
        node.tick(batch);
        node.tick(vec![]);
        filled += 20_000;
    }
    let big = report(&mut node, filled);
    println!("per-message cost ratio 1M / 1k entries: {:.2}x", big.as_secs_f64() / small.as_secs_f64());
}

/// Simulator throughput: seeded Paxos schedules per second (the CI tests run thousands in debug).
fn simulator_bench() {
    use compart_runtime::sim::{simulate_compiled, SimConfig};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    for name in ["voting", "paxos"] {
        let src = std::fs::read_to_string(format!("{dir}/{name}.ded")).expect("example");
        let toml = std::fs::read_to_string(format!("{dir}/{name}.toml")).expect("deployment");
        let (program, model) = compile(&src);
        let deployment = Arc::new(Deployment::from_toml(&toml, &model).expect("deployment parses"));
        let t = Instant::now();
        let n = 2000;
        for seed in 0..n {
            let config = SimConfig { seed, steps: 200, ..SimConfig::default() };
            let r = simulate_compiled(program.clone(), deployment.clone(), &config);
            assert!(r.violations.is_empty());
        }
        let d = t.elapsed();
        println!(
            "simulator: {n} {name} schedules of 200 events in {:.2} s ({:.0} schedules/s)",
            d.as_secs_f64(),
            n as f64 / d.as_secs_f64()
        );
    }
}

fn main() {
    // `cargo test --benches` runs this binary too; keep that quick.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    closure_bench();
    acceptor_bench();
    simulator_bench();
}
