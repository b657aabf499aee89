// The whole flow in a real browser: ./scripts/dev.sh --demo (worker, dev issuer, demo page, on ports
// of their own), Debian's chromium driven by playwright-core, Auth0's SPA SDK logging in through the
// dev issuer's login page and calling the worker from another origin. Checks what the page shows.
//
//   node tests/browser/demo.mjs            (scripts/test.sh runs it after the end-to-end suite)
//
// Each dev user runs twice: with Bearer tokens, and with DPoP-bound ones (useDpop: the SDK's own
// proofs, checked by the worker). EDGE_AUTH_BROWSER_DPOP=0 leaves the DPoP runs out.
// EDGE_AUTH_SCREENSHOT=path saves the page signed in as dev-user|2 (the README's picture), on
// dev.sh's usual ports so that the picture shows what a person sees.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { freePorts, startDev } from '../js/devsh.mjs';

const CHROMIUM = process.env.EDGE_AUTH_CHROMIUM || '/usr/bin/chromium';
// No sandbox (containers and root), no GPU, and nothing that calls home: the test needs loopback only.
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const DPOP = process.env.EDGE_AUTH_BROWSER_DPOP !== '0';
const SCREENSHOT = process.env.EDGE_AUTH_SCREENSHOT;
const STEP_MS = 30_000;

let failures = 0;
function check(name, ok, detail = '') {
  console.log(`${ok ? 'ok' : 'FAILED'} - ${name}${ok ? '' : `: ${detail}`}`);
  if (!ok) failures += 1;
}

// dev.sh --demo: resolves with the page URL once dev.sh prints it (all three answer by then).
function startDemo(ports) {
  return startDev('--demo', {
    WORKER_PORT: String(ports.worker),
    ISSUER_PORT: String(ports.issuer),
    PAGE_PORT: String(ports.page),
    INSPECTOR_PORT: String(ports.inspector),
  }, 'page');
}

