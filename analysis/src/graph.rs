//! The component graph: every component with its scaling class, and the channels between them
//! (a rule of one component sending to a relation of another), labelled with the relations they
//! carry; clients appear as the source of inputs and the destination of outputs. `compart graph`
//! prints it (DOT or JSON) and the language server answers `compart/graph` with it, for the
//! editor's picture: both from [`graph`].

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{ComponentId, Program, RelationKind, RuleKind};
use crate::scaling::{ScalingClass, ScalingReport};
use crate::TextRange;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Graph {
    pub components: Vec<GraphComponent>,
    /// One per (from, to) pair, in component order.
    pub edges: Vec<Edge>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GraphComponent {
    pub name: String,
    /// `parallel`, `partitioned`, `sequential`: for colours and legends.
    pub kind: &'static str,
    /// The class as the CLI and the inlay hints word it (`partitioned by slot`).
    pub class: String,
    /// The verdict in one sentence.
    pub summary: String,
    /// The component's name in the source (bytes).
    pub range: TextRange,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Edge {
    /// The sending component; `None` for the clients (the program's inputs).
    pub from: Option<String>,
    /// The receiving component; `None` for the clients (the program's outputs).
    pub to: Option<String>,
    /// The relations sent along it, sorted.
    pub relations: Vec<String>,
}

fn kind(class: &ScalingClass) -> &'static str {
    match class {
        ScalingClass::Parallel => "parallel",
        ScalingClass::PartitionedBy { .. } => "partitioned",
        ScalingClass::Sequential => "sequential",
    }
}

/// The graph of `program`, classes from `report` (its scaling report).
pub fn graph(program: &Program, report: &ScalingReport) -> Graph {
    let components = report
        .components
        .iter()
        .map(|c| GraphComponent {
            name: c.name.clone(),
            kind: kind(&c.verdict.class),
            class: c.verdict.class.label(program),
            summary: c.verdict.summary.clone(),
            range: program.component(c.component).name_range,
        })
        .collect();
    // Keyed by component index, the clients (None) first, so that edges come out in order.
    let mut edges: BTreeMap<(Option<usize>, Option<usize>), Vec<String>> = BTreeMap::new();
    let index = |c: ComponentId| Some(c.index());
    for relation in &program.relations {
        let Some(owner) = relation.component else { continue };
        match relation.kind {
            RelationKind::Input => edges.entry((None, index(owner))).or_default().push(relation.name.clone()),
            RelationKind::Output => edges.entry((index(owner), None)).or_default().push(relation.name.clone()),
            _ => {}
        }
    }
    for rule in program.rules.iter().filter(|r| r.kind == RuleKind::Async) {
        let Some(to) = rule.head.relation_id.and_then(|r| program.relation(r).component) else { continue };
        edges.entry((index(rule.component), index(to))).or_default().push(rule.head.relation.clone());
    }
    let name = |c: Option<usize>| c.map(|i| program.components[i].name.clone());
    let edges = edges
        .into_iter()
        .map(|((from, to), mut relations)| {
            relations.sort();
            relations.dedup();
            Edge { from: name(from), to: name(to), relations }
        })
        .collect();
    Graph { components, edges }
}

/// A DOT string literal.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
}

impl Graph {
    /// The graph for Graphviz (`compart graph FILE | dot -Tsvg`): boxes coloured by class,
    /// clients as one ellipse.
    pub fn to_dot(&self, title: &str) -> String {
        let mut out = format!("digraph {} {{\n", quoted(title));
        out.push_str("  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fontname=\"sans-serif\"];\n");
        out.push_str("  edge [fontname=\"sans-serif\", fontsize=10];\n");
        let clients = self.edges.iter().any(|e| e.from.is_none() || e.to.is_none());
        if clients {
            out.push_str("  \"(clients)\" [shape=ellipse, style=dashed];\n");
        }
        for c in &self.components {
            let colour = match c.kind {
                "parallel" => "#d9f2d9",
                "partitioned" => "#d9e6f2",
                _ => "#f9e0c7",
            };
            let label = format!("{}\n{}", c.name, c.class);
            out.push_str(&format!("  {} [label={}, fillcolor=\"{colour}\"];\n", quoted(&c.name), quoted(&label)));
        }
        for e in &self.edges {
            let end = |c: &Option<String>| quoted(c.as_deref().unwrap_or("(clients)"));
            let label = e.relations.join("\n");
            out.push_str(&format!("  {} -> {} [label={}];\n", end(&e.from), end(&e.to), quoted(&label)));
        }
        out.push_str("}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_inputs_and_outputs() {
        let text = "component a {\n    input req(id: int)\n    b_in@n(id) :~ req(id), nodes(\"b\", n).\n}\n\
                    component b {\n    channel b_in(id: int)\n    output rep(id: int)\n    rep(id) :- b_in(id).\n}\n";
        let analysis = crate::analyze(text);
        assert!(!analysis.has_errors(), "{:?}", analysis.diagnostics);
        let report = crate::scaling::classify(&analysis.program);
        let g = graph(&analysis.program, &report);
        assert_eq!(g.components.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let edges: Vec<_> =
            g.edges.iter().map(|e| (e.from.as_deref(), e.to.as_deref(), e.relations.join(","))).collect();
        assert_eq!(
            edges,
            [(None, Some("a"), "req".into()), (Some("a"), Some("b"), "b_in".into()), (Some("b"), None, "rep".into())]
        );
        let dot = g.to_dot("t\"x");
        assert!(dot.starts_with("digraph \"t\\\"x\" {"), "{dot}");
        assert!(dot.contains("\"a\" -> \"b\" [label=\"b_in\"]"), "{dot}");
    }

    #[test]
    fn a_broken_program_still_has_a_graph() {
        let analysis = crate::analyze("component a {\n    x@n(1) :~ nodes(\"zz\", n).\n    bar(\n}\ncomponent");
        let report = crate::scaling::classify(&analysis.program);
        let g = graph(&analysis.program, &report);
        assert!(g.to_dot("broken").ends_with("}\n"));
    }
}
