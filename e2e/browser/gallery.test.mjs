// Drives the web gallery like a user, in Debian's headless Chromium through
// playwright-core (which never downloads a browser). gallery_test.go starts
// the servers and runs:
//
//   node gallery.test.mjs <server-url> <screenshot-dir> <fixtures-dir>
//        --small-upload <url>   a server with --max-upload 64KiB
//        --disk-full <url>      a server with --min-free 999999GiB (507)
//        --rate-limited <url>   a server with --account-rate 2/min (429)
//
// The steps on <server-url> run in order, each building on the last; once
// one fails the rest of that chain is skipped. Screenshots of the main
// states go to <screenshot-dir>.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [base, shots, fixtures] = process.argv.slice(2, 5);
const flag = (name) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const servers = { small: flag('--small-upload'), full: flag('--disk-full'), limited: flag('--rate-limited') };
if (!base || !shots || !fixtures || !servers.small || !servers.full || !servers.limited) {
  console.error('usage: node gallery.test.mjs <server-url> <screenshot-dir> <fixtures-dir> --small-upload URL --disk-full URL --rate-limited URL');
  process.exit(2);
}

const fixture = (name) => path.join(fixtures, name);
const sizeOf = (name) => statSync(fixture(name)).size;

// The page's own way of writing sizes (app.js), to compare with.
function formatBytes(n) {
  if (n < 1024) return `${n} bytes`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let i = -1;
  do {
    n /= 1024;
    i++;
  } while (n >= 1024 && i < units.length - 1);
  return `${n >= 10 || Number.isInteger(n) ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

let context;
let profile;
const problems = []; // CSP violations, uncaught page errors
const foreign = []; // requests that left the servers under test
const thumbRequests = [];

before(async () => {
  // A fresh profile (--user-data-dir) for every run.
  profile = mkdtempSync(path.join(tmpdir(), 'imagestore-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 800 },
  });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  const origins = new Set([base, ...Object.values(servers)].map((u) => new URL(u).origin));
  context.on('request', (req) => {
    const u = new URL(req.url());
    if (u.protocol !== 'blob:' && u.protocol !== 'data:' && !origins.has(u.origin)) foreign.push(req.url());
    if (u.pathname.startsWith('/api/v1/images/') && u.search) thumbRequests.push(u.search);
  });
  const watch = (page) => {
    page.on('console', (msg) => {
      if (/Content.Security.Policy/i.test(msg.text())) problems.push(`CSP: ${msg.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  };
  context.pages().forEach(watch);
  context.on('page', watch);
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

// ---- Helpers ----

async function open(url, query = '') {
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const res = await page.goto(`${url}/${query}`);
  assert.equal(res.status(), 200);
  await page.locator('#signed-out, #gallery').first().waitFor();
  return page;
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

// waitText waits until the element shows text matching re, and fails
// saying what it showed instead.
async function waitText(page, selector, re) {
  try {
    await page.locator(selector).filter({ hasText: re }).first().waitFor();
  } catch {
    const now = await page.locator(selector).allTextContents().catch(() => []);
    throw new Error(`${selector}: wanted ${re}, got ${JSON.stringify(now)}`);
  }
}

async function createUser(page, username, password) {
  await page.fill('#create-user', username);
  if (password) await page.fill('#create-pass', password);
  await page.click('#create-form button[type="submit"]');
}

async function signOut(page) {
  await page.click('#sign-out');
  await page.locator('#signed-out').waitFor();
}

const card = (page, name) => page.locator('#grid .card', { has: page.locator('.name', { hasText: new RegExp(`^${name.replace(/\./g, '\\.')}$`) }) });

// thumbsLoaded waits until every card's thumbnail is an image decoded from
// an object URL.
async function thumbsLoaded(page, count) {
  await page.waitForFunction((n) => {
    const imgs = [...document.querySelectorAll('#grid .card img')];
    return imgs.length === n && imgs.every((i) => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0 && !i.hidden);
  }, count);
}

async function apiJSON(url, method, p, token) {
  const res = await fetch(url + p, { method, headers: { Authorization: `Bearer ${token}` } });
  assert.ok(res.ok, `${method} ${p}: ${res.status}`);
  return res.json();
}

async function listAll(url, token) {
  return (await apiJSON(url, 'GET', '/api/v1/images?limit=1000', token)).images;
}

// The main chain: once a step fails, the ones after it are skipped.
let broken = '';
function step(name, fn) {
  test(name, { timeout: 60_000 }, async (t) => {
    if (broken) {
      t.skip(`after the failure of "${broken}"`);
      return;
    }
    try {
      await fn(t);
    } catch (err) {
      broken = name;
      if (page) await shot(page, `failed-${name.replace(/\W+/g, '-')}`).catch(() => {});
      throw err;
    }
  });
}

let page; // the main chain's tab
let token;
let username = 'alice';

// ---- The main chain ----

step('signed out: headers, labelled forms', async () => {
  page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const res = await page.goto(`${base}/?page_size=3`);
  const h = res.headers();
  assert.match(h['content-security-policy'], /default-src 'self'/);
  assert.match(h['content-security-policy'], /img-src 'self' blob:/);
  assert.equal(h['x-content-type-options'], 'nosniff');
  assert.equal(h['referrer-policy'], 'no-referrer');
  await page.locator('#signed-out').waitFor();
  assert.equal(await page.isVisible('#gallery'), false);
  // Every input has a label.
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input')]
    .filter((i) => i.labels.length === 0 && !i.getAttribute('aria-label')).map((i) => i.id));
  assert.deepEqual(unlabelled, []);
  assert.equal(await page.getAttribute('meta[name="viewport"]', 'content'), 'width=device-width, initial-scale=1');
  await shot(page, '01-signed-out');
});

step('create an account: the token is shown and kept in sessionStorage', async () => {
  await createUser(page, username, 'correct horse battery');
  await page.locator('#gallery').waitFor();
  token = (await page.textContent('#new-token-value')).trim();
  assert.match(token, /^[A-Za-z0-9_-]{10}$/);
  assert.equal(await page.textContent('#who-name'), username);
  const stored = await page.evaluate(() => ({ session: sessionStorage.getItem('imagestore.session'), local: localStorage.length }));
  assert.deepEqual(JSON.parse(stored.session), { username, token });
  assert.equal(stored.local, 0);
  await waitText(page, '#empty', /No images yet/);
  await shot(page, '02-account-created');
  await page.click('#new-token-ok');
  assert.equal(await page.isVisible('#new-token'), false);
});

step('upload two images with the file picker: both in the grid with thumbnails', async () => {
  await page.setInputFiles('#file-input', [fixture('png-palette.png'), fixture('jpeg-baseline.jpg')]);
  await thumbsLoaded(page, 2);
  for (const name of ['png-palette.png', 'jpeg-baseline.jpg']) {
    const c = card(page, name);
    assert.equal(await c.locator('.size').textContent(), formatBytes(sizeOf(name)));
    assert.equal(await c.locator('img').getAttribute('alt'), name);
    const when = await c.locator('time').getAttribute('datetime');
    assert.ok(Math.abs(Date.parse(when) - Date.now()) < 60_000, `date ${when}`);
    assert.match(await c.locator('time').textContent(), /^Uploaded /);
  }
  const listed = await listAll(base, token);
  assert.deepEqual(listed.map((i) => i.name).sort(), ['jpeg-baseline.jpg', 'png-palette.png']);
  // Thumbnails are asked for as variants first.
  assert.ok(thumbRequests.includes('?w=320&h=320&fit=cover'), `thumbnail requests: ${thumbRequests}`);
  await shot(page, '03-grid');
});

step('an upload shows its progress', async () => {
  // Slow the upload down so that its progress can be seen.
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 20, downloadThroughput: -1, uploadThroughput: 100 * 1024 });
  try {
    await page.setInputFiles('#file-input', fixture('big.png'));
    await page.waitForFunction(() => [...document.querySelectorAll('#uploads progress')].some((p) => p.value > 0.05 && p.value < 0.95));
    await shot(page, '04-upload-in-progress');
    await card(page, 'big.png').waitFor();
  } finally {
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await cdp.detach();
  }
  await waitText(page, '#uploads li.done', /Uploaded/);
  await waitText(page, '#status', /Uploaded “big\.png”/);
  await thumbsLoaded(page, 3);
  await shot(page, '05-upload-done');
});

