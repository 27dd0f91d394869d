// Test harness: a static server for web/ and the built guests, the real
// `wisp serve` as the reference, raw HTTP/1.1 requests (so the server and the
// browser see exactly the same header list), and headless Chromium.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const ROOT = path.resolve(WEB, '..');
export const GUESTS = path.join(ROOT, 'functions/target/wasm32-wasip1/release');
export const INPUTS = path.join(ROOT, 'functions/target/inputs');

export function guest(name) {
  const p = path.join(GUESTS, `${name}.wasm`);
  if (!fs.existsSync(p)) throw new Error(`${p} is missing: run scripts/build-functions first`);
  return p;
}

/** The wisp binary: $WISP_BIN, else target/{release,debug}/wisp, whichever is newer. */
export function wispBin() {
  if (process.env.WISP_BIN) return process.env.WISP_BIN;
  const found = ['release', 'debug']
    .map((p) => path.join(ROOT, 'target', p, 'wisp'))
    .filter((p) => fs.existsSync(p))
    .sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs);
  if (!found.length) throw new Error('no wisp binary: run `cargo build -p wisp-cli` (or set WISP_BIN)');
  return found[0];
}

const TYPES = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.html': 'text/html', '.wasm': 'application/wasm' };

/**
 * Serves /web/* from web/, /wasm/* from the guests and /inputs/* from the
 * generated inputs; counts requests per path. With `proxyTo(port)`, /wf/*
 * goes to a wisp server on that port, so a page reaches it from its own
 * origin (wisp sends no CORS headers; a deployment puts both behind one
 * origin the same way).
 */
export async function startStatic() {
  const hits = new Map();
  let proxyPort = null;
  const roots = { '/web/': WEB, '/wasm/': GUESTS, '/inputs/': INPUTS };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    hits.set(url.pathname, (hits.get(url.pathname) ?? 0) + 1);
    if (url.pathname.startsWith('/wf/') && proxyPort) {
      const up = http.request(
        { host: '127.0.0.1', port: proxyPort, method: req.method, path: req.url, headers: { ...req.headers, host: `127.0.0.1:${proxyPort}` } },
        (r) => {
          res.writeHead(r.statusCode, r.headers);
          r.pipe(res);
        },
      );
      up.on('error', (e) => res.writeHead(502).end(String(e)));
      req.pipe(up);
      return;
    }
    let file = null;
    let root = null;
    for (const [prefix, dir] of Object.entries(roots)) {
      if (url.pathname.startsWith(prefix)) {
        root = dir;
        file = path.join(dir, decodeURIComponent(url.pathname.slice(prefix.length)));
      }
    }
    if (!file || !file.startsWith(root) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, {
      'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
      'cache-control': 'no-store',
    });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    hits,
    proxyTo(port) {
      proxyPort = port;
    },
    close: () => server.close(),
  };
}

