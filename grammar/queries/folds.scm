(component_body) @fold
(rule) @fold
(invariant) @fold
(block_comment) @fold
