//! Format Document through compart_analysis::fmt (one edit replacing the whole text).

use compart_analysis::{Analysis, TextRange};
use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::TextEdit;

use crate::converters::Converter;
use crate::session::request_failed;

pub fn format(analysis: &Analysis) -> Result<Option<Vec<TextEdit>>> {
    let conv = Converter::new(analysis);
    match compart_analysis::fmt::format_syntax(&analysis.syntax) {
        Ok(formatted) if formatted == analysis.text() => Ok(Some(vec![])),
        Ok(formatted) => Ok(Some(vec![TextEdit {
            range: conv.range(TextRange::new(0, analysis.text().len())),
            new_text: formatted,
        }])),
        Err(e) => {
            let at = conv.position(e.range.start as usize);
            Err(request_failed(format!("{} (line {}, column {})", e.message, at.line + 1, at.character + 1)))
        }
    }
}
