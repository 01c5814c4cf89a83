// Ignis instance bootstrap for Bun: loads one user module, then serves invocations.
//
// Speaks the host protocol of docs/protocol.md over the socket on the fd given by --fd.
// Console and process.stdout/stderr output during an invocation is captured into that
// invocation's logs through AsyncLocalStorage (per call, never a global), and never
// reaches fd 1.

import { AsyncLocalStorage } from "node:async_hooks";
import fs from "node:fs";
import path from "node:path";
import util from "node:util";

type Log = { ts: number; stream: "stdout" | "stderr"; line: string };

class Capture {
  used = 0;
  lines: Log[] = [];
  truncated = false;
  partial = { stdout: "", stderr: "" };
  constructor(readonly limit: number) {}

  write(stream: "stdout" | "stderr", text: string) {
    const parts = (this.partial[stream] + text).split("\n");
    this.partial[stream] = parts.pop() ?? "";
    for (const line of parts) this.add(stream, line);
  }

  flushPartial() {
    for (const stream of ["stdout", "stderr"] as const) {
      if (this.partial[stream]) this.add(stream, this.partial[stream]);
      this.partial[stream] = "";
    }
  }

  private add(stream: "stdout" | "stderr", line: string) {
    if (this.truncated) return;
    const size = Buffer.byteLength(line);
    if (this.used + size > this.limit) {
      this.truncated = true;
      this.lines.push({ ts: Date.now(), stream: "stderr", line: `[ignis] log output truncated at ${this.limit} bytes` });
      return;
    }
    this.used += size;
    this.lines.push({ ts: Date.now(), stream, line });
  }
}

const current = new AsyncLocalStorage<Capture>();

// Outside an invocation (at import), output goes to the real fd as raw output.
function emit(stream: "stdout" | "stderr", text: string) {
  const cap = current.getStore();
  if (cap) cap.write(stream, text);
  else fs.writeSync(stream === "stdout" ? 1 : 2, text);
}

function installConsole() {
  const fmt = (args: unknown[]) => util.formatWithOptions({ colors: false }, ...args) + "\n";
  const out = (...a: unknown[]) => emit("stdout", fmt(a));
  const err = (...a: unknown[]) => emit("stderr", fmt(a));
  console.log = out;
  console.info = out;
  console.debug = out;
  console.warn = err;
  console.error = err;
  console.trace = (...a: unknown[]) => emit("stderr", fmt(["Trace:", ...a]) + (new Error().stack ?? "") + "\n");
  const writer = (stream: "stdout" | "stderr") =>
    ((chunk: unknown, encoding?: unknown, cb?: unknown) => {
      const text = typeof chunk === "string" ? chunk : Buffer.from(chunk as Uint8Array).toString("utf8");
      emit(stream, text);
      const done = typeof encoding === "function" ? encoding : cb;
      if (typeof done === "function") done();
      return true;
    }) as typeof process.stdout.write;
  process.stdout.write = writer("stdout");
  process.stderr.write = writer("stderr");
}

// Bun reports a module that does not parse as an AggregateError of BuildMessages (objects
// with a message and a position, not Errors); the first one is the one to show.
function firstBuildMessage(err: unknown): any {
  const errors = (err as { errors?: unknown[] } | null)?.errors;
  return Array.isArray(errors) && errors.length > 0 ? errors[0] : err;
}

function describe(err: unknown) {
  if (err instanceof Error && !(err instanceof AggregateError)) {
    return { type: err.name || "Error", message: err.message, stack: err.stack ?? "" };
  }
  const first = firstBuildMessage(err);
  if (first && typeof first === "object" && typeof first.message === "string") {
    const type = first.name === "BuildMessage" ? "SyntaxError" : first.name || "Error";
    const pos = first.position;
    const where = pos ? `\n    at ${pos.file}:${pos.line}:${pos.column}\n${pos.lineText}` : "";
    return { type, message: first.message, stack: `${type}: ${first.message}${where}` };
  }
  return { type: "Error", message: String(err), stack: "" };
}

function lineOf(err: unknown, file: string): number | null {
  const pos = firstBuildMessage(err)?.position;
  if (pos && typeof pos.line === "number" && pos.line > 0) return pos.line;
  const text = `${(err as { stack?: string })?.stack ?? ""}\n${String(err)}`;
  const escaped = file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const m = text.match(new RegExp(`${escaped}:(\\d+)(?::\\d+)?`));
  return m ? Number(m[1]) : null;
}

type Handler = (event: unknown, context: unknown) => unknown;

