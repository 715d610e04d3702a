// Extension logic that does not need VS Code, so node's test runner can check it.

import * as os from 'os';
import * as path from 'path';

export interface ServerSettings {
  /** `compart.server.path`: the compart executable. */
  path?: string;
  /** `compart.server.extraArgs`: arguments after `lsp`. */
  extraArgs?: string[];
}

export interface ServerCommand {
  command: string;
  args: string[];
}

/** Expand `~` and `${workspaceFolder}` in a configured path; relative paths are resolved against the workspace. */
export function resolveServerPath(configured: string | undefined, workspaceFolder: string | undefined): string {
  let p = (configured ?? '').trim();
  if (p === '') {
    return 'compart';
  }
  if (p === '~' || p.startsWith('~/')) {
    p = path.join(os.homedir(), p.slice(1));
  }
  if (workspaceFolder) {
    p = p.split('${workspaceFolder}').join(workspaceFolder);
  }
  // A bare name is looked up on PATH; a relative path with a slash is relative to the workspace.
  if (!path.isAbsolute(p) && p.includes('/') && workspaceFolder) {
    p = path.join(workspaceFolder, p);
  }
  return p;
}

/** How to start the server: `<path> lsp <extraArgs...>`. */
export function serverCommand(settings: ServerSettings, workspaceFolder?: string): ServerCommand {
  const command = resolveServerPath(settings.path, workspaceFolder);
  const extra = (settings.extraArgs ?? []).filter((a) => typeof a === 'string');
  return { command, args: ['lsp', ...extra] };
}

/** The initializationOptions the server reads (it runs `compart run|sim` with compartPath). */
export function initializationOptions(command: ServerCommand): { compartPath?: string } {
  return command.command === 'compart' ? {} : { compartPath: command.command };
}

/** Result of workspace/executeCommand for compart.run / compart.simulate (see lsp/src/handlers/commands.rs). */
export interface RunResult {
  command: string;
  exitCode: number | null;
  success: boolean;
  /** Stopped from the progress UI or the status item. */
  cancelled?: boolean;
  /** The buffer version that ran (null: the file on disk, the program was not open). */
  version?: number | null;
  summary: string;
  output: string[];
}

export function isRunResult(value: unknown): value is RunResult {
  const v = value as RunResult;
  return typeof v === 'object' && v !== null && typeof v.success === 'boolean' && typeof v.summary === 'string';
}

/** One line for a notification: what ran, how it ended, and the figures or the violation. */
export function describeRun(kind: 'run' | 'simulate', result: unknown): { ok: boolean; message: string } {
  const what = kind === 'run' ? 'Local cluster' : 'Simulation';
  if (!isRunResult(result)) {
    return { ok: false, message: `${what}: the server returned no result` };
  }
  const summary = result.summary.split('\n').map((l) => l.trim()).filter((l) => l !== '').join(' · ');
  const status = result.cancelled
    ? 'cancelled'
    : result.success
      ? 'finished'
      : `failed (exit ${result.exitCode ?? 'signal'})`;
  return { ok: result.success, message: summary ? `${what} ${status}: ${summary}` : `${what} ${status}` };
}

/**
 * The deployment file beside a program, as the server finds it (`deployment::beside`: the
 * program's path with its extension replaced by `.toml`), as a URI string.
 */
export function deploymentBeside(programUri: string): string {
  const slash = programUri.lastIndexOf('/');
  const dot = programUri.lastIndexOf('.');
  const stem = dot > slash + 1 ? programUri.slice(0, dot) : programUri;
  return `${stem}.toml`;
}

// ---------------------------------------------------------------------------------------------
// The status bar item while clusters run: one item for every run the extension started, a click
// cancels them (the request is cancelled: `$/cancelRequest`, and the server stops the cluster).

/** What the extension needs of a `vscode.StatusBarItem`. */
export interface StatusItemLike {
  text: string;
  tooltip?: string | unknown;
  command?: string | unknown;
  show(): void;
  hide(): void;
}

export const CANCEL_RUN_COMMAND = 'compart.cancelRun';

interface Running {
  kind: 'run' | 'simulate';
  file: string;
  cancel: () => void;
}

export class RunStatus {
  private readonly runs = new Map<number, Running>();
  private next = 0;

  constructor(private readonly item: StatusItemLike) {
    this.item.command = CANCEL_RUN_COMMAND;
    this.render();
  }

  /** A run started; `cancel` stops it. Returns its id for `finish`. */
  start(kind: 'run' | 'simulate', file: string, cancel: () => void): number {
    const id = this.next++;
    this.runs.set(id, { kind, file, cancel });
    this.render();
    return id;
  }

  finish(id: number): void {
    this.runs.delete(id);
    this.render();
  }

  /** Cancel every run (the item's click). The runs end through `finish` when their requests do. */
  cancelAll(): number {
    const n = this.runs.size;
    for (const run of this.runs.values()) {
      run.cancel();
    }
    return n;
  }

