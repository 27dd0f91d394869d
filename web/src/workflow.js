// Workflows in the browser: the same definitions `wisp serve` runs
// (crates/workflow; docs/workflows.md), with each step in a Web Worker of a
// WispRunner and the data passed between steps as transferred ArrayBuffers.
//
// What matches the server, so outputs are byte-identical for the same input:
//   - the order: every step starts when its last input has ended;
//   - each step's request: POST, the step's path and query, the content type
//     of its input (the producer's CGI Content-Type, or the run's), the body;
//   - fan-in: `concat` (bytes in the listed order; the common content type,
//     or none) and `json` ({"<input>":<its JSON text, trimmed>,...}, as
//     application/json);
//   - a step that fails or answers >= 400 fails the run, naming the step;
//     the steps still running are stopped (their workers terminated);
//   - the timings: per step ready (its last input's end), start and end of
//     its guest code, delay = start - ready, run = end - start, and the
//     makespan, all in ms from the run's start (the page's clock).
//
// Hybrid placement: `run(def, input, {until: 'gray', server, workflow})` runs
// `gray` and the steps it needs here, then POSTs gray's output to
// `${server}/wf/${workflow}?after=gray`, where the server runs the rest.
//
// Left out: `stream: true` steps (wasi:http components don't run in
// browsers), pinned versions/digests (the caller maps functions to modules).

import { WispError } from './runner.js';

export const INPUT = '$input';

const utf8 = new TextEncoder();
const now = () => performance.now();

/**
 * A definition (the canonical JSON `GET /v1/workflows/{name}` returns as
 * `definition`, or the same object written by hand) as a plan: steps in the
 * server's order (inputs first; declaration order among independent
 * steps), inputs as indices. Throws a WispError naming the step for what the
 * server's validation would refuse without its function catalog.
 */
export function plan(def) {
  const fail = (step, msg) => {
    throw new WispError('bad_request', step ? `step ${JSON.stringify(step)}: ${msg}` : msg);
  };
  if (!def || !Array.isArray(def.steps) || def.steps.length === 0) fail(null, 'a workflow needs at least one step');
  const timeoutMs = def.timeout_ms ?? 60_000;
  const byName = new Map();
  def.steps.forEach((s, i) => {
    if (typeof s.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(s.name)) fail(s.name, 'invalid step name');
    if (byName.has(s.name)) fail(s.name, 'two steps have this name');
    byName.set(s.name, i);
  });
  const inputsOf = (s) => (s.inputs === undefined ? [INPUT] : typeof s.inputs === 'string' ? [s.inputs] : s.inputs);
  for (const s of def.steps) {
    if (s.stream) fail(s.name, 'stream: true needs wasi:http components, which the browser runner does not run');
    for (const inp of inputsOf(s)) {
      if (inp !== INPUT && !byName.has(inp)) fail(s.name, `input ${JSON.stringify(inp)} is neither ${INPUT} nor a step of this workflow`);
      if (inp === s.name) fail(s.name, "a step can't read its own output");
    }
  }
  // Kahn's algorithm, lowest declaration index first (as the server).
  const n = def.steps.length;
  const pending = new Array(n).fill(0);
  const readersOf = Array.from({ length: n }, () => []);
  def.steps.forEach((s, i) => {
    for (const inp of inputsOf(s)) {
      if (inp === INPUT) continue;
      pending[i]++;
      readersOf[byName.get(inp)].push(i);
    }
  });
  const ready = [];
  for (let i = 0; i < n; i++) if (pending[i] === 0) ready.push(i);
  const order = [];
  while (ready.length) {
    ready.sort((a, b) => a - b);
    const i = ready.shift();
    order.push(i);
    for (const r of readersOf[i]) if (--pending[r] === 0) ready.push(r);
  }
  if (order.length < n) fail(def.steps.find((_, i) => pending[i] > 0).name, 'is part of a cycle');
  let output;
  if (def.output !== undefined) {
    if (!byName.has(def.output)) fail(null, `output ${JSON.stringify(def.output)} is not a step of this workflow`);
    output = byName.get(def.output);
  } else {
    const ends = def.steps.map((_, i) => i).filter((i) => readersOf[i].length === 0);
    if (ends.length !== 1) fail(null, `no step reads the output of ${ends.map((i) => JSON.stringify(def.steps[i].name)).join(', ')}: name the answer with \`output\``);
    output = ends[0];
  }
  const position = new Array(n);
  order.forEach((i, p) => (position[i] = p));
  const steps = order.map((i) => {
    const s = def.steps[i];
    return {
      name: s.name,
      function: s.function,
      inputs: inputsOf(s).map((inp) => (inp === INPUT ? { input: true } : { step: position[byName.get(inp)] })),
      inputNames: inputsOf(s),
      merge: s.merge ?? 'concat',
      query: s.query ?? '',
      path: s.path ?? '',
      limits: s.limits ?? {},
      readers: readersOf[i].length + (i === output ? 1 : 0),
    };
  });
  return { timeoutMs, steps, output: position[output] };
}

