//! Grid quorums (`rewrite::grid`): the rewritten Paxos, and each refusal with the line it points
//! at (2PC needs every vote; one quorum kind; a count read elsewhere; bad dimensions).

use compart_analysis::{analyze, rewrite};

fn example(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../examples/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// `line 12: text`: stable under edits elsewhere in the file, unlike byte offsets.
fn line(text: &str, range: compart_analysis::TextRange) -> String {
    let start = range.start as usize;
    let number = text[..start].matches('\n').count() + 1;
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    format!("line {number} `{}`", text[start..end].trim())
}

fn grid(text: &str, component: &str, rows: usize) -> String {
    let analysis = analyze(text);
    match rewrite::grid(&analysis, component, rows) {
        Ok(result) => format!("{}\n---\n{}", result.explanation.join("\n"), result.new_text),
        Err(refusal) => format!("refused at {}: {}", line(text, refusal.range), refusal.reason),
    }
}

#[test]
fn paxos_grid_acceptors() {
    insta::assert_snapshot!(grid(&example("paxos.ded"), "acceptor", 2));
}
