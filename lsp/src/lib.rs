//! compart's language server (see README.md).
//!
//! Layers, as in Biome's `biome_lsp`: [`server`] implements the LSP trait and only dispatches;
//! [`session`] holds the client, the configuration and the [`documents`]; [`handlers`] has one
//! file per feature; [`converters`] is the only place that knows UTF-16 positions. Everything
//! below (compart-analysis) speaks byte offsets and knows nothing of LSP.

pub mod converters;
pub mod documents;
pub mod handlers;
pub mod index;
pub mod runs;
pub mod server;
pub mod session;
pub mod stale;
pub mod transport;

pub use server::Backend;
pub use tower_lsp_server::ls_types;

use tower_lsp_server::{ClientSocket, LspService};

/// Build the service (used by `compart lsp`, the tests and the benchmark).
pub fn service() -> (LspService<Backend>, ClientSocket) {
    LspService::build(Backend::new)
        .custom_method("window/workDoneProgress/cancel", Backend::work_done_progress_cancel)
        .custom_method(handlers::graph::METHOD, Backend::graph)
        .finish()
}

/// Serve LSP over stdin/stdout until the client sends `exit` or closes the stream.
pub async fn run_stdio() {
    transport::serve(tokio::io::stdin(), tokio::io::stdout()).await;
}

/// [`run_stdio`] on its own runtime, for callers that are not async (the CLI).
pub fn serve_stdio() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run_stdio());
    // tokio's stdin reads on a blocking thread that may still wait for input: do not wait for it.
    runtime.shutdown_background();
    Ok(())
}
