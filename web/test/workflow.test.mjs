// Workflows in real headless Chromium against the real `wisp serve`: the same
// definition (as the server stores it) on the same input gives the same
// bytes; steps run in workers with transferred buffers; failures stop the
// other steps; a hybrid run does the first steps in the page and the rest on
// the server. Needs what browser.test.mjs needs plus the frame inputs
// (scripts/gen-inputs).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { INPUTS, guest, raw, startBrowser, startStatic, startWisp } from './harness.mjs';

let site, wisp, browser, page;

const FUNCTIONS = ['frame-decode', 'frame-gray', 'frame-resize', 'frame-edges', 'frame-compress', 'frame-summary', 'echo', 'test-cgi', 'test-spin'];

const WORKFLOWS = {
  frames: `
steps:
  - {name: decode, function: frame-decode}
  - {name: gray, function: frame-gray, inputs: decode}
  - {name: edges, function: frame-edges, inputs: gray}
  - {name: summary, function: frame-summary, inputs: edges}
`,
  // Fan-out after gray, fan-in of the edge map and a half-size frame.
  branches: `
steps:
  - {name: decode, function: frame-decode}
  - {name: gray, function: frame-gray, inputs: decode}
  - {name: edges, function: frame-edges, inputs: gray}
  - {name: small, function: frame-resize, inputs: gray, query: factor=2}
  - {name: zipped, function: frame-compress, inputs: decode, query: level=1}
  - {name: summary, function: frame-summary, inputs: [edges, small, zipped]}
`,
  merges: `
steps:
  - {name: src, function: echo, path: /src}
  - {name: left, function: echo, inputs: src, query: side=left}
  - {name: right, function: echo, inputs: src, query: side=right}
  - {name: cat, function: echo, inputs: [right, left]}
  - {name: obj, function: echo, inputs: [left, $input, right], merge: json}
  - {name: both, function: echo, inputs: [cat, obj], merge: json}
`,
  failing: `
steps:
  - {name: spin, function: test-spin}
  - {name: fail, function: test-cgi, query: exit=3}
  - {name: join, function: echo, inputs: [spin, fail]}
`,
};

const defs = {};

before(async () => {
  site = await startStatic();
  wisp = await startWisp();
  site.proxyTo(wisp.port);
  for (const f of FUNCTIONS) await wisp.deploy(f, guest(f), f === 'test-spin' ? { limits: { timeout_ms: 60000 } } : {});
  for (const [name, text] of Object.entries(WORKFLOWS)) defs[name] = (await wisp.deployWorkflow(name, text)).definition;
  browser = await startBrowser(site.url);
  page = await browser.open();
  await page.evaluate(
    async ({ port, base, functions }) => {
      const { WorkflowRunner } = await import('../src/workflow.js');
      window.runner = new wisp.WispRunner({ serverName: '127.0.0.1', serverPort: port, remoteAddr: '127.0.0.1', cache: false, maxWorkers: 4 });
      window.flows = new WorkflowRunner(window.runner, {
        functions: Object.fromEntries(functions.map((f) => [f, `${base}/wasm/${f}.wasm`])),
        limits: { 'test-spin': { timeoutMs: 60000 } },
      });
    },
    { port: wisp.port, base: site.url, functions: FUNCTIONS },
  );
});

after(async () => {
  await browser?.close();
  wisp?.close();
  site?.close();
});

/** Runs `def` in the page on `input` (base64 across the boundary). */
async function inBrowser(def, input, opts = {}) {
  const r = await page.evaluate(
    async ({ def, input, opts }) => {
      const res = await window.flows.run(def, b64.from(input), opts);
      return { ...res, body: b64.to(res.body) };
    },
    { def, input: Buffer.from(input).toString('base64'), opts },
  );
  return { ...r, body: Buffer.from(r.body, 'base64') };
}

const frame = (label) => fs.readFileSync(path.join(INPUTS, `frames/frame-${label}.png`));
const header = (hs, k) => hs.find(([n]) => n === k)?.[1];

describe('workflows: browser and server give the same bytes', () => {
  for (const label of ['16k', '256k']) {
    test(`the 4-step frame chain on frame-${label}`, async () => {
      const input = frame(label);
      const served = await wisp.runWorkflow('frames', input);
      assert.equal(served.status, 200, served.body.toString());
      const b = await inBrowser(defs.frames, input);
      assert.equal(b.status, 200, JSON.stringify(b.error));
      assert.ok(b.body.equals(served.body), `bodies differ:\n browser ${b.body}\n server  ${served.body}`);
      assert.equal(header(b.headers, 'content-type'), served.header('content-type'));
      // The same timings as the server: per step ready/start/end, delay and run.
      const steps = b.record.steps;
      assert.deepEqual(steps.map((s) => s.step), ['decode', 'gray', 'edges', 'summary']);
      let prevEnd = 0;
      for (const s of steps) {
        assert.ok(s.readyMs >= prevEnd - 0.001 && s.startMs >= s.readyMs && s.endMs >= s.startMs, JSON.stringify(s));
        assert.ok(Math.abs(s.delayMs - (s.startMs - s.readyMs)) < 1e-6);
        prevEnd = s.endMs;
      }
      assert.ok(b.record.makespanMs >= steps.reduce((a, s) => a + s.delayMs + s.runMs, 0) - 0.01);
      const timing = served.header('server-timing');
      for (const s of steps) assert.match(timing, new RegExp(`${s.step}\\.delay;dur=[0-9.]+, ${s.step}\\.run;dur=`));
    });
  }

  test('fan-out and fan-in: branches, concat of three frames', async () => {
    const input = frame('64k');
    const served = await wisp.runWorkflow('branches', input);
    assert.equal(served.status, 200, served.body.toString());
    const b = await inBrowser(defs.branches, input);
    assert.ok(b.body.equals(served.body), `bodies differ:\n browser ${b.body}\n server  ${served.body}`);
    const summary = JSON.parse(b.body);
    assert.deepEqual(summary.frames.map((f) => f.format), ['P5', 'P5']);
    assert.ok(summary.trailing_bytes > 0, 'the zlib stream follows the two frames');
  });

  test('merge rules: concat and json, with the request each step saw', async () => {
    const input = Buffer.from('{"msg": "hello"}');
    const ct = [['content-type', 'text/x-json']];
    const served = await wisp.runWorkflow('merges', input, ct);
    assert.equal(served.status, 200, served.body.toString());
    const b = await inBrowser(defs.merges, input, { contentType: 'text/x-json' });
    assert.equal(b.status, 200, JSON.stringify(b.error));
    assert.ok(b.body.equals(served.body), `bodies differ:\n browser ${b.body}\n server  ${served.body}`);
    const inner = JSON.parse(JSON.parse(b.body).body);
    const obj = JSON.parse(inner.obj.body);
    assert.deepEqual(obj.$input, { msg: 'hello' });
    assert.equal(obj.left.query.side, 'left');
  });
});

