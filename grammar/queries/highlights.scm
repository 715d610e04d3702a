; Neovim lets later patterns win, so the generic capture comes first.
(identifier) @variable

; Keywords
["component" "partitioned" "by" "key" "invariant"] @keyword
(relation_kind) @keyword.storage
(delete) @keyword
(rule_op) @operator
["=" "==" "!=" "<" "<=" ">" ">=" "+" "-" "++" "*" "/" "%" "&&" "||" "!" "@"] @operator
["(" ")" "{" "}"] @punctuation.bracket
["," "." ":"] @punctuation.delimiter

; Declarations
(component name: (identifier) @type.definition)
(relation_decl name: (identifier) @function.definition)
(column name: (identifier) @property)
(type (identifier) @type.builtin)
(partition_key relation: (identifier) @function)
(partition_key column: (identifier) @property)
(key_clause (identifier) @property)
(invariant name: (identifier) @function.definition)

; Rules
(head relation: (identifier) @function)
(atom relation: (identifier) @function)
(destination (identifier) @variable.parameter)
(call function: (identifier) @function.builtin)

; Values
(wildcard) @variable.builtin
(self) @variable.builtin
(integer) @number
(string) @string
(boolean) @constant.builtin
[(line_comment) (block_comment)] @comment
