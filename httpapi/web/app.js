// The imagestore web gallery: plain JavaScript, no framework, no build
// step. It talks only to this server's /api/v1, sending the user's token in
// an Authorization: Bearer header.
'use strict';

// Paths are relative to the page, so that the gallery also works behind a
// proxy that serves the server under a path prefix.
const API = 'api/v1';
const DEFAULT_PAGE_SIZE = 60;
const PARALLEL_UPLOADS = 3;
// A thumbnail is a 320x320 variant where the server makes them; otherwise
// (an error, or a server that ignores the parameters and sends the whole
// image) the whole image, which CSS scales.
const THUMB_QUERY = '?w=320&h=320&fit=cover';

// The token is kept in sessionStorage, not localStorage: it lives only as
// long as this tab, is not shared with other tabs, and is gone when the tab
// closes, so it is not left behind on a shared computer. (Scripts of this
// origin could read either; the strict Content-Security-Policy, which
// allows no inline or foreign script, is what keeps other scripts out.)
const SESSION_KEY = 'imagestore.session';

const $ = (id) => document.getElementById(id);

let session = null; // {username, token} while signed in
let limits = null; // GET /api/v1/limits, once known
let cursor = ''; // the next page's cursor; '' once the last page is listed
let listing = null; // the session for which a page is being listed
const cards = new Map(); // image id -> {image, li, img, url, gen}

// ---- Talking to the API ----

// ApiError is a refused or failed request: status 0 when the server could
// not be reached, problem the RFC 9457 document the server answered with.
class ApiError extends Error {
  constructor(status, problem = {}, retryAfter = null) {
    super(problem.title || (status ? `HTTP ${status}` : 'network error'));
    this.status = status;
    this.problem = problem;
    this.retryAfter = retryAfter; // seconds, from Retry-After
  }

  get slug() {
    return String(this.problem.type || '').replace('urn:imagestore:problem:', '');
  }
}

function parseProblem(text) {
  try {
    const p = JSON.parse(text);
    return p && typeof p === 'object' ? p : {};
  } catch {
    return {};
  }
}

// Retry-After is a number of seconds or an HTTP date.
function parseRetryAfter(value) {
  if (!value) return null;
  if (/^\d+$/.test(value)) return Number(value);
  const t = Date.parse(value);
  return Number.isNaN(t) ? null : Math.max(0, Math.ceil((t - Date.now()) / 1000));
}

function authHeaders(token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// api sends a JSON request and returns the JSON answer, or throws an
// ApiError. The token is the session's unless one is given ('' for none).
async function api(method, path, { json, token = session?.token } = {}) {
  const headers = authHeaders(token);
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  let res;
  let text;
  try {
    res = await fetch(API + path, { method, headers, body, cache: 'no-store' });
    text = await res.text();
  } catch {
    throw new ApiError(0);
  }
  if (!res.ok) {
    throw new ApiError(res.status, parseProblem(text), parseRetryAfter(res.headers.get('Retry-After')));
  }
  return text ? JSON.parse(text) : null;
}

// fetchImage returns an image's bytes as a Blob. Images need the token, so
// an <img> cannot load them itself: the page shows them from object URLs.
async function fetchImage(path) {
  let res;
  let blob;
  try {
    // no-cache: revalidate (a cheap 304) so a replaced image never shows stale.
    res = await fetch(API + path, { headers: authHeaders(session?.token), cache: 'no-cache' });
    if (!res.ok) throw new ApiError(res.status, parseProblem(await res.text()));
    blob = await res.blob();
  } catch (err) {
    throw err instanceof ApiError ? err : new ApiError(0);
  }
  if (!blob.type.startsWith('image/')) throw new ApiError(res.status, { title: 'Not an image' });
  return blob;
}

// send uploads a file as a multipart form with XMLHttpRequest, which
// (unlike fetch) reports the progress of the upload.
function send(method, path, file, onProgress, ifMatch) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, API + path);
    xhr.setRequestHeader('Authorization', `Bearer ${session.token}`);
    if (ifMatch) xhr.setRequestHeader('If-Match', ifMatch);
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener('load', () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve(JSON.parse(xhr.responseText));
        } catch (err) {
          reject(err);
        }
        return;
      }
      reject(new ApiError(xhr.status, parseProblem(xhr.responseText), parseRetryAfter(xhr.getResponseHeader('Retry-After'))));
    });
    xhr.addEventListener('error', () => reject(new ApiError(0)));
    xhr.addEventListener('abort', () => reject(new ApiError(0)));
    const form = new FormData();
    form.append('file', file, file.name);
    xhr.send(form);
  });
}

