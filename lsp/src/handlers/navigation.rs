//! Go to definition, find references and rename, all over [`crate::index`]; a rename of a
//! component or relation edits the deployment file beside the program too.

use compart_analysis::deployment::Change;
use compart_analysis::model::RelationKind;
use compart_analysis::TextRange;
use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::{Location, Position, PrepareRenameResponse, TextEdit, WorkspaceEdit};

use crate::converters::Converter;
use crate::documents::Snapshot;
use crate::handlers::edits::{self, Beside};
use crate::index::{self, Occurrence, Symbol};
use crate::session::{invalid_params, request_failed, Config};

fn occurrence_at(snapshot: &Snapshot, position: Position) -> Result<(Vec<Occurrence>, Option<Occurrence>)> {
    let conv = Converter::new(&snapshot.analysis);
    let offset = conv.offset(position).map_err(|e| invalid_params(e.to_string()))?;
    let all = index::occurrences(&snapshot.analysis.program);
    let found = index::at(&all, offset).cloned();
    Ok((all, found))
}

pub fn definition(snapshot: &Snapshot, position: Position) -> Result<Option<Location>> {
    let (all, found) = occurrence_at(snapshot, position)?;
    let conv = Converter::new(&snapshot.analysis);
    Ok(found
        .and_then(|o| index::definition(&all, &o.symbol))
        .map(|range| Location::new(snapshot.uri.clone(), conv.range(range))))
}

pub fn references(snapshot: &Snapshot, position: Position, include_declaration: bool) -> Result<Option<Vec<Location>>> {
    let (all, found) = occurrence_at(snapshot, position)?;
    let Some(found) = found else { return Ok(None) };
    let conv = Converter::new(&snapshot.analysis);
    let mut ranges: Vec<TextRange> = index::references(&all, &found.symbol)
        .filter(|o| include_declaration || !o.is_definition)
        .map(|o| o.range)
        .collect();
    if let Symbol::Column { relation, index } = &found.symbol {
        ranges.extend(index::column_uses(&snapshot.analysis, relation, *index).into_iter().map(|(r, _)| r));
        ranges.sort_by_key(|r| r.start);
        ranges.dedup();
    }
    Ok(Some(ranges.into_iter().map(|r| Location::new(snapshot.uri.clone(), conv.range(r))).collect()))
}

/// The name under `position` when it is built in (`count`, `max`, `nodes`, `self`, a keyword...):
/// renaming it is an error that says why, rather than a silent "nothing to rename".
fn refuse_builtin_at(snapshot: &Snapshot, position: Position) -> Result<()> {
    let text = snapshot.analysis.text();
    let offset = Converter::new(&snapshot.analysis).offset(position).map_err(|e| invalid_params(e.to_string()))?;
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let start = text[..offset].char_indices().rfind(|&(_, c)| !is_name(c)).map_or(0, |(i, c)| i + c.len_utf8());
    let end = text[offset..].find(|c: char| !is_name(c)).map_or(text.len(), |i| offset + i);
    let word = &text[start..end];
    if is_reserved(word) {
        return Err(request_failed(format!("`{word}` is built into the language and cannot be renamed")));
    }
    Ok(())
}

pub fn prepare_rename(snapshot: &Snapshot, position: Position) -> Result<Option<PrepareRenameResponse>> {
    let (_, found) = occurrence_at(snapshot, position)?;
    let Some(found) = found else {
        refuse_builtin_at(snapshot, position)?;
        return Ok(None);
    };
    renamable(snapshot, &found.symbol)?;
    Ok(Some(PrepareRenameResponse::Range(Converter::new(&snapshot.analysis).range(found.range))))
}

fn renamable(snapshot: &Snapshot, symbol: &Symbol) -> Result<()> {
    let program = &snapshot.analysis.program;
    match symbol {
        Symbol::Relation(name) => match program.relation_by_name(name).map(|r| program.relation(r).kind) {
            Some(RelationKind::Builtin) | None => Err(request_failed(format!("`{name}` is built in or unknown"))),
            Some(_) => Ok(()),
        },
        // Key clauses name columns too, and the model keeps no ranges for them yet.
        Symbol::Column { .. } => Err(request_failed("renaming columns is not supported yet")),
        Symbol::Component(_) | Symbol::Variable { .. } => Ok(()),
    }
}

/// Keywords, aggregates (`count`, `max`...), functions (`hash`, `abs`...) and built-in relations
/// (`nodes`, `instance`, `partner`): no relation, component or variable may take these names.
fn is_reserved(name: &str) -> bool {
    KEYWORDS.contains(&name) || compart_analysis::lexicon::is_builtin(name)
}

const KEYWORDS: &[&str] = &[
    "component",
    "partitioned",
    "by",
    "key",
    "invariant",
    "delete",
    "input",
    "output",
    "table",
    "channel",
    "scratch",
    "true",
    "false",
    "self",
    "nodes",
];

/// The rename's edits of the program and, for a component or a relation, of the deployment file
/// beside it (`[components]`, `[partitions]`, `[workload]`), with one line per deployment change.
pub fn rename(
    snapshot: &Snapshot,
    position: Position,
    new_name: &str,
    beside: Option<&Beside>,
    config: &Config,
) -> Result<Option<(WorkspaceEdit, Vec<String>)>> {
    let (all, found) = occurrence_at(snapshot, position)?;
    let Some(found) = found else {
        refuse_builtin_at(snapshot, position)?;
        return Ok(None);
    };
    renamable(snapshot, &found.symbol)?;
    if is_reserved(new_name) {
        return Err(invalid_params(format!("`{new_name}` is built into the language; choose another name")));
    }
    let valid = new_name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && new_name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && new_name != "_";
    if !valid {
        return Err(invalid_params(format!("`{new_name}` is not a valid name")));
    }
    let program = &snapshot.analysis.program;
    let clash = match &found.symbol {
        Symbol::Relation(_) => program.relation_by_name(new_name).is_some(),
        Symbol::Component(_) => program.component_by_name(new_name).is_some(),
        Symbol::Variable { scope, .. } => all
            .iter()
            .any(|o| matches!(&o.symbol, Symbol::Variable { scope: s, name } if s == scope && name == new_name)),
        Symbol::Column { .. } => false,
    };
    if clash {
        return Err(request_failed(format!("`{new_name}` already exists here")));
    }
    let conv = Converter::new(&snapshot.analysis);
    let edits = index::references(&all, &found.symbol)
        .map(|o| TextEdit { range: conv.range(o.range), new_text: new_name.to_string() })
        .collect();
    let to = new_name.to_string();
    let changes = match &found.symbol {
        Symbol::Component(from) => vec![Change::RenameComponent { from: from.clone(), to }],
        Symbol::Relation(from) => vec![Change::RenameRelation { from: from.clone(), to }],
        Symbol::Column { .. } | Symbol::Variable { .. } => vec![],
    };
    Ok(Some(edits::workspace_edit(snapshot, edits, beside, (program, &changes), false, config)))
}
