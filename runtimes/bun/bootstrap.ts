// Ignis instance bootstrap for Bun: loads one user module, then serves invocations.
//
// Speaks the host protocol of docs/protocol.md over the socket inherited on --fd. Started
// as `bun bootstrap.ts --fd 3 --marker NONCE`.
//
// What user code writes through console.* and process.stdout/stderr.write while an
// invocation runs is captured into that invocation's logs. The capture is found through
// AsyncLocalStorage, never a global, so that concurrent invocations each keep their own
// logs, event and context.
//
// Handlers follow AWS Lambda's Node.js contract: `(event, context)` returning a value or a
// promise, `(event, context, callback)` answered at the callback, `context.succeed/fail/
// done`, console lines in Lambda's format. A module whose default export has
// `fetch(request, env, ctx)` (the Workers/Bun style) is called with a standard Request,
// and a Response from any handler is answered as Lambda's {statusCode, headers, body}.
// `awslambda.streamifyResponse` handlers, and Responses with a streamed body, send their
// body as it is written (`head` and `chunk` frames before the answer).

import { AsyncLocalStorage } from "node:async_hooks";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import util from "node:util";

type Stream = "stdout" | "stderr";
type Log = { ts: number; stream: Stream; line: string };
type Handler = (...args: unknown[]) => unknown;
// How a handler is called: with the event (Lambda), waiting for its callback when it is
// declared `(event, context, callback)`, with a Request (`export default { fetch }`), or
// with a response stream (`awslambda.streamifyResponse(handler)`).
type Kind = "event" | "callback" | "fetch" | "stream";
type Picked = { handler: Handler; kind: Kind };
// What every call's context shares, read once at load from the environment the host set.
type FunctionInfo = {
  functionName: string;
  functionVersion: string;
  memoryLimitMb: number;
  memoryLimitInMB: string;
  invokedFunctionArn: string;
  logGroupName: string;
  logStreamName: string;
};
type Loaded = Picked & { info: FunctionInfo; logLimit: number; maxResponse: number };

const BOOTSTRAP = import.meta.path;

// The log lines of one invocation, in write order, capped at `limit` bytes of text.
class Capture {
  readonly lines: Log[] = [];
  closed = false; // the answer is built: late writers (timers left behind) go to the real fd
  private used = 0;
  private full = false; // the cap was reached: everything else is dropped
  // Pieces of each stream's unfinished line, joined once when the line ends, so that
  // many small writes without a newline do not copy the line over and over.
  private pending: Record<Stream, string[]> = { stdout: [], stderr: [] };
  private pendingLen: Record<Stream, number> = { stdout: 0, stderr: 0 };
  constructor(
    private readonly limit: number,
    readonly requestId: string,
  ) {}

  write(stream: Stream, text: string) {
    if (this.full) return;
    const done = text.split("\n");
    const last = done.pop()!;
    const pending = this.pending[stream];
    if (done.length > 0) {
      pending.push(done[0]);
      done[0] = pending.join("");
      pending.length = 0;
      this.pendingLen[stream] = 0;
      for (const line of done) this.add(stream, line);
    }
    if (last && !this.full) {
      pending.push(last);
      this.pendingLen[stream] += last.length;
      // A line longer than what is left can never fit (UTF-16 units <= UTF-8 bytes): cut
      // now rather than hold an endless unterminated line in memory.
      if (this.used + this.pendingLen[stream] > this.limit) this.truncate();
    }
  }

  // Flushes the trailing partial lines and closes the capture.
  finish(): Log[] {
    for (const stream of ["stdout", "stderr"] as const) {
      if (this.pending[stream].length > 0 && !this.full) this.add(stream, this.pending[stream].join(""));
      this.pending[stream].length = 0;
    }
    this.closed = true;
    return this.lines;
  }

  private add(stream: Stream, line: string) {
    if (this.full) return;
    if (line.endsWith("\r")) line = line.slice(0, -1); // as the host does for raw lines
    // A lone surrogate would reach the host as a \ud800 escape, which it refuses.
    line = line.toWellFormed();
    const size = Buffer.byteLength(line, "utf8");
    if (this.used + size > this.limit) return this.truncate();
    this.used += size;
    this.lines.push({ ts: Date.now(), stream, line });
  }

  private truncate() {
    this.full = true;
    this.pending.stdout.length = this.pending.stderr.length = 0;
    const line = `[ignis] log output truncated at ${this.limit} bytes`;
    this.lines.push({ ts: Date.now(), stream: "stderr", line });
  }
}

const captures = new AsyncLocalStorage<Capture>();

// Bun makes fd 1 and fd 2 non-blocking once they are used, so a plain writeSync can fail
// with EAGAIN while the host is behind in reading: wait a little and go on.
function writeAllSync(fd: number, data: string | Uint8Array) {
  const buf = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  for (let off = 0; off < buf.length; ) {
    try {
      off += fs.writeSync(fd, buf, off);
    } catch (err) {
      if ((err as { code?: string }).code !== "EAGAIN") throw err;
      Bun.sleepSync(1);
    }
  }
}

// Inside an invocation, output is captured; outside (at import, or from timers the last
// invocation left behind) it goes to the real fd, which the host reads as raw output.
function emit(stream: Stream, text: string) {
  const cap = captures.getStore();
  if (cap && !cap.closed) cap.write(stream, text);
  else writeAllSync(stream === "stdout" ? 1 : 2, text);
}

