// @ts-check
// What the console sends back of a function's settings. GET /v1/functions/{name} (and the
// answer of a create or an update) carries `spec`: the settings in exactly the shape PUT
// accepts, without the code (an update without code keeps it), with the fields that follow
// a server default left out and named in `defaulted`. So the console copies no server
// knowledge: it sends `spec` back with its changes.

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
 * @property {string} [isolation] `process` or `microvm`
 * @property {Record<string, string>} [env]
 * @property {Array<Record<string, unknown>>} [schedules]
 * @property {string} state
 * @property {string | null} [state_reason]
 * @property {number} version
 * @property {number | null} [active_version]
 * @property {(import('./format.js').LoadError & {version: number}) | null} [deploy_error]
 * @property {{busy?: number, idle?: number, starting?: number}} [instances]
 * @property {Record<string, unknown>} [spec] the settings as PUT takes them (GET, create and update answers)
 * @property {string[]} [defaulted] the settings that follow a server default, left out of `spec`
 */

/**
 * An update body that keeps every setting of `fn` except `changes` (and keeps its code).
 * @param {FunctionView} fn
 * @param {Record<string, unknown>} changes
 * @returns {Record<string, unknown>}
 */
export function specBody(fn, changes) {
  return Object.assign({}, fn.spec || {}, changes);
}