step('replace an image: the new name, size and picture show', async () => {
  const c = card(page, 'png-palette.png');
  const id = await c.getAttribute('data-id');
  const before = await c.locator('img').getAttribute('src');
  const [chooser] = await Promise.all([page.waitForEvent('filechooser'), c.getByRole('button', { name: /^Replace/ }).click()]);
  await chooser.setFiles(fixture('png-rgb.png'));
  const replaced = page.locator(`#grid .card[data-id="${id}"]`);
  await waitText(page, `#grid .card[data-id="${id}"] .name`, /^png-rgb\.png$/);
  assert.equal(await replaced.locator('.size').textContent(), formatBytes(sizeOf('png-rgb.png')));
  await waitText(page, `#grid .card[data-id="${id}"] time`, /^Replaced /);
  await page.waitForFunction(([sel, old]) => {
    const img = document.querySelector(sel);
    return img.src !== old && img.src.startsWith('blob:') && img.complete && img.naturalWidth > 0;
  }, [`#grid .card[data-id="${id}"] img`, before]);
  // The old object URL was revoked, and the server has the new bytes.
  assert.equal(await page.evaluate((u) => new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve('alive');
    img.onerror = () => resolve('revoked');
    img.src = u;
  }), before), 'revoked');
  const res = await fetch(`${base}/api/v1/images/${id}`, { headers: { Authorization: `Bearer ${token}` } });
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), readFileSync(fixture('png-rgb.png')));
});

