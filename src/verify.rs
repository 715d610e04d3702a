//! `compart verify ORIGINAL REWRITTEN`: run both programs on the same randomized inputs, under
//! seeded random message orders, and compare what they output and whether invariants hold.
//!
//! Outputs are compared as sets of facts per output relation (addresses shown as node names).
//! Where a protocol is not deterministic the rewritten program may legitimately differ from one
//! run of the original, so each rewritten run is compared with the union and the intersection
//! of several runs of the original on the same inputs: every output of the rewritten program
//! must be one the original produced (no new outputs), and every output all original runs agree
//! on must appear (none lost). Invariants must hold in every run.

use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use std::sync::Arc;

use compart_analysis::model::{Program, RelationKind, Type};
use compart_analysis::{analyze, Analysis};
use compart_runtime::engine::{GlobalChecker, NodeOptions};
use compart_runtime::sim::Rng;
use compart_runtime::{route, CompiledProgram, Deployment, Node, NodeAddr, Tuple, Value};

/// How many schedules of the original each rewritten run is compared with.
const ORIGINAL_RUNS: u64 = 6;
const MAX_STEPS: usize = 40_000;

struct Loaded {
    analysis: Analysis,
    program: Arc<CompiledProgram>,
}

fn load(path: &Path) -> Result<Loaded, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    compile(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn compile(text: &str) -> Result<Loaded, String> {
    let analysis = analyze(text);
    if analysis.has_errors() {
        return Err("the program has errors; run `compart check`".into());
    }
    let program =
        CompiledProgram::new(&analysis).map_err(|d| d.first().map_or(String::new(), |d| d.message.clone()))?;
    Ok(Loaded { analysis, program: Arc::new(program) })
}

/// The deployment beside the program, else: logical node counts of `like` for shared
/// components, one node otherwise, and 3 instances for every partitioned component.
fn deployment(
    path: Option<&Path>,
    program: &Program,
    like: Option<&(Deployment, &Program)>,
) -> Result<Deployment, String> {
    if let Some(toml) = path.map(|p| p.with_extension("toml")) {
        if let Ok(text) = std::fs::read_to_string(&toml) {
            return Deployment::from_toml(&text, program).map_err(|e| format!("{}: {e}", toml.display()));
        }
    }
    let counts: Vec<(String, u32, u32)> = program
        .components
        .iter()
        .map(|c| {
            let logical =
                like.map_or(0, |(d, p)| d.logical_nodes().filter(|n| p.component(n.component).name == c.name).count());
            let parts = if c.placement.is_some() { 3 } else { 1 };
            (c.name.clone(), logical.max(1) as u32, parts)
        })
        .collect();
    let refs: Vec<(&str, u32, u32)> = counts.iter().map(|(n, l, p)| (n.as_str(), *l, *p)).collect();
    Ok(Deployment::local_partitioned(program, &refs))
}

/// Input facts by relation name, drawn once and given to both programs.
/// Each fact names its relation and which logical node receives it (an index taken modulo the
/// number of nodes of the component, so both programs pick the same node).
fn workload(program: &Program, seed: u64, count: usize) -> Vec<(String, Vec<Value>, u64)> {
    let mut rng = Rng::new(seed);
    let strings: Vec<String> = {
        let mut out: BTreeSet<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        for rule in &program.rules {
            collect_strings(rule, &mut out);
        }
        out.into_iter().collect()
    };
    let inputs: Vec<_> = program
        .relations
        .iter()
        .filter(|r| {
            r.kind == RelationKind::Input
                && r.arity() > 0
                && r.columns.iter().all(|c| c.ty != Type::Addr && c.ty.is_known())
        })
        .collect();
    let mut next_id = 1;
    let mut out = Vec::new();
    for _ in 0..count {
        if inputs.is_empty() {
            break;
        }
        let relation = inputs[rng.below(inputs.len() as u64) as usize];
        let key = relation.key.clone().unwrap_or_else(|| vec![0]);
        let tuple = relation
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| match c.ty {
                Type::Int if key.contains(&i) => {
                    next_id += 1;
                    Value::Int(next_id)
                }
                Type::Int => Value::Int(rng.below(4) as i64),
                Type::Bool => Value::Bool(rng.chance(0.5)),
                _ => Value::str(&strings[rng.below(strings.len() as u64) as usize]),
            })
            .collect();
        out.push((relation.name.clone(), tuple, rng.below(1 << 20)));
    }
    out
}

