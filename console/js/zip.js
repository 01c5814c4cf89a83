// @ts-check
// Reads a zip archive in the browser (the package GET /v1/functions/{name}/code answers):
// its central directory, each entry stored or deflated (inflated with the browser's
// DecompressionStream), and whether each file is UTF-8 text the editor can hold.

/**
 * One file of a package as the console holds it: its text, or null when it is not UTF-8
 * (binary: shown, not editable).
 * @typedef {object} PackageEntry
 * @property {string} path
 * @property {string | null} text
 * @property {number} size
 */

const EOCD = 0x06054b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

/**
 * The files of a zip archive, in the archive's order (folders are implied by paths).
 * @param {ArrayBuffer} buffer
 * @returns {Promise<PackageEntry[]>}
 */
export async function unzip(buffer) {
  const view = new DataView(buffer);
  const bytes = new Uint8Array(buffer);
  // The end record is in the last 22 bytes plus a comment of at most 65535.
  let end = -1;
  for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 22 - 65535); i--) {
    if (view.getUint32(i, true) === EOCD) {
      end = i;
      break;
    }
  }
  if (end < 0) throw new Error('The package is not a zip archive (no end of central directory).');
  const count = view.getUint16(end + 10, true);
  let at = view.getUint32(end + 16, true);
  if (count === 0xffff || at === 0xffffffff) throw new Error('The package is a zip64 archive, which the console cannot read.');
  const names = new TextDecoder('utf-8', { fatal: true });
  /** @type {PackageEntry[]} */
  const out = [];
  for (let n = 0; n < count; n++) {
    if (at + 46 > bytes.length || view.getUint32(at, true) !== CENTRAL) {
      throw new Error(`The package's zip directory is damaged at entry ${n + 1}.`);
    }
    const method = view.getUint16(at + 10, true);
    const packed = view.getUint32(at + 20, true);
    const size = view.getUint32(at + 24, true);
    const nameLen = view.getUint16(at + 28, true);
    const extraLen = view.getUint16(at + 30, true);
    const commentLen = view.getUint16(at + 32, true);
    const local = view.getUint32(at + 42, true);
    const path = names.decode(bytes.subarray(at + 46, at + 46 + nameLen));
    at += 46 + nameLen + extraLen + commentLen;
    if (path.endsWith('/')) continue;
    if (packed === 0xffffffff || size === 0xffffffff || local === 0xffffffff) {
      throw new Error(`${path} is a zip64 entry, which the console cannot read.`);
    }
    if (local + 30 > bytes.length || view.getUint32(local, true) !== LOCAL) {
      throw new Error(`The package's zip entry ${path} is damaged.`);
    }
    const start = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
    const data = bytes.subarray(start, start + packed);
    let content;
    if (method === 0) content = data;
    else if (method === 8) content = await inflate(data);
    else throw new Error(`${path} is compressed with method ${method}; the console reads stored and deflated entries.`);
    if (content.length !== size) throw new Error(`${path} inflated to ${content.length} bytes, not the ${size} its header says.`);
    out.push({ path, text: utf8(content), size });
  }
  return out;
}

/**
 * @param {Uint8Array} data raw deflate
 * @returns {Promise<Uint8Array>}
 */
async function inflate(data) {
  const stream = new Blob([/** @type {BlobPart} */ (data)]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * The text of a file when it is UTF-8 (a byte-order mark kept), else null.
 * @param {Uint8Array} content
 * @returns {string | null}
 */
function utf8(content) {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(content);
  } catch {
    return null;
  }
}
