//! Stratification: per component, same-tick rules are ordered into strata so that negation and
//! aggregation only read relations that are complete. `:+`, `:~` and `delete` rules run after the
//! tick's fixpoint, so they break cycles and never constrain strata.

use rustc_hash::FxHashMap as HashMap;

use crate::diagnostics::{Code, Diagnostic};
use crate::model::*;
use crate::text::TextRange;

/// `to` (a head) depends on `from` (a body relation) through `rule`.
#[derive(Clone, Debug)]
pub struct DependencyEdge {
    pub from: RelationId,
    pub to: RelationId,
    pub rule: RuleId,
    /// Through negation or aggregation: `from` must be complete before `to` is derived.
    pub negative: bool,
    /// The atom (or aggregate) that creates the edge.
    pub range: TextRange,
}

/// The same-tick dependency edges of one component.
pub fn dependency_graph(program: &Program, component: ComponentId) -> Vec<DependencyEdge> {
    let mut edges = Vec::new();
    for &rule_id in &program.component(component).rules {
        let rule = program.rule(rule_id);
        let Some(to) = rule.head.relation_id else { continue };
        if rule.kind != RuleKind::SameTick {
            continue;
        }
        let aggregate = rule.head.args.iter().find_map(|a| match a {
            HeadArg::Aggregate(a) => Some(a.range),
            HeadArg::Expr(_) => None,
        });
        for atom in rule.atoms() {
            let Some(from) = atom.relation_id else { continue };
            edges.push(DependencyEdge {
                from,
                to,
                rule: rule_id,
                negative: atom.negated || aggregate.is_some(),
                range: if atom.negated { atom.range } else { aggregate.unwrap_or(atom.range) },
            });
        }
    }
    edges
}

pub fn check(program: &mut Program, out: &mut Vec<Diagnostic>) {
    for component in program.component_ids().collect::<Vec<_>>() {
        let edges = dependency_graph(program, component);
        let mut nodes: Vec<RelationId> = edges.iter().flat_map(|e| [e.from, e.to]).collect();
        nodes.sort();
        nodes.dedup();
        let sccs = tarjan(&nodes, &edges);
        let scc_of: HashMap<RelationId, usize> =
            sccs.iter().enumerate().flat_map(|(i, scc)| scc.iter().map(move |&r| (r, i))).collect();
        for edge in &edges {
            if edge.negative && scc_of[&edge.from] == scc_of[&edge.to] {
                let rule = program.rule(edge.rule);
                let (code, what) = if rule.atoms().any(|a| a.negated && a.range == edge.range) {
                    (Code::NegationInCycle, "negation")
                } else {
                    (Code::AggregationInCycle, "aggregation")
                };
                let from = &program.relation(edge.from).name;
                let to = &program.relation(edge.to).name;
                let mut d = Diagnostic::new(
                    code,
                    edge.range,
                    format!(
                        "{what} over `{from}` inside a same-tick cycle: `{to}` depends on `{from}`, which depends on `{to}` again in the same tick; break the cycle with `:+` (next tick)"
                    ),
                );
                for other in edges.iter().filter(|e| {
                    e.rule != edge.rule && scc_of[&e.from] == scc_of[&edge.to] && scc_of[&e.to] == scc_of[&edge.to]
                }) {
                    d = d.with_related(
                        other.range,
                        format!(
                            "`{}` feeds `{}` here",
                            program.relation(other.from).name,
                            program.relation(other.to).name
                        ),
                    );
                }
                out.push(d);
            }
        }
        // Tarjan yields SCCs in reverse topological order of the edge direction (sinks first);
        // evaluation needs sources first.
        let mut strata: Vec<Stratum> = Vec::new();
        for scc in sccs.iter().rev() {
            let rules: Vec<RuleId> = program
                .component(component)
                .rules
                .iter()
                .copied()
                .filter(|&r| {
                    let rule = program.rule(r);
                    rule.kind == RuleKind::SameTick && rule.head.relation_id.is_some_and(|h| scc.contains(&h))
                })
                .collect();
            if rules.is_empty() {
                continue;
            }
            let recursive = edges.iter().any(|e| rules.contains(&e.rule) && scc.contains(&e.from));
            strata.push(Stratum { rules, recursive });
        }
        program.components[component.index()].strata = strata;
    }
}

/// Strongly connected components, each a list of relations, sinks first.
fn tarjan(nodes: &[RelationId], edges: &[DependencyEdge]) -> Vec<Vec<RelationId>> {
    let position: HashMap<RelationId, usize> = nodes.iter().enumerate().map(|(i, &r)| (r, i)).collect();
    let mut successors = vec![Vec::new(); nodes.len()];
    for e in edges {
        successors[position[&e.from]].push(position[&e.to]);
    }
    let n = nodes.len();
    let (mut index, mut low, mut on_stack) = (vec![usize::MAX; n], vec![0; n], vec![false; n]);
    let (mut stack, mut sccs, mut counter) = (Vec::new(), Vec::new(), 0);
    // Iterative DFS so deep rule chains cannot overflow the call stack.
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work = vec![(root, 0usize)];
        while let Some(&mut (v, ref mut next)) = work.last_mut() {
            if *next == 0 && index[v] == usize::MAX {
                index[v] = counter;
                low[v] = counter;
                counter += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&w) = successors[v].get(*next) {
                *next += 1;
                if index[w] == usize::MAX {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut scc = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    scc.push(nodes[w]);
                    if w == v {
                        break;
                    }
                }
                sccs.push(scc);
            }
        }
    }
    sccs
}