// Console lines carry their level as on Lambda: `<ISO time>\t<request id>\t<LEVEL>\t<message>`
// (the request id is "undefined" outside a call, as on Lambda at import), or with
// AWS_LAMBDA_LOG_FORMAT=JSON one JSON object per call, filtered by AWS_LAMBDA_LOG_LEVEL
// (as on Lambda, the level filter applies to the JSON format only). Both are read at load.
const LEVELS = { TRACE: 0, DEBUG: 1, INFO: 2, WARN: 3, ERROR: 4, FATAL: 5 } as const;
type Level = keyof typeof LEVELS;
const logging = { json: false, min: 0 };

function configureLogging(env: Record<string, string | undefined>) {
  logging.json = (env.AWS_LAMBDA_LOG_FORMAT ?? "").toUpperCase() === "JSON";
  const level = (env.AWS_LAMBDA_LOG_LEVEL ?? "").toUpperCase();
  logging.min = level in LEVELS ? LEVELS[level as Level] : 0;
}

function logLine(level: Level, message: string, args: unknown[]): string | null {
  const requestId = captures.getStore()?.requestId;
  const timestamp = new Date().toISOString();
  if (!logging.json) return `${timestamp}\t${requestId ?? "undefined"}\t${level}\t${message}\n`;
  if (LEVELS[level] < logging.min) return null;
  const record: Record<string, unknown> = { timestamp, level, requestId, message };
  // As Lambda does: an error logged alone keeps its parts as fields.
  if (args.length === 1 && args[0] instanceof Error) {
    const err = args[0];
    Object.assign(record, { errorType: err.name, errorMessage: err.message, stackTrace: (err.stack ?? "").split("\n") });
  }
  return JSON.stringify(record) + "\n";
}

function installConsole() {
  // Formatted like Node's console: util.format, so objects read as util.inspect shows them.
  const at = (level: Level, stream: Stream) => (...args: unknown[]) => {
    const line = logLine(level, util.format(...args), args);
    if (line !== null) emit(stream, line);
  };
  console.log = console.info = at("INFO", "stdout");
  console.debug = at("DEBUG", "stdout");
  console.warn = at("WARN", "stderr");
  console.error = at("ERROR", "stderr");
  console.dir = (obj: unknown, options?: object) => emit("stdout", util.inspect(obj, options) + "\n");
  console.trace = (...args: unknown[]) => {
    // Drop "Error" and this function's own frame: the trace starts at the caller.
    const frames = (new Error().stack ?? "").split("\n").slice(2).join("\n");
    const line = logLine("TRACE", `Trace${args.length ? ": " + util.format(...args) : ""}\n${frames}`, args);
    if (line !== null) emit("stderr", line);
  };
  // Patching write on Bun's own streams keeps everything else about them (fd, isTTY,
  // events) as user code expects.
  const writer = (stream: Stream) =>
    ((chunk: unknown, encoding?: unknown, cb?: unknown) => {
      const enc = typeof encoding === "string" ? (encoding as BufferEncoding) : "utf8";
      const text = typeof chunk !== "string" ? Buffer.from(chunk as Uint8Array).toString("utf8")
        : enc === "utf8" || enc === "utf-8" ? chunk : Buffer.from(chunk, enc).toString("utf8");
      emit(stream, text);
      const done = typeof encoding === "function" ? encoding : cb;
      if (typeof done === "function") process.nextTick(done as () => void);
      return true;
    }) as typeof process.stdout.write;
  process.stdout.write = writer("stdout");
  process.stderr.write = writer("stderr");
}

// --- errors ---------------------------------------------------------------------------

function isBuildMessage(e: unknown): e is { message: string; position?: any } {
  return (e as { name?: string } | null)?.name === "BuildMessage";
}

// Bun reports a module that does not parse as a BuildMessage (or an AggregateError of
// them), with the position of the problem; the first one is the one to show.
function buildMessage(err: unknown) {
  if (isBuildMessage(err)) return err;
  const errors = (err as { errors?: unknown[] } | null)?.errors;
  return Array.isArray(errors) && isBuildMessage(errors[0]) ? errors[0] : null;
}

function text(value: unknown): string {
  try {
    return String(value);
  } catch {
    return util.inspect(value); // e.g. Object.create(null)
  }
}

function describe(err: unknown): { type: string; message: string; stack: string } {
  const build = buildMessage(err);
  if (build) {
    const pos = build.position;
    const where = pos ? `\n    at ${pos.file}:${pos.line}:${pos.column}\n${pos.lineText}` : "";
    return { type: "SyntaxError", message: build.message, stack: `SyntaxError: ${build.message}${where}` };
  }
  if (err instanceof Error) {
    // The bootstrap's own frames tell the user nothing.
    const stack = (err.stack ?? "").split("\n").filter((l) => !(l.includes(BOOTSTRAP) && /^\s+at /.test(l)));
    return { type: err.name || "Error", message: err.message, stack: stack.join("\n") };
  }
  return { type: "Error", message: text(err), stack: "" };
}

// The line of the user's file to blame for an error at import: the position of a syntax
// error, the import that does not resolve, else the first (deepest) frame of the user's
// file in the stack.
function userLine(err: unknown, file: string, code: string): number | null {
  const line = buildMessage(err)?.position?.line;
  if (typeof line === "number" && line > 0) return line;
  const unresolved = err as { name?: string; specifier?: string; referrer?: string };
  if (unresolved?.name === "ResolveMessage" && unresolved.referrer === file && unresolved.specifier) {
    // Bun gives no position for an import it cannot resolve: find the import's line.
    const quoted = [`"${unresolved.specifier}"`, `'${unresolved.specifier}'`];
    const at = code.split("\n").findIndex((l) => quoted.some((q) => l.includes(q)));
    if (at >= 0) return at + 1;
  }
  const stack = err instanceof Error ? err.stack ?? "" : "";
  const escaped = file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const m = stack.match(new RegExp(`${escaped}:(\\d+)`));
  return m ? Number(m[1]) : null;
}

