// Ignis instance bootstrap for Bun: loads one user module, then serves invocations.
//
// Speaks the host protocol of docs/protocol.md over the socket inherited on --fd. Started
// as `bun bootstrap.ts --fd 3 --marker NONCE`.
//
// What user code writes through console.* and process.stdout/stderr.write while an
// invocation runs is captured into that invocation's logs. The capture is found through
// AsyncLocalStorage, never a global, so that concurrent invocations each keep their own
// logs, event and context.

import { AsyncLocalStorage } from "node:async_hooks";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import util from "node:util";

type Stream = "stdout" | "stderr";
type Log = { ts: number; stream: Stream; line: string };
type Handler = (event: unknown, context: unknown) => unknown;
type Loaded = { handler: Handler; function: any; logLimit: number; maxResponse: number };

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
  constructor(private readonly limit: number) {}

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

function installConsole() {
  // Formatted like Node's console: util.format, so objects read as util.inspect shows them.
  const line = (args: unknown[]) => util.format(...args) + "\n";
  const out = (...args: unknown[]) => emit("stdout", line(args));
  const err = (...args: unknown[]) => emit("stderr", line(args));
  console.log = console.info = console.debug = out;
  console.warn = console.error = err;
  console.dir = (obj: unknown, options?: object) => emit("stdout", util.inspect(obj, options) + "\n");
  console.trace = (...args: unknown[]) => {
    // Drop "Error" and this function's own frame: the trace starts at the caller.
    const frames = (new Error().stack ?? "").split("\n").slice(2).join("\n");
    emit("stderr", `Trace${args.length ? ": " + util.format(...args) : ""}\n${frames}\n`);
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

async function load(msg: any): Promise<{ handler?: Handler; error?: object }> {
  Object.assign(process.env, msg.env);
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

// The handler: the module's export of that name, else its default export (a function, or
// an object with a method of that name).
function pick(mod: any, name: string, file: string): { handler?: Handler; error?: object } {
  const own = mod?.[name];
  const def = mod?.default;
  if (typeof own === "function") return { handler: own };
  if (typeof def === "function") return { handler: def };
  // A method of the default export keeps its object as `this`.
  if (typeof def?.[name] === "function") return { handler: def[name].bind(def) };
  const message = `handler '${name}' is not a function in ${file}`;
  return { error: { type: "HandlerNotFound", message, stack: "", line: null } };
}

// A package of files is imported where it is (read-only at msg.dir): relative imports
// resolve beside the entry file, and Bun tells CommonJS from ES modules by the real file.
async function loadPackage(msg: any): Promise<{ handler?: Handler; error?: object }> {
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

// A pre-warmed instance (`--prewarm`) waits for code anyway: it runs the load and call
// paths once on a throwaway module so that the real load does not pay for their first
// use (lazy built-in modules, Bun's transpiler threads, cold JIT): ~0.6 ms off each load.
async function warmUp() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ignis-warm-"));
  try {
    const f = path.join(tmp, "warm.js");
    fs.writeFileSync(f, "export const handler = (e) => e;\n");
    const mod = await import(f);
    const cap = new Capture(1024);
    await captures.run(cap, async () => JSON.stringify(await mod.handler(JSON.parse('{"a":1}'))));
    cap.finish();
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

// A fresh context per call, with the Ignis and the AWS Lambda names of each field.
function context(id: string, fn: any, deadlineMs: number) {
  return {
    requestId: id,
    awsRequestId: id,
    functionName: fn.name,
    functionVersion: String(fn.version),
    memoryLimitMb: fn.memory_mb,
    memoryLimitInMB: fn.memory_mb,
    invokedFunctionArn: `ignis:function:${fn.name}`,
    getRemainingTimeInMillis: () => Math.max(0, deadlineMs - Date.now()),
  };
}

async function invoke(chan: Channel, marker: string, run: Loaded, msg: any) {
  const id = String(msg.id);
  const cap = new Capture(run.logLimit);
  let answer: Record<string, unknown>;
  let value: string | undefined;
  try {
    // Encoding inside the capture too: a toJSON that logs is the handler's output.
    const encoded = await captures.run(cap, async () => {
      const result = await run.handler(msg.event, context(id, run.function, msg.deadline_ms));
      try {
        return JSON.stringify(result) ?? "null"; // undefined, functions, symbols: null
      } catch (err) {
        throw new TypeError(`the handler's return value is not JSON: ${(err as Error)?.message ?? text(err)}`);
      }
    });
    const size = Buffer.byteLength(encoded, "utf8");
    if (size > run.maxResponse) answer = { t: "too_large", id, size };
    else [answer, value] = [{ t: "result", id }, encoded];
  } catch (err) {
    answer = { t: "error", id, error: describe(err) };
  }
  answer.logs = cap.finish();
  endMarkers(marker, id);
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
    for await (const chunk of Bun.file(this.fd).stream()) {
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

async function main() {
  const args = process.argv.slice(2);
  const chan = new Channel(Number(args[args.indexOf("--fd") + 1]));
  const marker = args[args.indexOf("--marker") + 1];
  chan.send({ t: "hello", protocol: 1, runtime: "bun", version: Bun.version });
  // After the hello, so that the ~6 ms Bun takes to build process.stdout / stderr
  // overlap with the host's reply; still before any user code.
  installConsole();
  if (args.includes("--prewarm")) await warmUp();
  let ready: Promise<Loaded | null> | null = null;
  for await (const msg of chan.messages()) {
    if (msg.t === "load" && !ready) {
      ready = load(msg).then(({ handler, error }) => {
        chan.send(handler ? { t: "loaded" } : { t: "load_error", error });
        // After a load error there is nothing to serve: wait for the host to hang up.
        if (!handler) return null;
        return { handler, function: msg.function, logLimit: msg.log_limit_bytes, maxResponse: msg.max_response_bytes };
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
