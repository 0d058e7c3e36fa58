/*
 * screenshots.mjs --web DIR --out DIR: the editors in headless Chromium (Debian's, driven by
 * playwright-core). Serves the harness page built by harness/webpack.config.js, checks what a
 * user sees and can do in each scenario, and saves a screenshot of each.
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ICONS = path.join(HERE, '..', 'node_modules', '@grafana', 'ui', 'dist', 'public', 'img', 'icons');
const CHROMIUM = process.env.CP_CHROMIUM || '/usr/bin/chromium';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), [])
);
const web = path.resolve(args.web);
const out = path.resolve(args.out);
fs.mkdirSync(out, { recursive: true });

// the whole run is bounded, whatever hangs
const guard = setTimeout(() => {
  console.error('screenshots: gave up after 150 s');
  process.exit(1);
}, 150_000);

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.svg': 'image/svg+xml' };
const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  let file;
  if (url.pathname.startsWith('/public/img/icons/')) {
    file = path.join(ICONS, path.normalize(url.pathname.slice('/public/img/icons/'.length)));
  } else {
    file = path.join(web, path.normalize(url.pathname === '/' ? 'index.html' : url.pathname.slice(1)));
  }
  if (!file.startsWith(ICONS) && !file.startsWith(web)) {
    res.writeHead(403).end();
    return;
  }
  fs.readFile(file, (err, body) => {
    if (err) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream' }).end(body);
  });
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const base = `http://127.0.0.1:${server.address().port}/`;

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'cp-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  viewport: { width: 1100, height: 900 },
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
context.setDefaultTimeout(20_000);

const pageErrors = [];
const results = [];

async function open(query) {
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(`${query}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') {
      pageErrors.push(`${query}: console: ${m.text()}`);
    }
  });
  // nothing but the harness server may be reached
  await page.route(/^(?!http:\/\/127\.0\.0\.1:)/, (r) => r.abort());
  await page.goto(base + '?' + query);
  await page.getByTestId('harness-ready').waitFor();
  return page;
}

async function shot(target, name) {
  const file = path.join(out, name);
  await target.screenshot({ path: file, ...(target.url ? { fullPage: true } : {}) });
  const size = fs.statSync(file).size;
  // a blank area compresses to a few hundred bytes; a rendered form is far larger
  const least = target.url ? 20_000 : 3_000;
  assert.ok(size > least, `${name}: ${size} bytes, too small to show the editor`);
  results.push(`${name} (${Math.round(size / 1024)} KiB)`);
}

const fieldset = (page, legend) => page.locator('fieldset').filter({ has: page.locator('legend', { hasText: new RegExp(`^${legend}$`) }) });

let passed = 0;
async function check(name, fn) {
  await fn();
  passed++;
  console.log(`ok - ${name}`);
}

try {
  await check('config editor: every section, configured secrets, cache panel with purge for Admin', async () => {
    const page = await open('scenario=config&role=Admin');
    await page.getByText('95.1 %').waitFor();
    for (const legend of ['Connection', 'Authentication', 'Custom headers', 'TLS', 'Access', 'Authorization', 'Cache', 'Cache status']) {
      await fieldset(page, legend).waitFor();
    }
    assert.equal(await page.locator('input[value="configured"]').count(), 2); // client secret, X-Tenant value
    assert.equal(await page.getByTestId(/^rule-\d+$/).count(), 3);
    await page.getByRole('button', { name: 'Purge cache' }).waitFor();
    await shot(page, 'config-editor.png');
    await page.screenshot({ path: path.join(out, 'config-editor-top.png') });
    results.push('config-editor-top.png');
    await shot(fieldset(page, 'Authorization'), 'authorization-rules.png');
    await shot(fieldset(page, 'Cache status'), 'cache-panel-admin.png');

    await page.getByRole('button', { name: 'Add rule' }).click();
    await page.getByTestId('rule-4').waitFor();
    await page.getByRole('button', { name: 'Move rule 4 up' }).click();
    const rules = await page.evaluate(() => window.cpHarness.latest.jsonData.rules.map((r) => r.effect + ':' + (r.users ?? r.roles ?? []).join()));
    assert.deepEqual(rules, ['allow:Admin', 'allow:Viewer', 'allow:', 'deny:contractor@example.com']);
    await page.getByRole('button', { name: 'Purge cache' }).click();
    await page.getByText('Purged 1284 entries.').waitFor();
    assert.deepEqual(await page.evaluate(() => window.cpHarness.purges), [{}]);
    await page.close();
  });

  const AUTH = {
    none: [],
    basic: ['User', 'Password'],
    bearer: ['Bearer token'],
    apiKey: ['Send the key in', 'Header name', 'API key'],
    oauth2: ['Token URL', 'Client ID', 'Client secret', 'Scopes', 'Audience'],
    forwardOAuth: [],
    hmac: ['Signature header', 'Algorithm', 'HMAC secret'],
    module: ['Auth module', 'Module configuration', 'Module secrets'],
  };
  for (const [type, labels] of Object.entries(AUTH)) {
    await check(`auth type ${type} shows ${labels.length ? labels.join(', ') : 'no fields'}`, async () => {
      const page = await open(`scenario=auth-${type}`);
      const shown = await page
        .getByTestId('auth-fields')
        .locator('label[for^="cp-"] > div:first-child')
        .evaluateAll((els) => els.filter((e) => e.offsetParent !== null).map((e) => e.textContent.replace(/\s*\*\s*$/, '').trim()));
      assert.deepEqual(shown, labels);
      await shot(fieldset(page, 'Authentication'), `auth-${type}.png`);
      await page.close();
    });
  }

  await check('picking an auth type in the real select switches the fields', async () => {
    const page = await open('scenario=auth-none');
    await page.locator('#cp-authType').click();
    await page.getByText('HMAC signature', { exact: true }).click();
    await page.locator('#cp-hmacHeader').waitFor();
    assert.equal(await page.evaluate(() => window.cpHarness.latest.jsonData.authType), 'hmac');
    await page.close();
  });

  await check('Redis cache settings; a Viewer sees the figures but no purge', async () => {
    const page = await open('scenario=config-redis&role=Viewer');
    await page.getByText('95.1 %').waitFor();
    assert.equal(await page.getByRole('button', { name: /Purge/ }).count(), 0);
    await page.getByText('Purging the cache needs the Admin role.').waitFor();
    assert.equal(await page.locator('#cp-cache-redisUrl').inputValue(), 'redis://cache.internal:6379/2');
    assert.equal(await page.locator('#cp-redisPassword').inputValue(), 'configured');
    await shot(fieldset(page, 'Cache'), 'cache-settings-redis.png');
    await shot(fieldset(page, 'Cache status'), 'cache-panel-viewer.png');
    await page.close();
  });

  await check('query editor: call, params, columns, format; POST shows the body', async () => {
    const page = await open('scenario=query');
    await page.getByTestId('query-editor').waitFor();
    assert.equal(await page.locator('#cp-query-path').inputValue(), '/invoices?from=${__from:iso}&to=${__to:iso}');
    assert.equal(await page.getByTestId(/^column-\d$/).count(), 3);
    await page.getByText('${__maxDataPoints}').waitFor();
    await shot(page, 'query-editor.png');
    await page.locator('#cp-query-method').click();
    await page.getByText('POST', { exact: true }).click();
    await page.locator('#cp-query-body').fill('{"since": "${__from}"}');
    const q = await page.evaluate(() => window.cpHarness.latest);
    assert.equal(q.method, 'POST');
    assert.equal(q.body, '{"since": "${__from}"}');
    await page.close();
  });

  assert.deepEqual(pageErrors, [], 'errors on the page');
  console.log(`screenshots in ${out}: ${results.join(', ')}`);
  console.log(`${passed} passed, 0 failed`);
} finally {
  clearTimeout(guard);
  await context.close();
  server.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