// ---- Words ----

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

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

function later(seconds) {
  if (seconds === null || seconds === undefined) return 'later';
  if (seconds <= 90) return `in ${seconds} second${seconds === 1 ? '' : 's'}`;
  return `in about ${Math.ceil(seconds / 60)} minutes`;
}

// explain says why a request failed, for the user; name is the file
// concerned, if any.
function explain(err, name) {
  if (!(err instanceof ApiError)) return `something went wrong in this page (${err.message}).`;
  const p = err.problem;
  const file = name ? `“${name}”` : 'the file';
  const detail = p.detail ? ` ${p.detail}` : '';
  switch (err.status) {
    case 0:
      return 'the server cannot be reached. Check your connection, then try again.';
    case 401:
      return 'the token is not recognized (it may have been replaced by a newer one). Sign in with your current token.';
    case 406: {
      const types = limits ? ` (${limits.accepted_types.map((t) => t.replace(/^image\/(x-)?/, '')).join(', ')})` : '';
      return `${file} is not an image of a type the server accepts${types}.`;
    }
    case 409:
      if (err.slug === 'user-exists') return 'that username is taken: choose another.';
      return `an image named ${file} is already stored. Rename the file, or use “Replace” on the stored image.`;
    case 412:
      return 'the image was changed meanwhile, perhaps in another window. Reload the page, then try again.';
    case 413: {
      if (p.limit === 'max_pixels') return `${file} has too many pixels.${detail}`;
      const limit = limits ? limits.max_upload_bytes : p.allowed;
      return `${file} is too large: the limit is ${limit ? formatBytes(limit) : 'lower'} per image.`;
    }
    case 429:
      if (p.limit === 'auth_failure_rate') return `too many failed sign-ins from this address. Try again ${later(err.retryAfter)}.`;
      return `too many requests from this address. Try again ${later(err.retryAfter)}.`;
    case 503:
      return `the server is busy.${detail} Try again ${later(err.retryAfter ?? 5)}.`;
    case 507:
      return 'the server’s storage is full, so it cannot store anything now. Try again later.';
  }
  if (err.status >= 500) return `the server failed (${err.status} ${p.title || 'error'}).${detail} Try again later.`;
  return `${p.title || `error ${err.status}`}.${detail}`;
}

// ---- Messages (live regions) ----

// Each message is a new element, so that a screen reader announces it even
// when its text is the same as the last one's.
function show(region, text) {
  const message = document.createElement('span');
  message.textContent = text;
  region.replaceChildren(message);
}

// say tells of a success. It clears the last error, except for the
// successes of a batch of uploads, which must not hide an error of the
// same batch.
function say(text, keepError = false) {
  if (!keepError) {
    $('error').replaceChildren();
    $('error-close').hidden = true;
  }
  show($('status'), text);
}

function fail(text) {
  $('status').replaceChildren();
  show($('error'), text);
  $('error-close').hidden = false;
}

// report shows why an action failed, and returns the reason. A token that
// is no longer valid ends the session.
function report(err, action, name) {
  const reason = explain(err, name);
  if (err instanceof ApiError && err.status === 401 && session) {
    $('signin-user').value = session.username;
    signOut();
    $('signin-token').focus();
  }
  fail(`${action}: ${reason}`);
  return reason;
}

// ---- Signing in and out ----

function showSignedOut() {
  $('who').hidden = true;
  $('gallery').hidden = true;
  $('signed-out').hidden = false;
}