// --- loading and invoking -------------------------------------------------------------

type LoadResult = { picked?: Picked; error?: object };

// Every guest restored from one microvm snapshot starts with the same JavaScriptCore state,
// so the same `Math.random` sequence; JSC has no way to reseed it. A runtime started for a
// snapshot (`--snapshot`) replaces it before any function code runs (at its first `warm`
// or at its load), with xoshiro128** seeded from the kernel, which the guest agent
// reseeded after the restore.
function reseedMathRandom() {
  const s = new Uint32Array(4);
  do crypto.getRandomValues(s);
  while ((s[0] | s[1] | s[2] | s[3]) === 0);
  const rotl = (x: number, k: number) => (x << k) | (x >>> (32 - k));
  const next = () => {
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  };
  // 53 random bits (27 + 26) as a double in [0, 1).
  Math.random = function random(): number {
    return ((next() >>> 5) * 67108864 + (next() >>> 6)) / 9007199254740992;
  };
}

async function load(msg: any): Promise<LoadResult> {
  if (startedForSnapshot && !mathRandomReseeded) reseedMathRandom();
  // Only what changes: setting TZ, even to its value (`:UTC`, set at the start), makes Bun
  // reload its time zone data (~2 ms; ~30 ms in an emulated guest).
  for (const k in msg.env) if (process.env[k] !== msg.env[k]) process.env[k] = msg.env[k];
  configureLogging(process.env);
  process.chdir(msg.dir);
  if (msg.code === null) return loadPackage(msg);
  const code: string = msg.code;
  // The code comes in the message, never from a shared disk. Bun tells CommonJS from ES
  // modules only for real files (a `Bun.plugin` virtual module is always ESM), so it is
  // written to a private temporary directory (the instance's own /tmp when sandboxed),
  // imported from there and removed.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ignis-code-"));
  const copy = path.join(tmp, msg.file);
  let mod: any;
  try {
    fs.writeFileSync(copy, code);
    mod = await import(copy);
  } catch (err) {
    return { error: { ...describe(err), line: userLine(err, copy, code) } };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return pick(mod, msg.handler, msg.file);
}

// Lambda's Node.js runtime rule: a handler declared with three parameters that is not an
// async function is a callback handler; its answer is the callback (or context.succeed,
// fail, done), not its return value, unless it returns a promise that settles first.
function kindOf(fn: Function): Kind {
  if ((fn as { [STREAMING]?: boolean })[STREAMING]) return "stream";
  return fn.length === 3 && !util.types.isAsyncFunction(fn) ? "callback" : "event";
}

// The handler: the module's export of that name, else its default export (a function, or
// an object with a method of that name, else with a Workers-style `fetch` method).
function pick(mod: any, name: string, file: string): LoadResult {
  const own = mod?.[name];
  const def = mod?.default;
  if (typeof own === "function") return { picked: { handler: own, kind: kindOf(own) } };
  if (typeof def === "function") return { picked: { handler: def, kind: kindOf(def) } };
  // A method of the default export keeps its object as `this`.
  if (typeof def?.fetch === "function" && (name === "fetch" || typeof def?.[name] !== "function")) {
    return { picked: { handler: def.fetch.bind(def), kind: "fetch" } };
  }
  if (typeof def?.[name] === "function") return { picked: { handler: def[name].bind(def), kind: kindOf(def[name]) } };
  const message = `handler '${name}' is not a function in ${file}`;
  return { error: { type: "HandlerNotFound", message, stack: "", line: null } };
}

// A package of files is imported where it is (read-only at msg.dir): relative imports
// resolve beside the entry file, and Bun tells CommonJS from ES modules by the real file.
async function loadPackage(msg: any): Promise<LoadResult> {
  const entry = path.join(msg.dir, msg.file);
  let mod: any;
  try {
    mod = await import(entry);
  } catch (err) {
    let code = "";
    try {
      code = fs.readFileSync(entry, "utf8");
    } catch {
      // No such file: the error says so; no line to blame.
    }
    return { error: { ...describe(err), line: userLine(err, entry, code) } };
  }
  return pick(mod, msg.handler, msg.file);
}

// Runs the load and call paths once on a throwaway module, so that the real load does not
// pay for their first use (lazy built-in modules, Bun's transpiler threads, cold JIT;
// ~0.6 ms off each load of a pre-warmed instance, `--prewarm`). A snapshot's template
// (`--snapshot`) runs it before its hello, and a guest restored from the snapshot again
// when the host sends `warm`: its emulator's translations are not part of the snapshot,
// so the paths the load and the first call take are translated here, not during them.
//
// The throwaway module uses what handlers commonly do, so that the parser and bytecode
// compiler paths a real module takes have run once (under an emulator: been translated).
//
// A snapshot's template must not draw random numbers (`random` false): the state of the
// generator behind `crypto` (BoringSSL's) would be in the snapshot, and every guest
// restored from it would draw the same numbers. A restored guest may: the agent reseeded
// its kernel first.
const WARM_MODULE = `
export async function handler(event, context) {
  const { name = "warm", items = [] } = event ?? {};
  const list = [...items, 1, 2].map((x, i) => ({ x, i })).filter(({ i }) => i >= 0);
  class Box { #v; constructor(v) { this.#v = v; } get v() { return this.#v; } }
  let parsed;
  try { parsed = JSON.parse(\`{"name": "\${name}"}\`); } catch (e) { parsed = { error: String(e) }; }
  await Promise.resolve();
  return { statusCode: 200, headers: { "content-type": "application/json" },
    body: JSON.stringify({ message: \`Hello, \${parsed?.name || "World"}!\`, n: list.length, box: new Box(name).v }) };
}
`;

async function warmUp(random: boolean) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ignis-warm-"));
  const devNull = fs.openSync("/dev/null", "w");
  try {
    // What a load does before the import: the reseed's randomness, the environment.
    if (random) crypto.getRandomValues(new Uint32Array(4));
    process.env.IGNIS_WARM = "1";
    delete process.env.IGNIS_WARM;
    configureLogging(process.env);
    process.chdir(process.cwd());
    const f = path.join(tmp, "warm.js");
    fs.writeFileSync(f, WARM_MODULE);
    const { picked } = pick(await import(f), "handler", "warm.js");
    if (!picked) return;
    // A log stream named, so that no UUID is drawn for one.
    const info = functionInfo({ name: "warm", version: 0, memory_mb: 128 }, { AWS_LAMBDA_LOG_STREAM_NAME: "warm" });
    const run: Loaded = { ...picked, info, logLimit: 1024, maxResponse: 1 << 20 };
    // A call whose answer goes nowhere and that writes no end markers.
    const event = { name: "warm", items: [1, 2.5, "x", null, true] };
    await invoke(new Channel(devNull), null, run, { id: "warm", event, deadline_ms: Date.now() + 60_000 });
  } finally {
    fs.closeSync(devNull);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

// --- the context ----------------------------------------------------------------------

// The function's facts as Lambda names them, from the variables the host sets at load,
// with the same values computed here when one is absent.
function functionInfo(fn: any, env: Record<string, string | undefined>): FunctionInfo {
  const name = env.AWS_LAMBDA_FUNCTION_NAME || String(fn.name);
  const version = env.AWS_LAMBDA_FUNCTION_VERSION || String(fn.version);
  const region = env.AWS_REGION || "us-east-1";
  const day = new Date().toISOString().slice(0, 10).replaceAll("-", "/");
  return {
    functionName: name,
    functionVersion: version,
    memoryLimitMb: Number(fn.memory_mb),
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE || String(fn.memory_mb),
    invokedFunctionArn: `arn:aws:lambda:${region}:000000000000:function:${name}`,
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME || `/aws/lambda/${name}`,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME || `${day}/[${version}]${crypto.randomUUID().replaceAll("-", "")}`,
  };
}

type Settled = { ok: true; value: unknown } | { ok: false; error: unknown };

// How one call ends: the first of its return value, its promise, its callback or
// context.succeed / fail / done to settle wins; later ones are ignored, as on Lambda.
class Ending {
  readonly done: Promise<Settled>;
  private settle!: (s: Settled) => void;
  settled = false;
  constructor() {
    this.done = new Promise((resolve) => (this.settle = resolve));
  }
  end(s: Settled) {
    if (this.settled) return;
    this.settled = true;
    this.settle(s);
  }
  // Lambda's callback(error, result): any error but null or undefined fails the call.
  readonly callback = (error?: unknown, result?: unknown) =>
    error === null || error === undefined ? this.end({ ok: true, value: result }) : this.end({ ok: false, error });
}

// A fresh context per call, with the Ignis and the AWS Lambda names of each field.
// `callbackWaitsForEmptyEventLoop` is kept for handlers that set it, and changes nothing
// here: Ignis answers at the callback either way, and what the call left running (timers,
// sockets) keeps running in the instance, which is not frozen; its output reaches the host
// as raw output, in the logs of the call then in flight.
function context(id: string, info: FunctionInfo, deadlineMs: number, ending: Ending) {
  return {
    requestId: id,
    awsRequestId: id,
    ...info,
    identity: undefined,
    clientContext: undefined,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadlineMs - Date.now()),
    succeed: (result?: unknown) => ending.end({ ok: true, value: result }),
    fail: (error?: unknown) =>
      ending.end({ ok: false, error: error ?? new Error("context.fail was called without an error") }),
    done: ending.callback,
  };
}

// --- answers --------------------------------------------------------------------------

const NOT_JSON = "the handler's return value is not JSON:";

// What a value JSON.stringify would turn into {} is, or null when its JSON says what it
// holds. A class instance with own enumerable fields serializes as on Lambda; a Map, a
// Set, a Response or an instance without fields or toJSON would be an empty {} that
// loses what was returned, so it is an error naming the type.
function emptyJson(v: object): string | null {
  if (Array.isArray(v)) return null;
  const proto = Object.getPrototypeOf(v);
  if (proto === null || proto === Object.prototype) return null;
  const type = proto.constructor?.name || "object";
  if (v instanceof Map || v instanceof Set || v instanceof WeakMap || v instanceof WeakSet) {
    const hint = v instanceof Map ? "Object.fromEntries(map)" : v instanceof Set ? "[...set]" : "";
    return `a ${type} (JSON.stringify makes it {}${hint ? `; return ${hint}` : ""})`;
  }
  if (v instanceof Response) return "a Response where none is expected (only the handler's own answer may be one)";
  if (v instanceof Number || v instanceof String || v instanceof Boolean) return null;
  if (Object.keys(v).length > 0) return null;
  if (v instanceof Error) return `an Error object (${v.name}: ${v.message}); throw it to fail the call`;
  const a = /^[AEIOU]/i.test(type) ? "an" : "a";
  return `${a} ${type} instance with no fields and no toJSON (JSON.stringify makes it {})`;
}

function step(holder: object, key: string): string {
  if (Array.isArray(holder)) return `[${key}]`;
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

// The first value that has no JSON form, with where it is (".items[2]"), or null.
function unserializable(root: unknown): string | null {
  const paths = new Map<object, string>();
  let found: string | null = null;
  const stop = new Error("stop");
  let first = true;
  try {
    JSON.stringify(root, function (this: object, key: string, v: unknown) {
      const at = first ? "" : (paths.get(this) ?? "") + step(this, key);
      first = false;
      const what = typeof v === "bigint" ? `a BigInt (${v}n; JSON has none: return a string or a number)`
        : v !== null && typeof v === "object" ? emptyJson(v) : null;
      if (what) {
        found = `${at ? `${at} is` : "it is"} ${what}`;
        throw stop;
      }
      if (v !== null && typeof v === "object") paths.set(v, at);
      return v;
    });
  } catch (err) {
    if (err !== stop) throw err;
  }
  return found;
}

// The JSON of a handler's answer. undefined is null, as on Lambda (a handler that returns
// nothing answers null); anything JSON cannot hold, or would turn into an empty {}, is a
// TypeError that names it, never a silent {}.
function encode(value: unknown): string {
  if (value === undefined) return "null";
  if (typeof value === "function") throw new TypeError(`${NOT_JSON} it is a function (${value.name || "anonymous"}), not its result`);
  if (typeof value === "symbol") throw new TypeError(`${NOT_JSON} it is a symbol (${value.description ?? ""})`);
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (err) {
    const what = /cyclic|circular/i.test((err as Error)?.message ?? "")
      ? "it is a circular structure (an object that contains itself)"
      : unserializable(value) ?? (err as Error)?.message ?? text(err);
    throw new TypeError(`${NOT_JSON} ${what}`);
  }
  if (json === undefined) return "null"; // a toJSON that returned undefined
  // Only an answer with an empty object in it can hide a value that lost its content.
  if (json.includes("{}")) {
    const what = unserializable(value);
    if (what) throw new TypeError(`${NOT_JSON} ${what}`);
  }
  return json;
}

// A Response as Lambda's function URL answer, which the host maps back to HTTP: text
// bodies as they are, other bytes in base64; Set-Cookie headers as `cookies`.
async function lambdaResponse(res: Response) {
  const bytes = new Uint8Array(await res.arrayBuffer());
  const headers: Record<string, string> = {};
  res.headers.forEach((v, k) => {
    if (k !== "set-cookie") headers[k] = v;
  });
  let body: string;
  let isBase64Encoded = false;
  try {
    body = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    body = Buffer.from(bytes).toString("base64");
    isBase64Encoded = true;
  }
  // Bun adds a string body's type only when it serves it: add it as it would.
  if (!("content-type" in headers) && bytes.length > 0) {
    headers["content-type"] = isBase64Encoded ? "application/octet-stream" : "text/plain;charset=utf-8";
  }
  const cookies = res.headers.getSetCookie();
  return { statusCode: res.status, headers, body, isBase64Encoded, ...(cookies.length ? { cookies } : {}) };
}

// --- response streaming ---------------------------------------------------------------

// Marks a handler wrapped in awslambda.streamifyResponse.
const STREAMING = Symbol("ignis.streamifyResponse");
// A base64 chunk frame stays well under the host's 8 MiB frame limit.
const CHUNK_BYTES = 3 << 20;
// Responses built with a streamed body (a ReadableStream, an async iterable or an async
// generator function, as Bun takes them): sent as it is read. Others (text, bytes, JSON,
// a Blob, a fetch() answer) keep the whole-body answer.
const streamedBodies = new WeakSet<Response>();

// The head and chunk frames of one call's streamed answer. Once the call has answered,
// writes left behind fail rather than send frames for a call the host has closed.
class Sink {
  private closed = false;
  constructor(
    private readonly chan: Channel,
    private readonly id: string,
  ) {}

  head(status: number, headers: Record<string, string>, cookies: string[]) {
    this.check();
    this.chan.send({ t: "head", id: this.id, status, headers, ...(cookies.length ? { cookies } : {}) });
  }

  chunk(bytes: Uint8Array) {
    this.check();
    for (let off = 0; off < bytes.length; off += CHUNK_BYTES) {
      const data = Buffer.from(bytes.buffer, bytes.byteOffset + off, Math.min(CHUNK_BYTES, bytes.length - off));
      this.chan.send({ t: "chunk", id: this.id, data: data.toString("base64") });
    }
  }

  close() {
    this.closed = true;
  }

  private check() {
    if (this.closed) throw new Error("the response stream was written after its call ended");
  }
}

type Prelude = { status: number; headers: Record<string, string>; cookies: string[] };

// HttpResponseStream.from's metadata, checked: {statusCode, headers, cookies}, all optional.
function prelude(meta: unknown): Prelude {
  const where = "awslambda.HttpResponseStream.from";
  if (meta === null || typeof meta !== "object" || Array.isArray(meta)) {
    throw new TypeError(`${where}: the metadata must be an object {statusCode, headers, cookies}, not ${typeof meta}`);
  }
  const { statusCode = 200, headers = {}, cookies = [], ...rest } = meta as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length) throw new TypeError(`${where}: unknown metadata field '${unknown[0]}' (statusCode, headers, cookies)`);
  if (!Number.isInteger(statusCode) || (statusCode as number) < 200 || (statusCode as number) > 599) {
    throw new TypeError(`${where}: statusCode must be an integer from 200 to 599, not ${util.inspect(statusCode)}`);
  }
  if (headers === null || typeof headers !== "object" || Array.isArray(headers)) {
    throw new TypeError(`${where}: headers must be an object of names to values`);
  }
  const heads: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (typeof v !== "string" && typeof v !== "number" && typeof v !== "boolean") {
      throw new TypeError(`${where}: header '${k}' must be a string, not ${util.inspect(v)}`);
    }
    heads[k.toLowerCase()] = String(v);
  }
  if (!Array.isArray(cookies) || !cookies.every((c) => typeof c === "string")) {
    throw new TypeError(`${where}: cookies must be an array of strings`);
  }
  return { status: statusCode as number, headers: heads, cookies: cookies as string[] };
}

