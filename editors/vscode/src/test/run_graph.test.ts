// The status item and the graph webview's page, driven as the extension drives them, and the
// wiring between extension.ts and package.json. The graph comes from the server's own answer
// (the snapshot of `compart/graph` over stdio, tests/lsp_stdio.rs).

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import {
  CANCEL_RUN_COMMAND,
  ComponentGraph,
  deploymentBeside,
  describeRun,
  escapeHtml,
  graphHtml,
  graphSvg,
  isComponentGraph,
  layout,
  RunStatus,
  StatusItemLike,
} from '../logic';

const extension = path.join(__dirname, '..', '..');
const repo = path.join(extension, '..', '..');

class FakeItem implements StatusItemLike {
  text = '';
  tooltip?: unknown;
  command?: unknown;
  visible = false;
  show(): void {
    this.visible = true;
  }
  hide(): void {
    this.visible = false;
  }
}

test('the status item shows while runs go, and its click cancels them', () => {
  const item = new FakeItem();
  const status = new RunStatus(item);
  assert.equal(item.visible, false);
  assert.equal(item.command, CANCEL_RUN_COMMAND);
  const cancelled: string[] = [];
  const a = status.start('run', 'voting.ded', () => cancelled.push('a'));
  assert.equal(item.visible, true);
  assert.match(item.text, /cluster of voting\.ded/);
  assert.match(String(item.tooltip), /Click to stop it/);
  const b = status.start('simulate', 'paxos.ded', () => cancelled.push('b'));
  assert.match(item.text, /2 runs/);
  assert.equal(status.cancelAll(), 2);
  assert.deepEqual(cancelled.sort(), ['a', 'b']);
  status.finish(a);
  assert.match(item.text, /simulation of paxos\.ded/);
  status.finish(b);
  assert.equal(item.visible, false);
  assert.equal(status.running, 0);
});

test('the deployment beside a program is found as the server finds it', () => {
  assert.equal(deploymentBeside('file:///w/paxos.ded'), 'file:///w/paxos.toml');
  assert.equal(deploymentBeside('file:///w.d/paxos'), 'file:///w.d/paxos.toml');
  assert.equal(deploymentBeside('file:///w/a.b.ded'), 'file:///w/a.b.toml');
  assert.equal(deploymentBeside('file:///w/.ded'), 'file:///w/.ded.toml');
});

test('a cancelled run says so', () => {
  const r = describeRun('run', { command: 'compart.run', exitCode: null, success: false, cancelled: true, summary: '', output: [] });
  assert.deepEqual(r, { ok: false, message: 'Local cluster cancelled' });
});

/** The server's answer for examples/paxos.ded, from the stdio test's snapshot. */
function serverGraph(): ComponentGraph {
  const snap = fs.readFileSync(path.join(repo, 'tests/snapshots/lsp_stdio__the_graph_request_over_stdio.snap'), 'utf8');
  const json = JSON.parse(snap.slice(snap.indexOf('{')));
  assert.ok(isComponentGraph(json));
  return json;
}

test('the graph page draws every component with its class and every channel with its relations', () => {
  const graph = serverGraph();
  const html = graphHtml(graph, 'paxos.ded', 'abc123', 'vscode-resource:');
  assert.match(html, /script-src 'nonce-abc123'/);
  assert.match(html, /<script nonce="abc123">/);
  for (const c of graph.components) {
    assert.ok(html.includes(`data-name="${c.name}"`), c.name);
    assert.ok(html.includes(`>${escapeHtml(c.class)}</text>`), c.class);
  }
  for (const e of graph.edges) {
    assert.ok(html.includes(`data-relations="${e.relations.join(' ')}"`), e.relations.join(' '));
  }
  assert.match(html, />clients<\/text>/);
  assert.doesNotMatch(html, /program has errors/);
  assert.match(graphHtml({ ...graph, hasErrors: true }, 'p.ded', 'n', 'c'), /program has errors/);
});