function start(username, token) {
  session = { username, token };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  $('who-name').textContent = username;
  $('who').hidden = false;
  $('signed-out').hidden = true;
  $('gallery').hidden = false;
  clearGrid();
  loadPage();
}

function signOut() {
  session = null;
  sessionStorage.removeItem(SESSION_KEY);
  clearGrid();
  $('uploads').replaceChildren();
  $('new-token').hidden = true;
  $('new-token-value').textContent = '';
  showSignedOut();
}

// signIn checks the token with the server and that it is the username's.
async function signIn(username, token) {
  let me;
  try {
    me = await api('GET', '/users/me', { token });
  } catch (err) {
    report(err, 'Could not sign in');
    return false;
  }
  if (me.username !== username) {
    fail(`Could not sign in: that token is not the token of “${username}”.`);
    return false;
  }
  start(me.username, token);
  return true;
}

const validUsername = (name) => /^[A-Za-z0-9_]{1,150}$/.test(name);

let pending = false; // a sign-in or account creation is on its way

async function onSignIn(e) {
  e.preventDefault();
  const user = $('signin-user');
  const token = $('signin-token');
  if (!user.value.trim() || !token.value.trim()) {
    fail('Could not sign in: enter your username and your token.');
    (user.value.trim() ? token : user).focus();
    return;
  }
  if (pending) return;
  pending = true;
  try {
    if (await signIn(user.value.trim(), token.value.trim())) {
      e.target.reset();
      say(`Signed in as ${session.username}.`);
      $('main').focus();
    }
  } finally {
    pending = false;
  }
}

async function onCreate(e) {
  e.preventDefault();
  const user = $('create-user');
  const username = user.value.trim();
  const password = $('create-pass').value;
  if (!validUsername(username)) {
    fail('Could not create the account: a username is 1 to 150 letters, digits or underscores.');
    user.focus();
    return;
  }
  if (pending) return;
  pending = true;
  try {
    const created = await api('POST', '/users', { json: password ? { username, password } : { username }, token: '' });
    e.target.reset();
    start(created.username, created.token);
    $('new-token-value').textContent = created.token;
    $('new-token').hidden = false;
    say(`Account “${created.username}” created: keep your token.`);
    $('new-token').focus();
  } catch (err) {
    report(err, 'Could not create the account');
  } finally {
    pending = false;
  }
}

// ---- The grid ----

function pageSize() {
  const max = limits?.max_page_size || 1000;
  // ?page_size=N on the page's own address sets it (the tests use small pages).
  const n = Number.parseInt(new URLSearchParams(location.search).get('page_size'), 10);
  return Math.min(n >= 1 ? n : DEFAULT_PAGE_SIZE, max);
}

function updateCount() {
  const n = cards.size;
  $('count').textContent = n ? `(${n}${cursor ? ' shown' : ''})` : '';
  $('empty').hidden = n > 0 || cursor !== '' || listing !== null;
}

// Thumbnails load when their card comes near the screen.
const nearScreen = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    if (!entry.isIntersecting) continue;
    nearScreen.unobserve(entry.target);
    loadThumb(cards.get(entry.target.dataset.id));
  }
}, { rootMargin: '400px' });

// fill writes an image's description into its card.
function fill(c) {
  const { image, li } = c;
  li.querySelector('.name').textContent = image.name;
  li.querySelector('.size').textContent = formatBytes(image.size);
  li.querySelector('.dims').textContent = `${image.width} × ${image.height}`;
  const date = li.querySelector('.date');
  date.dateTime = image.updated;
  date.textContent = `${image.updated === image.created ? 'Uploaded' : 'Replaced'} ${dateFormat.format(new Date(image.updated))}`;
  c.img.alt = image.name;
  // Each button's name says which image it acts on ("Delete cat.png").
  for (const span of li.querySelectorAll('.vh')) span.textContent = ` ${image.name}`;
}