// The response stream a streaming handler writes: a Node Writable (node:stream is loaded on
// first use: ~10 ms no other function pays). Its first write or its end sends the head
// (HttpResponseStream.from's, else 200 with setContentType's type, else
// application/octet-stream); each write is one chunk frame, sent at once; its end (the
// "finish" event) answers the call; an error or a destroy before the end fails it.
function responseStream(sink: Sink, ending: Ending) {
  const { Writable } = import.meta.require("node:stream");
  let meta: Prelude | null = null;
  let contentType = "application/octet-stream";
  let headSent = false;
  const sendHead = () => {
    if (headSent) return;
    headSent = true;
    const { status, headers, cookies } = meta ?? { status: 200, headers: {}, cookies: [] };
    sink.head(status, { "content-type": contentType, ...headers }, cookies);
  };
  const stream = new Writable({
    write(chunk: Uint8Array, _enc: string, done: (err?: Error | null) => void) {
      try {
        sendHead();
        sink.chunk(chunk);
        done();
      } catch (err) {
        done(err as Error);
      }
    },
    final(done: (err?: Error | null) => void) {
      try {
        sendHead();
        done();
      } catch (err) {
        done(err as Error);
      }
    },
  });
  stream.setContentType = (type: unknown) => {
    if (typeof type !== "string") throw new TypeError(`setContentType takes a string, not ${util.inspect(type)}`);
    contentType = type;
  };
  stream[PRELUDE] = (m: unknown) => {
    if (headSent) throw new TypeError("awslambda.HttpResponseStream.from: the head was already sent by a write");
    meta = prelude(m);
  };
  stream.on("finish", () => ending.end({ ok: true, value: undefined }));
  stream.on("error", (error: unknown) => ending.end({ ok: false, error }));
  stream.on("close", () => {
    if (!stream.writableFinished) ending.end({ ok: false, error: new Error("the response stream was destroyed before it ended") });
  });
  return stream;
}

