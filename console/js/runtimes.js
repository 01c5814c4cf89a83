// @ts-check
// The runtimes: their names and files, what a new function or a playground session starts
// from, and what this server said it has (GET /v1/runtimes, fetched once after sign-in).

import { clear, h } from './dom.js';

/** @typedef {'python' | 'javascript' | 'typescript'} Runtime */

/** @type {readonly Runtime[]} */
export const RUNTIMES = ['python', 'javascript', 'typescript'];

/** @type {Record<string, string>} */
export const RUNTIME_LABELS = { python: 'Python', javascript: 'JavaScript', typescript: 'TypeScript' };

/** The file name the editor gives a runtime's code (so Monaco picks its language). */
/** @type {Record<string, string>} */
export const RUNTIME_FILES = { python: 'main.py', javascript: 'index.js', typescript: 'index.ts' };

/**
 * The seed's hello examples: what a new function or a playground session starts from.
 * @type {Record<string, string>}
 */
export const TEMPLATES = {
  python: [
    'def handler(event):',
    '    name = event.get("name", "World")',
    '    return {',
    '        "statusCode": 200,',
    '        "headers": {"content-type": "application/json"},',
    '        "body": f\'{{"message": "Hello, {name}!"}}\',',
    '    }',
    '',
  ].join('\n'),
  javascript: [
    'export async function handler(event) {',
    '  const name = event?.name || "World";',
    '  return {',
    '    statusCode: 200,',
    '    headers: { "content-type": "application/json" },',
    '    body: JSON.stringify({ message: `Hello, ${name}!` }),',
    '  };',
    '}',
    '',
  ].join('\n'),
  typescript: [
    'interface Event {',
    '  name?: string;',
    '}',
    '',
    'export async function handler(event: Event) {',
    '  const name = event?.name || "World";',
    '  return {',
    '    statusCode: 200,',
    '    headers: { "content-type": "application/json" },',
    '    body: JSON.stringify({ message: `Hello, ${name}!` }),',
    '  };',
    '}',
    '',
  ].join('\n'),
};

/** The event a test panel or the playground starts with. */
export const DEFAULT_EVENT = '{\n  "name": "Ada"\n}\n';

/** @typedef {{name: string, available: boolean, version?: string | null}} RuntimeInfo */

/** What /v1/runtimes said (null until then or if it failed). @type {RuntimeInfo[] | null} */
let runtimeInfo = null;

/**
 * Keeps what GET /v1/runtimes answered (or null when it failed).
 * @param {{runtimes?: RuntimeInfo[]} | null} answer
 */
export function setRuntimeInfo(answer) {
  runtimeInfo = (answer && answer.runtimes) || null;
}

/**
 * Fills a <select> with the runtimes, each with its version or why it cannot be chosen.
 * @param {HTMLSelectElement} select
 * @param {string} selected
 */
export function runtimeOptions(select, selected) {
  clear(select);
  for (const name of RUNTIMES) {
    const info = runtimeInfo && runtimeInfo.find((r) => r.name === name);
    let label = RUNTIME_LABELS[name];
    if (info && info.available && info.version) {
      label += name === 'python' ? ` (CPython ${info.version})` : ` (Bun ${info.version})`;
    } else if (info && !info.available) {
      label += ' (not available on this server)';
    }
    select.append(h('option', { value: name, selected: name === selected, disabled: info && !info.available }, label));
  }
  select.value = selected;
}
