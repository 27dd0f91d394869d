// @wisp/browser-runner: run Wisp's wasm32-wasip1 CGI functions in Web Workers,
// with the server's CGI conventions byte for byte (see cgi.js and
// docs/browser.md).
//
// Lifecycle, as on the server:
//   per runner    a pool of module workers (at most `maxWorkers` running),
//                 an in-memory table of compiled modules, an IndexedDB cache;
//   per function  load(): fetch, SHA-256, cap the memory, compile (or take
//                 the compiled module from memory / IndexedDB);
//   per request   invoke(): CGI env, a fresh instance in a worker, body in and
//                 output out as transferred ArrayBuffers, limits enforced.
//
// Left out on purpose: preopened directories, outbound HTTP, wasi:http
// components (they need the component model, which browsers don't have).

import { buildCgiEnv, headerList, servedHeaders, durationDebug } from './cgi.js';
import { capMemory, LimitError } from './limits.js';
import { ModuleCache } from './cache.js';

export { ModuleCache } from './cache.js';
export * as cgi from './cgi.js';

/** Limits of one invocation; the server's defaults (README "Limits"). */
export const DEFAULT_LIMITS = Object.freeze({
  memoryBytes: 128 * 1024 * 1024,
  timeoutMs: 10_000,
  maxBodyBytes: 16 * 1024 * 1024,
  maxResponseBytes: 16 * 1024 * 1024,
  maxLogBytes: 64 * 1024,
});

/** HTTP status of each error code, as the server answers it. */
const STATUS = {
  bad_request: 400,
  cancelled: 499,
  payload_too_large: 413,
  timeout: 504,
  trap: 500,
  nonzero_exit: 500,
  response_too_large: 500,
  internal: 500,
};

/** A failure before the guest ran: bad module, fetch failed, bad request. */
export class WispError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'WispError';
    this.code = code;
    this.status = STATUS[code] ?? 500;
  }
}

const utf8 = new TextEncoder();
const lossy = new TextDecoder('utf-8');
const now = () => performance.now();
/** An epoch instant from a worker → this page's performance.now() clock. */
const local = (epochMs) => epochMs - performance.timeOrigin;

const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');