fn collect_strings(rule: &compart_analysis::model::Rule, out: &mut BTreeSet<String>) {
    fn walk(e: &compart_analysis::model::Expr, out: &mut BTreeSet<String>) {
        use compart_analysis::model::ExprKind;
        match &e.kind {
            ExprKind::Str(s) => {
                out.insert(s.clone());
            }
            ExprKind::Neg(i) => walk(i, out),
            ExprKind::Binary(_, l, r) => {
                walk(l, out);
                walk(r, out);
            }
            ExprKind::Call(_, args) => args.iter().for_each(|a| walk(a, out)),
            _ => {}
        }
    }
    for atom in rule.atoms() {
        if atom.relation != compart_analysis::model::NODES_RELATION {
            atom.args.iter().for_each(|a| walk(a, out));
        }
    }
}

struct RunResult {
    outputs: BTreeSet<String>,
    violations: Vec<String>,
}

/// One schedule: inputs in order, messages delivered and nodes ticked in a seeded random order,
/// until every node is quiet.
fn run(
    loaded: &Loaded,
    deployment: &Arc<Deployment>,
    inputs: &[(String, Vec<Value>, u64)],
    seed: u64,
) -> Result<RunResult, String> {
    let program = &loaded.program;
    let model = &loaded.analysis.program;
    let checker = GlobalChecker::new(program.clone(), deployment.clone());
    let mut nodes: Vec<Node> = deployment
        .nodes
        .iter()
        .map(|spec| {
            let mut node = Node::with_options(
                program.clone(),
                spec.addr,
                deployment.clone(),
                NodeOptions { check_invariants: true },
            );
            node.set_snapshot(&checker.relations());
            node
        })
        .collect();
    let mut inbox: Vec<Vec<(compart_analysis::model::RelationId, Tuple)>> = vec![Vec::new(); nodes.len()];
    let mut flight: Vec<(NodeAddr, compart_analysis::model::RelationId, Tuple)> = Vec::new();
    let mut pending: VecDeque<&(String, Vec<Value>, u64)> = inputs.iter().collect();
    let mut rng = Rng::new(seed);
    let mut result = RunResult { outputs: BTreeSet::new(), violations: Vec::new() };
    let name = |v: &Value| match v {
        Value::Addr(a) => deployment.node(*a).map_or(a.to_string(), |n| n.name.clone()),
        other => other.to_string(),
    };
    let mut ticked_once = vec![false; nodes.len()];
    for _ in 0..MAX_STEPS {
        let busy: Vec<usize> =
            (0..nodes.len()).filter(|&i| !ticked_once[i] || !inbox[i].is_empty() || nodes[i].wants_tick()).collect();
        let action = rng.below(10);
        if !pending.is_empty() && (action < 3 || (busy.is_empty() && flight.is_empty())) {
            let (rel_name, tuple, pick) = pending.pop_front().expect("checked non-empty");
            let rel = model
                .relation_by_name(rel_name)
                .ok_or_else(|| format!("the rewritten program has no input `{rel_name}`"))?;
            let component = model.relation(rel).component.ok_or("input without component")?;
            let candidates: Vec<NodeAddr> =
                deployment.logical_nodes().filter(|n| n.component == component).map(|n| n.addr).collect();
            if candidates.is_empty() {
                return Err(format!("no node runs the component of `{rel_name}`"));
            }
            let target = candidates[(*pick % candidates.len() as u64) as usize];
            for to in route(program, deployment, target, rel, tuple) {
                inbox[to.index()].push((rel, tuple.clone()));
            }
        } else if !flight.is_empty() && (action < 7 || busy.is_empty()) {
            let (to, rel, tuple) = flight.swap_remove(rng.below(flight.len() as u64) as usize);
            inbox[to.index()].push((rel, tuple));
        } else if !busy.is_empty() {
            let i = busy[rng.below(busy.len() as u64) as usize];
            ticked_once[i] = true;
            let out = nodes[i].tick(std::mem::take(&mut inbox[i]));
            for (rel, tuple) in out.outputs {
                let args: Vec<String> = tuple.iter().map(name).collect();
                result.outputs.insert(format!("{}({})", model.relation(rel).name, args.join(", ")));
            }
            for (dest, rel, tuple) in out.sends {
                for to in route(program, deployment, dest, rel, &tuple) {
                    flight.push((to, rel, tuple.clone()));
                }
            }
            let mut violations = out.violations;
            violations.extend(checker.check(nodes.iter().flat_map(|n| n.snapshot())));
            for v in violations {
                let args: Vec<String> = v.args.iter().map(name).collect();
                result.violations.push(format!("{}({})", v.invariant, args.join(", ")));
            }
        } else if pending.is_empty() {
            return Ok(result);
        }
    }
    result.violations.push(format!("did not settle within {MAX_STEPS} steps"));
    Ok(result)
}