  get running(): number {
    return this.runs.size;
  }

  private render(): void {
    const runs = [...this.runs.values()];
    if (runs.length === 0) {
      this.item.hide();
      return;
    }
    const what = (r: Running) => `${r.kind === 'run' ? 'cluster' : 'simulation'} of ${r.file}`;
    this.item.text = runs.length === 1 ? `$(sync~spin) compart: ${what(runs[0])}` : `$(sync~spin) compart: ${runs.length} runs`;
    this.item.tooltip = `${runs.map(what).join('\n')}\nClick to stop ${runs.length === 1 ? 'it' : 'them'}`;
    this.item.show();
  }
}

// ---------------------------------------------------------------------------------------------
// The component graph webview: the server's `compart/graph` answer drawn as SVG (no library, no
// network: the webview's content security policy allows only its own inline script).

export interface GraphComponent {
  name: string;
  kind: 'parallel' | 'partitioned' | 'sequential' | string;
  class: string;
  summary: string;
  range: { start: { line: number; character: number }; end: { line: number; character: number } };
}

export interface GraphEdge {
  /** null: the clients. */
  from: string | null;
  to: string | null;
  relations: string[];
}

export interface ComponentGraph {
  uri: string;
  version: number;
  hasErrors: boolean;
  components: GraphComponent[];
  edges: GraphEdge[];
}

export function isComponentGraph(value: unknown): value is ComponentGraph {
  const g = value as ComponentGraph;
  return typeof g === 'object' && g !== null && Array.isArray(g.components) && Array.isArray(g.edges);
}

export const CLIENTS = '(clients)';

export interface Box {
  name: string;
  x: number;
  y: number;
  width: number;
  height: number;
}

const BOX_W = 180;
const BOX_H = 54;
const GAP_X = 140;
const GAP_Y = 50;
const MARGIN = 30;

/**
 * Boxes in columns: the clients first, then each component one column right of the first column
 * that sends to it (breadth first from the clients' inputs); components nothing reaches start a
 * column of their own after the rest.
 */
export function layout(graph: ComponentGraph): { boxes: Map<string, Box>; width: number; height: number } {
  const column = new Map<string, number>();
  const hasClients = graph.edges.some((e) => e.from === null || e.to === null);
  const queue: string[] = [];
  if (hasClients) {
    column.set(CLIENTS, 0);
    queue.push(CLIENTS);
  }
  const key = (c: string | null) => c ?? CLIENTS;
  for (;;) {
    while (queue.length > 0) {
      const at = queue.shift() as string;
      for (const e of graph.edges) {
        const to = key(e.to);
        if (key(e.from) === at && to !== CLIENTS && !column.has(to)) {
          column.set(to, (column.get(at) ?? 0) + 1);
          queue.push(to);
        }
      }
    }
    const unreached = graph.components.find((c) => !column.has(c.name));
    if (!unreached) {
      break;
    }
    column.set(unreached.name, Math.max(0, ...column.values()) + (column.size > 0 ? 1 : 0));
    queue.push(unreached.name);
  }
  const rows = new Map<number, number>();
  const boxes = new Map<string, Box>();
  const names = [...(hasClients ? [CLIENTS] : []), ...graph.components.map((c) => c.name)];
  for (const name of names) {
    const col = column.get(name) ?? 0;
    const row = rows.get(col) ?? 0;
    rows.set(col, row + 1);
    boxes.set(name, { name, x: MARGIN + col * (BOX_W + GAP_X), y: MARGIN + row * (BOX_H + GAP_Y), width: BOX_W, height: BOX_H });
  }
  const width = Math.max(...[...boxes.values()].map((b) => b.x + b.width), 0) + MARGIN;
  const height = Math.max(...[...boxes.values()].map((b) => b.y + b.height), 0) + MARGIN;
  return { boxes, width, height };
}

export function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

const FILL: Record<string, string> = { parallel: '#d9f2d9', partitioned: '#d9e6f2', sequential: '#f9e0c7' };

