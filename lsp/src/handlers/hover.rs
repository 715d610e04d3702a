//! Hover: a relation's schema, kind and home; a component's shape; a variable's type and the
//! columns it binds.

use compart_analysis::model::{BodyItem, Relation, RelationKind, RuleKind, BUILTIN_RELATIONS};
use compart_analysis::syntax::range_of;
use compart_analysis::{lexicon, Analysis, Program, TextRange};
use tower_lsp_server::ls_types::{Hover, HoverContents, MarkupContent, MarkupKind, Position};

use crate::converters::Converter;
use crate::documents::Snapshot;
use crate::index::{self, Scope, Symbol};

pub fn hover(snapshot: &Snapshot, position: Position) -> Result<Option<Hover>, crate::converters::OutOfRange> {
    let analysis = &snapshot.analysis;
    let conv = Converter::new(analysis);
    let offset = conv.offset(position)?;
    let occurrences = index::occurrences(&analysis.program);
    let found = index::at(&occurrences, offset).and_then(|occ| Some((occ.range, describe(snapshot, &occ.symbol)?)));
    let Some((range, markdown)) = found.or_else(|| language_word_at(analysis, offset)) else { return Ok(None) };
    Ok(Some(Hover {
        contents: HoverContents::Markup(MarkupContent { kind: MarkupKind::Markdown, value: markdown }),
        range: Some(conv.range(range)),
    }))
}

/// A keyword, rule operator, type or built-in under the cursor (or just before it), with its
/// meaning from the lexicon.
fn language_word_at(analysis: &Analysis, offset: usize) -> Option<(TextRange, String)> {
    let root = analysis.syntax.root();
    [Some(offset), offset.checked_sub(1)]
        .into_iter()
        .flatten()
        .filter_map(|at| root.descendant_for_byte_range(at, at))
        .filter(|n| n.child_count() == 0 && !n.byte_range().is_empty() && range_of(*n).contains(offset))
        .find_map(|token| Some((range_of(token), lexicon::markdown(language_word(analysis, token)?)?)))
}

/// The token's text if it is a word of the language rather than a name the program chose.
fn language_word<'a>(analysis: &'a Analysis, token: tree_sitter::Node<'_>) -> Option<&'a str> {
    let word = analysis.syntax.node_text(token);
    let parent = token.parent();
    let in_field = |field: &str| parent.and_then(|p| p.child_by_field_name(field)).map(|n| n.id()) == Some(token.id());
    let is_language_word = match token.kind() {
        "identifier" => {
            (in_field("function") && parent.is_some_and(|p| p.kind() == "call"))
                || (in_field("relation") && BUILTIN_RELATIONS.contains(&word))
                || parent.is_some_and(|p| p.kind() == "type")
        }
        kind => !token.is_named() || matches!(kind, "self" | "delete" | "rule_op" | "relation_kind" | "boolean"),
    };
    is_language_word.then_some(word)
}

/// `table vote_log(id: int, voter: addr) key(id)`
pub fn signature(relation: &Relation) -> String {
    let columns = relation.columns.iter().map(|c| format!("{}: {}", c.name, c.ty)).collect::<Vec<_>>().join(", ");
    let key = relation.key.as_ref().map_or(String::new(), |k| {
        format!(" key({})", k.iter().map(|&i| relation.columns[i].name.as_str()).collect::<Vec<_>>().join(", "))
    });
    format!("{} {}({columns}){key}", relation.kind.keyword(), relation.name)
}

fn line_of(analysis: &Analysis, offset: u32) -> u32 {
    analysis.line_index.line_col(offset as usize).line + 1
}