step('copy a direct link: the seed API address with the token, working without a header', async () => {
  const c = card(page, 'png-rgb.png');
  const id = await c.getAttribute('data-id');
  await c.getByRole('button', { name: /^Copy link/ }).click();
  await waitText(page, '#status', /Copied the link to “png-rgb\.png”\. It contains your token/);
  const link = await page.evaluate(() => navigator.clipboard.readText());
  assert.equal(link, `${base}/imageapi/token/${token}/get-image/${id}/`);
  const res = await fetch(link);
  assert.equal(res.status, 200);
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), readFileSync(fixture('png-rgb.png')));
  await waitText(page, '#gallery .hint', /The link contains your token/);

  // Without a clipboard (plain HTTP from another machine), a dialog shows
  // the link, selected, to copy by hand; Escape closes it.
  await page.evaluate(() => { navigator.clipboard.writeText = () => Promise.reject(new Error('no clipboard')); });
  await c.getByRole('button', { name: /^Copy link/ }).click();
  await page.locator('#link-dialog[open]').waitFor();
  assert.equal(await page.inputValue('#link-value'), link);
  assert.equal(await page.evaluate(() => {
    const i = document.activeElement;
    return i.id === 'link-value' && i.selectionStart === 0 && i.selectionEnd === i.value.length;
  }), true);
  await waitText(page, '#link-dialog', /It contains your token/);
  await page.keyboard.press('Escape');
  await page.locator('#link-dialog').waitFor({ state: 'hidden' });
});