// addCard shows an image. fresh is for one uploaded in this visit: it goes
// last, and images listed later by "Load more" (uploaded before it) go
// before it, so the grid keeps the upload order.
function addCard(image, fresh) {
  if (cards.has(image.id)) return; // listed again after an upload here
  const li = $('card-template').content.firstElementChild.cloneNode(true);
  const c = { image, li, img: li.querySelector('img'), url: null, gen: 0 };
  li.dataset.id = image.id;
  if (fresh) li.dataset.fresh = '';
  c.img.addEventListener('load', () => {
    c.img.hidden = false;
    li.querySelector('.placeholder').hidden = true;
  });
  c.img.addEventListener('error', () => {
    if (c.url) noPreview(c); // a type this browser cannot show (TIFF, PBM...)
  });
  fill(c);
  cards.set(image.id, c);
  const grid = $('grid');
  grid.insertBefore(li, fresh ? null : grid.querySelector('[data-fresh]'));
  nearScreen.observe(li);
  updateCount();
  return c;
}

// forget revokes a card's object URL, which frees the image's bytes.
function forget(c) {
  if (c.url) URL.revokeObjectURL(c.url);
  c.url = null;
}

function noPreview(c) {
  forget(c);
  c.img.hidden = true;
  c.img.removeAttribute('src');
  const placeholder = c.li.querySelector('.placeholder');
  placeholder.textContent = `No preview (${c.image.content_type})`;
  placeholder.hidden = false;
}

async function loadThumb(c) {
  if (!c) return;
  const gen = ++c.gen; // after a replacement, only the newest load counts
  const mine = session;
  let blob = null;
  for (const query of [THUMB_QUERY, '']) {
    try {
      blob = await fetchImage(`/images/${encodeURIComponent(c.image.id)}${query}`);
      break;
    } catch (err) {
      if (err.status === 401 && session === mine) {
        report(err, 'Could not show your images');
        return;
      }
    }
  }
  if (session !== mine || cards.get(c.image.id) !== c || c.gen !== gen) return;
  if (!blob) {
    noPreview(c);
    return;
  }
  const old = c.url;
  c.url = URL.createObjectURL(blob);
  c.img.src = c.url;
  if (old) URL.revokeObjectURL(old);
}

function removeCard(c) {
  nearScreen.unobserve(c.li);
  forget(c);
  c.li.remove();
  cards.delete(c.image.id);
  updateCount();
}

function clearGrid() {
  for (const c of [...cards.values()]) removeCard(c);
  cursor = '';
  $('more').hidden = true;
}

// loadPage lists the next page of images.
async function loadPage() {
  const mine = session;
  if (listing === mine) return; // one page at a time
  listing = mine;
  const more = $('more');
  more.setAttribute('aria-busy', 'true');
  const query = new URLSearchParams({ limit: String(pageSize()) });
  if (cursor) query.set('cursor', cursor);
  try {
    const page = await api('GET', `/images?${query}`);
    if (session !== mine) return;
    const moreHadFocus = document.activeElement === more;
    const added = page.images.map((image) => addCard(image, false)).filter(Boolean);
    cursor = page.next_cursor || '';
    more.hidden = !cursor;
    // The last page hides the button: keep the keyboard user's place.
    if (moreHadFocus && more.hidden && added.length) added[0].li.querySelector('button').focus();
  } catch (err) {
    report(err, 'Could not list your images');
  } finally {
    if (listing === mine) listing = null;
    more.removeAttribute('aria-busy');
    updateCount();
  }
}

// ---- Uploads ----

const queue = [];
let running = 0;

// enqueue runs job (a function returning a promise) once fewer than
// PARALLEL_UPLOADS uploads are running.
function enqueue(job) {
  queue.push(job);
  pump();
}

function pump() {
  while (running < PARALLEL_UPLOADS && queue.length) {
    running++;
    queue.shift()().finally(() => {
      running--;
      pump();
    });
  }
}

// uploadRow adds a line to the upload list: a name, a progress bar and
// what happened.
function uploadRow(label) {
  const li = document.createElement('li');
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = label;
  const bar = document.createElement('progress');
  bar.max = 1;
  bar.value = 0;
  bar.setAttribute('aria-label', `Progress of ${label}`);
  const state = document.createElement('span');
  state.className = 'state';
  state.textContent = 'Waiting…';
  li.append(name, bar, state);
  $('uploads').append(li);
  return { li, bar, state };
}