const PRELUDE = Symbol("ignis.prelude");

// Lambda's Node.js globals for response streaming, before any user code runs; and a
// Response that notes which bodies are streams (instances, `instanceof Response` and
// `res.constructor === Response` are Bun's own as before).
function installStreaming() {
  const HttpResponseStream = {
    from(stream: any, meta: unknown) {
      if (typeof stream?.[PRELUDE] !== "function") {
        throw new TypeError("awslambda.HttpResponseStream.from takes the responseStream a streaming handler was given");
      }
      stream[PRELUDE](meta);
      return stream;
    },
  };
  const streamifyResponse = (handler: unknown) => {
    if (typeof handler !== "function") {
      throw new TypeError(`awslambda.streamifyResponse takes the handler function, not ${util.inspect(handler)}`);
    }
    (handler as { [STREAMING]?: boolean })[STREAMING] = true;
    return handler;
  };
  Object.defineProperty(globalThis, "awslambda", { value: { streamifyResponse, HttpResponseStream }, writable: true, configurable: true });
  const Native = globalThis.Response;
  const Tracked = new Proxy(Native, {
    construct(target, args, newTarget) {
      const res = Reflect.construct(target, args, newTarget === Tracked ? target : newTarget);
      const body = args[0];
      const streamed = body instanceof ReadableStream || util.types.isGeneratorFunction(body)
        || (body !== null && typeof body === "object" && typeof body[Symbol.asyncIterator] === "function");
      if (streamed) streamedBodies.add(res);
      return res;
    },
  });
  Object.defineProperty(Native.prototype, "constructor", { value: Tracked, writable: true, configurable: true });
  globalThis.Response = Tracked;
}

