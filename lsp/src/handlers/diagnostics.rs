//! compart diagnostics -> LSP diagnostics (with related information).

use compart_analysis::{Code, Severity};
use tower_lsp_server::ls_types::{
    Diagnostic, DiagnosticRelatedInformation, DiagnosticSeverity, DiagnosticTag, Location, NumberOrString,
};

use crate::converters::Converter;
use crate::documents::Snapshot;

pub fn to_lsp(snapshot: &Snapshot) -> Vec<Diagnostic> {
    let conv = Converter::new(&snapshot.analysis);
    snapshot.analysis.diagnostics.iter().map(|d| convert(snapshot, conv, d)).collect()
}

pub fn convert(snapshot: &Snapshot, conv: Converter<'_>, d: &compart_analysis::Diagnostic) -> Diagnostic {
    let related = d
        .related
        .iter()
        .map(|r| DiagnosticRelatedInformation {
            location: Location::new(snapshot.uri.clone(), conv.range(r.range)),
            message: r.message.clone(),
        })
        .collect::<Vec<_>>();
    // Unused things are shown faded rather than underlined.
    let tags =
        matches!(d.code, Code::UnusedRelation | Code::SingleUseVariable).then(|| vec![DiagnosticTag::UNNECESSARY]);
    Diagnostic {
        range: conv.range(d.range),
        severity: Some(match d.severity {
            Severity::Error => DiagnosticSeverity::ERROR,
            Severity::Warning => DiagnosticSeverity::WARNING,
        }),
        code: Some(NumberOrString::String(d.code.as_str().into())),
        source: Some("compart".into()),
        message: d.message.clone(),
        related_information: (!related.is_empty()).then_some(related),
        tags,
        ..Default::default()
    }
}
