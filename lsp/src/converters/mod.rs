//! Byte offsets (the analysis) <-> LSP positions (UTF-16 code units). Conversion happens only here.

use compart_analysis::text::LineCol;
use compart_analysis::{Analysis, LineIndex, TextRange};
use tower_lsp_server::ls_types::{Position, Range};

/// Converts positions against one text: an analysed program, or another file an edit touches
/// (the deployment file beside it).
#[derive(Clone, Copy)]
pub struct Converter<'a> {
    text: &'a str,
    index: &'a LineIndex,
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
        Converter { text: analysis.text(), index: &analysis.line_index }
    }

    pub fn for_text(text: &'a str, index: &'a LineIndex) -> Self {
        Converter { text, index }
    }

    pub fn position(&self, offset: usize) -> Position {
        let LineCol { line, col } = self.index.line_col_utf16(self.text, offset);
        Position::new(line, col)
    }

    pub fn range(&self, range: TextRange) -> Range {
        Range::new(self.position(range.start as usize), self.position(range.end as usize))
    }

    /// The byte offset of an LSP position. A column past the line's end means the line's end (as
    /// the LSP specification says); a line past the document's end is an error.
    pub fn offset(&self, position: Position) -> Result<usize, OutOfRange> {
        offset(self.text, self.index, position)
    }

    /// A range of a range request (inlay hints, code actions): clients may ask for more lines than
    /// the document has, which just means "to the end".
    pub fn clamped_range(&self, range: Range) -> TextRange {
        let clamp = |p: Position| self.offset(p).unwrap_or(self.text.len());
        let start = clamp(range.start);
        TextRange::new(start, clamp(range.end).max(start))
    }

    pub fn text_range(&self, range: Range) -> Result<TextRange, OutOfRange> {
        text_range(self.text, self.index, range)
    }
}

/// The byte offset of an LSP position in `text`, whose line index is `index`. Incoming edits and
/// requests both go through here, so they agree on lines (`\n`, `\r\n`, `\r` only) and columns
/// (UTF-16 units; a column inside a surrogate pair moves past the character).
pub fn offset(text: &str, index: &LineIndex, position: Position) -> Result<usize, OutOfRange> {
    if position.line as usize >= index.line_count() {
        return Err(OutOfRange { position, line_count: index.line_count() });
    }
    Ok(index.offset_utf16(text, LineCol { line: position.line, col: position.character }))
}

/// The byte range of an LSP range in `text` (an end before the start means the start).
pub fn text_range(text: &str, index: &LineIndex, range: Range) -> Result<TextRange, OutOfRange> {
    let start = offset(text, index, range.start)?;
    let end = offset(text, index, range.end)?.max(start);
    Ok(TextRange::new(start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_columns_and_lsp_line_breaks() {
        // U+2028, U+0085, VT and FF do not end lines; CR, LF and CRLF do.
        let text = "// é𝄞\u{2028}\u{85}\u{b}\u{c}!\ncomponent c {}\r\nx\ry";
        let analysis = compart_analysis::analyze(text);
        let conv = Converter::new(&analysis);
        let brace = text.find('{').unwrap();
        assert_eq!(conv.position(brace), Position::new(1, 12));
        assert_eq!(conv.offset(Position::new(1, 12)), Ok(brace));
        // The clef is two UTF-16 units: `!` is column 10, the end of line 0 column 11.
        assert_eq!(conv.position(text.find('!').unwrap()), Position::new(0, 10));
        assert_eq!(conv.position(text.find('\n').unwrap()), Position::new(0, 11));
        // Inside the surrogate pair: past the clef.
        assert_eq!(conv.offset(Position::new(0, 5)), Ok(text.find('\u{2028}').unwrap()));
        // Past a line's end: before its CRLF.
        assert_eq!(conv.offset(Position::new(1, 99)), Ok(text.find('\r').unwrap()));
        assert_eq!(conv.position(text.find('y').unwrap()), Position::new(3, 0));
        assert_eq!(conv.offset(Position::new(3, 1)), Ok(text.len()));
        assert!(conv.offset(Position::new(4, 0)).is_err());
    }
}