/** `wisp run -q`'s encoding (crates/cli client::encode): unreserved bytes kept, the rest %XX. */
export function encodeQueryComponent(s) {
  let o = '';
  for (const b of utf8.encode(s)) {
    const c = String.fromCharCode(b);
    o += /[A-Za-z0-9\-_.~]/.test(c) ? c : '%' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return o;
}

function queryString(q) {
  if (q === undefined || q === null) return '';
  if (typeof q === 'string') return q.startsWith('?') ? q.slice(1) : q;
  const pairs = q instanceof URLSearchParams || Array.isArray(q) ? [...q] : Object.entries(q);
  return pairs.map(([k, v]) => `${encodeQueryComponent(String(k))}=${encodeQueryComponent(String(v))}`).join('&');
}

function bodyBytes(body) {
  if (body === undefined || body === null) return new Uint8Array(0);
  if (typeof body === 'string') return utf8.encode(body);
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  throw new WispError('bad_request', 'body must be a string, an ArrayBuffer or a typed array');
}

function envPairs(env) {
  if (!env) return [];
  return Array.isArray(env) ? env.map(([k, v]) => [String(k), String(v)]) : Object.entries(env).map(([k, v]) => [k, String(v)]);
}

function errorResponse(code, message, extra) {
  const body = utf8.encode(JSON.stringify({ error: { code, message } }));
  return {
    status: STATUS[code] ?? 500,
    headers: [['content-type', 'application/json']],
    body,
    error: { code, message },
    ...extra,
  };
}

/**
 * A loaded function: the compiled, memory-capped module and where it came from.
 * Pass it to invoke() to skip every load step (the warm path).
 * @typedef {{name:string, sha256:string, module:WebAssembly.Module, memoryBytes:number,
 *            load:{cache:'none'|'memory'|'idb', stored:'module'|'bytes'|null,
 *                  fetchMs:number, hashMs:number, compileMs:number}}} WispFunction
 */

export class WispRunner {
  /**
   * @param {object} [o]
   * @param {number} [o.maxWorkers]   invocations running at once (default: hardwareConcurrency)
   * @param {number} [o.maxIdleWorkers] workers kept for reuse (default: maxWorkers)
   * @param {Partial<typeof DEFAULT_LIMITS>} [o.limits] defaults for every invoke
   * @param {ModuleCache|false} [o.cache] the IndexedDB cache (false: memory only)
   * @param {string} [o.serverName] SERVER_NAME (default "localhost", as `wisp run --cgi`)
   * @param {number} [o.serverPort] SERVER_PORT (default 0)
   * @param {string} [o.remoteAddr] REMOTE_ADDR (default "127.0.0.1")
   * @param {URL|string} [o.workerUrl] the worker script (default: ./worker.js next to this file)
   */
  constructor(o = {}) {
    const cores = globalThis.navigator?.hardwareConcurrency || 2;
    this.maxWorkers = o.maxWorkers ?? cores;
    this.maxIdleWorkers = o.maxIdleWorkers ?? this.maxWorkers;
    this.limits = { ...DEFAULT_LIMITS, ...o.limits };
    this.cache = o.cache === false ? null : (o.cache ?? new ModuleCache());
    this.serverName = o.serverName ?? 'localhost';
    this.serverPort = o.serverPort ?? 0;
    this.remoteAddr = o.remoteAddr ?? '127.0.0.1';
    this.workerUrl = o.workerUrl ?? new URL('./worker.js', import.meta.url);
    this.counters = { workersStarted: 0, workersTerminated: 0, compiles: 0, invocations: 0 };
    this._idle = [];
    this._running = 0;
    this._waiting = [];
    this._modules = new Map(); // cache key → Promise<WebAssembly.Module>
    this._urls = new Map(); // url + cap → Promise<WispFunction>
    this._nextId = 1;
  }

  /** Counters and pool state (tests, dashboards). */
  stats() {
    return { ...this.counters, idleWorkers: this._idle.length, running: this._running, waiting: this._waiting.length };
  }

  /**
   * Load a function: a URL (fetched once per runner and kept by URL) or the
   * module's bytes. Throws WispError('bad_request') for anything the server
   * would refuse at deploy.
   * @param {string|URL|ArrayBuffer|ArrayBufferView|WispFunction} source
   * @param {{name?:string, memoryBytes?:number, reload?:boolean, sha256?:string}} [o]
   *   sha256 pins the module (hex): a cached copy is used without fetching, a
   *   fetched one must match it
   * @returns {Promise<WispFunction>}
   */
  async load(source, o = {}) {
    if (source && source.module instanceof WebAssembly.Module) return source;
    const memoryBytes = o.memoryBytes ?? this.limits.memoryBytes;
    if (o.sha256 && (typeof source === 'string' || source instanceof URL)) {
      // Pinned: a module already compiled (memory) or stored (IndexedDB)
      // under this digest needs no fetch at all.
      const f = await this._loadPinned(o.sha256.toLowerCase(), memoryBytes, o.name, source);
      if (f) return f;
    }
    if (typeof source === 'string' || source instanceof URL) {
      const url = new URL(source, globalThis.location?.href).href;
      const key = `${url}\n${memoryBytes}`;
      if (!o.reload && this._urls.has(key)) {
        const f = await this._urls.get(key);
        const name = o.name ?? f.name;
        return { ...f, name, load: { cache: 'memory', stored: null, fetchMs: 0, hashMs: 0, compileMs: 0 } };
      }
      const p = this._loadUrl(url, memoryBytes, o.name, o.sha256?.toLowerCase());
      this._urls.set(key, p);
      p.catch(() => this._urls.delete(key));
      return p;
    }
    const bytes = source instanceof ArrayBuffer || ArrayBuffer.isView(source) ? bodyBytes(source) : null;
    if (!bytes) throw new WispError('bad_request', 'a function is a URL, the module bytes, or a loaded function');
    return this._loadBytes(bytes, memoryBytes, o.name ?? 'main', 0);
  }

  async _loadUrl(url, memoryBytes, name, sha256) {
    const t0 = now();
    let resp;
    try {
      resp = await fetch(url);
    } catch (e) {
      throw new WispError('bad_request', `fetching ${url}: ${e.message}`);
    }
    if (!resp.ok) throw new WispError('bad_request', `fetching ${url}: HTTP ${resp.status}`);
    const bytes = new Uint8Array(await resp.arrayBuffer());
    const f = await this._loadBytes(bytes, memoryBytes, name ?? stemOf(url), now() - t0, sha256);
    return f;
  }

  async _loadPinned(sha256, memoryBytes, name, source) {
    const key = `${sha256}:${Math.floor(memoryBytes / 65536)}`;
    const load = { cache: 'memory', stored: null, fetchMs: 0, hashMs: 0, compileMs: 0 };
    let pending = this._modules.get(key);
    if (!pending) {
      const hit = this.cache ? await this.cache.get(key) : null;
      if (!hit) return null;
      pending = this._compile(null, key, memoryBytes, load, hit);
      this._modules.set(key, pending);
      pending.catch(() => this._modules.delete(key));
    }
    const module = await pending;
    return { name: name ?? stemOf(new URL(source, globalThis.location?.href).href), sha256, module, memoryBytes, load };
  }

  async _loadBytes(bytes, memoryBytes, name, fetchMs, expected) {
    const t0 = now();
    const sha256 = hex(await crypto.subtle.digest('SHA-256', bytes));
    const hashMs = now() - t0;
    if (expected && expected !== sha256) {
      throw new WispError('bad_request', `the module's SHA-256 is ${sha256}, not the pinned ${expected}`);
    }
    const key = `${sha256}:${Math.floor(memoryBytes / 65536)}`;
    const load = { cache: 'none', stored: null, fetchMs, hashMs, compileMs: 0 };
    let pending = this._modules.get(key);
    if (pending) {
      load.cache = 'memory';
    } else {
      pending = this._compile(bytes, key, memoryBytes, load);
      this._modules.set(key, pending);
      pending.catch(() => this._modules.delete(key));
    }
    const module = await pending;
    return { name, sha256, module, memoryBytes, load };
  }

  /** The cold path: IndexedDB, else cap the memory + compile + store. */
  async _compile(bytes, key, memoryBytes, load, known) {
    const hit = known ?? (this.cache ? await this.cache.get(key) : null);
    if (hit?.stored === 'module') {
      Object.assign(load, { cache: 'idb', stored: 'module' });
      return hit.module;
    }
    let capped;
    if (hit?.stored === 'bytes') {
      Object.assign(load, { cache: 'idb', stored: 'bytes' });
      capped = hit.bytes;
    } else {
      try {
        capped = capMemory(bytes, memoryBytes);
      } catch (e) {
        if (e instanceof LimitError) throw new WispError('bad_request', e.message);
        throw e;
      }
    }
    const t0 = now();
    let module;
    try {
      module = WebAssembly.compileStreaming
        ? await WebAssembly.compileStreaming(new Response(capped, { headers: { 'content-type': 'application/wasm' } }))
        : await WebAssembly.compile(capped);
    } catch (e) {
      throw new WispError('bad_request', `compiling the module: ${e.message}`);
    }
    load.compileMs = now() - t0;
    this.counters.compiles++;
    checkCommand(module);
    if (this.cache && !hit) load.stored = await this.cache.put(key, module, capped);
    return module;
  }

  /**
   * Run one request. Guest failures (trap, non-zero exit, timeout, too large)
   * resolve like the server answers them: an error status with a JSON body
   * `{"error":{"code","message"}}` and `error` set. Load failures reject with
   * a WispError.
   * @param {string|URL|ArrayBuffer|ArrayBufferView|WispFunction} source
   * @param {object} [req]
   * @param {string} [req.method]  default POST with a body, GET without (as `wisp run`)
   * @param {string} [req.path]    PATH_INFO: "" or "/sub/path" (decoded, as the server passes it)
   * @param {string|object|Array} [req.query] raw query string, or pairs to encode
   * @param {object|Array|Headers} [req.headers]
   * @param {string|ArrayBuffer|ArrayBufferView} [req.body]
   * @param {boolean} [req.transfer] hand the body's ArrayBuffer to the worker (zero copy; it is
   *   detached here, with every other view of it)
   * @param {AbortSignal} [req.signal] stops the invocation: its worker is terminated and it
   *   resolves as a 499 `cancelled` error (a workflow whose other step failed)
   * @param {object|Array} [req.env] the function's own env (wins over query parameters)
   * @param {string} [req.name]    function name (SCRIPT_NAME=/fn/NAME, argv[0])
   * @param {Partial<typeof DEFAULT_LIMITS>} [req.limits]
   */
  async invoke(source, req = {}) {
    const t0 = now();
    const limits = { ...this.limits, ...req.limits };
    const fn = await this.load(source, { name: req.name, memoryBytes: limits.memoryBytes });
    const loaded = now();
    const name = req.name ?? fn.name;
    const body = bodyBytes(req.body);
    const path = req.path ?? '';
    if (path !== '' && !path.startsWith('/')) throw new WispError('bad_request', `path must be empty or start with "/": ${path}`);
    const query = queryString(req.query);
    const method = req.method ?? (body.length > 0 || req.body !== undefined ? 'POST' : 'GET');
    const base = { function: { name, sha256: fn.sha256 }, log: '', logTruncated: false, bytesIn: body.length };
    if (body.length > limits.maxBodyBytes) {
      return errorResponse('payload_too_large', `request body exceeds the function's ${limits.maxBodyBytes}-byte limit`, {
        ...base,
        timings: timings({ t0, loaded, fn }),
      });
    }
    const env = buildCgiEnv(
      {
        method,
        pathInfo: path,
        query,
        headers: headerList(req.headers),
        contentLength: body.length,
        function: name,
        serverName: req.serverName ?? this.serverName,
        serverPort: req.serverPort ?? this.serverPort,
        remoteAddr: req.remoteAddr ?? this.remoteAddr,
      },
      envPairs(req.env),
    );
    // The worker owns stdin from here: the caller's buffer when it gives it up
    // (the worker reads the body's range of it), else one copy.
    const given = req.transfer && body.buffer instanceof ArrayBuffer;
    const stdin = given ? body.buffer : body.slice().buffer;
    const stdinOffset = given ? body.byteOffset : 0;
    const stdinLength = body.byteLength;

    await this._acquire();
    const started = now();
    this.counters.invocations++;
    let worker;
    try {
      worker = await this._worker();
    } catch (e) {
      this._release(null);
      throw e;
    }
    const workerReady = now();
    const id = this._nextId++;
    const job = {
      id,
      module: fn.module,
      args: [name],
      env: env.map(([k, v]) => `${k}=${v}`),
      stdin,
      stdinOffset,
      stdinLength,
      memoryBytes: limits.memoryBytes,
      maxResponseBytes: limits.maxResponseBytes,
      maxLogBytes: limits.maxLogBytes,
    };
    const outcome = await new Promise((resolve) => {
      const timer = setTimeout(() => resolve({ timeout: true }), limits.timeoutMs);
      if (req.signal?.aborted) resolve({ cancelled: true });
      req.signal?.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve({ cancelled: true });
      });
      worker.onmessage = ({ data }) => {
        if (data.id !== id) return;
        clearTimeout(timer);
        resolve({ data });
      };
      worker.onerror = (e) => {
        clearTimeout(timer);
        resolve({ crashed: e.message || 'the worker failed' });
      };
      worker.postMessage(job, [stdin]);
    });
    const ended = now();
    worker.onmessage = worker.onerror = null;
    const t = { t0, loaded, fn, started, workerReady, ended };

    if (outcome.timeout || outcome.crashed || outcome.cancelled) {
      this._kill(worker);
      this._release(null);
      if (outcome.cancelled) {
        return errorResponse('cancelled', 'the invocation was stopped by its caller', { ...base, timings: timings(t) });
      }
      if (outcome.crashed) {
        return errorResponse('internal', `the worker failed: ${outcome.crashed}`, { ...base, timings: timings(t) });
      }
      return errorResponse('timeout', `function exceeded its ${durationDebug(limits.timeoutMs)} timeout`, {
        ...base,
        timings: timings(t),
      });
    }
    const d = outcome.data;
    // A worker whose guest trapped or overflowed is not trusted again.
    const reuse = !d.failure || d.failure.code === 'nonzero_exit';
    if (!reuse) this._kill(worker);
    this._release(reuse ? worker : null);
    const logBytes = new Uint8Array(d.stderr);
    const extra = {
      ...base,
      exit: d.exit,
      log: lossy.decode(logBytes),
      logBytes,
      logTruncated: d.logTruncated,
      timings: timings({ ...t, at: d.at }),
    };
    if (d.failure) return errorResponse(d.failure.code, d.failure.message, extra);
    return {
      status: d.head.status,
      headers: servedHeaders(d.head.headers),
      body: new Uint8Array(d.stdout, d.head.bodyOffset),
      guestHeaders: d.head.headers,
      ...extra,
    };
  }

  /** Start workers ahead of the first invocations (each boot is ~10-50 ms). */
  async warmup(n = 1) {
    const ws = [];
    for (let i = 0; i < Math.min(n, this.maxIdleWorkers) - this._idle.length; i++) ws.push(this._spawn());
    for (const w of await Promise.all(ws)) this._idle.push(w);
  }

  /** Terminate the idle workers. Running invocations finish. */
  close() {
    for (const w of this._idle.splice(0)) this._kill(w);
  }

  _acquire() {
    if (this._running < this.maxWorkers) {
      this._running++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this._waiting.push(resolve));
  }

  _release(worker) {
    if (worker) {
      if (this._idle.length < this.maxIdleWorkers) this._idle.push(worker);
      else this._kill(worker);
    }
    const next = this._waiting.shift();
    if (next) next();
    else this._running--;
  }

  async _worker() {
    return this._idle.pop() ?? this._spawn();
  }

  _spawn() {
    return new Promise((resolve, reject) => {
      const w = new Worker(this.workerUrl, { type: 'module', name: 'wisp-guest' });
      this.counters.workersStarted++;
      w.onmessage = ({ data }) => {
        if (data?.ready) {
          w.onmessage = w.onerror = null;
          resolve(w);
        }
      };
      w.onerror = (e) => {
        e.preventDefault?.();
        this._kill(w);
        reject(new WispError('internal', `starting the worker ${this.workerUrl}: ${e.message || 'failed to load'}`));
      };
    });
  }

  _kill(w) {
    w.terminate();
    this.counters.workersTerminated++;
  }
}

