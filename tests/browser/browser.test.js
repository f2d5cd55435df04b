// taskgate in a real browser: Debian's chromium driven by playwright-core against a stack
// started by run.py (TG_BROWSER_URL, TG_BROWSER_TOKEN). Each test saves screenshots under
// TG_BROWSER_OUT and prints their paths.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { chromium } = require('playwright-core');

const BASE = process.env.TG_BROWSER_URL;
const TOKEN = process.env.TG_BROWSER_TOKEN;
const OUT = process.env.TG_BROWSER_OUT;
const SIM = process.env.TG_BROWSER_SIM;
const FAILED_SUB = process.env.TG_BROWSER_FAILED_SUB;
const INJECTED = '<script>window.__pwned = 1</script><img src=x>';

let browser;

test.before(async () => {
  assert.ok(BASE && TOKEN && OUT, 'run through run.py: TG_BROWSER_URL, _TOKEN, _OUT');
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
});
test.after(async () => { if (browser) await browser.close(); });

async function shot(page, name) {
  const file = path.join(OUT, name + '.png');
  await page.screenshot({ path: file, fullPage: true });
  console.log('screenshot: ' + file);
}

// A context that collects script errors and console errors (CSP violations among them);
// a resource answered with an error status (the favicon, a 401 the test caused) is not one.
async function context(options) {
  const ctx = await browser.newContext(Object.assign({ viewport: { width: 1100, height: 900 } }, options || {}));
  ctx.problems = [];
  ctx.on('page', (p) => p.on('pageerror', (e) => ctx.problems.push(String(e))));
  ctx.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) ctx.problems.push(m.text());
  });
  return ctx;
}

async function fillForm(page, { token, inputs, metadata, output }) {
  await page.fill('#f-token', token);
  await page.fill('#f-inputs', inputs.join('\n'));
  if (output) await page.fill('#f-output', output);
  if (metadata) {
    await page.click('details.more summary');
    const rows = Object.entries(metadata);
    for (let i = 0; i < rows.length; i++) {
      await page.locator('input[name="metadata_key"]').nth(i).fill(rows[i][0]);
      await page.locator('input[name="metadata_value"]').nth(i).fill(rows[i][1]);
    }
  }
}

async function submit(page) {
  const [resp] = await Promise.all([
    page.waitForNavigation(),
    page.click('#submit-form button[type="submit"]'),
  ]);
  return resp;
}

function checkCsp(resp) {
  const csp = resp.headers()['content-security-policy'] || '';
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline/);
}

test('the form submits 5 inputs and shows 5 run ids; an injected script stays text', async () => {
  const ctx = await context();
  const page = await ctx.newPage();
  const resp = await page.goto(BASE + '/');
  assert.equal(resp.status(), 200);
  checkCsp(resp);
  // No inline script, style or event handler anywhere in the page.
  const html = await resp.text();
  assert.doesNotMatch(html, /<script>|<style|\son[a-z]+=/i);
  await page.fill('#f-token', TOKEN);
  await page.check('#f-remember');
  await page.dispatchEvent('#f-token', 'change');
  // With the token known, the preset field becomes a list of the team's presets.
  await page.waitForSelector('select#f-preset');
  const presets = await page.locator('select#f-preset option').allTextContents();
  assert.ok(presets.some((t) => t.startsWith('deep')), presets.join(','));
  await page.selectOption('select#f-preset', 'deep');
  const inputs = ['What is the capital of France?', 'Who wrote Hamlet?', INJECTED,
    '{"company": "Parallel", "year": 2025}', 'How tall is Mont Blanc?'];
  await fillForm(page, { token: TOKEN, inputs, output: 'a one-line answer', metadata: { ticket: 'OPS-12' } });
  assert.equal(await page.textContent('#input-count'), '5 inputs');
  await shot(page, 'form');
  const result = await submit(page);
  assert.equal(result.status(), 200);
  checkCsp(result);
  assert.equal(await page.textContent('h1'), 'Runs added');
  const ids = await page.locator('#runs code.run-id').allTextContents();
  assert.equal(ids.length, 5);
  ids.forEach((id) => assert.match(id, /^trun_/));
  assert.equal(new Set(ids).size, 5);
  // The injected input is shown as text, not run.
  const cell = await page.locator('#runs td.input').nth(2).textContent();
  assert.equal(cell, INJECTED);
  assert.equal(await page.locator('#runs script, #runs img').count(), 0);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  const facts = await page.textContent('table.facts');
  assert.match(facts, /sub_[0-9a-f]+/);
  assert.match(facts, /tgrp_/);
  assert.match(facts, /Run cursor/);
  await shot(page, 'result');
  // The token was remembered in this browser's storage, never as a cookie.
  assert.equal(await page.evaluate(() => localStorage.getItem('taskgate.token')), TOKEN);
  assert.equal((await ctx.cookies()).length, 0);
  // The submission's page: the history opens with the remembered token.
  await Promise.all([page.waitForURL(/\/history\/sub_/), page.click('text=Open this submission\'s page')]);
  await page.waitForSelector('#runs');
  assert.equal(await page.locator('#runs code.run-id').count(), 5);
  assert.equal(await page.locator('#runs td.input').nth(2).textContent(), INJECTED);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.deepEqual(ctx.problems, []);
  await ctx.close();
});