/** The SVG of a graph: a box per component (name, class), an arrow per channel labelled with its relations. */
export function graphSvg(graph: ComponentGraph): string {
  const { boxes, width, height } = layout(graph);
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse">' +
      '<path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
  );
  const key = (c: string | null) => c ?? CLIENTS;
  for (const e of graph.edges) {
    const from = boxes.get(key(e.from));
    const to = boxes.get(key(e.to));
    if (!from || !to) {
      continue;
    }
    const label = escapeHtml(e.relations.join(', '));
    const relations = escapeHtml(e.relations.join(' '));
    if (from === to) {
      // A component sending to itself: a loop above its box.
      const x = from.x + from.width / 2;
      const y = from.y;
      parts.push(
        `<g class="edge" data-relations="${relations}"><path d="M ${x - 20} ${y} C ${x - 30} ${y - 40}, ${x + 30} ${y - 40}, ${x + 20} ${y}" fill="none" stroke="#555" marker-end="url(#arrow)"/>` +
          `<text x="${x}" y="${y - 34}" font-size="11" text-anchor="middle">${label}</text></g>`,
      );
      continue;
    }
    // Both directions between two boxes: each curve bends to its own side.
    const [x1, y1] = [from.x + from.width / 2, from.y + from.height / 2];
    const [x2, y2] = [to.x + to.width / 2, to.y + to.height / 2];
    const [dx, dy] = [x2 - x1, y2 - y1];
    const length = Math.hypot(dx, dy) || 1;
    const bend = graph.edges.some((o) => key(o.from) === key(e.to) && key(o.to) === key(e.from)) ? 30 : 0;
    const [nx, ny] = [-dy / length, dx / length];
    const [cx, cy] = [(x1 + x2) / 2 + nx * bend, (y1 + y2) / 2 + ny * bend];
    // From border to border (boxes are approximated by their half-diagonal).
    const trim = (px: number, py: number, b: Box) => {
      const [vx, vy] = [cx - px, cy - py];
      const t = Math.min(b.width / 2 / Math.abs(vx || 1e-9), b.height / 2 / Math.abs(vy || 1e-9), 1);
      return [px + vx * t, py + vy * t];
    };
    const [sx, sy] = trim(x1, y1, from);
    const [ex, ey] = trim(x2, y2, to);
    const [lx, ly] = [(sx + 2 * cx + ex) / 4, (sy + 2 * cy + ey) / 4 - 4];
    parts.push(
      `<g class="edge" data-relations="${relations}"><path d="M ${sx.toFixed(1)} ${sy.toFixed(1)} Q ${cx.toFixed(1)} ${cy.toFixed(1)} ${ex.toFixed(1)} ${ey.toFixed(1)}" fill="none" stroke="#555" marker-end="url(#arrow)"/>` +
        `<text x="${lx.toFixed(1)}" y="${ly.toFixed(1)}" font-size="11" text-anchor="middle">${label}</text></g>`,
    );
  }
  for (const box of boxes.values()) {
    const component = graph.components.find((c) => c.name === box.name);
    const name = escapeHtml(box.name);
    if (!component) {
      parts.push(
        `<g class="clients"><ellipse cx="${box.x + box.width / 2}" cy="${box.y + box.height / 2}" rx="${box.width / 2}" ry="${box.height / 2}" fill="none" stroke="#888" stroke-dasharray="4 3"/>` +
          `<text x="${box.x + box.width / 2}" y="${box.y + box.height / 2 + 4}" font-size="13" text-anchor="middle">clients</text></g>`,
      );
      continue;
    }
    const fill = FILL[component.kind] ?? '#eeeeee';
    parts.push(
      `<g class="component" data-name="${name}" data-line="${component.range.start.line}" data-character="${component.range.start.character}" style="cursor:pointer">` +
        `<title>${escapeHtml(component.summary)}</title>` +
        `<rect x="${box.x}" y="${box.y}" width="${box.width}" height="${box.height}" rx="8" fill="${fill}" stroke="#444"/>` +
        `<text x="${box.x + box.width / 2}" y="${box.y + 22}" font-size="14" font-weight="bold" text-anchor="middle">${name}</text>` +
        `<text x="${box.x + box.width / 2}" y="${box.y + 40}" font-size="12" text-anchor="middle">${escapeHtml(component.class)}</text></g>`,
    );
  }
  parts.push('</svg>');
  return parts.join('\n');
}

/**
 * The webview's page: the SVG and a script that asks the extension to show a component's source
 * when its box is clicked. `nonce` is the only script allowed (content security policy).
 */
export function graphHtml(graph: ComponentGraph, file: string, nonce: string, cspSource: string): string {
  const warning = graph.hasErrors
    ? '<p class="warning">The program has errors: this is the graph of what parsed.</p>'
    : '';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src ${cspSource} data:; style-src 'unsafe-inline'; script-src 'nonce-${nonce}';">
<title>compart graph: ${escapeHtml(file)}</title>
<style>
  body { background: #ffffff; color: #111; }
  .warning { color: #a00; }
  .legend span { display: inline-block; padding: 2px 8px; margin-right: 6px; border: 1px solid #444; border-radius: 6px; }
</style>
</head>
<body>
<h3>${escapeHtml(file)} <small>(version ${graph.version})</small></h3>
${warning}
<p class="legend"><span style="background:${FILL.parallel}">parallel</span><span style="background:${FILL.partitioned}">partitioned</span><span style="background:${FILL.sequential}">sequential</span> arrows: channels, labelled with the relations they carry</p>
${graphSvg(graph)}
<script nonce="${nonce}">
  const vscode = acquireVsCodeApi();
  for (const g of document.querySelectorAll('g.component')) {
    g.addEventListener('click', () => vscode.postMessage({
      command: 'reveal', line: Number(g.dataset.line), character: Number(g.dataset.character) }));
  }
</script>
</body>
</html>
`;
}