// A Response with a streamed body: its status, headers and cookies as the head, then its
// body as it is read, one chunk per piece the stream gives.
async function streamResponse(res: Response, sink: Sink): Promise<string> {
  const headers: Record<string, string> = {};
  res.headers.forEach((v, k) => {
    if (k !== "set-cookie" && k !== "content-length") headers[k] = v;
  });
  headers["content-type"] ??= "application/octet-stream";
  sink.head(res.status, headers, res.headers.getSetCookie());
  if (res.body) {
    for await (const piece of res.body) sink.chunk(typeof piece === "string" ? Buffer.from(piece, "utf8") : piece);
  }
  return "null";
}

// --- web-standard handlers ------------------------------------------------------------

// The Request a fetch handler gets: the HTTP request of a function URL event (Lambda's
// payload 2.0), else, for a direct invoke, a POST of the event as JSON to http://localhost/.
function requestOf(event: any): Request {
  const http = event?.requestContext?.http;
  if (typeof http?.method !== "string" || typeof event?.rawPath !== "string") {
    const headers = { "content-type": "application/json" };
    return new Request("http://localhost/", { method: "POST", headers, body: JSON.stringify(event ?? null) });
  }
  const headers = new Headers();
  for (const [k, v] of Object.entries(event.headers ?? {})) headers.set(k, String(v));
  if (Array.isArray(event.cookies) && event.cookies.length) headers.set("cookie", event.cookies.join("; "));
  const scheme = headers.get("x-forwarded-proto") ?? "http";
  const host = headers.get("host") ?? event.requestContext.domainName ?? "localhost";
  const query = event.rawQueryString ? `?${event.rawQueryString}` : "";
  const method = http.method.toUpperCase();
  const hasBody = typeof event.body === "string" && method !== "GET" && method !== "HEAD";
  const body = hasBody ? (event.isBase64Encoded ? Buffer.from(event.body, "base64") : event.body) : undefined;
  return new Request(`${scheme}://${host}${event.rawPath}${query}`, { method, headers, body });
}

