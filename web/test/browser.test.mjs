// The browser runner in real headless Chromium, against the real `wisp serve`:
// for the same request, status, content-type, headers and body bytes must be
// identical. Needs the built guests (scripts/build-functions), the inputs
// (scripts/gen-inputs), a wisp binary and Chromium; see docs/browser.md.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { INPUTS, guest, startBrowser, startStatic, startWisp } from './harness.mjs';

let site, wisp, browser, page;

const DEPLOYS = {
  hello: {},
  echo: {},
  fibonacci: {},
  whatlang: {},
  'audio-sine-wave': {},
  'image-processing': {},
  'test-cgi': { env: { MODE: 'safe' } },
  'test-stack': {},
  'test-membomb': { limits: { memory_bytes: 16 << 20 } },
  'test-spin': { limits: { timeout_ms: 1000 } },
};

before(async () => {
  site = await startStatic();
  wisp = await startWisp();
  for (const [name, config] of Object.entries(DEPLOYS)) await wisp.deploy(name, guest(name), config);
  browser = await startBrowser(site.url);
  page = await browser.open();
  await page.evaluate((port) => {
    // The server's SERVER_NAME/PORT/REMOTE_ADDR, so the env is the same.
    window.runner = new wisp.WispRunner({ serverName: '127.0.0.1', serverPort: port, remoteAddr: '127.0.0.1', cache: false });
  }, wisp.port);
});

after(async () => {
  await browser?.close();
  wisp?.close();
  site?.close();
});

/** Runs `req` in the page's runner; bodies travel as base64. */
async function inBrowser(name, req, limits) {
  const r = await page.evaluate(
    async ({ base, name, req, limits }) => {
      const res = await window.runner.invoke(`${base}/wasm/${name}.wasm`, {
        ...req,
        body: req.body === undefined ? undefined : b64.from(req.body),
        limits,
      });
      return { ...res, body: b64.to(res.body), logBytes: undefined };
    },
    { base: site.url, name, req: { ...req, body: req.body === undefined ? undefined : Buffer.from(req.body).toString('base64') }, limits },
  );
  return { ...r, body: Buffer.from(r.body, 'base64') };
}

// Headers that are the server's own, not the function's.
const SERVER_ONLY = new Set(['date', 'content-length', 'transfer-encoding', 'wisp-activation-id', 'wisp-cold', 'server-timing', 'connection']);

/** The same request to `wisp serve` and to the browser; asserts they answer the same. */
async function parity(name, { method = 'GET', path: sub = '', query = '', headers = [], body, env } = {}, limits) {
  const served = await wisp.invoke(name, { method, path: sub, query, headers, body });
  const browser = await inBrowser(name, { method, path: sub, query, headers: served.sent, body, env: env ?? DEPLOYS[name].env }, limits);
  const what = `${name} ${method} ${sub}?${query}`;
  assert.equal(browser.status, served.status, `${what}: status (browser error: ${JSON.stringify(browser.error)}; served: ${served.body.subarray(0, 300)})`);
  assert.equal(
    headerOf(browser.headers, 'content-type'),
    served.header('content-type'),
    `${what}: content-type`,
  );
  if (!browser.body.equals(served.body)) {
    assert.fail(
      `${what}: bodies differ\n browser (${browser.body.length} B): ${JSON.stringify(browser.body.subarray(0, 400).toString())}\n` +
        ` served  (${served.body.length} B): ${JSON.stringify(served.body.subarray(0, 400).toString())}`,
    );
  }
  if (!browser.error) {
    assert.deepEqual(browser.headers, served.headers.filter(([k]) => !SERVER_ONLY.has(k)), `${what}: headers`);
  }
  return { served, browser };
}

const headerOf = (hs, k) => hs.find(([n]) => n === k)?.[1];

