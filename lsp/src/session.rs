//! Server state shared by all handlers: the client handle, the configuration and the documents.

use std::path::PathBuf;
use std::sync::RwLock;

use tower_lsp_server::jsonrpc::{Error, ErrorCode, Result};
use tower_lsp_server::ls_types::{MessageType, Uri};
use tower_lsp_server::Client;

use crate::documents::{Documents, Snapshot};
use crate::handlers::{diagnostics, semantic_tokens};
use crate::runs::Runs;

#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The `compart` executable run by the Run/Simulate commands (initializationOptions.compartPath).
    pub compart_path: Option<PathBuf>,
    /// The client can show `$/progress` (window.workDoneProgress).
    pub work_done_progress: bool,
    /// The client shows code actions with `disabled` as refused (codeAction.disabledSupport).
    /// Others would list them as choosable and fail when one is chosen, so they get none.
    pub disabled_code_actions: bool,
    /// The client takes versioned edits and file operations in one WorkspaceEdit
    /// (workspace.workspaceEdit.documentChanges).
    pub document_changes: bool,
    /// ... and can create files (resourceOperations has `create`): a rewrite of a program without
    /// a deployment file beside it then creates one.
    pub create_files: bool,
}

pub struct Session {
    pub client: Client,
    pub documents: Documents,
    pub config: RwLock<Config>,
    pub semantic_tokens: semantic_tokens::Cache,
    /// The clusters and simulations started by the lenses, to stop when cancelled or at exit.
    pub runs: Runs,
}

impl Session {
    pub fn new(client: Client) -> Self {
        Session {
            client,
            documents: Documents::default(),
            config: RwLock::new(Config::default()),
            semantic_tokens: Default::default(),
            runs: Runs::default(),
        }
    }

    pub fn config(&self) -> Config {
        self.config.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// The current snapshot of an open document, or an InvalidParams error.
    pub fn snapshot(&self, uri: &Uri) -> Result<Snapshot> {
        self.documents.snapshot(uri).ok_or_else(|| invalid_params(format!("{} is not open", uri.as_str())))
    }

    /// Publish a snapshot's diagnostics unless a newer version has replaced it meanwhile.
    pub async fn publish(&self, snapshot: Snapshot) {
        let diagnostics = diagnostics::to_lsp(&snapshot);
        if self.documents.version(&snapshot.uri) != Some(snapshot.version) {
            return;
        }
        self.client.publish_diagnostics(snapshot.uri, diagnostics, Some(snapshot.version)).await;
    }

    pub async fn log_error(&self, message: impl std::fmt::Display) {
        self.client.log_message(MessageType::ERROR, message).await;
    }
}

pub fn invalid_params(message: impl Into<String>) -> Error {
    Error { code: ErrorCode::InvalidParams, message: message.into().into(), data: None }
}

/// LSP's RequestFailed (-32803): the request was valid but cannot be done (e.g. formatting a file
/// with syntax errors).
pub fn request_failed(message: impl Into<String>) -> Error {
    Error { code: ErrorCode::ServerError(-32803), message: message.into().into(), data: None }
}
