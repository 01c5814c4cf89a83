// @ts-check
// The runtimes: their names and files, what a new function or a playground session starts
// from, and what this server said it has (GET /v1/runtimes, fetched once after sign-in,
// and again by the Runtimes page): its interpreters and its isolation tiers.

import { api, errMessage } from './api.js';
import { clear, h } from './dom.js';
import { errorBox, pageHeader } from './widgets.js';

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

/** @typedef {{name: string, available: boolean, version?: string | null, path?: string | null, error?: string | null}} RuntimeInfo */

/**
 * An isolation tier as /v1/runtimes describes it.
 * @typedef {{available: boolean, reason?: string, accelerator?: string, guest_kernel?: string, snapshots?: boolean, pool?: number}} TierInfo
 */

/** What /v1/runtimes said (null until then or if it failed). @type {RuntimeInfo[] | null} */
let runtimeInfo = null;
/** The isolation tiers /v1/runtimes listed (null until then or if it failed). @type {Record<string, TierInfo> | null} */
let tierInfo = null;

/**
 * Keeps what GET /v1/runtimes answered (or null when it failed).
 * @param {{runtimes?: RuntimeInfo[], isolation?: Record<string, TierInfo>} | null} answer
 */
export function setRuntimeInfo(answer) {
  runtimeInfo = (answer && answer.runtimes) || null;
  tierInfo = (answer && answer.isolation) || null;
}

/** The isolation tiers a function may ask for, with their labels. */
export const ISOLATION_LABELS = {
  process: 'process (sandboxed process)',
  microvm: 'microvm (own virtual machine)',
};

/**
 * Why the server said the microvm tier is unavailable ('' when it is available or the
 * server did not say).
 * @returns {string}
 */
export function microvmUnavailable() {
  const info = tierInfo && tierInfo.microvm;
  return info && !info.available ? info.reason || 'unavailable on this server' : '';
}

/**
 * Fills a <select> with the isolation tiers; a tier the server said it lacks is disabled
 * (unless the function is in it already), with the server's reason as its title and the
 * select's.
 * @param {HTMLSelectElement} select
 * @param {string} selected
 */
export function isolationOptions(select, selected) {
  clear(select);
  const why = microvmUnavailable();
  select.title = why ? 'microvm: ' + why : '';
  for (const [name, label] of Object.entries(ISOLATION_LABELS)) {
    const info = tierInfo && tierInfo[name];
    const unavailable = !!info && !info.available;
    const reason = unavailable ? info.reason || 'unavailable on this server' : '';
    select.append(h('option', {
      value: name,
      selected: name === selected,
      disabled: unavailable && name !== selected,
      title: reason || undefined,
      testid: 'isolation-' + name,
    }, unavailable ? `${label} — unavailable` : label));
  }
  select.value = selected;
}

/**
 * The isolation tiers as a list: each with whether this server has it, and its
 * accelerator and guest kernel or why it is unavailable.
 * @returns {HTMLElement}
 */
export function isolationSummary() {
  const list = h('dl', { class: 'facts', testid: 'isolation-tiers' });
  if (!tierInfo) {
    list.append(h('dt', {}, 'Isolation'), h('dd', {}, 'unknown (the server did not say)'));
    return list;
  }
  for (const [name, label] of Object.entries(ISOLATION_LABELS)) {
    const info = tierInfo[name];
    if (!info) continue;
    let text = info.available ? 'available' : 'unavailable: ' + (info.reason || 'no reason given');
    if (info.available && info.accelerator) {
      const pool = info.pool ? `, ${info.pool} restored ahead per kind` : '';
      text += ` (${info.accelerator}, guest kernel ${info.guest_kernel || '?'}${info.snapshots ? ', snapshots' : ''}${pool})`;
    }
    list.append(h('dt', {}, label), h('dd', { testid: 'isolation-tier-' + name }, text));
  }
  return list;
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

/**
 * The Runtimes page: the interpreters and the isolation tiers this server has, asked
 * afresh.
 * @param {import('./page.js').Page} pg
 * @param {HTMLElement} app
 */
export async function runtimesPage(pg, app) {
  document.title = 'Runtimes · Ignis';
  const err = errorBox('runtimes-error');
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  app.append(pageHeader('Runtimes'), err.el, body);
  try {
    setRuntimeInfo(await api('GET', '/v1/runtimes'));
  } catch (e) {
    if (pg.alive) err.show(errMessage(e));
  }
  if (!pg.alive) return;
  const runtimes = h('dl', { class: 'facts', testid: 'runtime-list' });
  for (const r of runtimeInfo || []) {
    const text = r.available ? `${r.version || ''} ${r.path || ''}`.trim() : 'unavailable: ' + (r.error || 'not found');
    runtimes.append(h('dt', {}, RUNTIME_LABELS[r.name] || r.name), h('dd', {}, text));
  }
  clear(body).append(
    h('section', { class: 'card' }, h('h2', { class: 'sub' }, 'Interpreters'), runtimes),
    h('section', { class: 'card' }, h('h2', { class: 'sub' }, 'Isolation tiers'),
      h('p', { class: 'muted' }, 'A function chooses its tier in its configuration (isolation).'),
      isolationSummary()));
}