step('delete: Cancel keeps the image, Delete removes it', async () => {
  const c = card(page, 'jpeg-baseline.jpg');
  await c.getByRole('button', { name: /^Delete/ }).click();
  await page.locator('#delete-dialog[open]').waitFor();
  assert.equal(await page.textContent('#delete-name'), 'jpeg-baseline.jpg');
  await shot(page, '06-delete-dialog');
  await page.click('#delete-cancel');
  await page.locator('#delete-dialog').waitFor({ state: 'hidden' });
  assert.equal(await c.count(), 1);

  await c.getByRole('button', { name: /^Delete/ }).click();
  await page.locator('#delete-dialog[open]').waitFor();
  await page.click('#delete-confirm');
  await c.waitFor({ state: 'detached' });
  await waitText(page, '#status', /Deleted “jpeg-baseline\.jpg”/);
  assert.ok(!(await listAll(base, token)).some((i) => i.name === 'jpeg-baseline.jpg'));
});

step('drag and drop onto the page uploads', async () => {
  const data = readFileSync(fixture('dropped.png')).toString('base64');
  // A synthetic drag: dragover shows the drop overlay, drop uploads.
  await page.evaluate(({ data }) => {
    const bytes = Uint8Array.from(atob(data), (ch) => ch.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], 'dropped.png', { type: 'image/png' }));
    window.testDrop = dt;
    document.querySelector('#grid').dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, { data });
  assert.equal(await page.evaluate(() => document.body.classList.contains('dragging')), true);
  await shot(page, '07-drop-overlay');
  await page.evaluate(() => {
    document.querySelector('#grid').dispatchEvent(new DragEvent('drop', { dataTransfer: window.testDrop, bubbles: true, cancelable: true }));
  });
  await card(page, 'dropped.png').waitFor();
  await thumbsLoaded(page, 3); // png-rgb.png (replaced), big.png, dropped.png
  assert.equal(await page.evaluate(() => document.body.classList.contains('dragging')), false);
});

