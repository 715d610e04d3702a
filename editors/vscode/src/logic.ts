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
  const status = result.success ? 'finished' : `failed (exit ${result.exitCode ?? 'signal'})`;
  return { ok: result.success, message: summary ? `${what} ${status}: ${summary}` : `${what} ${status}` };
}
