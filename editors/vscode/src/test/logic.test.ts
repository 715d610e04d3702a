import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as os from 'os';
import * as path from 'path';
import { describeRun, initializationOptions, resolveServerPath, serverCommand } from '../logic';

test('the default server is compart on PATH', () => {
  assert.deepEqual(serverCommand({}), { command: 'compart', args: ['lsp'] });
  assert.deepEqual(initializationOptions(serverCommand({})), {});
});

test('configured paths are expanded', () => {
  assert.equal(resolveServerPath('~/bin/compart', undefined), path.join(os.homedir(), 'bin/compart'));
  assert.equal(resolveServerPath('${workspaceFolder}/target/debug/compart', '/w'), '/w/target/debug/compart');
  assert.equal(resolveServerPath('target/debug/compart', '/w'), '/w/target/debug/compart');
  assert.equal(resolveServerPath('  ', '/w'), 'compart');
  const cmd = serverCommand({ path: '/opt/compart', extraArgs: ['--verbose'] });
  assert.deepEqual(cmd, { command: '/opt/compart', args: ['lsp', '--verbose'] });
  assert.deepEqual(initializationOptions(cmd), { compartPath: '/opt/compart' });
});

test('run results become one message', () => {
  const ok = describeRun('run', {
    command: 'compart.run', exitCode: 0, success: true,
    summary: 'throughput: 12000 facts/s\nlatency p50 1.2 ms', output: [],
  });
  assert.deepEqual(ok, { ok: true, message: 'Local cluster finished: throughput: 12000 facts/s · latency p50 1.2 ms' });
  const bad = describeRun('simulate', { command: 'compart.simulate', exitCode: 1, success: false, summary: 'invariant no_extra_votes violated at tick 12', output: [] });
  assert.equal(bad.ok, false);
  assert.match(bad.message, /Simulation failed \(exit 1\): invariant no_extra_votes violated/);
  assert.equal(describeRun('run', null).ok, false);
});
