//! Byte offsets (the analysis) <-> LSP positions (UTF-16 code units). Conversion happens only here.

use compart_analysis::text::LineCol;
use compart_analysis::{Analysis, TextRange};
use ropey::Rope;
use tower_lsp_server::ls_types::{Position, Range};

/// Converts positions against one analysed text.
#[derive(Clone, Copy)]
pub struct Converter<'a> {
    analysis: &'a Analysis,
}

/// A position the document does not have (a line past its end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfRange {
    pub position: Position,
    pub line_count: usize,
}

impl std::fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "position {}:{} is outside the document ({} lines)",
            self.position.line, self.position.character, self.line_count
        )
    }
}

impl<'a> Converter<'a> {
    pub fn new(analysis: &'a Analysis) -> Self {
        Converter { analysis }
    }

    pub fn position(&self, offset: usize) -> Position {
        let LineCol { line, col } = self.analysis.line_index.line_col_utf16(self.analysis.text(), offset);
        Position::new(line, col)
    }

    pub fn range(&self, range: TextRange) -> Range {
        Range::new(self.position(range.start as usize), self.position(range.end as usize))
    }

    /// The byte offset of an LSP position. A column past the line's end means the line's end (as
    /// the LSP specification says); a line past the document's end is an error.
    pub fn offset(&self, position: Position) -> Result<usize, OutOfRange> {
        let index = &self.analysis.line_index;
        if position.line as usize >= index.line_count() {
            return Err(OutOfRange { position, line_count: index.line_count() });
        }
        Ok(index.offset_utf16(self.analysis.text(), LineCol { line: position.line, col: position.character }))
    }

    /// A range of a range request (inlay hints, code actions): clients may ask for more lines than
    /// the document has, which just means "to the end".
    pub fn clamped_range(&self, range: Range) -> TextRange {
        let clamp = |p: Position| self.offset(p).unwrap_or(self.analysis.text().len());
        let start = clamp(range.start);
        TextRange::new(start, clamp(range.end).max(start))
    }

    pub fn text_range(&self, range: Range) -> Result<TextRange, OutOfRange> {
        let start = self.offset(range.start)?;
        let end = self.offset(range.end)?.max(start);
        Ok(TextRange::new(start, end))
    }
}

/// The byte offset of an LSP position in a rope (used to apply incoming edits).
pub fn rope_offset(rope: &Rope, position: Position) -> Result<usize, OutOfRange> {
    let line = position.line as usize;
    // ropey counts the empty line after a final newline, like LineIndex does.
    if line >= rope.len_lines() {
        return Err(OutOfRange { position, line_count: rope.len_lines() });
    }
    let slice = rope.line(line);
    let mut chars = slice.len_chars();
    // The column may not go past the line break.
    while chars > 0 && matches!(slice.char(chars - 1), '\n' | '\r') {
        chars -= 1;
    }
    let units = (position.character as usize).min(slice.char_to_utf16_cu(chars));
    let mut char_in_line = slice.utf16_cu_to_char(units);
    // Inside a surrogate pair: move past the character, as LineIndex::offset_utf16 does.
    if slice.char_to_utf16_cu(char_in_line) < units {
        char_in_line += 1;
    }
    Ok(rope.char_to_byte(rope.line_to_char(line) + char_in_line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converter_and_rope_agree_on_utf16() {
        let text = "// é𝄞\ncomponent c {}\nx";
        let analysis = compart_analysis::analyze(text);
        let rope = Rope::from_str(text);
        let conv = Converter::new(&analysis);
        for line in 0..4u32 {
            for col in 0..20u32 {
                let p = Position::new(line, col);
                assert_eq!(conv.offset(p).ok(), rope_offset(&rope, p).ok(), "at {line}:{col}");
            }
        }
        let brace = text.find('{').unwrap();
        assert_eq!(conv.position(brace), Position::new(1, 12));
        // The clef is two UTF-16 units: the end of line 0 is column 6.
        assert_eq!(conv.position(text.find('\n').unwrap()), Position::new(0, 6));
        assert!(conv.offset(Position::new(9, 0)).is_err());
    }
}