const stemOf = (url) => new URL(url).pathname.split('/').pop().replace(/\.wasm$/, '') || 'main';

/** The server's deploy checks: imports only from WASI preview 1, a `_start`. */
function checkCommand(module) {
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.module !== 'wasi_snapshot_preview1') {
      throw new WispError('bad_request', `unknown import ${imp.module}::${imp.name} (only wasi_snapshot_preview1 is linked)`);
    }
  }
  if (!WebAssembly.Module.exports(module).some((e) => e.name === '_start' && e.kind === 'function')) {
    throw new WispError('bad_request', 'the module has no _start export (not a WASI command)');
  }
}

/**
 * Timings of one invocation, in ms. `start`/`end` are on this page's
 * performance.now() clock so a workflow can compute delays and makespans.
 */
function timings({ t0, loaded, fn, started, workerReady, ended, at }) {
  const r = {
    cache: fn.load.cache,
    fetchMs: fn.load.fetchMs,
    hashMs: fn.load.hashMs,
    compileMs: fn.load.compileMs,
    loadMs: loaded - t0,
    queueMs: started !== undefined ? started - loaded : 0,
    workerMs: workerReady !== undefined ? workerReady - started : 0,
    instantiateMs: 0,
    runMs: 0,
    totalMs: (ended ?? loaded) - t0,
    start: t0,
    end: ended ?? loaded,
  };
  if (at) {
    r.instantiateMs = at.instantiated - at.instantiateStart;
    r.runMs = at.ended - at.instantiated;
    r.pickupMs = local(at.pickedUp) - workerReady;
    // The guest's own code, on this page's clock (workflows' delays).
    r.guestStart = local(at.instantiated);
    r.guestEnd = local(at.ended);
  }
  return r;
}