// Workers' ExecutionContext beside Lambda's fields: waitUntil lets work go on after the
// answer (the instance is not frozen); a rejection there is logged, not lost.
function fetchContext(ctx: object) {
  return {
    ...ctx,
    waitUntil: (p: unknown) => void Promise.resolve(p).catch((err) => console.error("waitUntil:", err)),
    passThroughOnException: () => {},
  };
}

// --- invoking -------------------------------------------------------------------------

// An error as Lambda reports it: an Error's name and message; any other value thrown or
// passed to the callback has its type (`string`, `number`, `object`) and its text.
function failure(err: unknown) {
  if (err instanceof Error || buildMessage(err)) return describe(err);
  return { type: typeof err, message: text(err), stack: "" };
}

// The arguments of a call, by the handler's kind. A streaming handler's call ends when its
// stream has ended (see responseStream).
function argsOf(run: Loaded, event: unknown, ctx: ReturnType<typeof context>, ending: Ending, sink: Sink) {
  if (run.kind === "fetch") return [requestOf(event), process.env, fetchContext(ctx)];
  if (run.kind === "stream") return [event, responseStream(sink, ending), ctx];
  return [event, ctx, ending.callback];
}

// Runs the handler to its end (see Ending) and gives its answer's JSON ("null" once it
// streamed: the host ignores the value of a call that streamed).
async function call(run: Loaded, event: unknown, ctx: ReturnType<typeof context>, ending: Ending, sink: Sink): Promise<string> {
  const args = argsOf(run, event, ctx, ending, sink);
  let out: unknown;
  try {
    out = run.handler(...args);
  } catch (error) {
    ending.end({ ok: false, error });
  }
  if (run.kind === "stream") {
    // The stream's end answers; a promise that resolves first ends the stream.
    const stream = args[1] as { writableEnded: boolean; end(): void };
    Promise.resolve(out).then(
      () => void (typeof (out as PromiseLike<unknown>)?.then === "function" && !stream.writableEnded && stream.end()),
      (error) => ending.end({ ok: false, error }),
    );
  } else if (typeof (out as PromiseLike<unknown>)?.then === "function") {
    Promise.resolve(out).then(
      (value) => ending.end({ ok: true, value }),
      (error) => ending.end({ ok: false, error }),
    );
  } else if (run.kind !== "callback") {
    ending.end({ ok: true, value: out });
  }
  const settled = await ending.done;
  if (!settled.ok) throw settled.error;
  if (run.kind === "stream") return "null";
  const value = settled.value;
  if (value instanceof Response && streamedBodies.has(value)) return streamResponse(value, sink);
  if (value instanceof Response) return encode(await lambdaResponse(value));
  if (run.kind === "fetch") {
    const type = value === null || typeof value !== "object" ? typeof value : Object.getPrototypeOf(value)?.constructor?.name;
    throw new TypeError(`the fetch handler must answer with a Response; it returned ${type ?? "an object"}`);
  }
  return encode(value);
}

// `marker` null: a warm-up's call, which marks no end on stdout and stderr.
async function invoke(chan: Channel, marker: string | null, run: Loaded, msg: any) {
  const id = String(msg.id);
  const cap = new Capture(run.logLimit, id);
  const sink = new Sink(chan, id);
  let answer: Record<string, unknown>;
  let value: string | undefined;
  try {
    // Encoding inside the capture too: a toJSON that logs is the handler's output.
    const encoded = await captures.run(cap, () => {
      const ending = new Ending();
      return call(run, msg.event, context(id, run.info, msg.deadline_ms, ending), ending, sink);
    });
    const size = Buffer.byteLength(encoded, "utf8");
    if (size > run.maxResponse) answer = { t: "too_large", id, size };
    else [answer, value] = [{ t: "result", id }, encoded];
  } catch (err) {
    answer = { t: "error", id, error: failure(err) };
  }
  sink.close();
  answer.logs = cap.finish();
  if (marker !== null) endMarkers(marker, id);
  chan.send(answer, value);
}

// Everything written to fd 1 / fd 2 so far belongs to this invocation: mark the end on
// both, before the answer is sent. (Bun's console and our overrides write synchronously,
// so there is no runtime buffer left to flush.)
function endMarkers(marker: string, id: string) {
  const data = `\0ignis-end:${marker}:${id}\n`;
  for (const fd of [1, 2]) {
    try {
      writeAllSync(fd, data);
    } catch {
      // A closed stdout / stderr has nothing left to deliver either.
    }
  }
}

// --- framing: 4-byte big-endian length, then UTF-8 JSON -------------------------------