describe('parity with wisp serve (byte-identical answers)', () => {
  test('hello', async () => {
    await parity('hello');
  });

  test('echo: method, sub-path, query, headers and body round trip', async () => {
    await parity('echo', {
      method: 'POST',
      path: '/a/b',
      query: 'a=1&b=two+words&c=%41%zz&d',
      headers: [['X-Trace-Id', '7'], ['Content-Type', 'text/csv'], ['Authorization', 'Bearer secret'], ['X-Dup', 'one'], ['Accept', '*/*'], ['X-Dup', 'two']],
      body: 'some body',
    });
  });

  test('test-cgi: the whole CGI environment, with hostile query names and the function env', async () => {
    const { browser } = await parity('test-cgi', {
      method: 'PUT',
      path: '/deep/path',
      query: 'n=1&MODE=evil&HTTP_X_FORWARDED_FOR=6.6.6.6&REMOTE_ADDR=6.6.6.6&Request_Method=X&HTTPS=on&k%3Dv=1&nul=%00&utf=%C3%A9%FF&empty=&&=x',
      headers: [['X-Forwarded-For', '1.1.1.1'], ['Proxy', 'http://evil:1'], ['Content-Type', 'application/x-www-form-urlencoded'], ['X-Dup', 'a'], ['X-Other', 'o'], ['x-dup', 'b']],
      body: Buffer.from([0, 1, 2, 255, 10, 13, 10]),
    });
    const text = browser.body.toString();
    assert.match(text, /^MODE=safe$/m, 'the function env wins over the query');
    assert.match(text, /^SERVER_SOFTWARE=wisp\//m);
  });

  test('test-cgi: no header block is text/plain; a custom header; 404 status', async () => {
    await parity('test-cgi', { query: 'raw=1&big=100' });
    await parity('test-cgi', { query: 'status=404&header=X-A:b&big=10' });
    const { browser } = await parity('test-cgi', { query: 'status=418&big=3' });
    assert.equal(browser.status, 418);
  });

  test('fibonacci: a JSON action, from the query and from a JSON body', async () => {
    await parity('fibonacci', { query: 'n=20' });
    await parity('fibonacci', { method: 'POST', headers: [['Content-Type', 'application/json']], body: '{"n":25}' });
    await parity('fibonacci', { query: 'n=junk' }); // the SDK's 400
  });

  test('whatlang', async () => {
    await parity('whatlang', { query: 'text=Das+ist+ein+kurzer+Satz+in+deutscher+Sprache' });
  });

  test('binary output: audio-sine-wave (WAV) and image-processing (PNG in, PNG out)', async () => {
    const { browser } = await parity('audio-sine-wave', { query: 'freq=880&duration=1' });
    assert.equal(browser.body.subarray(0, 4).toString(), 'RIFF');
    const png = fs.readFileSync(path.join(INPUTS, 'images/input.png'));
    const r = await parity('image-processing', {
      method: 'POST',
      query: 'width=200&height=100&angle=90',
      headers: [['Content-Type', 'image/png']],
      body: png,
    });
    assert.equal(headerOf(r.browser.headers, 'content-type'), 'image/png');
    assert.ok(r.browser.body.length > 1000);
  });

  test('a non-zero exit is the same 500 JSON error, with the log kept', async () => {
    const { browser } = await parity('test-cgi', { query: 'exit=3&stderr=dying+words&big=1' });
    assert.equal(browser.error.code, 'nonzero_exit');
    assert.equal(browser.log, 'dying words\n');
  });

  test('timeout: test-spin is stopped within the timeout plus slack, the same 504', async () => {
    const t0 = Date.now();
    const { browser } = await parity('test-spin', {}, { timeoutMs: 1000 });
    const took = Date.now() - t0;
    assert.equal(browser.error.code, 'timeout');
    assert.ok(browser.timings.totalMs < 1000 + 1500, `browser took ${browser.timings.totalMs} ms`);
    assert.ok(took < 10_000, `both took ${took} ms`);
  });
});

describe('failures, limits and the worker pool', () => {
  test('stderr is the log, as the server records it', async () => {
    const served = await wisp.invoke('test-cgi', { query: 'stderr=hello+log&big=2' });
    const record = await wisp.activation(served.header('wisp-activation-id'));
    const b = await inBrowser('test-cgi', { query: 'stderr=hello+log&big=2', env: DEPLOYS['test-cgi'].env });
    assert.equal(b.log, 'hello log\n');
    assert.equal(b.log, record.log);
  });

  test('a trap (stack overflow) is a clear 500, kills its worker, and the runner goes on', async () => {
    const served = await wisp.invoke('test-stack');
    const before = await page.evaluate(() => window.runner.stats());
    const b = await inBrowser('test-stack', {});
    assert.equal(b.status, 500);
    assert.equal(b.error.code, 'trap');
    assert.equal(JSON.parse(served.body).error.code, 'trap');
    assert.match(b.error.message, /^function trapped: /);
    const afterStats = await page.evaluate(() => window.runner.stats());
    assert.equal(afterStats.workersTerminated, before.workersTerminated + 1, 'the worker was terminated');
    await parity('hello');
  });

  test('memory cap: test-membomb stops at the limit as out of memory', async () => {
    const served = await wisp.invoke('test-membomb');
    assert.equal(JSON.parse(served.body).error.code, 'trap');
    const b = await inBrowser('test-membomb', {}, { memoryBytes: 16 << 20 });
    assert.equal(b.status, 500);
    assert.equal(b.error.code, 'trap');
    assert.match(b.error.message, /out of memory: memory.grow was refused at the 16777216-byte limit/);
    await parity('hello');
  });

  test('a response past maxResponseBytes is refused like the server does', async () => {
    const b = await inBrowser('test-cgi', { query: 'big=100000' }, { maxResponseBytes: 50_000 });
    assert.equal(b.status, 500);
    assert.equal(b.error.code, 'response_too_large');
  });

  test('bodies are handed over as transferred ArrayBuffers, both ways', async () => {
    const r = await page.evaluate(async (base) => {
      const body = new TextEncoder().encode('x'.repeat(1 << 20));
      const res = await window.runner.invoke(`${base}/wasm/echo.wasm`, { body, transfer: true });
      return { detached: body.buffer.byteLength === 0, status: res.status, ownBuffer: res.body.buffer.byteLength >= res.body.byteLength };
    }, site.url);
    assert.deepEqual(r, { detached: true, status: 200, ownBuffer: true });
  });

  test('a module the server would refuse is a WispError at load', async () => {
    const r = await page.evaluate(async () => {
      try {
        await window.runner.invoke(new Uint8Array([0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0]));
        return 'loaded';
      } catch (e) {
        return `${e.name} ${e.code}: ${e.message}`;
      }
    });
    assert.match(r, /^WispError bad_request: not a core WebAssembly module/);
  });
});

describe('compiled-module cache', () => {
  test('cold compile, then memory, then IndexedDB after a reload (no fetch when pinned)', async () => {
    const url = `${site.url}/wasm/image-processing.wasm`;
    const p1 = await browser.open();
    const first = await p1.evaluate(async (url) => {
      const cache = new wisp.ModuleCache('wisp-test-cache');
      await cache.clear();
      const runner = new wisp.WispRunner({ cache });
      const cold = await runner.invoke(url, { query: 'width=8&height=8', body: new Uint8Array(0) });
      const warm = await runner.invoke(url, { query: 'width=8&height=8', body: new Uint8Array(0) });
      return { cold: cold.timings, warm: warm.timings, sha256: cold.function.sha256, stored: (await runner.load(url, { reload: true })).load, modulesStorable: cache.modulesStorable };
    }, url);
    await p1.close();
    assert.equal(first.cold.cache, 'none');
    assert.ok(first.cold.compileMs > 0);
    assert.equal(first.warm.cache, 'memory');
    assert.equal(first.warm.compileMs, 0);

    const fetchesBefore = site.hits.get('/wasm/image-processing.wasm');
    const p2 = await browser.open(); // a new page: nothing in memory
    const second = await p2.evaluate(
      async ({ url, sha256 }) => {
        const cache = new wisp.ModuleCache('wisp-test-cache');
        const runner = new wisp.WispRunner({ cache });
        const f = await runner.load(url, { sha256 });
        const res = await runner.invoke(f, { query: 'width=8&height=8', body: new Uint8Array(0) });
        return { load: f.load, status: res.status, modulesStorable: cache.modulesStorable };
      },
      { url, sha256: first.sha256 },
    );
    await p2.close();
    assert.equal(second.load.cache, 'idb', 'the second load is served from IndexedDB');
    assert.equal(site.hits.get('/wasm/image-processing.wasm'), fetchesBefore, 'no fetch of the module');
    assert.equal(second.status, 400, 'the empty body is the function\'s own 400');
    // Where IndexedDB keeps a WebAssembly.Module there is no compile at all;
    // Chromium refuses Modules (DataCloneError), so the bytes are kept and compiled.
    if (second.load.stored === 'module') assert.equal(second.load.compileMs, 0);
    else assert.equal(second.load.stored, 'bytes');
    console.log(`# image-processing.wasm: cold load ${first.cold.loadMs.toFixed(1)} ms (fetch ${first.cold.fetchMs.toFixed(1)}, hash ${first.cold.hashMs.toFixed(1)}, compile ${first.cold.compileMs.toFixed(1)}); ` +
      `IndexedDB load ${second.load.compileMs.toFixed(1)} ms compile (stored ${second.load.stored}); memory: ${first.warm.loadMs.toFixed(2)} ms`);
  });
});