/** The steps `until` needs (its ancestors and itself), by plan index. */
function needed(p, until) {
  const need = new Array(p.steps.length).fill(false);
  const stack = [until];
  need[until] = true;
  while (stack.length) {
    for (const src of p.steps[stack.pop()].inputs) {
      if (src.step !== undefined && !need[src.step]) {
        need[src.step] = true;
        stack.push(src.step);
      }
    }
  }
  return need;
}

const JSON_WS = /^[ \t\n\r]+|[ \t\n\r]+$/g;
const strict = new TextDecoder('utf-8', { fatal: true });

/** Fan-in, as wisp_workflow::merge. parts: [{name, bytes: Uint8Array, contentType}]. */
export function merge(rule, parts) {
  if (rule === 'concat') {
    const total = parts.reduce((a, p) => a + p.bytes.length, 0);
    const body = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      body.set(p.bytes, at);
      at += p.bytes.length;
    }
    const first = parts[0]?.contentType;
    const common = parts.every((p) => p.contentType === first);
    return { body, contentType: common ? first : undefined };
  }
  if (rule === 'json') {
    const pieces = [];
    for (const p of parts) {
      let text;
      try {
        text = strict.decode(p.bytes).replace(JSON_WS, '');
        JSON.parse(text);
      } catch (e) {
        throw new WispError('bad_request', `merging its inputs: input ${JSON.stringify(p.name)} is not JSON (${e.message}); merge: json needs JSON from every input`);
      }
      pieces.push(`${JSON.stringify(p.name)}:${text}`);
    }
    return { body: utf8.encode(`{${pieces.join(',')}}`), contentType: 'application/json' };
  }
  throw new WispError('bad_request', `unknown merge rule ${JSON.stringify(rule)}`);
}

/** The first Content-Type a guest printed (what the server hands the next step). */
function guestContentType(headers) {
  const h = headers?.find(([k]) => k.toLowerCase() === 'content-type');
  return h ? h[1] : undefined;
}

/**
 * Runs workflow definitions with a WispRunner.
 */
export class WorkflowRunner {
  /**
   * @param {import('./runner.js').WispRunner} runner
   * @param {object} o
   * @param {(name: string) => string|URL|ArrayBuffer|object} o.functions
   *   the module of a function name: a URL, bytes or a loaded WispFunction
   *   (or an object mapping names to those)
   * @param {object} [o.limits] per function name, the function's own limits
   *   (`{memoryBytes, timeoutMs, maxBodyBytes, maxResponseBytes}`); steps
   *   lower them as on the server
   */
  constructor(runner, o) {
    this.runner = runner;
    const f = o.functions;
    this.functions = typeof f === 'function' ? f : (name) => f[name];
    this.limits = o.limits ?? {};
  }

  /** Load every function a definition names (the counterpart of a deploy). */
  async load(def) {
    const p = plan(def);
    await Promise.all(p.steps.map((s) => this._fn(s.function)));
    return p;
  }

  async _fn(name) {
    const src = this.functions(name);
    if (src === undefined) throw new WispError('bad_request', `function ${JSON.stringify(name)} not found`);
    const limits = { ...this.runner.limits, ...this.limits[name] };
    return this.runner.load(src, { name, memoryBytes: limits.memoryBytes });
  }