step('406: a text file named x.png', async () => {
  await page.setInputFiles('#file-input', { name: 'x.png', mimeType: 'image/png', buffer: Buffer.from('this is text, not a PNG\n') });
  await waitText(page, '#error', /Could not upload “x\.png”: “x\.png” is not an image of a type the server accepts \(jpeg, png/);
  await waitText(page, '#uploads li.failed', /not an image/);
  await shot(page, '08-error-406');
  await page.locator('#uploads li.failed button').click();
  assert.equal(await page.locator('#uploads li.failed').count(), 0);
  await page.click('#error-close');
});

step('409: the same name twice', async () => {
  await page.setInputFiles('#file-input', fixture('png-rgb.png'));
  await waitText(page, '#error', /Could not upload “png-rgb\.png”: an image named “png-rgb\.png” is already stored/);
  await shot(page, '09-error-409');
  await page.locator('#uploads li.failed button').click();
});

step('500 and an unreachable server: the problem title, or a network message', async () => {
  const only = (method, answer) => (route) => (route.request().method() === method ? answer(route) : route.continue());
  await page.route('**/api/v1/images', only('POST', (route) => route.fulfill({
    status: 500,
    contentType: 'application/problem+json',
    body: JSON.stringify({ type: 'urn:imagestore:problem:internal', title: 'Internal server error', status: 500 }),
  })));
  await page.setInputFiles('#file-input', fixture('page-1.png'));
  await waitText(page, '#error', /Could not upload “page-1\.png”: the server failed \(500 Internal server error\)\. Try again later\./);
  await shot(page, '10-error-500');
  await page.unroute('**/api/v1/images');
  await page.locator('#uploads li.failed button').click();

  await page.route('**/api/v1/images', only('POST', (route) => route.abort('connectionrefused')));
  await page.setInputFiles('#file-input', fixture('page-1.png'));
  await waitText(page, '#error', /Could not upload “page-1\.png”: the server cannot be reached/);
  await shot(page, '11-error-network');
  await page.unroute('**/api/v1/images');
  await page.locator('#uploads li.failed button').click();
});

step('paging: "Load more" lists the next page until the last', async () => {
  const names = [1, 2, 3, 4, 5].map((i) => `page-${i}.png`);
  await page.setInputFiles('#file-input', names.map(fixture));
  for (const name of names) await card(page, name).waitFor();
  const all = await listAll(base, token);
  assert.equal(all.length, 8);

  // A new visit (the session survives a reload) lists 3 at a time.
  await page.reload();
  await page.locator('#grid .card').nth(2).waitFor();
  assert.equal(await page.locator('#grid .card').count(), 3);
  assert.equal(await page.isVisible('#more'), true);
  await waitText(page, '#count', /\(3 shown\)/);
  await shot(page, '12-paging');
  await page.click('#more');
  await page.locator('#grid .card').nth(5).waitFor();
  assert.equal(await page.locator('#grid .card').count(), 6);
  await page.click('#more');
  await page.locator('#grid .card').nth(7).waitFor();
  await page.locator('#more').waitFor({ state: 'hidden' });
  const shown = await page.locator('#grid .card').evaluateAll((cs) => cs.map((c) => c.dataset.id));
  assert.deepEqual(shown, all.map((i) => i.id)); // every image once, in upload order
  await waitText(page, '#count', /^\(8\)$/);
});

step('keyboard only: Tab reaches the upload control and Delete, Enter opens, Escape closes', async () => {
  await page.reload();
  await page.locator('#grid .card').nth(2).waitFor();
  const focused = () => page.evaluate(() => {
    const el = document.activeElement;
    return { id: el.id, action: el.dataset?.action || '', card: el.closest('.card')?.dataset.id || '', outline: getComputedStyle(el).outlineStyle };
  });
  const tabUntil = async (want, what) => {
    for (let i = 0; i < 40; i++) {
      await page.keyboard.press('Tab');
      const f = await focused();
      if (want(f)) return f;
    }
    throw new Error(`Tab never reached ${what}`);
  };
  const input = await tabUntil((f) => f.id === 'file-input', 'the upload control');
  assert.notEqual(input.outline, 'none', 'the focused upload control shows no outline');
  const del = await tabUntil((f) => f.action === 'delete', 'a Delete button');
  assert.notEqual(del.outline, 'none', 'the focused Delete button shows no outline');
  await page.keyboard.press('Enter');
  await page.locator('#delete-dialog[open]').waitFor();
  assert.equal((await focused()).id, 'delete-cancel'); // the safe choice first
  await shot(page, '13-keyboard-dialog');
  await page.keyboard.press('Escape');
  await page.locator('#delete-dialog').waitFor({ state: 'hidden' });
  const back = await focused();
  assert.equal(back.action, 'delete');
  assert.equal(back.card, del.card);
  assert.equal(await page.locator('#grid .card').count(), 3);
  // Space on "Load more" lists the next page.
  await tabUntil((f) => f.id === 'more', 'Load more');
  await page.keyboard.press('Space');
  await page.locator('#grid .card').nth(5).waitFor();
});

step('thumbnails fall back to the whole image when the server makes no variant', async () => {
  const variant = /\/api\/v1\/images\/[^/?]+\?w=/;
  await page.route(variant, (route) => route.fulfill({
    status: 400,
    contentType: 'application/problem+json',
    body: JSON.stringify({ type: 'urn:imagestore:problem:bad-query', title: 'Bad query parameter', status: 400 }),
  }));
  const full = [];
  const onRequest = (req) => { if (/\/api\/v1\/images\/[^/?]+$/.test(req.url())) full.push(req.url()); };
  page.on('request', onRequest);
  try {
    await page.reload();
    await thumbsLoaded(page, 3);
  } finally {
    page.off('request', onRequest);
    await page.unroute(variant);
  }
  assert.equal(full.length, 3, `requests for whole images: ${full}`);
});

step('phone-sized screen: one or two columns, nothing wider than the screen', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.reload();
  await thumbsLoaded(page, 3);
  const layout = await page.evaluate(() => {
    const grid = document.querySelector('#grid');
    const wide = [...document.querySelectorAll('body *')]
      .filter((el) => el.getClientRects().length && !el.closest('.vh, dialog:not([open]), template'))
      .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 0.5)
      .map((el) => el.id || el.className || el.tagName);
    return {
      columns: getComputedStyle(grid).gridTemplateColumns.split(' ').length,
      scrollWidth: document.documentElement.scrollWidth,
      width: window.innerWidth,
      wide,
    };
  });
  assert.ok(layout.columns === 1 || layout.columns === 2, `${layout.columns} columns`);
  assert.ok(layout.scrollWidth <= layout.width, `page ${layout.scrollWidth}px wide on a ${layout.width}px screen`);
  assert.deepEqual(layout.wide, []);
  await shot(page, '14-phone');
  await page.setViewportSize({ width: 1280, height: 800 });
});

