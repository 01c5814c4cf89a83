// Starts the real `ignis` debug binary for a browser test and stops it afterwards.
//
// The console files under test are the ones built into the binary: IGNIS_CONSOLE_DIR is
// removed from the server's environment (set IGNIS_CONSOLE_TEST_FROM_DISK=1 to test the
// files in console/ without a rebuild while working on them).

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
// Where cargo built it: `CARGO_TARGET_DIR` when set (relative to the repository), as
// cargo itself reads it.
export const BINARY = path.join(path.resolve(REPO, process.env.CARGO_TARGET_DIR || 'target'), 'debug', 'ignis');

const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 15_000;

/**
 * Starts `ignis serve --listen 127.0.0.1:0 --data <tmp>` (with `--token` when given) and
 * answers once it printed `ignis listening on URL`.
 */
export async function startServer({ token } = {}) {
  if (!existsSync(BINARY)) {
    throw new Error(`${BINARY} does not exist: build it first with \`cargo build --bin ignis\` (make test-console does).`);
  }
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'ignis-console-test-'));
  const args = ['serve', '--listen', '127.0.0.1:0', '--data', dataDir];
  if (token) args.push('--token', token);
  const env = { ...process.env };
  delete env.IGNIS_CONSOLE_DIR;
  delete env.IGNIS_TOKEN;
  if (process.env.IGNIS_CONSOLE_TEST_FROM_DISK) env.IGNIS_CONSOLE_DIR = path.join(REPO, 'console');

  const child = spawn(BINARY, args, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const keep = (s) => (s.length > 20_000 ? s.slice(-20_000) : s);
  child.stderr.setEncoding('utf8');
  child.stdout.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    stderr = keep(stderr + d);
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

  let url;
  try {
    url = await new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`ignis serve did not print "ignis listening on" within ${START_TIMEOUT_MS / 1000} s\nstdout:\n${stdout}\nstderr:\n${stderr}`)),
        START_TIMEOUT_MS,
      );
      child.stdout.on('data', (d) => {
        stdout = keep(stdout + d);
        const m = stdout.match(/ignis listening on (http:\/\/[^\s]+)/);
        if (m) {
          clearTimeout(timer);
          resolve(m[1].replace(/\/$/, ''));
        }
      });
      child.once('error', (e) => {
        clearTimeout(timer);
        reject(new Error(`cannot start ${BINARY}: ${e.message}`));
      });
      exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`ignis serve exited (${code ?? signal}) before listening\nstderr:\n${stderr}`));
      });
    });
  } catch (e) {
    child.kill('SIGKILL');
    await rm(dataDir, { recursive: true, force: true });
    throw e;
  }

  /** Calls the API the way a script would: answers {status, headers, json, text}. */
  async function api(method, p, body, { auth = token } = {}) {
    const headers = {};
    if (auth) headers.authorization = `Bearer ${auth}`;
    let payload;
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = typeof body === 'string' ? body : JSON.stringify(body);
    }
    const resp = await fetch(url + p, { method, headers, body: payload });
    const text = await resp.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      // Not JSON (an invoke may answer anything).
    }
    return { status: resp.status, headers: resp.headers, json, text };
  }

  /** Creates a function and waits for its deploy check; fails loudly if it is not ready. */
  async function createFunction(spec) {
    const r = await api('POST', '/v1/functions?wait=true', spec);
    if (r.status !== 201) throw new Error(`creating ${spec.name} answered ${r.status}: ${r.text}`);
    if (r.json.state !== 'ready' && !spec.allowError) throw new Error(`${spec.name} is ${r.json.state}: ${r.json.state_reason}`);
    return r.json;
  }

  async function stop() {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    await rm(dataDir, { recursive: true, force: true });
  }

  return { url, token, dataDir, api, createFunction, stop, stderr: () => stderr };
}
