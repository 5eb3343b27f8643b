#!/usr/bin/env node
// Benchmark (not a test): the highest rate of rows per second the live view renders without
// dropping frames. Feeds synthetic rows through the dev server (ui/dev/dev-server.mjs) at
// increasing rates into Debian's chromium, and per rate counts rows applied to the table and
// animation-frame gaps over 50 ms ("dropped frames"). Prints a table. Rate 0 first: the idle
// frame rate, which shows how busy the machine is besides the page.
//
//   npm run build && node bench/rows-per-second.mjs
//   BENCH_RATES=1000,5000,20000 BENCH_SECONDS=5 node bench/rows-per-second.mjs
import { startDevServer } from "../dev/dev-server.mjs";
import { launchChromium } from "../e2e/chromium.mjs";

const rates = (process.env.BENCH_RATES ?? "0,250,500,1000,2000,5000,10000,20000,40000").split(",").map(Number);
const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const warmupSeconds = Number(process.env.BENCH_WARMUP_SECONDS ?? 3);
const GAP_MS = 50;

const server = await startDevServer({ port: 0, token: "bench-token", rate: 0 });
const browser = await launchChromium();
const results = [];
try {
  const page = await browser.context.newPage();
  // A frame monitor of its own: every animation frame, the gap since the previous one.
  await page.addInitScript((gapMs) => {
    const monitor = { frames: 0, long: 0, maxGap: 0, last: 0 };
    window.__frames = monitor;
    window.__resetFrames = () => Object.assign(monitor, { frames: 0, long: 0, maxGap: 0, last: 0 });
    const tick = (now) => {
      if (monitor.last) {
        const gap = now - monitor.last;
        monitor.maxGap = Math.max(monitor.maxGap, gap);
        if (gap > gapMs) monitor.long++;
      }
      monitor.last = now;
      monitor.frames++;
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }, GAP_MS);
  await page.goto(`${server.url}/#token=${server.token}`);
  await page.waitForSelector("[data-testid=status][data-state=live]", { timeout: 30_000 });

  for (const rate of rates) {
    server.setRate(rate);
    await page.waitForTimeout(warmupSeconds * 1000);
    const before = await page.evaluate(() => {
      window.__resetFrames();
      return { ...window.__apiscope };
    });
    const started = Date.now();
    await page.waitForTimeout(seconds * 1000);
    const after = await page.evaluate(() => ({ stats: { ...window.__apiscope }, frames: { ...window.__frames } }));
    const elapsed = (Date.now() - started) / 1000;
    const kept = await page.$eval("[data-testid=row-count]", (el) => el.textContent);
    results.push({
      rate,
      rendered: Math.round((after.stats.applied - before.applied) / elapsed),
      fps: Math.round(after.frames.frames / elapsed),
      droppedFrames: after.frames.long,
      maxGapMs: Math.round(after.frames.maxGap),
      serverDropped: after.stats.serverDropped - before.serverDropped,
      kept,
    });
    const r = results.at(-1);
    console.error(`rate ${rate}: ${r.rendered} rows/s rendered, ${r.fps} fps, ${r.droppedFrames} frames > ${GAP_MS} ms (max ${r.maxGapMs} ms)`);
  }
} finally {
  server.setRate(0);
  await browser.close();
  await server.close();
}

const ok = (r) => r.droppedFrames === 0 && r.serverDropped === 0 && r.rendered >= 0.9 * r.rate;
console.log(`\n| offered rows/s | rendered rows/s | fps | frames > ${GAP_MS} ms | max frame gap | skipped by server | ok |`);
console.log("|---:|---:|---:|---:|---:|---:|:--:|");
for (const r of results) {
  console.log(`| ${r.rate} | ${r.rendered} | ${r.fps} | ${r.droppedFrames} | ${r.maxGapMs} ms | ${r.serverDropped} | ${ok(r) ? "yes" : "no"} |`);
}
const best = results.filter(ok).map((r) => r.rendered);
console.log(`\nhighest rate rendered without dropped frames: ${best.length ? Math.max(...best) : 0} rows/s`);