function rowDone(row, text) {
  row.bar.value = 1;
  row.state.textContent = text;
  row.li.classList.add('done');
  setTimeout(() => row.li.remove(), 5000);
}

function rowFailed(row, reason) {
  const text = `Failed: ${reason}`;
  row.state.textContent = text;
  row.li.classList.add('failed');
  const dismiss = document.createElement('button');
  dismiss.type = 'button';
  dismiss.textContent = 'Dismiss';
  dismiss.setAttribute('aria-label', `Dismiss: ${text}`);
  dismiss.addEventListener('click', () => {
    // Keep the keyboard's place: the next row's button, or the file picker.
    const next = row.li.nextElementSibling?.querySelector('button') || row.li.previousElementSibling?.querySelector('button');
    row.li.remove();
    (next || $('file-input')).focus();
  });
  row.li.append(dismiss);
}

// A connection cut while sending a file larger than the limit is the server
// refusing it (it may answer 413 and close before reading the body, and
// then the browser sees no answer): say so, rather than "cannot be reached".
function sizeRefusal(err, file) {
  if (err instanceof ApiError && err.status === 0 && limits && file.size > limits.max_upload_bytes) return new ApiError(413);
  return err;
}

function upload(file) {
  const mine = session;
  const row = uploadRow(file.name);
  enqueue(async () => {
    if (session !== mine) return; // signed out meanwhile
    row.state.textContent = 'Uploading…';
    try {
      const image = await send('POST', '/images', file, (f) => { row.bar.value = f; });
      if (session !== mine) return;
      rowDone(row, 'Uploaded');
      addCard(image, true);
      say(`Uploaded “${image.name}”.`, true);
    } catch (err) {
      if (session === mine) rowFailed(row, report(sizeRefusal(err, file), `Could not upload “${file.name}”`, file.name));
    }
  });
}

function uploadFiles(files) {
  for (const file of files) upload(file);
}

let replacing = null; // the card whose "Replace" asked for a file

function chooseReplacement(c) {
  replacing = c;
  const input = $('replace-input');
  input.value = '';
  input.click();
}

function replace(c, file) {
  const mine = session;
  const old = c.image.name;
  const row = uploadRow(`${old} → ${file.name}`);
  enqueue(async () => {
    if (session !== mine) return;
    row.state.textContent = 'Uploading…';
    try {
      // If-Match: replace only the image as this page shows it.
      const image = await send('PUT', `/images/${encodeURIComponent(c.image.id)}`, file, (f) => { row.bar.value = f; }, `"${c.image.sha256}"`);
      if (session !== mine) return;
      rowDone(row, 'Replaced');
      c.image = image;
      fill(c);
      loadThumb(c);
      say(`Replaced “${old}” with “${image.name}”.`, true);
    } catch (err) {
      if (session === mine) rowFailed(row, report(sizeRefusal(err, file), `Could not replace “${old}”`, file.name));
    }
  });
}

// ---- Deleting and links ----

let deleting = null; // the card whose deletion the dialog asks about

function confirmDelete(c) {
  deleting = c;
  $('delete-name').textContent = c.image.name;
  $('delete-dialog').showModal(); // focuses Cancel, the first button
}

async function deleteImage(c) {
  const mine = session;
  try {
    await api('DELETE', `/images/${encodeURIComponent(c.image.id)}`);
  } catch (err) {
    if (err.status !== 404) { // a 404 is gone already: that is what was asked
      report(err, `Could not delete “${c.image.name}”`);
      return;
    }
  }
  if (session !== mine) return;
  // Focus moves to the same button of a neighbouring card.
  const near = c.li.nextElementSibling || c.li.previousElementSibling;
  const hadFocus = c.li.contains(document.activeElement);
  removeCard(c);
  if (hadFocus) (near?.querySelector('[data-action="delete"]') || $('file-input')).focus();
  say(`Deleted “${c.image.name}”.`);
}