describe('workflows in the browser', () => {
  test('a failing step fails the run by name and stops the spinning one', async () => {
    const served = await wisp.runWorkflow('failing', Buffer.alloc(0));
    assert.equal(served.status, 500);
    const r = await page.evaluate(async (def) => {
      const before = window.runner.stats();
      const t0 = performance.now();
      const res = await window.flows.run(def, '');
      await new Promise((ok) => setTimeout(ok, 50));
      return { status: res.status, error: res.error, failedStep: res.failedStep, ms: performance.now() - t0, before, after: window.runner.stats() };
    }, defs.failing);
    assert.equal(r.status, 500);
    assert.equal(r.error.code, 'nonzero_exit');
    assert.equal(r.failedStep, 'fail');
    assert.match(r.error.message, /^step "fail" \(function "test-cgi"\): function exited with status 3/);
    assert.ok(r.ms < 5000, `waited ${r.ms} ms`);
    assert.equal(r.after.running, 0, 'nothing left running');
    assert.ok(r.after.workersTerminated > r.before.workersTerminated, 'the spinner\'s worker was terminated');
  });

  test('the workflow timeout stops the steps', async () => {
    const def = { timeout_ms: 300, steps: [{ name: 'spin', function: 'test-spin' }] };
    const r = await page.evaluate(async (def) => {
      const t0 = performance.now();
      const res = await window.flows.run(def, '');
      return { status: res.status, error: res.error, ms: performance.now() - t0, after: window.runner.stats() };
    }, def);
    assert.equal(r.status, 504);
    assert.match(r.error.message, /ran past its 300 ms timeout; still running: "spin"/);
    assert.ok(r.ms >= 290 && r.ms < 3000, `${r.ms} ms`);
    assert.equal(r.after.running, 0);
  });

  test('a view given with transfer moves its buffer to the worker', async () => {
    const r = await page.evaluate(async (base) => {
      const buf = new Uint8Array(16).fill(65);
      const view = buf.subarray(4, 9);
      const res = await window.runner.invoke(`${base}/wasm/echo.wasm`, { body: view, transfer: true });
      return { detached: buf.byteLength, echoed: JSON.parse(new TextDecoder().decode(res.body)).body, bytesIn: res.bytesIn };
    }, site.url);
    assert.equal(r.detached, 0, 'the buffer was transferred, not copied');
    assert.equal(r.echoed, 'AAAAA');
    assert.equal(r.bytesIn, 5);
  });

  test('hybrid: decode and gray in the page, edges and summary on the server', async () => {
    const input = frame('256k');
    const served = await wisp.runWorkflow('frames', input);
    const b = await inBrowser(defs.frames, input, { until: 'gray', server: site.url, workflow: 'frames' });
    assert.equal(b.status, 200, JSON.stringify(b.error));
    assert.ok(b.body.equals(served.body), 'the hybrid run answers what the server alone does');
    assert.deepEqual(b.record.steps.map((s) => s.step), ['decode', 'gray']);
    assert.deepEqual(Object.keys(b.record.server.timing), ['edges.delay', 'edges.run', 'summary.delay', 'summary.run', 'makespan']);
    assert.match(b.record.server.activationId, /^[0-9a-f]{32}$/);
    const rec = JSON.parse((await raw(wisp.port, 'GET', `/v1/activations/${b.record.server.activationId}`, [])).body);
    assert.deepEqual(rec.steps.map((s) => s.step), ['edges', 'summary']);
  });

  test('definitions the browser cannot run are refused by step', async () => {
    const r = await page.evaluate(async () => {
      const errs = [];
      for (const def of [
        { steps: [{ name: 'a', function: 'echo', inputs: ['b'] }, { name: 'b', function: 'echo', inputs: ['a'] }] },
        { steps: [{ name: 'a', function: 'echo' }, { name: 'b', function: 'echo', inputs: 'a', stream: true }] },
        { steps: [{ name: 'a', function: 'nope' }] },
      ]) {
        try {
          const res = await window.flows.run(def, '');
          errs.push(res.error?.message ?? 'ran');
        } catch (e) {
          errs.push(e.message);
        }
      }
      return errs;
    });
    assert.match(r[0], /^step "a": is part of a cycle/);
    assert.match(r[1], /^step "b": stream: true needs wasi:http components/);
    assert.match(r[2], /function "nope" not found/);
  });
});
