// The TextMate grammar gives highlighting before (and without) the server. It is checked against
// the tree-sitter grammar, the single definition of the syntax: every keyword of grammar/grammar.js
// and every literal that grammar/queries/highlights.scm colours must get a matching TextMate scope
// when tokenized by vscode-textmate, the engine VS Code itself uses.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import * as oniguruma from 'vscode-oniguruma';
import * as vsctm from 'vscode-textmate';

// out/test -> the extension's directory -> the repository.
const extension = path.resolve(__dirname, '..', '..');
const repository = path.resolve(extension, '..', '..');
const read = (file: string) => fs.readFileSync(file, 'utf8');
const grammarPath = path.join(extension, 'syntaxes', 'compart.tmLanguage.json');
const grammarJs = read(path.join(repository, 'grammar', 'grammar.js'));
const highlights = read(path.join(repository, 'grammar', 'queries', 'highlights.scm'));

/** Literals of a grammar.js rule made only of literals: `relation_kind: _ => choice('input', ...)`. */
function ruleLiterals(rule: string): string[] | undefined {
  const m = grammarJs.match(new RegExp(`^\\s*${rule}: _ => (.*),$`, 'm'));
  if (!m || !/^(choice\()?('[^']*'(, )?)+\)?$/.test(m[1])) {
    return undefined;
  }
  return [...m[1].matchAll(/'([^']*)'/g)].map((l) => l[1]);
}

/** Every literal highlights.scm captures, with its capture: `["a" "b"] @c` and `(rule) @c`. */
function highlightedLiterals(): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of highlights.split('\n')) {
    const list = line.match(/^\[(.*)\]\s*@([\w.]+)\s*$/);
    const node = line.match(/^\((\w+)\)\s*@([\w.]+)\s*$/);
    if (list && list[1].includes('"')) {
      for (const l of list[1].matchAll(/"([^"]*)"/g)) {
        out.set(l[1], list[2]);
      }
    } else if (node) {
      for (const l of ruleLiterals(node[1]) ?? []) {
        out.set(l, node[2]);
      }
    }
  }
  return out;
}

/** The TextMate scope a tree-sitter capture corresponds to. */
function expectedScope(capture: string): RegExp | undefined {
  if (capture === 'operator') return /^keyword\.operator\./;
  if (capture.startsWith('keyword')) return /^(keyword|storage\.type)\./;
  if (capture === 'constant.builtin') return /^constant\.language\./;
  if (capture === 'variable.builtin') return /^variable\.language\./;
  if (capture.startsWith('punctuation')) return /^punctuation\./;
  return undefined;
}

// Every keyword and operator in use, each at least once.
const SAMPLE = `/* block
   comment */
component acceptor partitioned by p2a.slot, ballot {
    input req(id: int, v: string) key(id)  // line comment
    output reply(id: int)
    table seen(id: int, ok: bool)
    channel p2a(slot: int, from: addr)
    scratch tmp(id: int)
    seen(id, true) :- req(id, _), !tmp(id).
    p2a@p(id, self) :~ req(id, v), nodes("acceptor", p), id >= 0, id <= 9, v != "a\\"b".
    p2a@self(id, self) :~ req(id, v).
    tmp(x) :+ req(id, _), x = id * 2 + 1 - 3 / 4 % 5, id == 1, id < 2, id > 0.
    reply(count(id)) :- seen(id, false), ("a" ++ "b") == "ab" && true || false.
    delete seen(id, ok) :- seen(id, ok), req(id, _).
}
invariant single(i) :- reply(i), reply(j), i != j.
`;

async function loadGrammar(): Promise<vsctm.IGrammar> {
  const wasm = fs.readFileSync(require.resolve('vscode-oniguruma/release/onig.wasm'));
  await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns: string[]) => new oniguruma.OnigScanner(patterns),
      createOnigString: (s: string) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async (scope: string) =>
      scope === 'source.compart' ? vsctm.parseRawGrammar(read(grammarPath), grammarPath) : null,
  });
  const grammar = await registry.loadGrammar('source.compart');
  assert.ok(grammar, 'the grammar loads');
  return grammar;
}

interface Token {
  text: string;
  scopes: string[];
}

function tokenize(grammar: vsctm.IGrammar, text: string): { tokens: Token[]; end: vsctm.StateStack } {
  const tokens: Token[] = [];
  let stack = vsctm.INITIAL;
  for (const line of text.split('\n')) {
    const r = grammar.tokenizeLine(line, stack);
    for (const t of r.tokens) {
      tokens.push({ text: line.slice(t.startIndex, t.endIndex).trim(), scopes: t.scopes });
    }
    stack = r.ruleStack;
  }
  return { tokens, end: stack };
}

const grammarPromise = loadGrammar();

