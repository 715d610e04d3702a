// The VS Code client: starts `compart lsp`, and offers Run / Simulate / Restart commands. Every
// language feature (diagnostics, hover, inlay hints, code actions, lenses...) comes from the server.

import * as vscode from 'vscode';
import { LanguageClient, LanguageClientOptions, ServerOptions } from 'vscode-languageclient/node';
import { describeRun, initializationOptions, serverCommand } from './logic';

let client: LanguageClient | undefined;
let output: vscode.OutputChannel | undefined;

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
  await editor.document.save();
  // vscode-languageclient registers the server's commands; code lenses call them too.
  const result = await vscode.commands.executeCommand(`compart.${kind}`, editor.document.uri.toString());
  const { ok, message } = describeRun(kind, result);
  if (ok) {
    void vscode.window.showInformationMessage(message);
  } else {
    void vscode.window.showErrorMessage(message);
  }
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  context.subscriptions.push(
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
