// One Web Worker of the runner. Each job is one request: a fresh instance of
// an already compiled WebAssembly.Module (posted by the page), the request
// body as stdin, the CGI env, stdout/stderr captured and sent back as
// transferred ArrayBuffers with the CGI head already parsed. The page kills
// the worker for timeouts; everything else is reported from here.
import { WASI, WASIProcExit, File, OpenFile, ConsoleStdout } from './shim.js';
import { parseCgiResponse } from './cgi.js';

class ResponseTooLarge extends Error {}

/** Collects writes into one buffer; past `limit` either throws or truncates. */
class Sink {
  constructor(limit, truncate) {
    this.limit = limit;
    this.truncate = truncate;
    this.chunks = [];
    this.length = 0;
    this.truncated = false;
  }
  write(data) {
    if (this.length + data.length > this.limit) {
      if (!this.truncate) throw new ResponseTooLarge();
      data = data.subarray(0, this.limit - this.length);
      this.truncated = true;
    }
    if (data.length === 0) return;
    this.chunks.push(data);
    this.length += data.length;
  }
  bytes() {
    if (this.chunks.length === 1 && this.chunks[0].byteOffset === 0 && this.chunks[0].byteLength === this.chunks[0].buffer.byteLength) {
      return this.chunks[0];
    }
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}

const now = () => performance.timeOrigin + performance.now();

/** stdin: the body's range of the transferred buffer, without a copy (the
 * shim's File constructor copies a Uint8Array it is given). */
function stdinFile(job) {
  const f = new File(new ArrayBuffer(0), { readonly: true });
  f.data = new Uint8Array(job.stdin, job.stdinOffset ?? 0, job.stdinLength ?? job.stdin.byteLength);
  return f;
}

self.onmessage = async ({ data: job }) => {
  const pickedUp = now();
  const stdout = new Sink(job.maxResponseBytes, false);
  const stderr = new Sink(job.maxLogBytes, true);
  const fds = [
    new OpenFile(stdinFile(job)),
    new ConsoleStdout((b) => stdout.write(b)),
    new ConsoleStdout((b) => stderr.write(b)),
  ];
  const wasi = new WASI(job.args, job.env, fds);
  let failure = null;
  let exit = 0;
  let instance = null;
  const t0 = now();
  try {
    instance = await WebAssembly.instantiate(job.module, { wasi_snapshot_preview1: wasi.wasiImport });
  } catch (e) {
    failure = { code: 'bad_request', message: `instantiating the module: ${e}` };
  }
  const t1 = now();
  if (instance) {
    try {
      // start() returns the proc_exit code and rethrows anything else.
      exit = wasi.start(instance);
      if (exit !== 0) failure = { code: 'nonzero_exit', message: `function exited with status ${exit}` };
    } catch (e) {
      failure = classify(e, instance, job, stderr);
    }
  }
  const t2 = now();
  const out = stdout.bytes();
  const log = stderr.bytes();
  const head = failure ? null : parseCgiResponse(out);
  // Copies only if the sink's single chunk is a view; then hand the buffers over.
  const outBuf = out.byteLength === out.buffer.byteLength ? out.buffer : out.slice().buffer;
  const logBuf = log.byteLength === log.buffer.byteLength ? log.buffer : log.slice().buffer;
  self.postMessage(
    {
      id: job.id,
      failure,
      exit,
      head,
      stdout: outBuf,
      stderr: logBuf,
      logTruncated: stderr.truncated,
      // Wall-clock instants (ms since the epoch, sub-ms precision): the page
      // and its workers have different performance.timeOrigin.
      at: { pickedUp, instantiated: t1, ended: t2, instantiateStart: t0 },
    },
    [outBuf, logBuf],
  );
};

function classify(e, instance, job, stderr) {
  if (e instanceof ResponseTooLarge) {
    return { code: 'response_too_large', message: `response exceeded the ${job.maxResponseBytes}-byte limit` };
  }
  if (e instanceof WASIProcExit) {
    return { code: 'nonzero_exit', message: `function exited with status ${e.code}` };
  }
  const what = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  // A Rust guest whose allocator hit the cap prints this, then aborts.
  const log = new TextDecoder().decode(stderr.bytes());
  if (/memory allocation of \d+ bytes failed/.test(log)) {
    const mem = instance.exports.memory?.buffer?.byteLength ?? 0;
    return {
      code: 'trap',
      message: `function trapped: out of memory: memory.grow was refused at the ${job.memoryBytes}-byte limit (${mem} bytes in use); ${what}`,
    };
  }
  return { code: 'trap', message: `function trapped: ${what}` };
}
self.postMessage({ ready: true });