pub fn verify(original: &Path, rewritten: &Path, seeds: u64, inputs: usize, invariants_only: bool) -> u8 {
    match verify_files(original, rewritten, seeds, inputs, invariants_only) {
        Ok((ok, out)) => {
            crate::explain::emit(&out);
            if ok {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

/// The comparison behind `compart verify` (also `compart bench`): Ok((no difference found, the
/// report)); Err when a program cannot be loaded or run.
pub fn verify_files(
    original: &Path,
    rewritten: &Path,
    seeds: u64,
    inputs: usize,
    invariants_only: bool,
) -> Result<(bool, String), String> {
    let (orig, new) = (load(original)?, load(rewritten)?);
    let mut out = String::new();
    let ok = compare(&orig, &new, (Some(original), Some(rewritten)), seeds, inputs, invariants_only, &mut out)?;
    Ok((ok, out))
}

/// Ok(true) when no seed shows a difference; the report goes to `out`.
fn compare(
    orig: &Loaded,
    new: &Loaded,
    paths: (Option<&Path>, Option<&Path>),
    seeds: u64,
    inputs: usize,
    invariants_only: bool,
    out: &mut String,
) -> Result<bool, String> {
    use std::fmt::Write;
    let orig_dep = deployment(paths.0, &orig.analysis.program, None)?;
    let new_dep = deployment(paths.1, &new.analysis.program, Some(&(orig_dep.clone(), &orig.analysis.program)))?;
    let (orig_dep, new_dep) = (Arc::new(orig_dep), Arc::new(new_dep));
    let mut failed = false;
    for seed in 0..seeds {
        let workload = workload(&orig.analysis.program, seed, inputs);
        let mut union = BTreeSet::new();
        let mut agreed: Option<BTreeSet<String>> = None;
        let mut orig_violations = Vec::new();
        for k in 0..ORIGINAL_RUNS {
            let r = run(orig, &orig_dep, &workload, seed * 1000 + k)?;
            union.extend(r.outputs.iter().cloned());
            agreed = Some(match agreed {
                None => r.outputs,
                Some(a) => a.intersection(&r.outputs).cloned().collect(),
            });
            orig_violations.extend(r.violations);
        }
        let r = run(new, &new_dep, &workload, seed * 1000 + 999)?;
        let extra: Vec<&String> = r.outputs.difference(&union).collect();
        let agreed = agreed.unwrap_or_default();
        let missing: Vec<&String> = agreed.difference(&r.outputs).collect();
        // Outputs only decide where the original was deterministic on this workload.
        let deterministic = agreed == union;
        let outputs_ok = invariants_only || !deterministic || (extra.is_empty() && missing.is_empty());
        let ok = r.violations.is_empty() && outputs_ok;
        let verdict = match (ok, deterministic || invariants_only) {
            (true, true) => ", ok",
            (true, false) => ", ok (outputs depend on timing: invariants compared)",
            _ => "",
        };
        let _ = writeln!(
            out,
            "seed {seed}: {} inputs, {} outputs (original: {} agreed, {} possible){verdict}",
            workload.len(),
            r.outputs.len(),
            agreed.len(),
            union.len()
        );
        for v in r.violations.iter().take(3) {
            let _ = writeln!(out, "  violated in the rewritten program: {v}");
        }
        for v in orig_violations.iter().take(1) {
            let _ = writeln!(out, "  (the original violates it too: {v})");
        }
        if !invariants_only && deterministic {
            for f in extra.iter().take(5) {
                let _ = writeln!(out, "  new output: {f}");
            }
            for f in missing.iter().take(5) {
                let _ = writeln!(out, "  missing output: {f}");
            }
        }
        failed |= !ok;
    }
    let _ = if failed {
        writeln!(out, "the rewritten program differs from the original")
    } else {
        writeln!(out, "no difference found over {seeds} seed(s)")
    };
    Ok(!failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOTING: &str = include_str!("../examples/voting.ded");

    fn check(rewritten: &str) -> (bool, String) {
        let orig = compile(VOTING).unwrap();
        let new = compile(rewritten).unwrap();
        let mut out = String::new();
        let ok = compare(&orig, &new, (None, None), 3, 8, false, &mut out).unwrap();
        (ok, out)
    }

    #[test]
    fn decoupled_and_partitioned_voting_behave_like_the_original() {
        let analysis = analyze(VOTING);
        let rules = compart_analysis::rewrite::select_rules(&analysis, "leader", &["ballot"]).unwrap();
        let decoupled = compart_analysis::rewrite::decouple(&analysis, "leader", &rules, "broadcaster").unwrap();
        let (ok, out) = check(&decoupled.new_text);
        assert!(ok, "{out}");
        let partitioned = compart_analysis::rewrite::partition(&analysis, "leader", Some("id")).unwrap();
        let (ok, out) = check(&partitioned.new_text);
        assert!(ok, "{out}");
    }

    #[test]
    fn a_wrong_rewrite_is_caught() {
        // Replies need one vote more than there are participants: nothing is ever answered.
        let broken =
            VOTING.replace("vote_count(id, n), n_participants(n).", "vote_count(id, n), n_participants(m), n > m.");
        assert_ne!(broken, VOTING);
        let (ok, out) = check(&broken);
        assert!(!ok, "{out}");
        assert!(out.contains("missing output: client_reply("), "{out}");
    }

    /// The commit path decoupled, with nacks only for real preemptions: invariants kept, and
    /// requests still committed.
    #[test]
    fn paxos_with_filtered_nacks_keeps_the_invariants() {
        let path = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/paxos.ded"));
        let text = std::fs::read_to_string(&path).unwrap();
        let analysis = analyze(&text);
        let selectors = ["proposals", "accepted_by", "accept_count", "commit", "committed", "reply"];
        let rules = compart_analysis::rewrite::select_rules(&analysis, "proposer", &selectors).unwrap();
        let decoupled = compart_analysis::rewrite::decouple(&analysis, "proposer", &rules, "commit_part").unwrap();
        assert!(decoupled.new_text.contains("max_ballot > ballot."));
        let (orig, new) = (compile(&text).unwrap(), compile(&decoupled.new_text).unwrap());
        let mut out = String::new();
        let ok = compare(&orig, &new, (Some(&path), None), 8, 20, true, &mut out).unwrap();
        assert!(ok, "{out}");
        assert!(committed(&out) > 0, "nothing committed: {out}");
    }

    /// Outputs of the rewritten program over every seed of a `compare` report.
    fn committed(out: &str) -> usize {
        out.lines().filter_map(|l| l.split(" inputs, ").nth(1)?.split(' ').next()?.parse::<usize>().ok()).sum()
    }

    /// Acceptors partitioned by slot with sealing keep Paxos' invariants, and still commit: a
    /// p1b that never sealed would elect no leader and produce no output at all.
    #[test]
    fn sealed_paxos_acceptors_keep_the_invariants() {
        let path = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/paxos.ded"));
        let text = std::fs::read_to_string(&path).unwrap();
        let analysis = analyze(&text);
        let sealed = compart_analysis::rewrite::partition_sealed(&analysis, "acceptor", Some("slot")).unwrap();
        let (orig, new) = (compile(&text).unwrap(), compile(&sealed.new_text).unwrap());
        let mut out = String::new();
        let ok = compare(&orig, &new, (Some(&path), None), 8, 20, true, &mut out).unwrap();
        assert!(ok, "{out}");
        assert!(committed(&out) > 0, "nothing committed: {out}");
    }
}
