// The VS Code client: starts `compart lsp`, and offers Run / Simulate / Restart commands, a status
// item while a run goes (click: stop it) and the component graph in a webview. Every language
// feature (diagnostics, hover, inlay hints, code actions, lenses, the graph's data...) comes from
// the server.

import * as crypto from 'crypto';
import * as path from 'path';
import * as vscode from 'vscode';
import {
  DidCloseTextDocumentNotification,
  DidOpenTextDocumentNotification,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
} from 'vscode-languageclient/node';
import {
  CANCEL_RUN_COMMAND,
  deploymentBeside,
  describeRun,
  graphHtml,
  initializationOptions,
  isComponentGraph,
  RunStatus,
  serverCommand,
} from './logic';

let client: LanguageClient | undefined;
let output: vscode.OutputChannel | undefined;
let runStatus: RunStatus | undefined;

/**
 * The lenses' and commands' runs go through here rather than the default forwarding, so that
 * the status item can cancel the request: the server then stops the cluster.
 */
async function executeRun(command: string, args: unknown[]): Promise<unknown> {
  const kind = command === 'compart.run' ? 'run' : 'simulate';
  const uri = typeof args[0] === 'string' ? args[0] : '';
  const file = path.basename(vscode.Uri.parse(uri).fsPath) || uri;
  const cancel = new vscode.CancellationTokenSource();
  const id = runStatus?.start(kind, file, () => cancel.cancel());
  // The server runs the deployment's buffer when the client syncs it: lend it the open
  // `FILE.toml` (edited or not) for this run; only .ded files are synced otherwise.
  const toml = deploymentBeside(uri);
  const deployment = vscode.workspace.textDocuments.find((d) => d.uri.toString() === toml);
  if (deployment) {
    await client?.sendNotification(DidOpenTextDocumentNotification.type, {
      textDocument: { uri: toml, languageId: 'toml', version: deployment.version, text: deployment.getText() },
    });
  }
  try {
    return await client?.sendRequest(ExecuteCommandRequest.type, { command, arguments: args }, cancel.token);
  } catch (e) {
    if (cancel.token.isCancellationRequested) {
      return { command, exitCode: null, success: false, cancelled: true, summary: '', output: [] };
    }
    throw e;
  } finally {
    if (deployment) {
      await client?.sendNotification(DidCloseTextDocumentNotification.type, { textDocument: { uri: toml } });
    }
    if (id !== undefined) {
      runStatus?.finish(id);
    }
    cancel.dispose();
  }
}

function workspaceFolder(): string | undefined {
  return vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
}

async function startClient(context: vscode.ExtensionContext): Promise<void> {
  const config = vscode.workspace.getConfiguration('compart');
  const command = serverCommand(
    { path: config.get<string>('server.path'), extraArgs: config.get<string[]>('server.extraArgs') },
    workspaceFolder(),
  );
  const serverOptions: ServerOptions = { command: command.command, args: command.args };
  output = output ?? vscode.window.createOutputChannel('compart');
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: 'file', language: 'compart' }, { scheme: 'untitled', language: 'compart' }],
    initializationOptions: initializationOptions(command),
    outputChannel: output,
    middleware: {
      executeCommand: (command, args, next) =>
        command === 'compart.run' || command === 'compart.simulate' ? executeRun(command, args) : next(command, args),
    },
  };
  client = new LanguageClient('compart', 'compart', serverOptions, clientOptions);
  await client.start();
  context.subscriptions.push({ dispose: () => void client?.stop() });
}

/** Run the server-side command (`compart.run` / `compart.simulate`) on the active .ded file. */
async function runOnActiveFile(kind: 'run' | 'simulate'): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!editor || editor.document.languageId !== 'compart') {
    void vscode.window.showWarningMessage('compart: open a .ded file first');
    return;
  }
  // The server runs the buffer as it is (saved or not). vscode-languageclient registers the
  // server's commands; code lenses call them too; both go through `executeRun`.
  const result = await vscode.commands.executeCommand(`compart.${kind}`, editor.document.uri.toString());
  const { ok, message } = describeRun(kind, result);
  if (ok) {
    void vscode.window.showInformationMessage(message);
  } else {
    void vscode.window.showErrorMessage(message);
  }
}

let graphPanel: vscode.WebviewPanel | undefined;
let graphDocument: vscode.Uri | undefined;

/** Ask the server for the graph of `document` and draw it in the panel. */
async function drawGraph(document: vscode.TextDocument): Promise<void> {
  if (!client || !graphPanel) {
    return;
  }
  const graph = await client.sendRequest('compart/graph', { textDocument: { uri: document.uri.toString() } });
  if (!isComponentGraph(graph)) {
    return;
  }
  const nonce = crypto.randomBytes(16).toString('hex');
  graphPanel.title = `Graph: ${path.basename(document.uri.fsPath)}`;
  graphPanel.webview.html = graphHtml(graph, path.basename(document.uri.fsPath), nonce, graphPanel.webview.cspSource);
}

/** compart.showGraph: the active program's component graph, kept up to date while it is edited. */
async function showGraph(context: vscode.ExtensionContext): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!editor || editor.document.languageId !== 'compart') {
    void vscode.window.showWarningMessage('compart: open a .ded file first');
    return;
  }
  graphDocument = editor.document.uri;
  if (!graphPanel) {
    graphPanel = vscode.window.createWebviewPanel('compartGraph', 'compart graph', vscode.ViewColumn.Beside, {
      enableScripts: true,
      localResourceRoots: [],
    });
    graphPanel.onDidDispose(() => (graphPanel = undefined), null, context.subscriptions);
    graphPanel.webview.onDidReceiveMessage(async (message: { command?: string; line?: number; character?: number }) => {
      if (message.command !== 'reveal' || !graphDocument) {
        return;
      }
      const at = new vscode.Position(message.line ?? 0, message.character ?? 0);
      const shown = await vscode.window.showTextDocument(graphDocument, { viewColumn: vscode.ViewColumn.One });
      shown.selection = new vscode.Selection(at, at);
      shown.revealRange(new vscode.Range(at, at), vscode.TextEditorRevealType.InCenter);
    }, null, context.subscriptions);
  } else {
    graphPanel.reveal(vscode.ViewColumn.Beside);
  }
  await drawGraph(editor.document);
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left, 100);
  runStatus = new RunStatus(item);
  let redraw: NodeJS.Timeout | undefined;
  context.subscriptions.push(
    item,
    vscode.commands.registerCommand(CANCEL_RUN_COMMAND, () => runStatus?.cancelAll()),
    vscode.commands.registerCommand('compart.showGraph', () => showGraph(context)),
    vscode.workspace.onDidChangeTextDocument((e) => {
      if (graphPanel && graphDocument && e.document.uri.toString() === graphDocument.toString()) {
        clearTimeout(redraw);
        redraw = setTimeout(() => void drawGraph(e.document), 300);
      }
    }),
    vscode.commands.registerCommand('compart.runFile', () => runOnActiveFile('run')),
    vscode.commands.registerCommand('compart.simulateFile', () => runOnActiveFile('simulate')),
    vscode.commands.registerCommand('compart.restartServer', async () => {
      await client?.stop();
      await startClient(context);
    }),
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (e.affectsConfiguration('compart.server')) {
        await vscode.commands.executeCommand('compart.restartServer');
      }
    }),
  );
  await startClient(context);
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}
