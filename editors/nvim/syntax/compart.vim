" Vim syntax for compart protocols (*.ded), for Neovim without nvim-treesitter (with it, the
" tree-sitter queries in queries/compart/ highlight instead). The words follow grammar/grammar.js
" and the groups grammar/queries/highlights.scm; the server's semantic tokens refine them.

if exists('b:current_syntax')
  finish
endif

syntax case match

" Identifiers followed by `(` or `@`: relations in heads and atoms (keywords win over matches).
syntax match compartRelation /\<\h\w*\ze\s*[(@]/
" Look-behinds: a keyword starting at the same column would win over a match.
syntax match compartComponent /\%(\<component\s\+\)\@<=\h\w*/
syntax match compartType /\<\h\w*\s*:\s*\zs\h\w*/ contained
syntax region compartColumns start=/\%(\<\%(input\|output\|table\|channel\|scratch\)\s\+\h\w*\s*\)\@<=(/ end=/)/ contains=compartType,compartLineComment,compartBlockComment transparent

syntax keyword compartKeyword component partitioned by key invariant delete
syntax keyword compartStorage input output table channel scratch
syntax keyword compartBoolean true false
syntax keyword compartSelf self
" Aggregates and functions (analysis/src/model.rs), the built-in relations.
syntax match compartBuiltin /\<\%(count\|sum\|min\|max\|choose\|rank\|hash\|abs\|str\|nodes\|instance\|partner\)\ze\s*(/
syntax match compartWildcard /\<_\>/

syntax match compartOperator /==\|!=\|<=\|>=\|++\|&&\|||\|[=<>+\-*%!@]/
syntax match compartOperator "/\ze[^/*]"
syntax match compartRuleOp /:[-+~]/
" After the operators and relations: of matches starting at one column, the last defined wins.
syntax match compartDestination /\%(@\s*\)\@<=\h\w*\ze\s*(/
syntax match compartNumber /\<\d\+\>/
" Strings end at the line's end as in the grammar.
syntax region compartString start=/"/ skip=/\\./ end=/"\|$/ contains=compartEscape oneline
syntax match compartEscape /\\./ contained

syntax keyword compartTodo TODO FIXME XXX NOTE contained
syntax match compartLineComment "//.*$" contains=compartTodo,@Spell
syntax region compartBlockComment start="/\*" end="\*/" contains=compartTodo,@Spell fold

highlight default link compartKeyword Keyword
highlight default link compartStorage StorageClass
highlight default link compartBoolean Boolean
highlight default link compartSelf Special
highlight default link compartWildcard Special
highlight default link compartBuiltin Function
highlight default link compartRelation Function
highlight default link compartDestination Identifier
highlight default link compartComponent Type
highlight default link compartType Type
highlight default link compartOperator Operator
highlight default link compartRuleOp Operator
highlight default link compartNumber Number
highlight default link compartString String
highlight default link compartEscape SpecialChar
highlight default link compartTodo Todo
highlight default link compartLineComment Comment
highlight default link compartBlockComment Comment

let b:current_syntax = 'compart'
