/**
 * Tree-sitter grammar for compart's protocol language (`.ded` files).
 * The semantics live in docs/language.md; this file only fixes the surface syntax.
 * Keep it small and regular: the editor re-parses it on every keystroke.
 */

const PREC = {
  or: 1,
  and: 2,
  compare: 3,
  additive: 4,
  multiplicative: 5,
  unary: 6,
};

const commaSep1 = (rule) => seq(rule, repeat(seq(',', rule)));
const commaSep = (rule) => optional(commaSep1(rule));

// An item keyword, lexed as usual or recognised by the scanner (see `externals`).
const keyword = ($, word) => choice(word, alias($[`_${word}_keyword`], word));

module.exports = grammar({
  name: 'compart',

  word: $ => $.identifier,

  // Error recovery (src/scanner.c): the scanner recognises, by looking ahead, the tokens that can
  // only start an item, so that where a half-typed item left the parser (`bar(` and the next
  // rule, a body ending in `,` before a declaration, a component left open), the next item's
  // first token is unexpected there and tree-sitter resynchronises on that item instead of
  // swallowing it. They produce the same nodes as the plain tokens, so valid programs parse to the
  // same trees:
  // - `_head_name`: the name in `name(...) :-` (or `:+`, `:~`, `name@dest(...)`), which in a
  //   valid program only ever starts a rule head or names an invariant;
  // - an item keyword followed by a name (`table t`, `component c`, `delete r`, `invariant i`):
  //   two names in a row occur nowhere else.
  // Never produced: `_scan_everywhere`, an extra, makes every state call the scanner;
  // `_destination_next` tells it that `p(...) :~` after `@` is a destination.
  externals: $ => [
    $._head_name,
    $._scan_everywhere,
    $._destination_next,
    $._component_keyword,
    $._invariant_keyword,
    $._delete_keyword,
    $._input_keyword,
    $._output_keyword,
    $._table_keyword,
    $._channel_keyword,
    $._scratch_keyword,
  ],

  extras: $ => [/\s/, $.line_comment, $.block_comment, $._scan_everywhere],

  rules: {
    source_file: $ => repeat($._item),

    _item: $ => choice($.component, $.invariant),

    // component acceptor partitioned by slot { ... }
    component: $ => seq(
      keyword($, 'component'),
      field('name', $.identifier),
      optional(field('placement', $.placement)),
      field('body', $.component_body),
    ),

    component_body: $ => seq('{', repeat($._component_item), '}'),

    placement: $ => seq('partitioned', 'by', commaSep1($.partition_key)),

    // `slot` (every relation with a column named slot) or `p2a.slot` (one relation's column).
    partition_key: $ => choice(
      field('column', $.identifier),
      seq(field('relation', $.identifier), '.', field('column', $.identifier)),
    ),

    _component_item: $ => choice($.relation_decl, $.rule, $.invariant),

    relation_decl: $ => seq(
      field('kind', $._relation_kind),
      field('name', $.identifier),
      '(',
      commaSep(field('column', $.column)),
      optional(','),
      ')',
      optional(field('key', $.key_clause)),
    ),

    relation_kind: _ => choice('input', 'output', 'table', 'channel', 'scratch'),

    // The kind, lexed as usual or recognised by the scanner (see `externals`).
    _relation_kind: $ => choice(
      $.relation_kind,
      ...['input', 'output', 'table', 'channel', 'scratch'].map(k => alias($[`_${k}_keyword`], $.relation_kind)),
    ),

    column: $ => seq(field('name', $.identifier), ':', field('type', $.type)),

    type: $ => $.identifier,

    key_clause: $ => seq('key', '(', commaSep($.identifier), ')'),

    // head :- body.   head :+ body.   rel@dest(...) :~ body.   delete head :- body.   fact.
    rule: $ => seq(
      optional(field('delete', choice($.delete, alias($._delete_keyword, $.delete)))),
      field('head', $.head),
      optional(seq(field('op', $.rule_op), field('body', $.body))),
      '.',
    ),

    delete: _ => 'delete',

    rule_op: _ => choice(':-', ':+', ':~'),

    head: $ => seq(
      field('relation', $._head_identifier),
      optional(seq('@', optional($._destination_next), field('destination', $.destination))),
      '(',
      commaSep(field('argument', $._expression)),
      ')',
    ),

    _head_identifier: $ => choice($.identifier, alias($._head_name, $.identifier)),

    destination: $ => choice($.identifier, $.self),

    // invariant agreement(s) :- chosen(s, v1), chosen(s, v2), v1 != v2.
    invariant: $ => seq(
      keyword($, 'invariant'),
      field('name', $._head_identifier),
      optional(seq('(', commaSep(field('argument', $._expression)), ')')),
      ':-',
      field('body', $.body),
      '.',
    ),

    body: $ => commaSep1($._body_item),

    _body_item: $ => choice($.atom, $.negation, $.condition),

    atom: $ => seq(
      field('relation', $.identifier),
      '(',
      commaSep(field('argument', $._expression)),
      ')',
    ),

    negation: $ => seq('!', field('atom', $.atom)),

    // x = expr binds x (or tests equality when x is bound); the others compare bound values.
    condition: $ => prec.left(PREC.compare, seq(
      field('left', $._expression),
      field('operator', choice('=', '==', '!=', '<', '<=', '>', '>=')),
      field('right', $._expression),
    )),

    _expression: $ => choice(
      $.binary_expression,
      $.unary_expression,
      $.call,
      $.parenthesized_expression,
      $.identifier,
      $.wildcard,
      $.integer,
      $.string,
      $.boolean,
      $.self,
    ),

    binary_expression: $ => choice(
      ...[
        ['||', PREC.or],
        ['&&', PREC.and],
        ['+', PREC.additive],
        ['-', PREC.additive],
        ['++', PREC.additive],
        ['*', PREC.multiplicative],
        ['/', PREC.multiplicative],
        ['%', PREC.multiplicative],
      ].map(([operator, precedence]) => prec.left(precedence, seq(
        field('left', $._expression),
        field('operator', operator),
        field('right', $._expression),
      ))),
    ),

    unary_expression: $ => prec(PREC.unary, seq(
      field('operator', '-'),
      field('operand', $._expression),
    )),

    // hash(x), min(a, b) in bodies; count(p), max(b) in heads are aggregates.
    call: $ => seq(
      field('function', $.identifier),
      '(',
      commaSep(field('argument', $._expression)),
      ')',
    ),

    parenthesized_expression: $ => seq('(', $._expression, ')'),

    identifier: _ => /[A-Za-z_][A-Za-z0-9_]*/,
    wildcard: _ => '_',
    integer: _ => /[0-9]+/,
    // Strings and line comments end at a line break: LF, CRLF or a lone CR (as editors count lines).
    string: _ => token(seq('"', repeat(choice(/[^"\\\r\n]/, /\\./)), '"')),
    boolean: _ => choice('true', 'false'),
    self: _ => 'self',

    line_comment: _ => token(seq('//', /[^\r\n]*/)),
    block_comment: _ => token(seq('/*', /[^*]*\*+([^/*][^*]*\*+)*/, '/')),
  },
});