test('boxes do not overlap and arrows start and end on the page', () => {
  const graph = serverGraph();
  const { boxes, width, height } = layout(graph);
  assert.equal(boxes.size, graph.components.length + 1);
  const list = [...boxes.values()];
  for (const a of list) {
    assert.ok(a.x >= 0 && a.y >= 0 && a.x + a.width <= width && a.y + a.height <= height, a.name);
    for (const b of list.filter((b) => b !== a)) {
      const apart = a.x + a.width <= b.x || b.x + b.width <= a.x || a.y + a.height <= b.y || b.y + b.height <= a.y;
      assert.ok(apart, `${a.name} overlaps ${b.name}`);
    }
  }
  // The clients send to the proposer, which sends to the acceptor: three columns.
  assert.ok(boxes.get('(clients)')!.x < boxes.get('proposer')!.x);
  assert.ok(boxes.get('proposer')!.x < boxes.get('acceptor')!.x);
  const svg = graphSvg(graph);
  for (const m of svg.matchAll(/d="M ([\d.-]+) ([\d.-]+) Q [\d.-]+ [\d.-]+ ([\d.-]+) ([\d.-]+)"/g)) {
    const [x1, y1, x2, y2] = m.slice(1).map(Number);
    for (const v of [x1, x2]) assert.ok(v >= 0 && v <= width, m[0]);
    for (const v of [y1, y2]) assert.ok(v >= 0 && v <= height, m[0]);
  }
});

test('names are escaped, self-loops and unreachable components are drawn', () => {
  const range = { start: { line: 0, character: 0 }, end: { line: 0, character: 1 } };
  const graph: ComponentGraph = {
    uri: 'file:///x.ded',
    version: 1,
    hasErrors: false,
    components: [
      { name: 'a<b', kind: 'parallel', class: 'parallel', summary: '"x" & y', range },
      { name: 'lonely', kind: 'sequential', class: 'sequential', summary: '', range },
    ],
    edges: [{ from: 'a<b', to: 'a<b', relations: ['tick'] }],
  };
  const svg = graphSvg(graph);
  assert.ok(svg.includes('data-name="a&lt;b"') && !svg.includes('a<b'));
  assert.ok(svg.includes('&quot;x&quot; &amp; y'));
  assert.match(svg, /data-relations="tick"><path d="M [\d.]+ [\d.]+ C/);
  assert.ok(svg.includes('data-name="lonely"'));
  assert.ok(!svg.includes('clients'), 'no clients without inputs or outputs');
  assert.equal(isComponentGraph(null), false);
  assert.equal(isComponentGraph({ components: [] }), false);
});

test('every command extension.ts registers is contributed in package.json, and the other way round', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(extension, 'package.json'), 'utf8'));
  const contributed = new Set<string>(pkg.contributes.commands.map((c: { command: string }) => c.command));
  const source = fs.readFileSync(path.join(extension, 'src', 'extension.ts'), 'utf8');
  const registered = new Set<string>(
    [...source.matchAll(/registerCommand\(\s*(?:'([^']+)'|(CANCEL_RUN_COMMAND))/g)].map((m) => m[1] ?? CANCEL_RUN_COMMAND),
  );
  assert.deepEqual([...registered].sort(), [...contributed].sort());
  assert.ok(registered.has('compart.showGraph') && registered.has(CANCEL_RUN_COMMAND));
  // The webview asks the server for the graph with the method the server registers.
  const lib = fs.readFileSync(path.join(repo, 'lsp/src/handlers/graph.rs'), 'utf8');
  const method = /pub const METHOD: &str = "([^"]+)"/.exec(lib)![1];
  assert.ok(source.includes(`sendRequest('${method}'`), method);
  // Runs go through the middleware that lets the status item cancel them.
  assert.match(source, /executeCommand: \(command, args, next\) =>/);
});