async function load(msg: any): Promise<{ handler?: Handler; error?: unknown }> {
  Object.assign(process.env, msg.env);
  process.chdir(msg.dir);
  const file = path.join(msg.dir, msg.file);
  let mod: any;
  try {
    mod = await import(file);
  } catch (err) {
    return { error: { ...describe(err), line: lineOf(err, file) } };
  }
  const name = msg.handler;
  const candidates = [mod?.[name], mod?.default, mod?.default?.[name]];
  const handler = candidates.find((c) => typeof c === "function");
  if (!handler) {
    const message = `handler '${name}' is not a function in ${msg.file}`;
    return { error: { type: "HandlerNotFound", message, stack: "", line: null } };
  }
  // Methods of an exported object keep their `this`.
  const owner = handler === mod?.default?.[name] ? mod.default : undefined;
  return { handler: owner ? handler.bind(owner) : handler };
}

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

// Frames in: 4-byte big-endian length + JSON. Collected chunks are joined once per frame.
class Frames {
  private chunks: Buffer[] = [];
  private size = 0;
  private waiting: ((m: any) => void) | null = null;
  private queue: any[] = [];
  private ended = false;

  constructor(fd: number) {
    // A read stream on the fd, not net.Socket: Bun's fd-backed sockets refuse to write
    // before their first read.
    const input = fs.createReadStream("", { fd, highWaterMark: 1 << 20, autoClose: false });
    input.on("data", (d) => this.push(d as Buffer));
    input.on("end", () => this.end());
    input.on("error", () => this.end());
  }

  private push(d: Buffer) {
    this.chunks.push(d);
    this.size += d.length;
    while (this.size >= 4) {
      const buf = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
      this.chunks = [buf];
      const len = buf.readUInt32BE(0);
      if (buf.length < 4 + len) break;
      this.deliver(JSON.parse(buf.subarray(4, 4 + len).toString("utf8")));
      const rest = buf.subarray(4 + len);
      this.chunks = rest.length ? [rest] : [];
      this.size = rest.length;
    }
  }

  private deliver(m: any) {
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w(m);
    } else this.queue.push(m);
  }

  private end() {
    this.ended = true;
    this.deliver(null);
  }

  next(): Promise<any> {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve) => (this.waiting = resolve));
  }
}

function send(fd: number, msg: object, valueJson?: string) {
  let text = JSON.stringify(msg);
  // The value is already encoded (its size was checked): splice it in, not twice.
  if (valueJson !== undefined) text = `${text.slice(0, -1)},"value":${valueJson}}`;
  const body = Buffer.from(text, "utf8");
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length, 0);
  // The fd is blocking in this process: writeSync waits for room and may write part of
  // the frame at a time.
  const frame = Buffer.concat([header, body]);
  for (let off = 0; off < frame.length; ) off += fs.writeSync(fd, frame, off);
}

function endMarkers(marker: string, id: string) {
  const data = `\0ignis-end:${marker}:${id}\n`;
  for (const fd of [1, 2]) {
    try {
      fs.writeSync(fd, data);
    } catch {
      // A closed stdout/stderr has nothing left to deliver either.
    }
  }
}

async function main() {
  const args = process.argv.slice(2);
  const fd = Number(args[args.indexOf("--fd") + 1]);
  const marker = args[args.indexOf("--marker") + 1];
  const frames = new Frames(fd);
  installConsole();
  send(fd, { t: "hello", protocol: 1, runtime: "bun", version: Bun.version });

  const loadMsg = await frames.next();
  if (!loadMsg) process.exit(0);
  const { handler, error } = await load(loadMsg);
  if (!handler) {
    send(fd, { t: "load_error", error });
    process.exit(0);
  }
  send(fd, { t: "loaded" });
  const fn = loadMsg.function;
  const logLimit: number = loadMsg.log_limit_bytes;
  const maxResponse: number = loadMsg.max_response_bytes;

  for (;;) {
    const msg = await frames.next();
    if (!msg) process.exit(0);
    const id: string = msg.id;
    const cap = new Capture(logLimit);
    let answer: Record<string, unknown>;
    let valueJson: string | undefined;
    try {
      const result = await current.run(cap, async () => handler(msg.event, context(id, fn, msg.deadline_ms)));
      let encoded: string | undefined;
      try {
        encoded = JSON.stringify(result);
      } catch (e) {
        throw new TypeError(`the return value is not JSON: ${(e as Error).message}`);
      }
      encoded ??= "null"; // undefined, functions and symbols encode to nothing
      const size = Buffer.byteLength(encoded);
      if (size > maxResponse) answer = { t: "too_large", id, size };
      else {
        answer = { t: "result", id };
        valueJson = encoded;
      }
    } catch (err) {
      answer = { t: "error", id, error: describe(err) };
    }
    cap.flushPartial();
    answer.logs = cap.lines;
    endMarkers(marker, id);
    send(fd, answer, valueJson);
  }
}

main();