// A browser with a profile of its own: no cookies, storage or DPoP keys carried between runs.
async function withBrowser(run) {
  const profile = mkdtempSync(path.join(os.tmpdir(), 'edge-auth-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport: { width: 1100, height: 560 },
  });
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(STEP_MS);
    return await run(page);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

const state = (page, wanted) => page.waitForSelector(`body[data-state="${wanted}"]`);

async function results(page) {
  await page.click('#call');
  await state(page, 'called');
  return page.$$eval('#results tr', (rows) => rows.map((tr) => ({
    route: tr.dataset.route,
    status: tr.querySelector('.status').textContent,
    body: tr.querySelector('.body').textContent,
    challenge: tr.querySelector('.challenge').textContent,
  })));
}

const statuses = (rows) => rows.map((r) => r.status).join('/');

async function login(page, pageUrl, user, { dpop = false } = {}) {
  await page.goto(pageUrl);
  await state(page, 'signed-out');
  if (dpop) await page.check('#dpop');
  await page.click('#login');
  // The dev issuer's own login page: one link per dev user.
  const link = await page.waitForSelector(`a.user[data-user="${user}"]`);
  check(`the login page says it is a development tool (${user})`, (await page.textContent('body')).includes('development tool'));
  await link.click();
  await page.waitForURL((url) => url.href.startsWith(pageUrl));
  await state(page, 'signed-in');
  check(`signed in as ${user}`, (await page.textContent('#who')).includes(user), await page.textContent('body'));
}

async function logout(page, pageUrl) {
  await page.click('#logout');
  await page.waitForURL((url) => url.href.startsWith(pageUrl));
  await state(page, 'signed-out');
}

async function main() {
  // Free ports can be taken by another process before wrangler binds them: one retry with others.
  let demo;
  let pageUrl;
  let ports;
  for (let attempt = 1; ; attempt += 1) {
    const [worker, issuer, page, inspector] = await freePorts(4);
    ports = SCREENSHOT ? { worker: 8787, issuer: 8788, page: 8790, inspector } : { worker, issuer, page, inspector };
    demo = startDemo(ports);
    try {
      pageUrl = await demo.ready;
      break;
    } catch (error) {
      await demo.stop();
      if (attempt === 2 || !/Address already in use|EADDRINUSE/.test(demo.log())) {
        check('dev.sh --demo starts', false, `${error.message}\n${demo.log().split('\n').slice(-30).join('\n')}`);
        process.exit(1);
      }
      console.log('a port was taken before dev.sh bound it; trying other ports');
    }
  }
  const stopOnSignal = () => demo.stop().then(() => process.exit(130));
  process.on('SIGINT', stopOnSignal);
  process.on('SIGTERM', stopOnSignal);
  try {
    console.log(`demo page at ${pageUrl}, worker on ${ports.worker}, dev issuer on ${ports.issuer}`);

    await withBrowser(async (page) => {
      await login(page, pageUrl, 'dev-user|1');
      check('token is a Bearer token carrying read:messages', /token_type Bearer .*read:messages/.test(await page.textContent('#token')), await page.textContent('#token'));
      const rows = await results(page);
      check('dev-user|1 reads 200/200/200', statuses(rows) === '200/200/200', JSON.stringify(rows));
      check('the page reads the private answer', (rows[1]?.body || '').includes('private endpoint'), rows[1]?.body);
      await logout(page, pageUrl);
      const after = await results(page);
      check('after logout 200/401/401', statuses(after) === '200/401/401', JSON.stringify(after));
      check('the 401 challenge is readable by the page', /^Bearer realm=/.test(after[1]?.challenge || ''), JSON.stringify(after[1]));
      check('the 401 body is readable by the page', (after[1]?.body || '').includes('missing_authorization'), JSON.stringify(after[1]));
    });

    await withBrowser(async (page) => {
      await login(page, pageUrl, 'dev-user|2');
      const rows = await results(page);
      check('dev-user|2 reads 200/200/403', statuses(rows) === '200/200/403', JSON.stringify(rows));
      check('the 403 challenge names insufficient_scope', (rows[2]?.challenge || '').includes('insufficient_scope'), JSON.stringify(rows[2]));
      if (SCREENSHOT) await page.screenshot({ path: SCREENSHOT });
    });

    // The same page from an origin CORS_ALLOWED_ORIGINS does not list (localhost, not 127.0.0.1):
    // the worker answers, but the browser hands the page nothing, not even /api/public.
    await withBrowser(async (page) => {
      const elsewhere = pageUrl.replace('127.0.0.1', 'localhost');
      await page.goto(elsewhere);
      await state(page, 'signed-out');
      const rows = await results(page);
      check('a page on another origin cannot read any answer', statuses(rows) === 'blocked/blocked/blocked', JSON.stringify(rows));
    });

    if (DPOP) {
      for (const [user, expected] of [['dev-user|1', '200/200/200'], ['dev-user|2', '200/200/403']]) {
        await withBrowser(async (page) => {
          await login(page, pageUrl, user, { dpop: true });
          const token = await page.textContent('#token');
          check(`DPoP: ${user}'s token is DPoP-bound`, /token_type DPoP/.test(token) && /bound to key/.test(token), token);
          const rows = await results(page);
          check(`DPoP: ${user} reads ${expected}`, statuses(rows) === expected, JSON.stringify(rows));
          await logout(page, pageUrl);
          const after = await results(page);
          check(`DPoP: after logout 200/401/401`, statuses(after) === '200/401/401', JSON.stringify(after));
        });
      }
    } else {
      console.log('skip - DPoP runs (useDpop) left out: EDGE_AUTH_BROWSER_DPOP=0');
    }
  } catch (error) {
    check('browser run', false, error.stack || String(error));
  } finally {
    await demo.stop();
  }
  if (failures) {
    console.log(`\n${failures} browser check(s) failed; the last of dev.sh --demo's output:\n${demo.log().split('\n').slice(-40).join('\n')}`);
    process.exit(1);
  }
  console.log('browser test passed');
}

main();
