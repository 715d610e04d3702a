//! The LanguageServer implementation: decode parameters, take a snapshot, call a handler.

use std::path::PathBuf;

use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::*;
use tower_lsp_server::{Client, LanguageServer};

use crate::converters::Converter;
use crate::handlers::{self, semantic_tokens};
use crate::session::{invalid_params, Session};

pub struct Backend {
    pub session: Session,
}

impl Backend {
    pub fn new(client: Client) -> Self {
        Backend { session: Session::new(client) }
    }
}

fn capabilities() -> ServerCapabilities {
    ServerCapabilities {
        position_encoding: Some(PositionEncodingKind::UTF16),
        text_document_sync: Some(TextDocumentSyncCapability::Options(TextDocumentSyncOptions {
            open_close: Some(true),
            change: Some(TextDocumentSyncKind::INCREMENTAL),
            ..Default::default()
        })),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        definition_provider: Some(OneOf::Left(true)),
        references_provider: Some(OneOf::Left(true)),
        document_highlight_provider: Some(OneOf::Left(true)),
        rename_provider: Some(OneOf::Right(RenameOptions {
            prepare_provider: Some(true),
            work_done_progress_options: Default::default(),
        })),
        document_symbol_provider: Some(OneOf::Left(true)),
        workspace_symbol_provider: Some(OneOf::Left(true)),
        semantic_tokens_provider: Some(SemanticTokensServerCapabilities::SemanticTokensOptions(
            SemanticTokensOptions {
                legend: semantic_tokens::legend(),
                full: Some(SemanticTokensFullOptions::Delta { delta: Some(true) }),
                range: None,
                work_done_progress_options: Default::default(),
            },
        )),
        folding_range_provider: Some(FoldingRangeProviderCapability::Simple(true)),
        selection_range_provider: Some(SelectionRangeProviderCapability::Simple(true)),
        document_formatting_provider: Some(OneOf::Left(true)),
        document_range_formatting_provider: Some(OneOf::Left(true)),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec!["(".into(), ",".into(), "@".into()]),
            ..Default::default()
        }),
        signature_help_provider: Some(SignatureHelpOptions {
            trigger_characters: Some(vec!["(".into(), ",".into()]),
            ..Default::default()
        }),
        inlay_hint_provider: Some(OneOf::Left(true)),
        code_action_provider: Some(CodeActionProviderCapability::Options(CodeActionOptions {
            code_action_kinds: Some(vec![CodeActionKind::QUICKFIX, CodeActionKind::REFACTOR_REWRITE]),
            resolve_provider: Some(true),
            ..Default::default()
        })),
        code_lens_provider: Some(CodeLensOptions { resolve_provider: Some(false) }),
        execute_command_provider: Some(ExecuteCommandOptions {
            commands: handlers::commands::ALL.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Methods tower-lsp-server's trait does not have (registered in `crate::service`).
impl Backend {
    /// `window/workDoneProgress/cancel`: the user cancelled a run from the progress UI.
    pub async fn work_done_progress_cancel(&self, params: WorkDoneProgressCancelParams) {
        if !self.session.runs.cancel(&params.token) {
            self.session.log_error(format!("no run to cancel with progress token {:?}", params.token)).await;
        }
    }

    /// `compart/graph`: the component graph of an open document (handlers/graph.rs).
    pub async fn graph(&self, params: handlers::graph::GraphParams) -> Result<LSPAny> {
        let snapshot = self.session.snapshot(&params.text_document.uri)?;
        Ok(handlers::graph::graph(&snapshot))
    }
}

impl LanguageServer for Backend {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        let compart_path = params
            .initialization_options
            .as_ref()
            .and_then(|o| o.get("compartPath"))
            .and_then(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        let work_done_progress =
            params.capabilities.window.as_ref().and_then(|w| w.work_done_progress).unwrap_or(false);
        let disabled_code_actions = params
            .capabilities
            .text_document
            .as_ref()
            .and_then(|t| t.code_action.as_ref())
            .and_then(|c| c.disabled_support)
            .unwrap_or(false);
        let workspace_edit = params.capabilities.workspace.as_ref().and_then(|w| w.workspace_edit.as_ref());
        let document_changes = workspace_edit.and_then(|w| w.document_changes).unwrap_or(false);
        let create_files = document_changes
            && workspace_edit
                .and_then(|w| w.resource_operations.as_ref())
                .is_some_and(|ops| ops.contains(&ResourceOperationKind::Create));
        if let Ok(mut config) = self.session.config.write() {
            config.compart_path = compart_path;
            config.work_done_progress = work_done_progress;
            config.disabled_code_actions = disabled_code_actions;
            config.document_changes = document_changes;
            config.create_files = create_files;
        }
        Ok(InitializeResult {
            capabilities: capabilities(),
            server_info: Some(ServerInfo { name: "compart".into(), version: Some(env!("CARGO_PKG_VERSION").into()) }),
            ..Default::default()
        })
    }

    /// The client is going away: no cluster a lens started outlives it.
    async fn shutdown(&self) -> Result<()> {
        self.session.runs.stop_all().await;
        Ok(())
    }

    // Document changes are applied before the first `.await` so that later requests see them.
    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        let doc = params.text_document;
        if crate::documents::is_deployment(&doc.uri) {
            return self.session.documents.open_deployment(doc.uri, doc.version, &doc.text);
        }
        let snapshot = self.session.documents.open(doc.uri, doc.version, &doc.text);
        self.session.publish(snapshot).await;
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        let doc = params.text_document;
        if crate::documents::is_deployment(&doc.uri) {
            let changed = self.session.documents.change_deployment(&doc.uri, doc.version, &params.content_changes);
            if let Err(e) = changed {
                self.session.log_error(e).await;
            }
            return;
        }
        match self.session.documents.change(&doc.uri, doc.version, &params.content_changes) {
            Ok(snapshot) => self.session.publish(snapshot).await,
            Err(e) => self.session.log_error(e).await,
        }
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        let uri = params.text_document.uri;
        self.session.semantic_tokens.forget(&uri);
        if self.session.documents.close(&uri) {
            // Closed files keep no diagnostics.
            self.session.client.publish_diagnostics(uri, vec![], None).await;
        } else {
            self.session.log_error(format!("{} was not open", uri.as_str())).await;
        }
    }

    async fn hover(&self, params: HoverParams) -> Result<Option<Hover>> {
        let p = params.text_document_position_params;
        let snapshot = self.session.snapshot(&p.text_document.uri)?;
        handlers::hover::hover(&snapshot, p.position).map_err(|e| invalid_params(e.to_string()))
    }

    async fn goto_definition(&self, params: GotoDefinitionParams) -> Result<Option<GotoDefinitionResponse>> {
        let p = params.text_document_position_params;
        let snapshot = self.session.snapshot(&p.text_document.uri)?;
        Ok(handlers::navigation::definition(&snapshot, p.position)?.map(GotoDefinitionResponse::Scalar))
    }

    async fn references(&self, params: ReferenceParams) -> Result<Option<Vec<Location>>> {
        let p = params.text_document_position;
        let snapshot = self.session.snapshot(&p.text_document.uri)?;
        handlers::navigation::references(&snapshot, p.position, params.context.include_declaration)
    }

    async fn document_highlight(&self, params: DocumentHighlightParams) -> Result<Option<Vec<DocumentHighlight>>> {
        let p = params.text_document_position_params;
        let snapshot = self.session.snapshot(&p.text_document.uri)?;
        handlers::highlights::document_highlights(&snapshot, p.position)
    }

    async fn prepare_rename(&self, params: TextDocumentPositionParams) -> Result<Option<PrepareRenameResponse>> {
        let snapshot = self.session.snapshot(&params.text_document.uri)?;
        handlers::navigation::prepare_rename(&snapshot, params.position)
    }

    async fn rename(&self, params: RenameParams) -> Result<Option<WorkspaceEdit>> {
        let p = params.text_document_position;
        let snapshot = self.session.snapshot(&p.text_document.uri)?;
        let beside = handlers::edits::Beside::read(&snapshot.uri);
        let config = self.session.config();
        let renamed = handlers::navigation::rename(&snapshot, p.position, &params.new_name, beside.as_ref(), &config)?;
        let Some((edit, notes)) = renamed else { return Ok(None) };
        for note in notes {
            self.session.client.log_message(MessageType::INFO, format!("rename: {note}")).await;
        }
        Ok(Some(edit))
    }

    async fn document_symbol(&self, params: DocumentSymbolParams) -> Result<Option<DocumentSymbolResponse>> {
        let snapshot = self.session.snapshot(&params.text_document.uri)?;
        Ok(Some(DocumentSymbolResponse::Nested(handlers::symbols::document_symbols(&snapshot))))
    }

    async fn symbol(&self, params: WorkspaceSymbolParams) -> Result<Option<WorkspaceSymbolResponse>> {
        let snapshots = self.session.documents.snapshots();
        Ok(Some(WorkspaceSymbolResponse::Nested(handlers::workspace_symbols::workspace_symbols(
            &snapshots,
            &params.query,
        ))))
    }

    async fn semantic_tokens_full(&self, params: SemanticTokensParams) -> Result<Option<SemanticTokensResult>> {
        let snapshot = self.session.snapshot(&params.text_document.uri)?;
        Ok(Some(SemanticTokensResult::Tokens(self.session.semantic_tokens.full(&snapshot.uri, &snapshot.analysis))))
    }

    async fn semantic_tokens_full_delta(
        &self,
        params: SemanticTokensDeltaParams,
    ) -> Result<Option<SemanticTokensFullDeltaResult>> {
        let snapshot = self.session.snapshot(&params.text_document.uri)?;
        let cache = &self.session.semantic_tokens;
        Ok(Some(cache.delta(&snapshot.uri, &snapshot.analysis, &params.previous_result_id)))
    }

    async fn folding_range(&self, params: FoldingRangeParams) -> Result<Option<Vec<FoldingRange>>> {
        let snapshot = self.session.snapshot(&params.text_document.uri)?;
        Ok(Some(handlers::folding::folding_ranges(&snapshot.analysis)))
    }

    async fn selection_range(&self, params: SelectionRangeParams) -> Result<Option<Vec<SelectionRange>>> {
        let snapshot = self.session.snapshot(&params.text_document.uri)?;
        let conv = Converter::new(&snapshot.analysis);
        let ranges = params
            .positions
            .into_iter()
            .map(|p| {
                conv.offset(p).map(|offset| handlers::selection_range::selection_range(&snapshot.analysis, offset))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| invalid_params(e.to_string()))?;
        Ok(Some(ranges))
    }

    async fn formatting(&self, params: DocumentFormattingParams) -> Result<Option<Vec<TextEdit>>> {
        let snapshot = self.session.snapshot(&params.text_document.uri)?;
        handlers::formatting::format(&snapshot.analysis)
    }

    async fn range_formatting(&self, params: DocumentRangeFormattingParams) -> Result<Option<Vec<TextEdit>>> {
        let snapshot = self.session.snapshot(&params.text_document.uri)?;
        let range =
            Converter::new(&snapshot.analysis).text_range(params.range).map_err(|e| invalid_params(e.to_string()))?;
        handlers::formatting::format_range(&snapshot.analysis, range)
    }

    async fn completion(&self, params: CompletionParams) -> Result<Option<CompletionResponse>> {
        let p = params.text_document_position;
        let snapshot = self.session.snapshot(&p.text_document.uri)?;
        let offset =
            Converter::new(&snapshot.analysis).offset(p.position).map_err(|e| invalid_params(e.to_string()))?;
        Ok(Some(CompletionResponse::Array(handlers::completion::completion(&snapshot.analysis, offset))))
    }

    async fn signature_help(&self, params: SignatureHelpParams) -> Result<Option<SignatureHelp>> {
        let p = params.text_document_position_params;
        let snapshot = self.session.snapshot(&p.text_document.uri)?;
        let offset =
            Converter::new(&snapshot.analysis).offset(p.position).map_err(|e| invalid_params(e.to_string()))?;
        Ok(handlers::signature_help::signature_help(&snapshot.analysis, offset))
    }

    async fn inlay_hint(&self, params: InlayHintParams) -> Result<Option<Vec<InlayHint>>> {
        let snapshot = self.session.snapshot(&params.text_document.uri)?;
        let range = Converter::new(&snapshot.analysis).clamped_range(params.range);
        Ok(Some(handlers::inlay_hints::inlay_hints(&snapshot, range)))
    }

    async fn code_action(&self, params: CodeActionParams) -> Result<Option<CodeActionResponse>> {
        let snapshot = self.session.snapshot(&params.text_document.uri)?;
        let range = Converter::new(&snapshot.analysis).clamped_range(params.range);
        let config = self.session.config();
        let beside = handlers::edits::Beside::read(&snapshot.uri);
        let deploy = handlers::scaling::DeploymentTarget::of(beside.as_ref(), &config);
        Ok(Some(handlers::code_actions::code_actions(&snapshot, range, config.disabled_code_actions, &deploy)))
    }

    /// Actions carry everything already: quick fixes their edit, rewrites the command that checks
    /// and applies them.
    async fn code_action_resolve(&self, action: CodeAction) -> Result<CodeAction> {
        Ok(action)
    }

    async fn code_lens(&self, params: CodeLensParams) -> Result<Option<Vec<CodeLens>>> {
        let snapshot = self.session.snapshot(&params.text_document.uri)?;
        Ok(Some(handlers::code_lens::code_lenses(&snapshot)))
    }

    async fn execute_command(&self, params: ExecuteCommandParams) -> Result<Option<LSPAny>> {
        handlers::commands::execute(&self.session, params).await
    }
}