// The channel's bytes as they arrive. A socket (a process instance) is read by Bun's own
// fd reader; a character device (a virtual machine's virtio-serial port) by plain read(2)
// calls, since Bun's reader uses pread(2), which a port refuses (ESPIPE).
function chunksOf(fd: number): AsyncIterable<Uint8Array> {
  if (fs.fstatSync(fd).isSocket()) return Bun.file(fd).stream();
  return (async function* () {
    const buf = Buffer.alloc(64 * 1024);
    for (;;) {
      const n = await new Promise<number>((resolve, reject) =>
        fs.read(fd, buf, 0, buf.length, null, (err, read) => (err ? reject(err) : resolve(read))),
      );
      if (n === 0) return;
      yield Buffer.from(buf.subarray(0, n));
    }
  })();
}

class Channel {
  constructor(private readonly fd: number) {}

  // The host's messages, until it hangs up. Bun's own fd reader, not node:net, which
  // would add ~5 ms to every start (and whose `new net.Socket({ fd })` does not read).
  async *messages(): AsyncGenerator<any> {
    let chunks: Uint8Array[] = [];
    let size = 0;
    let need = -1; // length of the body being read; -1 while its header is incomplete
    // The first n buffered bytes, joining chunks only once enough has arrived.
    const take = (n: number) => {
      const all = chunks.length === 1 ? Buffer.from(chunks[0].buffer, chunks[0].byteOffset, size) : Buffer.concat(chunks, size);
      chunks = all.length > n ? [all.subarray(n)] : [];
      size -= n;
      return all.subarray(0, n);
    };
    for await (const chunk of chunksOf(this.fd)) {
      chunks.push(chunk);
      size += chunk.length;
      for (;;) {
        if (need < 0 && size >= 4) need = take(4).readUInt32BE(0);
        if (need < 0 || size < need) break;
        const body = take(need);
        need = -1;
        yield JSON.parse(body.toString("utf8"));
      }
    }
  }

  // Blocking writes: a frame goes out whole before anything else runs.
  send(msg: object, value?: string) {
    let json = JSON.stringify(msg);
    // The value is already encoded (its size was checked): splice it in as is.
    if (value !== undefined) json = `${json.slice(0, -1)},"value":${value}}`;
    // JSON.stringify escapes lone surrogates as \udXXX, which the host refuses. Only
    // lone ones are escaped (pairs are written as is), so each such escape not itself
    // behind an escaped backslash becomes U+FFFD, of the same length.
    if (json.includes("\\ud")) json = json.replace(/(?<!\\)((?:\\\\)*)\\ud[89a-f][0-9a-f]{2}/gi, "$1\\ufffd");
    const body = Buffer.from(json, "utf8");
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length, 0);
    writeAllSync(this.fd, head);
    writeAllSync(this.fd, body);
  }
}

// A bug here must end the instance (the host reports it) rather than leave a call hanging.
function crash(err: unknown) {
  writeAllSync(2, `[ignis] bootstrap failure: ${util.inspect(err)}\n`);
  process.exit(70);
}

let startedForSnapshot = false;
// Reseeded at a `warm` (a restored guest, after the agent reseeded its kernel): the load
// then has nothing left to do for it.
let mathRandomReseeded = false;

async function main() {
  const args = process.argv.slice(2);
  const chan = new Channel(Number(args[args.indexOf("--fd") + 1]));
  const marker = args[args.indexOf("--marker") + 1];
  // A snapshot's template (`--snapshot`) warms up before its hello, so that the snapshot
  // taken at the hello holds the result; a pre-warmed instance after it, while it waits.
  const snapshot = args.includes("--snapshot");
  startedForSnapshot = snapshot;
  if (!snapshot) chan.send({ t: "hello", protocol: 1, runtime: "bun", version: Bun.version });
  // After the hello, so that the ~6 ms Bun takes to build process.stdout / stderr
  // overlap with the host's reply; still before any user code.
  installConsole();
  installStreaming();
  if (snapshot || args.includes("--prewarm")) await warmUp(!snapshot);
  if (snapshot) chan.send({ t: "hello", protocol: 1, runtime: "bun", version: Bun.version });
  let ready: Promise<Loaded | null> | null = null;
  for await (const msg of chan.messages()) {
    if (msg.t === "warm" && !ready) {
      // A restored microvm guest, warmed ahead of its load (see warmUp).
      if (startedForSnapshot && !mathRandomReseeded) {
        reseedMathRandom();
        mathRandomReseeded = true;
      }
      await warmUp(true);
      // Collected now, not during the load: in an emulated guest a collection that the
      // load's allocations would trigger costs ~40 ms. (A process instance does not: its
      // collections are cheap, and a full one may discard the warm-up's compiled code.)
      Bun.gc(true);
      chan.send({ t: "warmed" });
    } else if (msg.t === "load" && !ready) {
      ready = load(msg).then(({ picked, error }) => {
        chan.send(picked ? { t: "loaded" } : { t: "load_error", error });
        // After a load error there is nothing to serve: wait for the host to hang up.
        if (!picked) return null;
        const info = functionInfo(msg.function, process.env);
        return { ...picked, info, logLimit: msg.log_limit_bytes, maxResponse: msg.max_response_bytes };
      });
      ready.catch(crash);
    } else if (msg.t === "invoke" && ready) {
      // Not awaited: with `concurrency` above 1 the host sends up to that many before the
      // first answers, and they run as concurrent async calls. Markers and answer are
      // written synchronously, so frames never interleave.
      ready.then((run) => run && invoke(chan, marker, run, msg)).catch(crash);
    }
  }
  process.exit(0); // the host hung up: the normal end
}

main().catch(crash);
