// The memory cap, the one limit a browser lets us enforce inside the guest.
//
// A wasm32-wasip1 command defines (and exports) its own linear memory, so the
// host cannot hand it a WebAssembly.Memory with a maximum. Instead the module's
// memory section is rewritten before compiling: each memory's maximum becomes
// min(declared maximum, cap). `memory.grow` past it then returns -1 inside the
// guest, as Wisp's ResourceLimiter makes it do on the server, and a Rust guest
// aborts with "memory allocation of N bytes failed" (a trap).

const PAGE = 65536;
const MEMORY_SECTION = 5;
const IMPORT_SECTION = 2;

/** Thrown when a module can't be run under the cap (the server's deploy-time 400). */
export class LimitError extends Error {}

function readU32(b, pos) {
  let result = 0;
  let shift = 0;
  for (;;) {
    if (pos >= b.length) throw new LimitError('malformed module: truncated LEB128');
    const byte = b[pos++];
    result += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return [result, pos];
    shift += 7;
    if (shift > 35) throw new LimitError('malformed module: LEB128 too long');
  }
}

function writeU32(n) {
  const out = [];
  do {
    let byte = n & 0x7f;
    n = Math.floor(n / 128);
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

function skipName(b, pos) {
  const [len, p] = readU32(b, pos);
  return p + len;
}

/**
 * Returns a copy of `bytes` whose memories may grow to at most `maxBytes`
 * (rounded down to whole 64 KiB pages). Throws LimitError if a memory's
 * initial size already exceeds the cap, or if the module imports a memory
 * (wasm32-wasip1 commands don't).
 * @param {Uint8Array} bytes
 * @param {number} maxBytes
 * @returns {Uint8Array}
 */
export function capMemory(bytes, maxBytes) {
  const capPages = Math.floor(maxBytes / PAGE);
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new LimitError('not a WebAssembly module (bad magic)');
  }
  if (bytes[4] !== 1 || bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) {
    throw new LimitError('not a core WebAssembly module (a component? only wasm32-wasip1 commands run in the browser)');
  }
  const parts = [bytes.subarray(0, 8)];
  let pos = 8;
  while (pos < bytes.length) {
    const start = pos;
    const id = bytes[pos++];
    const [size, bodyAt] = readU32(bytes, pos);
    const end = bodyAt + size;
    if (end > bytes.length) throw new LimitError('malformed module: section past the end');
    if (id === IMPORT_SECTION) checkImports(bytes, bodyAt);
    if (id !== MEMORY_SECTION) {
      parts.push(bytes.subarray(start, end));
      pos = end;
      continue;
    }
    let [count, p] = readU32(bytes, bodyAt);
    const body = [...writeU32(count)];
    for (let i = 0; i < count; i++) {
      const flags = bytes[p++];
      if (flags & 0x04) throw new LimitError('64-bit memories are not supported');
      let min;
      let max = null;
      [min, p] = readU32(bytes, p);
      if (flags & 0x01) [max, p] = readU32(bytes, p);
      if (min > capPages) {
        throw new LimitError(
          `the module's memory starts at ${min * PAGE} bytes, past the ${capPages * PAGE}-byte memory limit`,
        );
      }
      const newMax = max === null ? capPages : Math.min(max, capPages);
      body.push(flags | 0x01, ...writeU32(min), ...writeU32(newMax));
    }
    if (p !== end) throw new LimitError('malformed module: memory section size');
    parts.push(Uint8Array.of(MEMORY_SECTION, ...writeU32(body.length), ...body));
    pos = end;
  }
  const out = new Uint8Array(parts.reduce((n, x) => n + x.length, 0));
  let at = 0;
  for (const x of parts) {
    out.set(x, at);
    at += x.length;
  }
  return out;
}

function checkImports(b, pos) {
  let [count, p] = readU32(b, pos);
  for (let i = 0; i < count; i++) {
    p = skipName(b, p);
    p = skipName(b, p);
    const kind = b[p++];
    switch (kind) {
      case 0: // func: type index
        [, p] = readU32(b, p);
        break;
      case 1: { // table: reftype, limits
        p++;
        const flags = b[p++];
        [, p] = readU32(b, p);
        if (flags & 0x01) [, p] = readU32(b, p);
        break;
      }
      case 2:
        throw new LimitError('the module imports its memory; only modules that define their own can be capped');
      case 3: // global: valtype, mutability
        p += 2;
        break;
      default:
        throw new LimitError(`unsupported import kind ${kind}`);
    }
  }
}