  /**
   * Run `def` on `input`.
   * @param {object} def the definition
   * @param {string|ArrayBuffer|ArrayBufferView} input
   * @param {object} [o]
   * @param {string} [o.contentType] the input's content type
   * @param {string} [o.until] hybrid: run up to this step here, the rest on the server
   * @param {string} [o.server] hybrid: the server's base URL ('' for this origin)
   * @param {string} [o.workflow] hybrid: the workflow's name on the server
   * @returns {Promise<{status, headers, body: Uint8Array, contentType, error?, failedStep?,
   *   record: {makespanMs, steps: object[], server?: object}}>}
   */
  async run(def, input, o = {}) {
    const p = plan(def);
    const t0 = now();
    const n = p.steps.length;
    const inputBytes = typeof input === 'string' ? utf8.encode(input) : input instanceof ArrayBuffer ? new Uint8Array(input) : new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
    let cut = null;
    if (o.until !== undefined) {
      cut = p.steps.findIndex((s) => s.name === o.until);
      if (cut < 0) throw new WispError('bad_request', `until=${JSON.stringify(o.until)} is not a step of this workflow`);
    }
    const runHere = cut === null ? new Array(n).fill(true) : needed(p, cut);
    const target = cut === null ? p.output : cut;
    // Readers among the steps run here (the cut's output is also read by the upload).
    const readersLeft = p.steps.map((s, i) => p.steps.filter((t, j) => runHere[j] && t.inputs.some((x) => x.step === i)).length + (i === target ? 1 : 0));
    const outs = new Array(n); // {bytes, contentType, end}
    const records = [];
    const pending = p.steps.map((s) => s.inputs.filter((x) => x.step !== undefined).length);
    const abort = new AbortController();
    const running = new Map(); // index → promise
    let failure = null;
    const deadline = setTimeout(() => {
      failure ??= { code: 'timeout', message: `the workflow ran past its ${p.timeoutMs} ms timeout; still running: ${[...running.keys()].map((i) => JSON.stringify(p.steps[i].name)).join(', ')}` };
      abort.abort();
    }, p.timeoutMs);

    const start = (i) => {
      const s = p.steps[i];
      let ready = t0;
      const parts = s.inputs.map((src, k) => {
        if (src.input) return { name: INPUT, bytes: inputBytes, contentType: o.contentType, lastReader: false };
        const out = outs[src.step];
        ready = Math.max(ready, out.end);
        return { name: s.inputNames[k], bytes: out.bytes, contentType: out.contentType, lastReader: --readersLeft[src.step] === 0, src: src.step };
      });
      let body;
      let contentType;
      let transfer = false;
      if (parts.length === 1 && s.merge === 'concat') {
        ({ bytes: body, contentType } = parts[0]);
        // The last reader takes the producer's buffer (a transfer, no copy).
        transfer = parts[0].lastReader;
        if (transfer) outs[parts[0].src].bytes = null;
      } else {
        ({ body, contentType } = merge(s.merge, parts));
        transfer = true;
      }
      for (const part of parts) if (part.lastReader && part.src !== undefined) outs[part.src].bytes = null;
      const own = this.limits[s.function] ?? {};
      const lim = s.limits;
      const limits = {
        ...own,
        ...(lim.timeout_ms !== undefined && { timeoutMs: lim.timeout_ms }),
        ...(lim.memory_bytes !== undefined && { memoryBytes: lim.memory_bytes }),
        ...(lim.max_response_bytes !== undefined && { maxResponseBytes: lim.max_response_bytes }),
      };
      const called = now();
      const promise = (async () => {
        const fn = await this._fn(s.function);
        const res = await this.runner.invoke(fn, {
          method: 'POST',
          path: s.path,
          query: s.query,
          // As the server: a POST to its own name, with the input's type.
          headers: [['host', `${this.runner.serverName}:${this.runner.serverPort}`], ...(contentType !== undefined ? [['content-type', contentType]] : [])],
          body,
          transfer,
          name: s.function,
          limits,
          signal: abort.signal,
        });
        return res;
      })();
      running.set(i, promise);
      return promise.then(
        (res) => ({ i, res, ready, called }),
        (e) => ({ i, err: e, ready, called }),
      );
    };

    const inflight = new Set();
    const launch = (i) => {
      const pr = start(i);
      inflight.add(pr);
      pr.finally(() => inflight.delete(pr));
    };
    try {
      for (let i = 0; i < n; i++) if (runHere[i] && pending[i] === 0) launch(i);
      while (outs[target] === undefined && failure === null) {
        if (inflight.size === 0) throw new WispError('internal', 'the workflow stalled with no step running');
        const done = await Promise.race(inflight);
        running.delete(done.i);
        const s = p.steps[done.i];
        if (failure) break;
        const res = done.res;
        const err = done.err ?? (res.error ? res.error : res.status >= 400 ? { code: 'step_failed', message: `answered ${res.status}: ${new TextDecoder().decode(res.body.subarray(0, 512)).trimEnd()}` } : null);
        if (err) {
          failure = { code: err.code ?? 'internal', message: `step ${JSON.stringify(s.name)} (function ${JSON.stringify(s.function)}): ${err.message}`, step: s.name };
          abort.abort();
          break;
        }
        const t = res.timings;
        const rec = {
          step: s.name,
          function: s.function,
          readyMs: done.ready - t0,
          startMs: t.guestStart - t0,
          endMs: t.guestEnd - t0,
          delayMs: t.guestStart - done.ready,
          handoffMs: done.called - done.ready,
          queueMs: t.queueMs,
          instantiateMs: t.instantiateMs,
          runMs: t.guestEnd - t.guestStart,
          bytesIn: res.bytesIn,
          bytesOut: res.body.length,
          cache: t.cache,
        };
        records.push(rec);
        outs[done.i] = { bytes: res.body, contentType: guestContentType(res.guestHeaders), end: t.guestEnd, status: res.status, headers: res.headers };
        for (let j = 0; j < n; j++) {
          if (runHere[j] && p.steps[j].inputs.some((x) => x.step === done.i) && --pending[j] === 0) launch(j);
        }
      }
    } finally {
      clearTimeout(deadline);
      if (failure) abort.abort();
    }
    if (failure) {
      const status = { timeout: 504, step_failed: 502, payload_too_large: 413, bad_request: 400 }[failure.code] ?? 500;
      return {
        status,
        headers: [['content-type', 'application/json']],
        body: utf8.encode(JSON.stringify({ error: { code: failure.code, message: failure.message } })),
        error: { code: failure.code, message: failure.message },
        failedStep: failure.step,
        record: { makespanMs: now() - t0, steps: records },
      };
    }
    const out = outs[target];
    if (cut === null) {
      return { status: out.status, headers: out.headers, body: out.bytes, contentType: out.contentType, record: { makespanMs: now() - t0, steps: records } };
    }
    // Hybrid: the rest on the server, the cut's output over HTTP.
    const sent = now();
    const url = `${o.server ?? ''}/wf/${encodeURIComponent(o.workflow)}?after=${encodeURIComponent(p.steps[cut].name)}`;
    const resp = await fetch(url, {
      method: 'POST',
      headers: out.contentType !== undefined ? { 'content-type': out.contentType } : {},
      body: out.bytes,
    });
    const body = new Uint8Array(await resp.arrayBuffer());
    const done = now();
    const timing = resp.headers.get('server-timing') ?? '';
    const serverSteps = timing
      .split(', ')
      .filter(Boolean)
      .map((part) => {
        const [k, v] = part.split(';dur=');
        return [k, Number(v)];
      });
    return {
      status: resp.status,
      headers: [...resp.headers].filter(([k]) => k === 'content-type'),
      body,
      contentType: resp.headers.get('content-type') ?? undefined,
      error: resp.ok ? undefined : { code: 'server', message: new TextDecoder().decode(body) },
      record: {
        makespanMs: done - t0,
        steps: records,
        server: { sentMs: sent - t0, roundTripMs: done - sent, activationId: resp.headers.get('wisp-activation-id'), timing: Object.fromEntries(serverSteps) },
      },
    };
  }
}
