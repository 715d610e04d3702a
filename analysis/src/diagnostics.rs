//! Diagnostics as values: a stable code, a severity, ranges and an optional fix.

use serde::Serialize;

use crate::text::TextRange;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

macro_rules! codes {
    ($($variant:ident = $code:literal, $severity:ident, $summary:literal;)*) => {
        /// Every kind of diagnostic compart reports. Codes are stable: tools and docs refer to them.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
        pub enum Code { $($variant,)* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }
            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$severity,)* }
            }
            /// One line saying what the code is about (docs and `--explain`).
            pub fn summary(self) -> &'static str {
                match self { $(Code::$variant => $summary,)* }
            }
        }
    };
}

codes! {
    SyntaxError = "E0001", Error, "the text does not parse";
    MissingToken = "E0002", Error, "a token is missing";
    NestedTooDeeply = "E0003", Error, "an expression is nested deeper than compart supports";
    UnknownRelation = "E0101", Error, "a rule names a relation that is neither declared nor derived";
    DuplicateRelation = "E0102", Error, "a relation is declared twice (relation names are global)";
    DuplicateComponent = "E0103", Error, "two components have the same name";
    UnknownType = "E0104", Error, "a column has a type that does not exist";
    DuplicateColumn = "E0105", Error, "a relation has two columns of the same name";
    UnknownKeyColumn = "E0106", Error, "a key clause names a column the relation does not have";
    BadPartitionKey = "E0107", Error, "a placement names a relation or column that does not exist";
    UnknownComponent = "E0108", Error, "`nodes(...)` names a component that does not exist";
    ForeignRelation = "E0109", Error, "a body atom reads a relation of another component";
    ScratchInSeveralComponents = "E0110", Error, "an undeclared relation is derived in several components";
    ReservedName = "E0111", Error, "a declaration uses a reserved name";
    DuplicateKeyColumn = "E0112", Error, "a key clause names a column twice";
    ArityMismatch = "E0201", Error, "an atom or head has the wrong number of arguments";
    TypeMismatch = "E0202", Error, "a value has the wrong type for its column";
    ConflictingVariableType = "E0203", Error, "one variable is used at two different types";
    OperatorType = "E0204", Error, "an operator is applied to values of the wrong type";
    UnknownFunction = "E0205", Error, "a call names a function that does not exist";
    FunctionArity = "E0206", Error, "a function is called with the wrong number of arguments";
    IntegerOverflow = "E0207", Error, "an integer literal does not fit in 64 bits";
    MissingDestination = "E0301", Error, "an async rule (`:~`) has no `@destination`";
    DestinationWithoutAsync = "E0302", Error, "only async rules (`:~`) send to a destination";
    AsyncToNonChannel = "E0303", Error, "an async rule sends to a relation that is not a channel";
    DerivesInput = "E0304", Error, "a rule derives an input relation (inputs come from outside)";
    DerivesChannelLocally = "E0305", Error, "a channel is derived without `:~` (channels are received)";
    DeleteNonTable = "E0306", Error, "`delete` removes facts of a table only";
    DeleteWithWrongOperator = "E0307", Error, "`delete` rules use `:-`";
    AggregateOutsideHead = "E0308", Error, "an aggregate appears outside a rule head";
    MisplacedAggregate = "E0309", Error, "an aggregate is nested, or in a head that cannot aggregate";
    WildcardOutsideAtom = "E0310", Error, "`_` is only allowed as an argument of a body atom";
    NonConstantFact = "E0311", Error, "a fact holds variables or expressions that are not constant";
    FactForNonStoredRelation = "E0312", Error, "a fact is given for a relation that is not a table or scratch";
    DestinationNotAddress = "E0313", Error, "a destination is not an address";
    HeadInOtherComponent = "E0314", Error, "a same-tick or next-tick rule derives a relation of another component";
    UnboundHeadVariable = "E0401", Error, "a head variable is not bound by a positive atom";
    UnboundNegatedVariable = "E0402", Error, "a negated atom uses a variable not bound by a positive atom";
    UnboundConditionVariable = "E0403", Error, "a condition or expression uses an unbound variable";
    NegationInCycle = "E0501", Error, "negation inside a same-tick recursive cycle (not stratifiable)";
    AggregationInCycle = "E0502", Error, "aggregation inside a same-tick recursive cycle (not stratifiable)";
    UnusedRelation = "W0001", Warning, "a relation is never used";
    NeverRead = "W0002", Warning, "a relation is derived but never read";
    RuleNeverFires = "W0003", Warning, "a rule reads a relation that nothing ever fills, so it never fires";
    ConstantCondition = "W0004", Warning, "a condition compares constants and is always false";
    SingleUseVariable = "W0005", Warning, "a variable appears only once; `_` says so";
    EmptyComponent = "W0006", Warning, "a component has no rules";
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Another place that explains a diagnostic (the first declaration, the other end of a cycle...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Related {
    pub range: TextRange,
    pub message: String,
}

/// One replacement of a range of the source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TextEdit {
    pub range: TextRange,
    pub new_text: String,
}

/// A suggested fix: applying all its edits resolves the diagnostic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fix {
    pub title: String,
    pub edits: Vec<TextEdit>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub range: TextRange,
    pub related: Vec<Related>,
    pub fix: Option<Fix>,
}

impl Diagnostic {
    pub fn new(code: Code, range: TextRange, message: impl Into<String>) -> Self {
        Diagnostic { code, severity: code.severity(), message: message.into(), range, related: Vec::new(), fix: None }
    }
    pub fn with_related(mut self, range: TextRange, message: impl Into<String>) -> Self {
        self.related.push(Related { range, message: message.into() });
        self
    }
    pub fn with_fix(mut self, title: impl Into<String>, range: TextRange, new_text: impl Into<String>) -> Self {
        self.fix = Some(Fix { title: title.into(), edits: vec![TextEdit { range, new_text: new_text.into() }] });
        self
    }
}

/// The closest candidate by edit distance, if it is close enough to be a likely typo.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.len() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            assert!(seen.insert(code.as_str()), "duplicate code {code}");
        }
    }

    #[test]
    fn closest_finds_typos_only() {
        assert_eq!(closest("vots", ["votes", "ballot"]), Some("votes"));
        assert_eq!(closest("x", ["votes", "ballot"]), None);
    }
}