test('a wrong token comes back next to its field, the values kept', async () => {
  const ctx = await context();
  const page = await ctx.newPage();
  await page.goto(BASE + '/');
  const inputs = ['first question', 'second question'];
  await fillForm(page, { token: 'tg_' + '0'.repeat(48), inputs, output: 'short', metadata: { team: 'blue' } });
  const resp = await submit(page);
  assert.equal(resp.status(), 401);
  checkCsp(resp);
  assert.match(await page.textContent('#e-token'), /not valid/);
  assert.equal(await page.getAttribute('#f-token', 'aria-invalid'), 'true');
  assert.equal(await page.inputValue('#f-token'), '');  // a wrong token is not echoed
  assert.equal(await page.inputValue('#f-inputs'), inputs.join('\n'));
  assert.equal(await page.inputValue('#f-output'), 'short');
  assert.equal(await page.inputValue('input[name="metadata_key"] >> nth=0'), 'team');
  assert.equal(await page.inputValue('input[name="metadata_value"] >> nth=0'), 'blue');
  assert.match(await page.textContent('#problems'), /Team token/);
  await shot(page, 'error-token');
  assert.deepEqual(ctx.problems, []);
  await ctx.close();
});

test('an invalid metadata key comes back next to its row, the values kept', async () => {
  const ctx = await context();
  const page = await ctx.newPage();
  await page.goto(BASE + '/');
  const badKey = 'this-key-is-far-too-long';
  const inputs = ['alpha', 'beta', INJECTED];
  await fillForm(page, { token: TOKEN, inputs, metadata: { ok: 'fine', [badKey]: 'v<b>' } });
  // The script warns while typing; the server has the last word.
  assert.equal(await page.locator('.meta-row .live-error').count(), 1);
  const resp = await submit(page);
  assert.equal(resp.status(), 422);
  checkCsp(resp);
  const row = page.locator('.meta-row', { has: page.locator('input[value="' + badKey + '"]') });
  assert.match(await row.locator('.field-error').textContent(), /at most 16 characters/);
  assert.equal(await row.locator('input.meta-key').getAttribute('aria-invalid'), 'true');
  assert.equal(await row.locator('input[name="metadata_value"]').inputValue(), 'v<b>');
  assert.equal(await page.inputValue('#f-inputs'), inputs.join('\n'));
  assert.equal(await page.inputValue('#f-token'), TOKEN);
  assert.equal(await page.locator('script:not([src])').count(), 0);
  assert.match(await page.textContent('#problems'), /Metadata key/);
  await shot(page, 'error-metadata');
  await ctx.close();
});

