// The dashboard of one instance of a fleet, in Debian's headless Chromium: an incident
// both instances took part in is listed once, marked "also on <other>", and its events
// say which instance saw them. Prints one JSON line of results.
// Usage: node fleet.mjs <base-url> <artifact-dir> <incident-id> <other-instance>
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const [base, artifacts, id, other] = process.argv.slice(2);
if (!base || !artifacts || !id || !other) {
  console.error("usage: node fleet.mjs <base-url> <artifact-dir> <incident-id> <other-instance>");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });
const failures = [];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const results = {};
try {
  const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base + "/");
  await page.fill("#username", "admin");
  await page.fill("#password", "admin-demo-password");
  // The sign-in page is served at "/" too: wait for the form's answer, not the URL.
  const [signIn] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/dashboard/login")),
    page.click("button[type=submit]"),
  ]);
  results.sign_in = signIn.status();
  if (signIn.status() !== 303) throw new Error(`sign-in answered ${signIn.status()}`);
  await page.waitForURL(base + "/");
  const item = page.locator(`#incident-list li[data-incident="${id}"]`);
  // A bound, not a measurement: two browsers share two cores with the tests.
  await item.waitFor({ timeout: 20000 });
  results.listed = await page.locator(`#incident-list li[data-incident="${id}"]`).count();
  await item.locator("summary").click();
  results.summary = (await item.locator("summary").textContent()) || "";
  results.events = await item.locator(".body ul").first().locator("li").allTextContents();
  if (results.listed !== 1) failures.push(`incident ${id} listed ${results.listed} times`);
  if (!results.summary.includes(`also on ${other}`)) failures.push(`summary: ${results.summary}`);
  const there = results.events.filter((e) => e.includes(`(on ${other})`)).length;
  if (there < 1 || there === results.events.length) {
    failures.push(`events of each instance: ${JSON.stringify(results.events)}`);
  }
  await item.screenshot({ path: `${artifacts}/dashboard-fleet-incident.png` });
  if (errors.length) failures.push(`console: ${errors.join(" | ")}`);
} catch (e) {
  failures.push(String(e));
} finally {
  await browser.close();
}
results.failures = failures;
console.log(JSON.stringify(results));
process.exit(failures.length ? 1 : 0);
