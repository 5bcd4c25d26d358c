// Signs in as the demo operator and saves a screenshot of the dashboard.
// Usage: node screenshot.mjs <base-url> <out.png> [width] [height]
import { chromium } from "playwright-core";

const [base, out, width = "1366", height = "900"] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: Number(width), height: Number(height) } });
await page.goto(base + "/");
await page.fill("#username", "admin");
await page.fill("#password", "admin-demo-password");
await Promise.all([page.waitForURL(base + "/"), page.click("button[type=submit]")]);
await page.waitForFunction(() => Number(document.querySelector("#countries")?.dataset.countries) > 150);
await page.waitForTimeout(1500);
await page.screenshot({ path: out, fullPage: true });
await browser.close();