test('without JavaScript the form, the result and the history still work', async () => {
  const ctx = await context({ javaScriptEnabled: false });
  const page = await ctx.newPage();
  await page.goto(BASE + '/submit');
  assert.equal(await page.locator('input#f-preset[type="text"]').count(), 1);
  await fillForm(page, { token: TOKEN, inputs: ['one', 'two', 'three'], metadata: { source: 'nojs' } });
  await page.fill('#f-preset', 'deep');
  const resp = await submit(page);
  assert.equal(resp.status(), 200);
  assert.equal(await page.locator('#runs code.run-id').count(), 3);
  await shot(page, 'nojs-result');
  await page.goto(BASE + '/history');
  await page.fill('#f-token', TOKEN);
  await Promise.all([page.waitForNavigation(), page.click('#history-form button')]);
  const rows = page.locator('table.history tbody tr');
  assert.ok(await rows.count() >= 3);
  assert.match(await rows.first().textContent(), /browser-test/);
  await shot(page, 'history');
  await Promise.all([page.waitForNavigation(), rows.first().locator('button').click()]);
  assert.equal(await page.locator('#runs code.run-id').count(), 3);
  assert.match(await page.textContent('.state-box'), /accepted/);
  assert.equal(await page.locator('table.calls tbody tr').count(), 2);  // group, then add-runs
  await shot(page, 'detail');
  await ctx.close();
});

test('the usage page draws spend per day as SVG, without JavaScript, with the API\'s totals', async () => {
  const month = new Date().toISOString().slice(0, 7);
  const api = await fetch(BASE + '/v1/audit/usage?by=month&since=' + month, {
    headers: { Authorization: 'Bearer ' + TOKEN, Accept: 'application/json' },
  });
  assert.equal(api.status, 200);
  const usage = await api.json();
  assert.ok(usage.total.runs > 0, 'no usage to show');
  for (const [name, viewport] of [['usage', { width: 1100, height: 900 }],
                                  ['usage-phone', { width: 390, height: 844 }]]) {
    const ctx = await context({ javaScriptEnabled: false, viewport });
    const page = await ctx.newPage();
    await page.goto(BASE + '/usage');
    await page.fill('#f-token', TOKEN);
    const [resp] = await Promise.all([page.waitForNavigation(), page.click('#usage-form button')]);
    assert.equal(resp.status(), 200);
    checkCsp(resp);
    assert.equal(await page.textContent('#month-total'), '$' + usage.total.est_cost_usd);
    assert.equal(await page.textContent('#month-runs'), String(usage.total.runs));
    assert.match(await page.textContent('#budget-monthly'), /\$5\.00/);
    const svg = page.locator('figure.chart svg');
    assert.equal(await svg.count(), 1);
    assert.ok(await svg.locator('rect').count() >= 2, 'no bars');
    assert.match(await svg.locator('title').first().textContent(), /Usage/);
    const box = await svg.boundingBox();
    assert.ok(box.width > 200 && box.width <= viewport.width, 'the chart does not fit: ' + box.width);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, 'the page scrolls sideways by ' + overflow + ' px');
    const processors = new Set(usage.usage.map((u) => u.processor));
    for (const p of processors) assert.match(await page.textContent('#usage-rows'), new RegExp(p));
    assert.deepEqual(ctx.problems, []);
    await shot(page, name);
    await ctx.close();
  }
});

