; A rule (or invariant) is the scope of its variables; relations and components are global.
(rule) @local.scope
(invariant) @local.scope
(atom argument: (identifier) @local.definition)
(identifier) @local.reference
