// @ts-check
// The API client: the bearer token kept for this tab, calls that answer parsed JSON, and
// errors as the API states them ({"error": {"code", "message"}}).

import { statusLine } from './format.js';

const TOKEN_KEY = 'ignis.token';

/** An error the API (or the way to it) answered, with its stable code. */
export class ApiError extends Error {
  /**
   * @param {number} status the HTTP status (0 when the server could not be reached)
   * @param {string} code
   * @param {string} message
   * @param {Record<string, any>} [detail] the whole error object (for `field` and such)
   */
  constructor(status, code, message, detail) {
    super(message);
    this.status = status;
    this.code = code;
    this.detail = detail || {};
  }
}

/** The token this tab signed in with ('' when none). */
export function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

/**
 * Keeps the token for this tab.
 * @param {string} value
 */
export function storeToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

/** Forgets the token (storage may be unavailable: there is nothing to forget then). */
export function forgetToken() {
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Nothing stored.
  }
}

/** @type {(message: string) => void} */
let unauthorized = () => {};

/**
 * What a 401 does (the sign-in module shows the login prompt).
 * @param {(message: string) => void} fn
 */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

/**
 * @param {Record<string, string>} extra
 * @returns {Record<string, string>}
 */
function authHeaders(extra) {
  const headers = Object.assign({}, extra);
  const t = token();
  if (t) headers.authorization = 'Bearer ' + t;
  return headers;
}

/**
 * The ApiError an unsuccessful answer carries (or its status line when it is not ours).
 * @param {Response} resp
 */
export async function errorFrom(resp) {
  let text = '';
  try {
    text = await resp.text();
  } catch {
    // The body could not be read; the status line still says something.
  }
  try {
    const j = JSON.parse(text);
    if (j && j.error && typeof j.error.message === 'string') {
      return new ApiError(resp.status, j.error.code || 'error', j.error.message, j.error);
    }
  } catch {
    // Not JSON: fall through to the status line.
  }
  const snippet = text.trim().slice(0, 300);
  return new ApiError(
    resp.status,
    'http_' + resp.status,
    `The server answered ${statusLine(resp.status)}${snippet ? ': ' + snippet : ''}`,
  );
}

/**
 * @typedef {object} CallOptions
 * @property {string} [accept] the Accept header (JSON by default)
 * @property {AbortSignal} [signal]
 * @property {boolean} [allow401] answer a 401 instead of showing the login prompt
 * @property {Record<string, string>} [headers] more request headers
 */

/**
 * Calls the API. Answers the parsed JSON (null for 204); a 401 shows the login prompt and
 * throws. A string body is sent as it is, anything else as JSON.
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @param {CallOptions} [opts]
 * @returns {Promise<any>}
 */
export async function api(method, path, body, opts) {
  const resp = await send(method, path, body, opts);
  if (!resp.ok) throw await errorFrom(resp);
  if (resp.status === 204) return null;
  const text = await resp.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(resp.status, 'invalid_json', 'The server answered something that is not JSON.');
  }
}

/**
 * Calls the API and answers the Response itself, whatever its status but 401 (which shows
 * the login prompt and throws, unless `allow401`).
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @param {CallOptions} [opts]
 * @returns {Promise<Response>}
 */
export async function apiRaw(method, path, body, opts) {
  return send(method, path, body, opts);
}

/**
 * @param {string} method
 * @param {string} path
 * @param {unknown} body
 * @param {CallOptions} [opts]
 */
async function send(method, path, body, opts) {
  const o = opts || {};
  const headers = authHeaders({ ...(o.headers || {}), accept: o.accept || 'application/json' });
  /** @type {string | undefined} */
  let payload;
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = typeof body === 'string' ? body : JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: payload, signal: o.signal, cache: 'no-store' });
  } catch (e) {
    if (e instanceof Error && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'Cannot reach the Ignis server (' + errMessage(e) + ').');
  }
  if (resp.status === 401 && !o.allow401) {
    const err = await errorFrom(resp);
    unauthorized(err.message);
    throw err;
  }
  return resp;
}

/**
 * Whether `e` is the API saying 401 (the login prompt is up: nothing else to show).
 * @param {unknown} e
 */
export function isUnauthorized(e) {
  return e instanceof ApiError && e.status === 401;
}

/**
 * Whether `e` is an API answer with this status.
 * @param {unknown} e
 * @param {number} status
 * @returns {e is ApiError}
 */
export function isStatus(e, status) {
  return e instanceof ApiError && e.status === status;
}

/**
 * The message of anything thrown.
 * @param {unknown} e
 */
export function errMessage(e) {
  if (e instanceof Error && e.message) return e.message;
  return String(e);
}