pub fn describe(snapshot: &Snapshot, symbol: &Symbol) -> Option<String> {
    let analysis: &Analysis = &snapshot.analysis;
    let scaling = !analysis.has_errors();
    let program = &analysis.program;
    match symbol {
        Symbol::Relation(name) => {
            let id = program.relation_by_name(name)?;
            let relation = program.relation(id);
            let home = relation.component.map(|c| program.component(c).name.as_str()).unwrap_or("every component");
            let kind = match relation.kind {
                RelationKind::Input => "input: facts injected from outside",
                RelationKind::Output => "output: facts emitted to the outside",
                RelationKind::Table => "table: persistent until deleted",
                RelationKind::Channel => "channel: received from other nodes, present in the tick it arrives",
                RelationKind::Scratch => "scratch: holds within one tick",
                RelationKind::Builtin => {
                    lexicon::lookup(name).first().map_or("built-in: the deployment", |e| e.meaning)
                }
            };
            let origin = if relation.declared {
                format!("declared in `{home}` at line {}", line_of(analysis, relation.name_range.start))
            } else {
                format!(
                    "not declared: column types inferred; first derived in `{home}` at line {}",
                    line_of(analysis, relation.name_range.start)
                )
            };
            let derived = program.rules_deriving(id).filter(|&r| program.rule(r).kind != RuleKind::Fact).count();
            let read = program.rules.iter().filter(|r| r.atoms().any(|a| a.relation_id == Some(id))).count();
            let mut text = format!(
                "```compart\n{}\n```\n{kind}; {origin}.\n\nDerived by {derived} rule{}, read by {read} rule{}.",
                signature(relation),
                plural(derived),
                plural(read)
            );
            if let Some(note) = scaling.then(|| crate::handlers::scaling::relation_note(snapshot, name)).flatten() {
                text.push_str(&format!("\n\n{note}"));
            }
            Some(text)
        }
        Symbol::Component(name) => {
            let id = program.component_by_name(name)?;
            let c = program.component(id);
            let placement = c.placement.as_ref().map_or("one instance".to_string(), |p| {
                format!(
                    "partitioned by {}",
                    p.keys
                        .iter()
                        .map(|k| match &k.relation {
                            Some((r, _)) => format!("{r}.{}", k.column),
                            None => k.column.clone(),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
            let mut text = format!(
                "```compart\ncomponent {name}\n```\n{} relation{}, {} rule{}, {} strat{}; {placement}.",
                c.relations.len(),
                plural(c.relations.len()),
                c.rules.len(),
                plural(c.rules.len()),
                c.strata.len(),
                if c.strata.len() == 1 { "um" } else { "a" },
            );
            if scaling {
                text.push_str(&format!("\n\n{}", crate::handlers::scaling::component_note(snapshot, id)));
            }
            Some(text)
        }
        Symbol::Column { relation, index } => {
            let rel = program.relation(program.relation_by_name(relation)?);
            let col = rel.columns.get(*index)?;
            let key = rel.key.as_ref().is_some_and(|k| k.contains(index));
            Some(format!(
                "```compart\n{}: {}\n```\ncolumn {} of `{}`{}",
                col.name,
                col.ty,
                index + 1,
                rel.name,
                if key { " (key)" } else { "" }
            ))
        }
        Symbol::Variable { scope, name } => {
            let (variables, body) = match scope {
                Scope::Rule(r) => (&program.rule(*r).variables, &program.rule(*r).body),
                Scope::Invariant(i) => (&program.invariant(*i).variables, &program.invariant(*i).body),
            };
            let var = variables.iter().find(|v| &v.name == name)?;
            let binds = bound_columns(program, body, name);
            let mut text = format!("```compart\n{}: {}\n```\nvariable of this {}", var.name, var.ty, scope_word(scope));
            if !binds.is_empty() {
                text.push_str(&format!("; binds {}", binds.join(", ")));
            }
            Some(text)
        }
    }
}

fn scope_word(scope: &Scope) -> &'static str {
    match scope {
        Scope::Rule(_) => "rule",
        Scope::Invariant(_) => "invariant",
    }
}

fn bound_columns(program: &Program, body: &[BodyItem], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for atom in compart_analysis::model::atoms(body).filter(|a| !a.negated) {
        let Some(rel) = atom.relation_id.map(|r| program.relation(r)) else { continue };
        for (i, arg) in atom.args.iter().enumerate() {
            if arg.as_var() == Some(name) {
                if let Some(col) = rel.columns.get(i) {
                    let entry = format!("`{}.{}`", rel.name, col.name);
                    if !out.contains(&entry) {
                        out.push(entry);
                    }
                }
            }
        }
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