test('the history shows what came of each run, without JavaScript too', async () => {
  const ctx = await context({ javaScriptEnabled: false });
  const page = await ctx.newPage();
  await page.goto(BASE + '/submit');
  await fillForm(page, { token: TOKEN, inputs: ['this one completes', 'fail: the source went away'] });
  const resp = await submit(page);
  assert.equal(resp.status(), 200);
  const sub = (await page.textContent('table.facts')).match(/sub_[0-9a-f]+/)[0];
  // The runs end upstream within a second; the gateway follows them and records it.
  let statuses = [];
  for (let i = 0; i < 40; i++) {
    await page.goto(BASE + '/history/' + sub);
    await page.fill('#f-token', TOKEN);
    await Promise.all([page.waitForNavigation(), page.click('#history-form button')]);
    statuses = await page.locator('#runs td.run-status .state').allTextContents();
    if (statuses.join(',') === 'completed,failed') break;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.deepEqual(statuses, ['completed', 'failed']);
  assert.equal(await page.textContent('#runs .run-error'), 'the source went away');
  assert.equal(await page.locator('#runs tbody tr').nth(1).locator('time').count(), 1);
  await shot(page, 'detail-run-outcomes');
  await ctx.close();
});

test('with JavaScript, a submission\'s page follows its runs without a reload', async () => {
  const sim = (path, body) => fetch(SIM + path, { method: 'POST', body: JSON.stringify(body) });
  assert.ok((await sim('/_sim/runs', { run_ms: -1 })).ok);  // the runs end when told to
  const ctx = await context();
  const page = await ctx.newPage();
  try {
    await page.goto(BASE + '/submit');
    await fillForm(page, { token: TOKEN, inputs: ['waits for the test', 'fail: given up'] });
    assert.equal((await submit(page)).status(), 200);
    const facts = await page.textContent('table.facts');
    const sub = facts.match(/sub_[0-9a-f]+/)[0];
    const group = facts.match(/tgrp_[0-9a-f]+/)[0];
    await page.goto(BASE + '/history/' + sub);
    await page.fill('#f-token', TOKEN);
    await Promise.all([page.waitForNavigation(), page.click('#history-form button')]);
    const statuses = () => page.locator('#runs td.run-status .state').allTextContents();
    assert.ok((await statuses()).every((s) => ['waiting', 'queued', 'running'].includes(s)));
    assert.ok((await sim('/_sim/runs/complete', { taskgroup_id: group })).ok);
    await page.waitForFunction(() => Array.from(document.querySelectorAll(
      '#runs td.run-status .state')).map((e) => e.textContent).join(',') === 'completed,failed',
    null, { timeout: 20000 });
    assert.equal(await page.textContent('#runs .run-error'), 'given up');
    assert.equal(await page.locator('#runs tbody tr time').count(), 2);
    assert.deepEqual(ctx.problems, []);
    await shot(page, 'detail-runs-live');
  } finally {
    await sim('/_sim/runs', { run_ms: 200 });
    await ctx.close();
  }
});

test('a failed submission says what happened and what to do', async () => {
  const ctx = await context({ viewport: { width: 390, height: 844 } });  // a phone
  const page = await ctx.newPage();
  // The upstream fails the next add-runs call: the answer page, then the history's page.
  const r = await fetch(SIM + '/_sim/faults', { method: 'POST', body: JSON.stringify({ match: 'add_runs', kind: 'status', status: 500 }) });
  assert.ok(r.ok);
  await page.goto(BASE + '/');
  await fillForm(page, { token: TOKEN, inputs: ['will fail'] });
  const resp = await submit(page);
  assert.equal(resp.status(), 502);
  checkCsp(resp);
  assert.match(await page.textContent('h1'), /refused/);
  assert.match(await page.textContent('main'), /created nothing/);
  await shot(page, 'error-upstream-phone');
  await page.goto(BASE + '/history/' + FAILED_SUB);
  await page.fill('#f-token', TOKEN);
  await Promise.all([page.waitForNavigation(), page.click('#history-form button')]);
  assert.match(await page.textContent('.state-box'), /failed/);
  assert.match(await page.textContent('.state-box'), /submit again only the inputs that have no run id/);
  await shot(page, 'detail-failed-phone');
  await ctx.close();
});

test('errors for browsers are pages: unknown paths, bodies too large for nginx', async () => {
  const ctx = await context();
  const page = await ctx.newPage();
  const resp = await page.goto(BASE + '/no/such/page');
  assert.equal(resp.status(), 404);
  checkCsp(resp);
  assert.match(await page.textContent('h1'), /not found/i);
  const big = new FormData();
  big.append('inputs_file', new Blob([Buffer.alloc(11 * 1024 * 1024, 97)]), 'big.txt');
  const r = await fetch(BASE + '/v1/runs', { method: 'POST', body: big, headers: { Accept: 'text/html' } });
  assert.equal(r.status, 413);
  assert.match(r.headers.get('content-type'), /text\/html/);
  assert.match(await r.text(), /too much at once/);
  await ctx.close();
});
