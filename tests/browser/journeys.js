// journeys.js - the book's journeys through the Video Tutorials site, in
// Debian's chromium driven by puppeteer-core. Run by run.sh, which starts the
// site and passes BASE_URL, CHROMIUM, EMAIL_DIR and SCREENSHOT_DIR.
//
// A visitor registers, gets the registration email (a .eml file of the
// send-email pickup directory), logs in, records a viewing and sees the home
// page's count go up by one; publishes a video and names it, and watches the
// operation's page turn into the video's page; names it with nothing and
// sees the failure; names it with markup, which shows as text; logs out. The
// administrator then finds the visitor in the Admin Portal with one log-in
// and the email sent, and the registration's traceId with its five
// messages. Each page is kept as a PNG in SCREENSHOT_DIR.
'use strict';

const fs = require('fs');
const path = require('path');
const puppeteer = require('puppeteer-core');

const BASE = process.env.BASE_URL;
const SHOTS = process.env.SCREENSHOT_DIR;
const EMAIL_DIR = process.env.EMAIL_DIR;
const WAIT_MS = 30000;
const PASSWORD = 'a long enough password';
const ADMIN_EMAIL = 'admin@example.com'; // config/video-tutorials.ini's admins
const MARKUP = '<script>alert(1)</script>';

let shotNumber = 0;
let step = 'start';

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function shot(page, name) {
  shotNumber += 1;
  const file = path.join(SHOTS, `${String(shotNumber).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
}

// Wait until fn() returns something truthy; fn may throw while a page loads.
async function until(what, fn, timeoutMs = WAIT_MS) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err.message;
    }
    await sleep(200);
  }
  throw new Error(`waited ${timeoutMs} ms in vain for ${what} (last: ${last})`);
}

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

async function text(page, selector) {
  return page.$eval(selector, (e) => e.textContent.trim());
}

async function go(page, urlPath) {
  const res = await page.goto(BASE + urlPath, { waitUntil: 'load' });
  return res ? res.status() : 0;
}

// Submit the form holding `selector` (a button) and wait for the next page.
async function submit(page, selector) {
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click(selector)]);
}

async function fill(page, selector, value) {
  await page.$eval(selector, (e) => { e.value = ''; });
  if (value !== '') await page.type(selector, value);
}

async function register(page, email) {
  step = `register ${email}`;
  await go(page, '/');
  await submit(page, 'a[href="/register"]');
  const userId = await page.$eval('input[name="id"]', (e) => e.value);
  await fill(page, '#email', email);
  await fill(page, '#password', PASSWORD);
  await submit(page, 'form button[type="submit"]');
  expect(new URL(page.url()).pathname === '/register/registration-complete',
         `registering ended on ${page.url()}`);
  return userId;
}

async function logIn(page, email) {
  step = `log in ${email}`;
  // user_credentials is eventually consistent: try until the aggregator has it
  await until(`a log-in of ${email}`, async () => {
    await go(page, '/auth/log-in');
    await fill(page, '#email', email);
    await fill(page, '#password', PASSWORD);
    await submit(page, 'form button[type="submit"]');
    return new URL(page.url()).pathname === '/';
  });
  await page.waitForSelector('#log-out');
}

async function logOut(page) {
  step = 'log out';
  await submit(page, '#log-out');
  await page.waitForSelector('#log-in');
}

async function videosWatched(page) {
  await go(page, '/');
  return Number(await text(page, '#videos-watched'));
}

// Name the video of the page we are on; returns the operation's path.
async function nameVideo(page, name) {
  await fill(page, '#name', name);
  await submit(page, '#rename');
  const where = new URL(page.url()).pathname;
  return where;
}

async function visitorJourney(page, email) {
  // register, and the email arrives
  const userId = await register(page, email);
  await shot(page, 'registration-complete');
  step = 'the registration email';
  const eml = await until(`an email to ${email} in ${EMAIL_DIR}`, () => {
    const files = fs.readdirSync(EMAIL_DIR).filter((f) => f.endsWith('.eml'));
    return files.map((f) => fs.readFileSync(path.join(EMAIL_DIR, f), 'utf8'))
      .find((content) => content.includes(`To: ${email}`));
  });
  expect(/^Subject: .*Welcome/m.test(eml), `the email has no welcome subject:\n${eml}`);

  // a failed log-in says nothing of which field was wrong
  step = 'a wrong password';
  await go(page, '/auth/log-in');
  await fill(page, '#email', email);
  await fill(page, '#password', 'not the password');
  await submit(page, 'form button[type="submit"]');
  expect((await text(page, '#errors')) === 'That email and password do not match an account.',
         'a failed log-in says something else');
  await shot(page, 'log-in-failed');

  await logIn(page, email);
  await shot(page, 'home-logged-in');

  // record a viewing: the count goes up by one
  step = 'record a viewing';
  const before = await videosWatched(page);
  await submit(page, '#record-viewing');
  expect(new URL(page.url()).pathname === '/', `recording a viewing ended on ${page.url()}`);
  await until(`videosWatched = ${before + 1}`, async () => (await videosWatched(page)) === before + 1);
  await shot(page, 'home-after-viewing');

  // publish a video
  step = 'publish a video';
  await go(page, '/creators-portal');
  await shot(page, 'creators-portal-empty');
  await fill(page, '#sourceUri', 'https://example.com/videos/intro-to-c.mp4');
  await submit(page, '#publish');
  const videoPath = new URL(page.url()).pathname;
  expect(videoPath.startsWith('/creators-portal/videos/'), `publishing ended on ${page.url()}`);
  await shot(page, 'video-publishing');
  // the page reloads itself until the video is there
  await until('the published video', async () => (await text(page, '#video-name')) === 'Untitled');
  await shot(page, 'video-published');

  // name it: the operation's page turns into the video's page
  step = 'name the video';
  const operation = await nameVideo(page, 'Intro to C');
  expect(operation.startsWith('/creators-portal/video-operations/') || operation === videoPath,
         `naming ended on ${operation}`);
  if (operation !== videoPath) await shot(page, 'operation-pending');
  await until('the operation page to turn into the video page',
              async () => new URL(page.url()).pathname === videoPath &&
                          (await text(page, '#video-name')) === 'Intro to C');
  await shot(page, 'video-named');

  // an empty name: the failure, with its reason
  step = 'an empty name';
  await nameVideo(page, '');
  const failure = await until('the failed operation', () => text(page, '#failure'));
  expect(failure.length > 0, 'the failure has no reason');
  await shot(page, 'operation-failed');
  await submit(page, 'main a[href^="/creators-portal/videos/"]');

  // markup in a name is text
  step = 'a name with markup';
  let alerted = false;
  page.on('dialog', async (dialog) => { alerted = true; await dialog.dismiss(); });
  await nameVideo(page, MARKUP);
  await until('the video page with the markup name',
              async () => new URL(page.url()).pathname === videoPath &&
                          (await text(page, '#video-name')) === MARKUP);
  await shot(page, 'video-named-markup');
  await go(page, '/creators-portal');
  const listed = await page.$$eval('#videos a', (as) => as.map((a) => a.textContent));
  expect(listed.includes(MARKUP), `the dashboard lists ${JSON.stringify(listed)}`);
  await shot(page, 'creators-portal');
  expect(!alerted, 'a name ran as a script');

  await logOut(page);
  await shot(page, 'logged-out');
  return userId;
}

async function adminJourney(page, userId, email) {
  await register(page, ADMIN_EMAIL);
  await logIn(page, ADMIN_EMAIL);

  // the users: the visitor with one log-in and the email sent
  step = 'admin: users';
  await go(page, '/admin');
  expect(new URL(page.url()).pathname === '/admin/users', `/admin went to ${page.url()}`);
  const row = await until(`${email} with one log-in and the email sent`, async () => {
    await go(page, '/admin/users');
    return page.$$eval('#users tbody tr', (rows, wanted) => rows
      .map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent.trim()))
      .find((cells) => cells[0] === wanted && cells[2] === '1' && cells[3] === 'yes'), email);
  });
  expect(row[1] === userId, `the users list has ${row[1]} for ${email}, not ${userId}`);
  await shot(page, 'admin-users');

  step = 'admin: the user';
  await submit(page, `#users a[href="/admin/users/${userId}"]`);
  expect((await text(page, '#login-count')) === '1', 'the user page shows another log-in count');
  expect((await text(page, '#email-sent')) === 'yes', 'the user page says no email was sent');
  await shot(page, 'admin-user');

  // the registration's traceId, from the identity stream: five messages
  step = 'admin: the registration trace';
  await submit(page, `a[href="/admin/streams/identity-${userId}"]`);
  await shot(page, 'admin-stream');
  const traceHref = await page.$$eval('table.messages tbody tr', (rows) => {
    const registered = rows.find((r) => r.children[2].textContent === 'Registered');
    return registered && registered.querySelector('a[href^="/admin/correlated-messages/"]')
      .getAttribute('href');
  });
  expect(traceHref, 'no trace link on the Registered event');
  const types = await until('five messages in the trace', async () => {
    await go(page, traceHref);
    const found = await page.$$eval('table.messages tbody tr',
                                    (rows) => rows.map((r) => r.children[2].textContent));
    return found.length === 5 && found;
  });
  expect(types.join() === 'Register,Registered,Send,Sent,RegistrationEmailSent',
         `the trace holds ${types.join()}`);
  await shot(page, 'admin-trace');

  step = 'admin: other pages';
  for (const [where, name] of [['/admin/messages', 'admin-messages'],
                               ['/admin/streams', 'admin-streams'],
                               ['/admin/subscriber-positions', 'admin-positions']]) {
    expect((await go(page, where)) === 200, `${where} did not answer 200`);
    await shot(page, name);
  }
  await logOut(page);

  // and anyone else is turned away
  step = 'admin: forbidden';
  expect((await go(page, '/admin/users')) === 403, 'a visitor saw the admin portal');
  await shot(page, 'admin-forbidden');
}

async function main() {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1100, height: 800 });
    page.setDefaultTimeout(WAIT_MS);
    const errors = [];
    page.on('pageerror', (err) => errors.push(err.message));

    step = 'home';
    expect((await go(page, '/')) === 200, 'the home page did not answer 200');
    await shot(page, 'home');

    const email = `visitor-${Date.now()}@example.com`;
    const userId = await visitorJourney(page, email);
    await adminJourney(page, userId, email);
    expect(errors.length === 0, `script errors on the pages: ${errors.join('; ')}`);
  } finally {
    await browser.close();
  }
}

main().then(() => {
  console.log(`browser: every journey passed (${shotNumber} screenshots in ${SHOTS})`);
  console.log('1 passed, 0 failed');
}, (err) => {
  console.error(`browser: failed at "${step}": ${err.stack || err}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
});
