//! Signature help inside an atom's or a call's parentheses: the relation's columns with their
//! types (or the built-in's parameters), the one at the cursor's argument position active.
//! Like completion, the context is read from the text, which rarely parses while being typed.

use compart_analysis::model::Relation;
use compart_analysis::{lexicon, Analysis};
use tower_lsp_server::ls_types::{
    Documentation, ParameterInformation, ParameterLabel, SignatureHelp, SignatureInformation,
};

use crate::handlers::completion::enclosing_atom;

/// A label and its parameters as byte ranges of it.
struct Label {
    text: String,
    parameters: Vec<(std::ops::Range<usize>, Option<String>)>,
}

impl Label {
    fn into_information(self, documentation: Option<String>) -> SignatureInformation {
        // Parameter offsets are UTF-16 units of the label, like positions.
        let utf16 = |byte: usize| self.text[..byte].encode_utf16().count() as u32;
        let parameters = self
            .parameters
            .iter()
            .map(|(range, doc)| ParameterInformation {
                label: ParameterLabel::LabelOffsets([utf16(range.start), utf16(range.end)]),
                documentation: doc.clone().map(Documentation::String),
            })
            .collect();
        SignatureInformation {
            label: self.text,
            documentation: documentation.map(Documentation::String),
            parameters: Some(parameters),
            active_parameter: None,
        }
    }
}

/// `table vote_log(id: int, voter: addr) key(id)`, each column a parameter.
fn relation_label(relation: &Relation) -> Label {
    let mut text = format!("{} {}(", relation.kind.keyword(), relation.name);
    let mut parameters = Vec::new();
    for (i, column) in relation.columns.iter().enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        let start = text.len();
        text.push_str(&format!("{}: {}", column.name, column.ty));
        let key = relation.key.as_ref().is_some_and(|k| k.contains(&i));
        let doc = format!("column {} of `{}`{}", i + 1, relation.name, if key { " (key)" } else { "" });
        parameters.push((start..text.len(), Some(doc)));
    }
    text.push(')');
    if let Some(key) = &relation.key {
        let names: Vec<&str> = key.iter().map(|&i| relation.columns[i].name.as_str()).collect();
        text.push_str(&format!(" key({})", names.join(", ")));
    }
    Label { text, parameters }
}

/// A built-in's signature from the lexicon (`hash(x, ...): int`), its parameters split at commas.
fn builtin_label(signature: &str) -> Label {
    let open = signature.find('(').map_or(signature.len(), |i| i + 1);
    let close = signature[open..].find(')').map_or(signature.len(), |i| open + i);
    let mut parameters = Vec::new();
    let mut start = open;
    for piece in signature[open..close].split(", ") {
        if !piece.is_empty() {
            parameters.push((start..start + piece.len(), None));
        }
        start += piece.len() + 2;
    }
    Label { text: signature.to_string(), parameters }
}

pub fn signature_help(analysis: &Analysis, offset: usize) -> Option<SignatureHelp> {
    let (name, argument) = enclosing_atom(analysis.text(), offset)?;
    let program = &analysis.program;
    let signatures: Vec<(Label, Option<String>)> = match program.relation_by_name(name) {
        Some(id) => vec![(relation_label(program.relation(id)), None)],
        None => lexicon::lookup(name)
            .into_iter()
            .filter(|e| matches!(e.kind, "aggregate" | "function"))
            .map(|e| (builtin_label(e.signature), Some(format!("{}: {}", e.kind, e.meaning))))
            .collect(),
    };
    // `min(a, ` past the first argument can only be the two-argument function.
    let active = signatures.iter().position(|(l, _)| l.parameters.len() > argument).unwrap_or(0);
    let arity = signatures.get(active)?.0.parameters.len();
    Some(SignatureHelp {
        signatures: signatures.into_iter().map(|(label, doc)| label.into_information(doc)).collect(),
        active_signature: Some(active as u32),
        // Past the last column there is nothing to point at: the extra argument is an error.
        active_parameter: (argument < arity || arity == 0).then_some(argument as u32),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_the_columns_and_built_ins_split_at_commas() {
        let text = "component c {\n    table t(id: int, who: addr) key(id)\n    x(a) :- t(a, b).\n}\n";
        let analysis = compart_analysis::analyze(text);
        let help = signature_help(&analysis, text.find("b)").unwrap()).unwrap();
        let sig = &help.signatures[0];
        assert_eq!(sig.label, "table t(id: int, who: addr) key(id)");
        let offsets: Vec<_> = sig.parameters.as_ref().unwrap().iter().map(|p| p.label.clone()).collect();
        assert_eq!(offsets, [ParameterLabel::LabelOffsets([8, 15]), ParameterLabel::LabelOffsets([17, 26])]);
        assert_eq!(help.active_parameter, Some(1));

        let label = builtin_label("hash(x, ...): int");
        assert_eq!(label.parameters.iter().map(|(r, _)| &label.text[r.clone()]).collect::<Vec<_>>(), ["x", "..."]);
        let analysis = compart_analysis::analyze("component c { x(m) :- t(a), m = max(a, ");
        let help = signature_help(&analysis, analysis.text().len()).unwrap();
        assert_eq!(help.signatures.len(), 2);
        assert_eq!(help.signatures[help.active_signature.unwrap() as usize].label, "max(a: int, b: int): int");
        assert!(signature_help(&analysis, 5).is_none());
    }
}
