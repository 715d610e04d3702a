//! Syntax errors stay local: a half-typed item costs its own diagnostics, not warnings about the
//! rules and relations around it (grammar/src/scanner.c confines the error to the item; the
//! absence-based lints are not drawn from what a syntax error may hide, check/lints.rs).

use compart_analysis::{analyze, Analysis, Code};

fn example(name: &str) -> String {
    let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `text` with `line` inserted before the first line that starts with `before`.
fn insert_before(text: &str, before: &str, line: &str) -> String {
    let at = text.find(&format!("\n{before}")).expect("anchor line") + 1;
    format!("{}{line}\n{}", &text[..at], &text[at..])
}

fn render(analysis: &Analysis) -> String {
    analysis
        .diagnostics
        .iter()
        .map(|d| {
            let at = analysis.line_index.line_col(d.range.start as usize);
            format!("{}:{} {} {}", at.line + 1, at.col + 1, d.code.as_str(), d.message)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The diagnostics of `example` with `bar(` typed above the first line starting with `before`,
/// checked to hold no absence-based lint and every rule of the clean file.
fn half_typed(example_name: &str, before: &str) -> String {
    let clean = analyze(&example(example_name));
    assert!(clean.diagnostics.is_empty(), "{}", render(&clean));
    let analysis = analyze(&insert_before(clean.text(), before, "    bar("));
    let lints = [Code::UnusedRelation, Code::NeverRead, Code::RuleNeverFires, Code::EmptyComponent];
    assert!(!analysis.diagnostics.iter().any(|d| lints.contains(&d.code)), "{}", render(&analysis));
    render(&analysis)
}

/// The case: before the recovery work, `bar(` above the `yes_vote` declaration made the
/// parser read the declaration as `bar`'s arguments: 26 diagnostics, 18 of them "this rule never
/// fires" on unrelated rules. Now the declaration is parsed and the syntax error is all.
#[test]
fn half_typed_atom_before_a_declaration() {
    let clean = analyze(&example("two_phase_commit.ded"));
    let text = insert_before(clean.text(), "    table yes_vote(", "    bar(");
    assert_eq!(analyze(&text).program.relations.len(), clean.program.relations.len());
    insta::assert_snapshot!(half_typed("two_phase_commit.ded", "    table yes_vote("));
}

/// A fact looks like the last atom of a multi-line body, so the parser still reads
/// `bar(booting().` as one item: `booting` is then never filled, and 60 rules of `proposer` would
/// "never fire" (5 diagnostics before the recovery work, 63 with the new grammar alone). The
/// lints say nothing about a broken component, so the syntax error is all.
#[test]
fn half_typed_atom_before_a_fact() {
    insta::assert_snapshot!(half_typed("paxos.ded", "    booting()."));
}

/// A component that parsed cleanly keeps its warnings while another one is broken.
#[test]
fn clean_components_keep_their_lints() {
    let text = "component a {\n    input i(x: int)\n    table t(x: int)\n    t(x) :- i(x).\n    bar(\n}\n\
                component b {\n    input j(x: int)\n    table u(x: int)\n    table never(x: int)\n    u(x) :- j(x), never(x).\n}\n";
    let analysis = analyze(text);
    let codes: Vec<_> = analysis.diagnostics.iter().map(|d| d.code).collect();
    // `t` in the broken `a` is derived and never read: not said, a hidden rule may read it.
    assert!(!analysis.diagnostics.iter().any(|d| d.message.contains("`t`")), "{}", render(&analysis));
    // `b` parsed cleanly: its rule reading the never-filled `never` is reported.
    assert!(codes.contains(&Code::RuleNeverFires), "{}", render(&analysis));
    assert!(codes.contains(&Code::NeverRead), "{}", render(&analysis));
}
