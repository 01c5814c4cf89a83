// @ts-check
// What the console knows of the server's function spec, kept in this one module.
//
// Issue 13 point 6: GET /v1/functions/{name} is to answer the spec in exactly the shape PUT
// accepts (a defaulted field saying so). Until it does, the console copies two pieces of
// server knowledge here: the list of spec fields (crates/core/src/spec.rs) and the default
// of max_async_concurrency. When point 6 lands, specBody becomes "the spec GET gave, with
// the changes" and both copies go.

/**
 * A function as GET /v1/functions/{name} answers it (the fields the console reads; the
 * spec's other fields travel through specBody untouched).
 * @typedef {object} FunctionView
 * @property {string} name
 * @property {string} runtime
 * @property {string} [code]
 * @property {string | null} [package_sha256] set when the function is a package of several files
 * @property {Array<{path: string, size: number, sha256: string}>} [files] a package's files
 * @property {string} [handler]
 * @property {number} memory_mb
 * @property {number} timeout_secs
 * @property {number} max_instances
 * @property {number} concurrency
 * @property {string} [network]
 * @property {Record<string, string>} [env]
 * @property {Array<Record<string, unknown>>} [schedules]
 * @property {string} state
 * @property {string | null} [state_reason]
 * @property {number} version
 * @property {number | null} [active_version]
 * @property {(import('./format.js').LoadError & {version: number}) | null} [deploy_error]
 * @property {{busy?: number, idle?: number, starting?: number}} [instances]
 */

// The fields a create or update body may carry (see crates/core/src/spec.rs).
const SPEC_FIELDS = ['runtime', 'code', 'handler', 'timeout_secs', 'memory_mb', 'vcpus', 'max_instances',
  'min_instances', 'concurrency', 'idle_timeout_secs', 'env', 'network', 'http', 'retry', 'on_success',
  'on_failure', 'max_async_concurrency', 'schedules'];
const SCHEDULE_FIELDS = ['cron', 'timezone', 'event', 'enabled', 'catch_up'];

/**
 * The server's default max_async_concurrency (crates/core/src/spec.rs): half of what the
 * instances can run at once, at least 1.
 * @param {FunctionView} fn
 */
function defaultAsyncConcurrency(fn) {
  return Math.max(1, Math.floor((fn.max_instances * fn.concurrency) / 2));
}

/**
 * An update body that keeps every setting of `fn` except `changes`.
 * @param {FunctionView} fn
 * @param {Record<string, unknown>} changes
 * @returns {Record<string, unknown>}
 */
export function specBody(fn, changes) {
  const shown = /** @type {Record<string, unknown>} */ (/** @type {unknown} */ (fn));
  /** @type {Record<string, unknown>} */
  const body = {};
  for (const k of SPEC_FIELDS) {
    if (shown[k] !== undefined && shown[k] !== null) body[k] = shown[k];
  }
  // GET shows the effective value; the default (which follows max_instances and
  // concurrency) is left out so that it keeps following them.
  if (body.max_async_concurrency === defaultAsyncConcurrency(fn)) delete body.max_async_concurrency;
  if (Array.isArray(fn.schedules)) {
    body.schedules = fn.schedules.map((s) => {
      /** @type {Record<string, unknown>} */
      const out = {};
      for (const k of SCHEDULE_FIELDS) if (s[k] !== undefined && s[k] !== null) out[k] = s[k];
      return out;
    });
  }
  return Object.assign(body, changes);
}
