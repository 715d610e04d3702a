// External scanner of compart's grammar: the name that starts a rule head, recognised by looking
// ahead, for error recovery (see the `externals` comment in grammar.js). It produces the same
// `identifier` node the grammar would, so valid programs parse to the same trees.

#include "tree_sitter/parser.h"

#include <string.h>

enum TokenType {
  HEAD_NAME,
  SCAN_EVERYWHERE,
  DESTINATION_NEXT,
  // The item keywords, in the order of `externals` in grammar.js and of KEYWORDS below.
  COMPONENT_KEYWORD,
};

static const char *const KEYWORDS[] = {"component", "invariant", "delete", "input", "output", "table", "channel", "scratch"};
#define KEYWORD_COUNT (sizeof(KEYWORDS) / sizeof(KEYWORDS[0]))
#define MAX_WORD 16

void *tree_sitter_compart_external_scanner_create(void) { return NULL; }
void tree_sitter_compart_external_scanner_destroy(void *payload) { (void)payload; }
unsigned tree_sitter_compart_external_scanner_serialize(void *payload, char *buffer) {
  (void)payload;
  (void)buffer;
  return 0;
}
void tree_sitter_compart_external_scanner_deserialize(void *payload, const char *buffer, unsigned length) {
  (void)payload;
  (void)buffer;
  (void)length;
}

static bool is_space(int32_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static bool is_ident_start(int32_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_ident(int32_t c) { return is_ident_start(c) || (c >= '0' && c <= '9'); }

static void skip_spaces(TSLexer *lexer) {
  while (is_space(lexer->lookahead)) lexer->advance(lexer, false);
}

// Consumes a name, keeping its first MAX_WORD - 1 characters in `word` (NUL-terminated; longer
// names are cut, which no keyword is).
static bool scan_identifier(TSLexer *lexer, char *word) {
  if (!is_ident_start(lexer->lookahead)) return false;
  unsigned length = 0;
  while (is_ident(lexer->lookahead)) {
    if (word && length + 1 < MAX_WORD) word[length++] = (char)lexer->lookahead;
    lexer->advance(lexer, false);
  }
  if (word) word[length] = 0;
  return true;
}

static int keyword_index(const char *word) {
  for (unsigned i = 0; i < KEYWORD_COUNT; i++) {
    if (strcmp(word, KEYWORDS[i]) == 0) return (int)i;
  }
  return -1;
}

// After an opening `(`: up to its matching `)`. Gives up at what cannot be inside an argument
// list (`.`, braces, a rule operator), so a half-typed `bar(` costs a scan of one item, not of
// the rest of the file.
static bool scan_balanced(TSLexer *lexer) {
  unsigned depth = 1;
  while (!lexer->eof(lexer)) {
    int32_t c = lexer->lookahead;
    lexer->advance(lexer, false);
    switch (c) {
    case '(':
      depth++;
      break;
    case ')':
      if (--depth == 0) return true;
      break;
    case '.':
    case '{':
    case '}':
      return false;
    case ':':
      if (lexer->lookahead == '-' || lexer->lookahead == '+' || lexer->lookahead == '~') return false;
      break;
    case '"':
      // Strings end at their quote or at a line break, as in the grammar.
      while (!lexer->eof(lexer) && lexer->lookahead != '"' && lexer->lookahead != '\n' && lexer->lookahead != '\r') {
        if (lexer->lookahead == '\\') lexer->advance(lexer, false);
        if (!lexer->eof(lexer)) lexer->advance(lexer, false);
      }
      if (lexer->lookahead == '"') lexer->advance(lexer, false);
      break;
    case '/':
      if (lexer->lookahead == '/') {
        while (!lexer->eof(lexer) && lexer->lookahead != '\n' && lexer->lookahead != '\r') lexer->advance(lexer, false);
      } else if (lexer->lookahead == '*') {
        lexer->advance(lexer, false);
        int32_t previous = 0;
        while (!lexer->eof(lexer) && !(previous == '*' && lexer->lookahead == '/')) {
          previous = lexer->lookahead;
          lexer->advance(lexer, false);
        }
        if (!lexer->eof(lexer)) lexer->advance(lexer, false);
      }
      break;
    default:
      break;
    }
  }
  return false;
}

bool tree_sitter_compart_external_scanner_scan(void *payload, TSLexer *lexer, const bool *valid_symbols) {
  (void)payload;
  // After `@`: `p(...) :~` is the destination and the rest of the head (in error recovery every
  // symbol is valid, and the name is looked for as everywhere else).
  if (valid_symbols[DESTINATION_NEXT] && !valid_symbols[HEAD_NAME]) return false;
  while (is_space(lexer->lookahead)) lexer->advance(lexer, true);
  // `name` (the token), then, looked at but not consumed: optionally `@dest`, `(...)`, a rule operator.
  char word[MAX_WORD];
  if (!scan_identifier(lexer, word)) return false;
  lexer->mark_end(lexer);
  skip_spaces(lexer);
  int keyword = keyword_index(word);
  if (keyword >= 0) {
    // A keyword followed by a name starts an item; any other use of the word is left to the
    // grammar's own lexer.
    if (!is_ident_start(lexer->lookahead)) return false;
    lexer->result_symbol = COMPONENT_KEYWORD + keyword;
    return true;
  }
  if (lexer->lookahead == '@') {
    lexer->advance(lexer, false);
    skip_spaces(lexer);
    if (!scan_identifier(lexer, NULL)) return false;
    skip_spaces(lexer);
  }
  if (lexer->lookahead != '(') return false;
  lexer->advance(lexer, false);
  if (!scan_balanced(lexer)) return false;
  skip_spaces(lexer);
  if (lexer->lookahead != ':') return false;
  lexer->advance(lexer, false);
  if (lexer->lookahead != '-' && lexer->lookahead != '+' && lexer->lookahead != '~') return false;
  lexer->result_symbol = HEAD_NAME;
  return true;
}
