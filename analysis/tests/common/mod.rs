//! Helpers shared by the rewrite tests (each test file uses some of them).
#![allow(dead_code)]

/// The text of `examples/{path}`.
pub fn example(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../examples/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// `line 12: text`: stable under edits elsewhere in the file, unlike byte offsets.
pub fn line(text: &str, range: compart_analysis::TextRange) -> String {
    let start = range.start as usize;
    let number = text[..start].matches('\n').count() + 1;
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    format!("line {number} `{}`", text[start..end].trim())
}