// directLink is the seed API's address of an image, which works anywhere
// without a header because the token is in it.
function directLink(c) {
  const path = `imageapi/token/${encodeURIComponent(session.token)}/get-image/${encodeURIComponent(c.image.id)}/`;
  return new URL(path, document.baseURI).href;
}

async function copyLink(c) {
  const link = directLink(c);
  try {
    await navigator.clipboard.writeText(link);
    say(`Copied the link to “${c.image.name}”. It contains your token: share it only with people you trust.`);
  } catch {
    // No clipboard (a page served over plain HTTP from another machine is
    // not a secure context, and has none): show the link to copy by hand.
    $('link-value').value = link;
    $('link-dialog').showModal();
    $('link-value').select();
  }
}

// ---- Dropping files ----

let dragTimer = 0;
const carriesFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types).includes('Files');

function onDragOver(e) {
  if (!carriesFiles(e)) return;
  e.preventDefault(); // the drop happens here, rather than the browser opening the file
  e.dataTransfer.dropEffect = session ? 'copy' : 'none';
  if (!session) return;
  // dragover repeats while files are over the page: the overlay goes when it stops.
  document.body.classList.add('dragging');
  clearTimeout(dragTimer);
  dragTimer = setTimeout(() => document.body.classList.remove('dragging'), 200);
}

function onDrop(e) {
  if (!carriesFiles(e)) return;
  e.preventDefault();
  document.body.classList.remove('dragging');
  if (!session) {
    fail('Sign in first, then drop your images.');
    return;
  }
  uploadFiles(e.dataTransfer.files);
}

// ---- Start ----

async function init() {
  $('signin-form').addEventListener('submit', onSignIn);
  $('create-form').addEventListener('submit', onCreate);
  $('sign-out').addEventListener('click', () => {
    signOut();
    say('Signed out.');
    $('signin-user').focus();
  });
  $('error-close').addEventListener('click', () => {
    $('error').replaceChildren();
    $('error-close').hidden = true;
  });
  $('new-token-ok').addEventListener('click', () => {
    $('new-token').hidden = true;
    $('new-token-value').textContent = '';
    $('file-input').focus();
  });
  $('file-input').addEventListener('change', (e) => {
    const files = [...e.target.files];
    e.target.value = ''; // choosing the same file again is a new upload
    uploadFiles(files);
  });
  $('replace-input').addEventListener('change', (e) => {
    const file = e.target.files[0];
    const c = replacing;
    replacing = null;
    if (file && c && cards.get(c.image.id) === c) replace(c, file);
  });
  $('grid').addEventListener('click', (e) => {
    const button = e.target.closest('button[data-action]');
    const c = button && cards.get(button.closest('.card').dataset.id);
    if (!c) return;
    if (button.dataset.action === 'replace') chooseReplacement(c);
    else if (button.dataset.action === 'link') copyLink(c);
    else if (button.dataset.action === 'delete') confirmDelete(c);
  });
  $('more').addEventListener('click', loadPage);
  $('delete-cancel').addEventListener('click', () => $('delete-dialog').close());
  $('delete-confirm').addEventListener('click', () => {
    const c = deleting;
    $('delete-dialog').close();
    if (c) deleteImage(c);
  });
  $('delete-dialog').addEventListener('close', () => { deleting = null; });
  $('link-close').addEventListener('click', () => $('link-dialog').close());
  document.addEventListener('dragover', onDragOver);
  document.addEventListener('drop', onDrop);

  try {
    limits = await api('GET', '/limits', { token: '' });
    $('limit-text').textContent = `At most ${formatBytes(limits.max_upload_bytes)} per image.`;
  } catch {
    // Not fatal: messages then use what the server says in each refusal.
  }

  let saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem(SESSION_KEY));
  } catch {
    // Unreadable: start signed out.
  }
  if (saved?.username && saved?.token && await signIn(saved.username, saved.token)) return;
  sessionStorage.removeItem(SESSION_KEY);
  showSignedOut();
}

init();
