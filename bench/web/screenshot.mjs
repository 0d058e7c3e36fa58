// Opens a cachingproxy-bench HTML report in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core) with every network request refused, checks that it drew its
// charts without a script error, and saves a full-page screenshot.
//
//   node screenshot.mjs REPORT.html OUT.png
//
// Prints one JSON line: {"charts": N, "runs": N, "sim": bool, "canvases": [{"id", "ink"}]}
// ("ink": pixels that are not blank). Exits non-zero when the page fails any check.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [report, out] = process.argv.slice(2);
if (!report || !out) {
  console.error('usage: node screenshot.mjs REPORT.html OUT.png');
  process.exit(2);
}
const url = pathToFileURL(resolve(report)).href;
const profile = mkdtempSync(join(tmpdir(), 'cpbench-chromium-'));
const problems = [];
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
    timeout: 30000,
  });
  const page = context.pages()[0] || await context.newPage();
  // offline: the page itself is the only thing it may load
  await page.route('**/*', (route) => {
    if (route.request().url() === url) return route.continue();
    problems.push('request to ' + route.request().url());
    return route.abort();
  });
  page.on('pageerror', (e) => problems.push('script error: ' + e.message));
  page.on('console', (m) => { if (m.type() === 'error') problems.push('console error: ' + m.text()); });
  await page.goto(url, { waitUntil: 'load', timeout: 30000 });
  await page.waitForFunction(() => window.benchReport !== undefined, null, { timeout: 15000 });
  const summary = await page.evaluate(() => {
    const canvases = Array.from(document.querySelectorAll('canvas')).map((c) => {
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let ink = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i] > 0) ink++;
      return { id: c.id, ink: ink };
    });
    return Object.assign({}, window.benchReport, { canvases: canvases });
  });
  if (summary.canvases.length !== summary.charts) {
    problems.push(summary.charts + ' charts made but ' + summary.canvases.length + ' canvases');
  }
  for (const c of summary.canvases) {
    if (c.ink < 2000) problems.push('canvas ' + c.id + ' is nearly blank (' + c.ink + ' pixels)');
  }
  await page.screenshot({ path: out, fullPage: true });
  console.log(JSON.stringify(summary));
} catch (e) {
  problems.push(String(e && e.message ? e.message : e));
} finally {
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
if (problems.length) {
  console.error('report check failed:\n  ' + problems.join('\n  '));
  process.exit(1);
}