step('401: a replaced token ends the session; signing in again with the new one', async () => {
  const rotated = await apiJSON(base, 'POST', '/api/v1/users/me/token', token);
  await page.setInputFiles('#file-input', fixture('dropped.png'));
  await waitText(page, '#error', /Could not upload “dropped\.png”: the token is not recognized/);
  await page.locator('#signed-out').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('imagestore.session')), null);
  await shot(page, '15-error-401');

  // The username is kept, the token field has the focus: the keyboard
  // alone signs in again (a wrong token first).
  assert.equal(await page.inputValue('#signin-user'), username);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'signin-token');
  await page.keyboard.type('WrongT0ken');
  await page.keyboard.press('Enter');
  await waitText(page, '#error', /Could not sign in: the token is not recognized/);
  await page.fill('#signin-token', rotated.token);
  await page.keyboard.press('Enter');
  await page.locator('#gallery').waitFor();
  token = rotated.token;
  await page.locator('#grid .card').first().waitFor();
  await waitText(page, '#status', /Signed in as alice/);

  await signOut(page);
  await waitText(page, '#status', /Signed out/);
  assert.equal(await page.locator('#grid .card').count(), 0);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
});

// ---- The servers that refuse ----

test('413 on a server with --max-upload 64KiB: the limit is shown', { timeout: 60_000 }, async () => {
  const p = await open(servers.small);
  await createUser(p, 'bob');
  await p.locator('#gallery').waitFor();
  await waitText(p, '#limit-text', /At most 64 KiB per image\./);
  await p.setInputFiles('#file-input', fixture('big.png'));
  await waitText(p, '#error', /Could not upload “big\.png”: “big\.png” is too large: the limit is 64 KiB per image\./);
  await shot(p, '16-error-413');
  await p.close();
});

test('507 on a server out of space: storage full', { timeout: 60_000 }, async () => {
  const p = await open(servers.full);
  await createUser(p, 'carol');
  await p.locator('#gallery').waitFor();
  await p.setInputFiles('#file-input', fixture('png-rgb.png'));
  await waitText(p, '#error', /Could not upload “png-rgb\.png”: the server’s storage is full/);
  await shot(p, '17-error-507');
  await p.close();
});

test('429 on a server with --account-rate 2/min: the third account waits, Retry-After shown', { timeout: 60_000 }, async () => {
  const p = await open(servers.limited);
  for (const name of ['dave', 'erin']) {
    await createUser(p, name);
    await p.locator('#gallery').waitFor();
    await signOut(p);
  }
  await createUser(p, 'frank');
  await waitText(p, '#error', /Could not create the account: too many requests from this address\. Try again in \d+ seconds?\./);
  assert.equal(await p.isVisible('#gallery'), false);
  await shot(p, '18-error-429');
  await p.close();
});

test('409 for a taken username, and a bad one refused before asking', { timeout: 60_000 }, async () => {
  const p = await open(base);
  await createUser(p, username);
  await waitText(p, '#error', /Could not create the account: that username is taken/);
  await createUser(p, 'no spaces');
  await waitText(p, '#error', /a username is 1 to 150 letters, digits or underscores/);
  assert.equal(await p.evaluate(() => document.activeElement.id), 'create-user');
  await p.close();
});

test('no CSP violation, no page error, nothing fetched from elsewhere', () => {
  assert.deepEqual(problems, []);
  assert.deepEqual(foreign, []);
});
