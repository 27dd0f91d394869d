#!/usr/bin/env node
// The browser arm of `wisp bench --scenario workflow`: a workflow run by the
// browser runner in Debian's headless Chromium (playwright-core). Prints one
// JSON object on stdout. Config (argv[2], JSON):
//   {wispPort, workflow, def, payloads: ['16k', ...], runs: {label: n},
//    coldRuns, concurrency, seconds, hybridUntil, limits: {memoryBytes, ...}}
// Measured, all in ms on the page's clock:
//   cold     a fresh runner each time (no compiled module, no worker): load
//            (fetch + hash + compile) of the steps' modules, then the run;
//   coldCached  the same with the IndexedDB module cache filled by an earlier
//            runner (the browser's counterpart of AOT artifacts; Chromium
//            stores the capped bytes, not the Module, so it still compiles);
//   warm     per payload, runs on a warmed runner (modules compiled, workers up):
//            makespan and each step's delay, hand-off and run;
//   hybrid   per payload, the steps up to `hybridUntil` in the page, the rest
//            on the server through /wf/NAME?after=STEP (same origin, proxied);
//   load     `concurrency` runs at a time for `seconds` on the first payload:
//            runs/s, with CPU % and RSS of Chromium's whole process tree
//            sampled from /proc every 100 ms and the page's JS heap
//            (performance.memory).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { chromium } from 'playwright-core';
import { startStatic } from '../test/harness.mjs';

const cfg = JSON.parse(process.argv[2]);
const log = (m) => process.stderr.write(`[bench browser] ${m}\n`);

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ). */
const TICK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

function tree(root) {
  const kids = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push(Number(d));
    } catch {}
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) out.push(...(kids.get(out[i]) ?? []));
  return out;
}

function ppidOf(pid) {
  const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
}

/** CPU seconds (user + system) and RSS bytes of a process tree. */
function usage(root) {
  let cpu = 0;
  let rss = 0;
  for (const pid of tree(root)) {
    try {
      const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      cpu += (Number(f[11]) + Number(f[12])) / TICK;
      const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
      const m = /VmRSS:\s+(\d+) kB/.exec(status);
      if (m) rss += Number(m[1]) * 1024;
    } catch {}
  }
  return { cpu, rss };
}