/** `wisp serve --listen 127.0.0.1:0` with a fresh home; killed by close(). */
export async function startWisp() {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-web-'));
  const env = { ...process.env, WISP_LOG: 'warn' };
  delete env.WISP_TOKEN;
  const child = spawn(wispBin(), ['serve', '--listen', '127.0.0.1:0', '--home', path.join(home, 'home')], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise((resolve, reject) => {
    readline.createInterface({ input: child.stdout }).once('line', resolve);
    child.once('exit', (c) => reject(new Error(`wisp serve exited with ${c}`)));
  });
  const m = /^wisp listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(line.trim());
  if (!m) throw new Error(`unexpected first line from wisp serve: ${line}`);
  const port = Number(m[1]);
  return {
    port,
    async deploy(name, file, config = {}) {
      const boundary = 'wisp-web-test-boundary';
      const part = (n, ct, data) =>
        Buffer.concat([
          Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${n}"; filename="${n}"\r\nContent-Type: ${ct}\r\n\r\n`),
          data,
          Buffer.from('\r\n'),
        ]);
      const body = Buffer.concat([
        part('module', 'application/wasm', fs.readFileSync(file)),
        part('config', 'application/json', Buffer.from(JSON.stringify(config))),
        Buffer.from(`--${boundary}--\r\n`),
      ]);
      const r = await raw(port, 'PUT', `/v1/functions/${name}`, [['content-type', `multipart/form-data; boundary=${boundary}`]], body);
      if (r.status >= 300) throw new Error(`deploy ${name}: ${r.status} ${r.body}`);
    },
    /** One request; returns the reply and the exact header list the server received. */
    async invoke(name, { method = 'GET', path: sub = '', query = '', headers = [], body } = {}) {
      return raw(port, method, `/fn/${name}${sub}${query ? '?' + query : ''}`, headers, body);
    },
    /** PUT a workflow definition (YAML or JSON text); returns the stored view. */
    async deployWorkflow(name, text) {
      const r = await raw(port, 'PUT', `/v1/workflows/${name}`, [['content-type', 'application/yaml']], Buffer.from(text));
      if (r.status >= 300) throw new Error(`deploy workflow ${name}: ${r.status} ${r.body}`);
      return JSON.parse(r.body.toString());
    },
    async runWorkflow(name, body, headers = [], query = '') {
      return raw(port, 'POST', `/wf/${name}${query ? '?' + query : ''}`, headers, body ?? Buffer.alloc(0));
    },
    async activation(id) {
      const r = await raw(port, 'GET', `/v1/activations/${id}`, []);
      return JSON.parse(r.body.toString());
    },
    close() {
      child.kill('SIGKILL');
      fs.rmSync(home, { recursive: true, force: true });
    },
  };
}

/**
 * A raw HTTP/1.1 request. The header list sent (Host first, then `headers`,
 * then Content-Length when there is a body, then Connection: close) is
 * returned as `sent`, lower-cased, for the browser to receive the same.
 */
export function raw(port, method, target, headers, body) {
  body = body === undefined ? null : Buffer.from(body);
  const sent = [['host', `127.0.0.1:${port}`], ...headers.map(([k, v]) => [k.toLowerCase(), v])];
  if (body) sent.push(['content-length', String(body.length)]);
  sent.push(['connection', 'close']);
  const head = `${method} ${target} HTTP/1.1\r\n` + sent.map(([k, v]) => `${k}: ${v}\r\n`).join('') + '\r\n';
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks = [];
    sock.on('data', (c) => chunks.push(c));
    sock.on('error', reject);
    sock.on('end', () => {
      try {
        resolve({ ...parseResponse(Buffer.concat(chunks)), sent });
      } catch (e) {
        reject(e);
      }
    });
    sock.write(head);
    if (body) sock.write(body);
  });
}

function parseResponse(buf) {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) throw new Error('no response head');
  const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(lines[0].split(' ')[1]);
  const headers = lines.slice(1).map((l) => {
    const i = l.indexOf(':');
    return [l.slice(0, i).toLowerCase(), l.slice(i + 1).trim()];
  });
  let body = buf.subarray(end + 4);
  if (headers.some(([k, v]) => k === 'transfer-encoding' && /chunked/i.test(v))) {
    const parts = [];
    let p = 0;
    for (;;) {
      const nl = body.indexOf('\r\n', p);
      const n = parseInt(body.subarray(p, nl).toString(), 16);
      if (!n) break;
      parts.push(body.subarray(nl + 2, nl + 2 + n));
      p = nl + 2 + n + 2;
    }
    body = Buffer.concat(parts);
  }
  const header = (k) => headers.find(([n]) => n === k)?.[1];
  return { status, headers, header, body };
}

/** Headless Chromium from Debian, a fresh profile; `open()` gives a test page. */
export async function startBrowser(base) {
  const exe = process.env.CHROMIUM ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p));
  if (!exe) throw new Error('Chromium not found: apt-get install chromium (or set CHROMIUM)');
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-chromium-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: exe,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run',
    ],
  });
  return {
    ctx,
    async open() {
      const page = await ctx.newPage();
      page.on('pageerror', (e) => console.error('page error:', e));
      await page.goto(`${base}/web/test/page.html`);
      await page.waitForFunction(() => window.ready === true);
      return page;
    },
    async close() {
      await ctx.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}
