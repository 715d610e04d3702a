//! Name occurrences of a program: which range names which relation, component, column or rule
//! variable. Definition, references, rename, hover and highlights all read this one table.

use compart_analysis::model::{BodyItem, Expr, ExprKind, HeadArg, InvariantId, RuleId, NODES_RELATION};
use compart_analysis::{Analysis, Program, TextRange};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Rule(RuleId),
    Invariant(InvariantId),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Symbol {
    Relation(String),
    Component(String),
    Column { relation: String, index: usize },
    Variable { scope: Scope, name: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occurrence {
    pub range: TextRange,
    pub symbol: Symbol,
    pub is_definition: bool,
}

/// Every occurrence, in source order, without duplicates.
pub fn occurrences(program: &Program) -> Vec<Occurrence> {
    let mut out = Vec::new();
    let mut push = |range: TextRange, symbol: Symbol, is_definition: bool| {
        if !range.is_empty() {
            out.push(Occurrence { range, symbol, is_definition });
        }
    };
    for component in &program.components {
        push(component.name_range, Symbol::Component(component.name.clone()), true);
        for key in component.placement.iter().flat_map(|p| &p.keys) {
            if let Some((relation, range)) = &key.relation {
                push(*range, Symbol::Relation(relation.clone()), false);
                if let Some(index) =
                    program.relation_by_name(relation).and_then(|r| program.relation(r).column_index(&key.column))
                {
                    push(key.column_range, Symbol::Column { relation: relation.clone(), index }, false);
                }
            }
        }
    }
    for relation in &program.relations {
        if relation.component.is_none() {
            continue; // `nodes` is built in: nothing to point at.
        }
        push(relation.name_range, Symbol::Relation(relation.name.clone()), true);
        if relation.declared {
            for (index, column) in relation.columns.iter().enumerate() {
                push(column.name_range, Symbol::Column { relation: relation.name.clone(), index }, true);
            }
        }
    }
    for rule_id in program.rule_ids() {
        let rule = program.rule(rule_id);
        let scope = Scope::Rule(rule_id);
        push(rule.head.relation_range, Symbol::Relation(rule.head.relation.clone()), false);
        let mut vars = Vec::new();
        if let Some(dest) = &rule.head.destination {
            dest.variables(&mut vars);
        }
        for arg in &rule.head.args {
            match arg {
                HeadArg::Expr(e) => e.variables(&mut vars),
                HeadArg::Aggregate(a) => a.arg.variables(&mut vars),
            }
        }
        body_occurrences(program, &rule.body, &mut vars, &mut push);
        variable_occurrences(scope, vars, &rule.variables, &mut push);
    }
    for (i, invariant) in program.invariants.iter().enumerate() {
        let scope = Scope::Invariant(InvariantId(i as u32));
        let mut vars = Vec::new();
        invariant.args.iter().for_each(|a| a.variables(&mut vars));
        body_occurrences(program, &invariant.body, &mut vars, &mut push);
        variable_occurrences(scope, vars, &invariant.variables, &mut push);
    }
    out.sort_by_key(|o| (o.range.start, std::cmp::Reverse(o.is_definition)));
    // An undeclared relation's definition is the head of its first rule: keep one occurrence.
    out.dedup_by(|b, a| a.range == b.range && a.symbol == b.symbol);
    out
}

fn body_occurrences<'a>(
    program: &Program,
    body: &'a [BodyItem],
    vars: &mut Vec<(&'a str, TextRange)>,
    push: &mut impl FnMut(TextRange, Symbol, bool),
) {
    for item in body {
        match item {
            BodyItem::Atom(atom) => {
                if atom.relation != NODES_RELATION {
                    push(atom.relation_range, Symbol::Relation(atom.relation.clone()), false);
                } else if let Some(Expr { kind: ExprKind::Str(name), range }) = atom.args.first() {
                    // `nodes("participant", p)` names a component inside the quotes.
                    if program.component_by_name(name).is_some() && range.len() == name.len() + 2 {
                        push(
                            TextRange::new(range.start as usize + 1, range.end as usize - 1),
                            Symbol::Component(name.clone()),
                            false,
                        );
                    }
                }
                atom.args.iter().for_each(|a| a.variables(vars));
            }
            BodyItem::Condition(c) => {
                c.left.variables(vars);
                c.right.variables(vars);
            }
        }
    }
}

fn variable_occurrences(
    scope: Scope,
    vars: Vec<(&str, TextRange)>,
    declared: &[compart_analysis::model::Variable],
    push: &mut impl FnMut(TextRange, Symbol, bool),
) {
    for (name, range) in vars {
        let first = declared.iter().find(|v| v.name == name).map(|v| v.first_range);
        let is_definition = first == Some(range);
        push(range, Symbol::Variable { scope: scope.clone(), name: name.to_string() }, is_definition);
    }
}

/// The innermost occurrence under `offset` (an offset just after a name counts, so a cursor at the
/// end of a word still finds it).
pub fn at(occurrences: &[Occurrence], offset: usize) -> Option<&Occurrence> {
    occurrences
        .iter()
        .filter(|o| o.range.contains(offset))
        .min_by_key(|o| (o.range.end as usize == offset, o.range.len()))
}

pub fn references<'a>(occurrences: &'a [Occurrence], symbol: &'a Symbol) -> impl Iterator<Item = &'a Occurrence> {
    occurrences.iter().filter(move |o| &o.symbol == symbol)
}

pub fn definition(occurrences: &[Occurrence], symbol: &Symbol) -> Option<TextRange> {
    references(occurrences, symbol).find(|o| o.is_definition).map(|o| o.range)
}

/// How a use of a column names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnUse {
    /// A head's argument in the column's position: writes it.
    Head,
    /// A body atom's argument in the column's position: reads it.
    Body,
    /// The column's name: in its relation's `key(...)`, or a bare `partitioned by col`.
    Name,
}

/// The uses of column `index` of `relation` beyond [`occurrences`]: every head's and body atom's
/// argument in its position, and its name in key clauses and bare placement keys. Kept out of
/// [`occurrences`] because an argument's range is already the variable's or expression's that
/// stands there, which the cursor must keep finding.
pub fn column_uses(analysis: &Analysis, relation: &str, index: usize) -> Vec<(TextRange, ColumnUse)> {
    let program = &analysis.program;
    let mut out = Vec::new();
    for rule in program.rules.iter().filter(|r| r.head.relation == relation) {
        out.extend(rule.head.args.get(index).map(|a| (a.range(), ColumnUse::Head)));
    }
    let bodies = program.rules.iter().map(|r| &r.body).chain(program.invariants.iter().map(|i| &i.body));
    for atom in bodies.flat_map(|b| compart_analysis::model::atoms(b)).filter(|a| a.relation == relation) {
        out.extend(atom.args.get(index).map(|e| (e.range, ColumnUse::Body)));
    }
    let Some(rel) = program.relation_by_name(relation).map(|r| program.relation(r)) else { return out };
    let Some(column) = rel.columns.get(index) else { return out };
    if rel.declared {
        // The model keeps the key's column indexes, not where they are written.
        let decl = analysis.syntax.root().descendant_for_byte_range(rel.range.start as usize, rel.range.end as usize);
        if let Some(key) = decl.filter(|d| d.kind() == "relation_decl").and_then(|d| d.child_by_field_name("key")) {
            let mut cursor = key.walk();
            for name in key.named_children(&mut cursor) {
                if name.kind() == "identifier" && analysis.syntax.node_text(name) == column.name {
                    out.push((TextRange::new(name.start_byte(), name.end_byte()), ColumnUse::Name));
                }
            }
        }
    }
    let placement = rel.component.and_then(|c| program.component(c).placement.as_ref());
    for key in placement.iter().flat_map(|p| &p.keys).filter(|k| k.relation.is_none() && k.column == column.name) {
        out.push((key.column_range, ColumnUse::Name));
    }
    out.retain(|(r, _)| !r.is_empty());
    out.sort_by_key(|(r, _)| r.start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "component a {\n    channel ping(n: int, from: addr)\n    pong@from(n + 1, self) :~ ping(n, from).\n    seen(n) :- ping(n, _), nodes(\"b\", x), x != self.\n}\ncomponent b {\n    channel pong(n: int, from: addr)\n    ping@from(n, self) :~ pong(n, from).\n}\n";

    #[test]
    fn finds_definitions_and_references() {
        let analysis = compart_analysis::analyze(SRC);
        let occ = occurrences(&analysis.program);
        let ping = SRC.rfind("ping(n, from)").unwrap();
        let found = at(&occ, ping + 1).unwrap();
        assert_eq!(found.symbol, Symbol::Relation("ping".into()));
        let def = definition(&occ, &found.symbol).unwrap();
        assert_eq!(&SRC[def.as_range()], "ping");
        assert_eq!(def.start as usize, SRC.find("ping").unwrap());
        assert_eq!(references(&occ, &found.symbol).count(), 4);

        // `from` in the first rule: three occurrences, distinct from `from` in component b.
        let from = SRC.find("@from").unwrap() + 1;
        let var = at(&occ, from).unwrap().symbol.clone();
        assert!(matches!(var, Symbol::Variable { .. }));
        assert_eq!(references(&occ, &var).count(), 2);

        // The component named inside `nodes("b", x)`.
        let b = SRC.find("\"b\"").unwrap() + 1;
        assert_eq!(at(&occ, b).unwrap().symbol, Symbol::Component("b".into()));
        // The scratch relation `seen` is defined by its first head.
        let seen = at(&occ, SRC.find("seen").unwrap()).unwrap();
        assert!(seen.is_definition);
    }

    #[test]
    fn a_columns_uses() {
        let src = "component c partitioned by id {\n    table t(id: int, v: int) key(id)\n    t(1, 2).\n    u(x) :- t(x, _), !t(x + 1, 3).\n}\n";
        let analysis = compart_analysis::analyze(src);
        let uses: Vec<(&str, ColumnUse)> =
            column_uses(&analysis, "t", 0).into_iter().map(|(r, u)| (&src[r.as_range()], u)).collect();
        assert_eq!(
            uses,
            [
                ("id", ColumnUse::Name),
                ("id", ColumnUse::Name),
                ("1", ColumnUse::Head),
                ("x", ColumnUse::Body),
                ("x + 1", ColumnUse::Body)
            ]
        );
        assert_eq!(column_uses(&analysis, "t", 1).len(), 3);
        assert!(column_uses(&analysis, "t", 7).is_empty() && column_uses(&analysis, "nope", 0).is_empty());
    }
}