const site = await startStatic();
site.proxyTo(cfg.wispPort);
const exe = process.env.CHROMIUM ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p));
if (!exe) throw new Error('Chromium not found (apt-get install chromium, or set CHROMIUM)');
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'wisp-bench-chromium-'));
const browser = await chromium.launch({
  executablePath: exe,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--enable-precise-memory-info'],
});
const result = { chromium: browser.version(), cores: os.cpus().length };
try {
  // Playwright starts Chromium as a child of this node process.
  const chromiumPids = tree(process.pid).filter((p) => p !== process.pid && /chrom/i.test(fs.readFileSync(`/proc/${p}/comm`, 'utf8')));
  const pid = chromiumPids.find((p) => !chromiumPids.includes(ppidOf(p)));
  const page = await browser.newPage();
  page.on('pageerror', (e) => log(`page error: ${e}`));
  await page.goto(`${site.url}/web/test/page.html`);
  await page.waitForFunction(() => window.ready === true);
  const functions = [...new Set(cfg.def.steps.map((s) => s.function))];
  await page.evaluate(
    async ({ base, functions, concurrency, limits }) => {
      const { WorkflowRunner } = await import('../src/workflow.js');
      window.mk = (cached = false) => {
        const cache = cached ? new wisp.ModuleCache('wisp-bench-workflow') : false;
        const runner = new wisp.WispRunner({ cache, maxWorkers: Math.max(concurrency, 2) });
        const flows = new WorkflowRunner(runner, {
          functions: Object.fromEntries(functions.map((f) => [f, `${base}/wasm/${f}.wasm`])),
          // The limits the bench deploys the functions with on the servers.
          limits: Object.fromEntries(functions.map((f) => [f, limits])),
        });
        return { runner, flows };
      };
      window.inputs = {};
    },
    { base: site.url, functions, concurrency: cfg.concurrency, limits: cfg.limits ?? {} },
  );
  for (const p of cfg.payloads) {
    await page.evaluate(async ({ base, p }) => {
      window.inputs[p] = new Uint8Array(await (await fetch(`${base}/inputs/frames/frame-${p}.png`)).arrayBuffer());
    }, { base: site.url, p });
  }
  const summarise = (res) => ({
    makespanMs: res.record.makespanMs,
    status: res.status,
    outBytes: res.body.length,
    steps: res.record.steps.map((s) => ({ step: s.step, delayMs: s.delayMs, handoffMs: s.handoffMs, runMs: s.runMs, instantiateMs: s.instantiateMs })),
  });

  // Cold: a fresh runner per run.
  log(`cold x${cfg.coldRuns}`);
  result.cold = [];
  for (let i = 0; i < cfg.coldRuns; i++) {
    result.cold.push(
      await page.evaluate(async ({ def, p }) => {
        const { runner, flows } = window.mk();
        const t0 = performance.now();
        await flows.load(def);
        const loaded = performance.now();
        const res = await flows.run(def, window.inputs[p]);
        const done = performance.now();
        const compiles = runner.stats().compiles;
        runner.close();
        return { loadMs: loaded - t0, runMs: done - loaded, totalMs: done - t0, status: res.status, makespanMs: res.record.makespanMs, compiles };
      }, { def: cfg.def, p: cfg.payloads[0] }),
    );
  }

  // Cold with the IndexedDB cache: one runner fills it, then fresh runners
  // load from it (fetch and hash still run: the cache is keyed by the digest).
  log(`cold with the IndexedDB cache x${cfg.coldRuns}`);
  await page.evaluate(async ({ def }) => {
    const { runner, flows } = window.mk(true);
    await flows.load(def);
    runner.close();
  }, { def: cfg.def });
  result.coldCached = [];
  for (let i = 0; i < cfg.coldRuns; i++) {
    result.coldCached.push(
      await page.evaluate(async ({ def, p }) => {
        const { runner, flows } = window.mk(true);
        const t0 = performance.now();
        await flows.load(def);
        const loaded = performance.now();
        const res = await flows.run(def, window.inputs[p]);
        const done = performance.now();
        const compiles = runner.stats().compiles;
        runner.close();
        return { loadMs: loaded - t0, runMs: done - loaded, totalMs: done - t0, status: res.status, makespanMs: res.record.makespanMs, compiles };
      }, { def: cfg.def, p: cfg.payloads[0] }),
    );
  }

  // Warm: one runner, modules compiled and workers started first.
  await page.evaluate(async ({ def, concurrency }) => {
    window.warm = window.mk();
    await window.warm.flows.load(def);
    await window.warm.runner.warmup(Math.max(concurrency, 2));
  }, { def: cfg.def, concurrency: cfg.concurrency });
  result.payloads = {};
  for (const p of cfg.payloads) {
    const n = cfg.runs[p] ?? 5;
    log(`warm ${p} x${n}`);
    const warm = [];
    await page.evaluate(async ({ def, p }) => window.warm.flows.run(def, window.inputs[p]), { def: cfg.def, p });
    for (let i = 0; i < n; i++) {
      const r = await page.evaluate(async ({ def, p }) => {
        const res = await window.warm.flows.run(def, window.inputs[p]);
        return { ...res, body: { length: res.body.length } };
      }, { def: cfg.def, p });
      warm.push(summarise(r));
    }
    const hybrid = [];
    if (cfg.hybridUntil) {
      for (let i = 0; i < Math.min(n, 10); i++) {
        hybrid.push(
          await page.evaluate(async ({ def, p, until, workflow }) => {
            const res = await window.warm.flows.run(def, window.inputs[p], { until, server: '', workflow });
            const browserEnd = Math.max(...res.record.steps.map((s) => s.endMs));
            return { status: res.status, makespanMs: res.record.makespanMs, browserMs: browserEnd, roundTripMs: res.record.server.roundTripMs, server: res.record.server.timing };
          }, { def: cfg.def, p, until: cfg.hybridUntil, workflow: cfg.workflow }),
        );
      }
    }
    result.payloads[p] = { warm, hybrid };
  }

  // Load: `concurrency` runs at a time on the first payload.
  log(`load: ${cfg.concurrency} at a time for ${cfg.seconds} s`);
  const samples = [];
  let last = pid ? usage(pid) : null;
  let lastT = performance.now();
  const sampler = setInterval(() => {
    if (!pid) return;
    const u = usage(pid);
    const t = performance.now();
    samples.push({ cpuPercent: ((u.cpu - last.cpu) / ((t - lastT) / 1000)) * 100, rss: u.rss });
    last = u;
    lastT = t;
  }, 100);
  const load = await page.evaluate(
    async ({ def, p, concurrency, seconds }) => {
      const end = performance.now() + seconds * 1000;
      let runs = 0;
      let errors = 0;
      const t0 = performance.now();
      const worker = async () => {
        while (performance.now() < end) {
          const res = await window.warm.flows.run(def, window.inputs[p]);
          if (res.status === 200) runs++;
          else errors++;
        }
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
      const took = (performance.now() - t0) / 1000;
      return { runs, errors, seconds: took, perSecond: runs / took, jsHeapBytes: performance.memory?.usedJSHeapSize ?? null };
    },
    { def: cfg.def, p: cfg.payloads[0], concurrency: cfg.concurrency, seconds: cfg.seconds },
  );
  clearInterval(sampler);
  result.load = { ...load, concurrency: cfg.concurrency, payload: cfg.payloads[0], samples };
} finally {
  await browser.close();
  site.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(result) + '\n');
