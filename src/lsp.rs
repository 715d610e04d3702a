//! `compart lsp`: the language server over stdio (the editors start it; see lsp/README.md).

/// Exit codes: 0 after a clean `exit`, 2 if the server could not start.
pub fn lsp() -> u8 {
    match compart_lsp::serve_stdio() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("compart lsp: {e}");
            2
        }
    }
}