test('the TextMate grammar is valid JSON with the scope package.json registers', () => {
  const grammar = JSON.parse(read(grammarPath));
  assert.equal(grammar.scopeName, 'source.compart');
  const pkg = JSON.parse(read(path.join(extension, 'package.json')));
  const registered = pkg.contributes.grammars.find((g: { language: string }) => g.language === 'compart');
  assert.ok(registered, 'package.json contributes a grammar for compart');
  assert.equal(registered.scopeName, grammar.scopeName);
  assert.equal(path.resolve(extension, registered.path), grammarPath);
  const language = pkg.contributes.languages.find((l: { id: string }) => l.id === 'compart');
  assert.deepEqual(language.extensions, ['.ded']);
  const config = JSON.parse(read(path.resolve(extension, language.configuration)));
  assert.deepEqual(config.comments, { lineComment: '//', blockComment: ['/*', '*/'] });
  assert.deepEqual(config.brackets, [['{', '}'], ['(', ')']]);
  const pairs = config.autoClosingPairs.map((p: { open: string; close: string }) => p.open + p.close);
  for (const pair of ['{}', '()', '""']) {
    assert.ok(pairs.includes(pair), `auto-closes ${pair}`);
  }
});

test('every keyword of grammar.js is a highlighted literal of highlights.scm', () => {
  const captured = highlightedLiterals();
  // Quoted words in grammar.js, except field names and the grammar's own name.
  const words = [...grammarJs.matchAll(/(field\()?'([a-z]+)'/g)]
    .filter((m) => !m[1] && m[2] !== 'compart')
    .map((m) => m[2]);
  assert.ok(words.length >= 14, `keywords found: ${words.join(' ')}`);
  for (const w of words) {
    assert.ok(captured.has(w), `highlights.scm does not colour \`${w}\``);
  }
});

test('the TextMate scopes cover what highlights.scm colours', async () => {
  const grammar = await grammarPromise;
  const { tokens } = tokenize(grammar, SAMPLE);
  const captured = highlightedLiterals();
  assert.ok(captured.size > 30, `literals from highlights.scm: ${[...captured.keys()].join(' ')}`);
  for (const [literal, capture] of captured) {
    const expected = expectedScope(capture);
    if (!expected) continue;
    const found = tokens.filter((t) => t.text === literal);
    assert.ok(found.length > 0, `the sample has no \`${literal}\` token`);
    for (const t of found) {
      assert.ok(
        t.scopes.some((s) => expected.test(s)),
        `\`${literal}\` (@${capture}) is scoped ${t.scopes.join(' ')}, expected ${expected}`,
      );
    }
  }
  const scopeOf = (text: string) => tokens.find((t) => t.text === text)?.scopes.join(' ') ?? 'missing';
  assert.match(scopeOf('// line comment'), /comment\.line/);
  assert.match(scopeOf('*/'), /comment\.block/);
  assert.match(scopeOf('acceptor'), /entity\.name\.type/);
  assert.match(scopeOf('seen'), /entity\.name\.function/);
  assert.match(scopeOf('int'), /support\.type/);
  assert.match(scopeOf('count'), /support\.function\.builtin/);
  assert.match(scopeOf('nodes'), /support\.function\.builtin/);
  assert.match(scopeOf('p'), /variable\.parameter\.destination/);
  assert.match(scopeOf('0'), /constant\.numeric/);
  assert.match(scopeOf('\\"'), /constant\.character\.escape/);
});

test('the examples tokenize back to the initial state', async () => {
  const grammar = await grammarPromise;
  const examples = path.join(repository, 'examples');
  const files = fs.readdirSync(examples).filter((f) => f.endsWith('.ded'));
  assert.ok(files.length > 0);
  for (const file of files) {
    const { tokens, end } = tokenize(grammar, read(path.join(examples, file)));
    // No block comment or string left open at the end of the file.
    assert.equal(end.depth, 1, `${file} ends inside a begin/end rule`);
    // `key(...)` after a declaration is the keyword, not a relation.
    for (const t of tokens.filter((t) => t.text === 'key')) {
      assert.ok(t.scopes.some((s) => s.startsWith('keyword.')), `${file}: key is ${t.scopes.join(' ')}`);
    }
  }
});

test('engines.vscode matches what vscode-languageclient needs', () => {
  const pkg = JSON.parse(read(path.join(extension, 'package.json')));
  const client = JSON.parse(read(require.resolve('vscode-languageclient/package.json')));
  assert.equal(pkg.engines.vscode, client.engines.vscode);
  const minor = (v: string) => v.replace(/^[\^~]/, '').split('.').slice(0, 2).join('.');
  assert.equal(minor(pkg.devDependencies['@types/vscode']), minor(pkg.engines.vscode));
  // vsce runs vscode:prepublish before packaging: out/extension.js must be built first.
  assert.match(pkg.scripts['vscode:prepublish'], /compile|tsc/);
  assert.equal(pkg.main, './out/extension.js');
});
