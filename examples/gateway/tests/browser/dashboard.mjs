// Drives the dashboard in Debian's headless Chromium and prints one JSON line of
// results. Usage: node dashboard.mjs <base-url> <artifact-dir>
//
// The scripted attack is real traffic to the gateway: failed logins from MaxMind's test
// addresses (the gateway trusts loopback as its proxy, so X-Forwarded-For names the
// client), one of them a wrong password for a user who always logs in from London.
//
// The page must load with no console error and no request leaving the machine, draw
// the countries, show each triggered event on the map and in the feed (and the
// incidents it opened), and move its counters. Latency is measured from the moment
// the trigger request is sent until the event's element is in the page.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const [base, artifacts] = process.argv.slice(2);
if (!base || !artifacts) {
  console.error("usage: node dashboard.mjs <base-url> <artifact-dir>");
  process.exit(2);
}
// MaxMind test addresses the bundled GeoIP databases locate.
const SOURCES = ["175.16.199.0", "89.160.20.112", "216.160.83.56", "2.125.160.216", "81.2.69.142"];
mkdirSync(artifacts, { recursive: true });
const origin = new URL(base).origin;
const failures = [];
const fail = (msg) => failures.push(msg);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions",
  ],
});
const results = { latencies_ms: [], screenshots: [] };
try {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  const offsite = [];
  page.on("request", (r) => {
    const u = r.url();
    if (!u.startsWith(origin) && !u.startsWith("data:")) offsite.push(u);
  });

  // Sign in through the form, as an operator does.
  await page.goto(base + "/");
  await page.fill("#username", "admin");
  await page.fill("#password", "admin-demo-password");
  await Promise.all([page.waitForURL(base + "/"), page.click("button[type=submit]")]);
  await page.waitForSelector("#conn.on", { timeout: 10000 });

  // The map: every country of Natural Earth's 1:110m set.
  await page.waitForFunction(() => Number(document.querySelector("#countries")?.dataset.countries) > 150, null, { timeout: 10000 });
  results.countries = await page.locator("#countries path").count();
  if (results.countries < 150) fail(`map drew ${results.countries} countries`);

  const before = await page.locator("#c-login_failure").textContent();

  // Scripted attack: wrong passwords from around the world; the first one is for alice
  // (a month of logins from London) from China, the fourth a user name that is markup.
  for (let i = 0; i < 20; i++) {
    const id = `browser-${i}`;
    const user = i === 0 ? "alice" : i === 3 ? "<img src=x onerror=alert(1)>" : `user${i % 5}`;
    const t0 = performance.now();
    const r = await fetch(`${base}/login`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": id, "x-forwarded-for": SOURCES[i % SOURCES.length] },
      body: JSON.stringify({ username: user, password: "wrong-password" }),
    });
    if (r.status >= 500) { fail(`login ${id}: HTTP ${r.status}`); continue; }
    await page.waitForSelector(`#feed li[data-request-id="${id}"]`, { timeout: 5000 });
    results.latencies_ms.push(Math.round((performance.now() - t0) * 10) / 10);
  }
  // On the map, and in the incident list.
  results.dots = await page.locator("#dots circle").count();
  if (results.dots < 1) fail("no dot on the map");
  await page.waitForSelector("#incident-list li", { timeout: 5000 }).catch(() => fail("no incident listed"));
  results.incidents = await page.locator("#incident-list > li").count();
  // Counters move (stats arrive at most a second later).
  await page.waitForFunction((b) => document.querySelector("#c-login_failure").textContent !== b, before, { timeout: 5000 })
    .catch(() => fail("the failed-login counter did not move"));
  results.failed_logins_shown = await page.locator("#c-login_failure").textContent();
  // Hostile text stays text.
  results.hostile_markup_rendered = await page.locator("#feed img").count();
  if (results.hostile_markup_rendered) fail("markup from an event was rendered");

  // Keyboard: the first incident opens with Enter.
  await page.focus("#incident-list summary");
  await page.keyboard.press("Enter");
  results.incident_opens_by_keyboard = await page.locator("#incident-list details[open]").count() > 0;
  if (!results.incident_opens_by_keyboard) fail("an incident did not open from the keyboard");

  const laptop = `${artifacts}/dashboard-laptop.png`;
  await page.screenshot({ path: laptop, fullPage: true });
  results.screenshots.push(laptop);
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  const phone = `${artifacts}/dashboard-phone.png`;
  await page.screenshot({ path: phone, fullPage: true });
  results.screenshots.push(phone);
  results.horizontal_overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  if (results.horizontal_overflow) fail("the page scrolls sideways on a phone");

  results.console_errors = errors;
  results.offsite_requests = offsite;
  if (errors.length) fail(`console errors: ${errors.join(" | ")}`);
  if (offsite.length) fail(`requests left the machine: ${offsite.join(", ")}`);
  const sorted = [...results.latencies_ms].sort((a, b) => a - b);
  results.p95_ms = sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.95) - 1)];
} catch (e) {
  fail(`exception: ${e && e.stack || e}`);
} finally {
  await browser.close();
}
results.failures = failures;
console.log(JSON.stringify(results));
process.exit(failures.length ? 1 : 0);
