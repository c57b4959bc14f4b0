// Opens the eval example's HTML report in Debian's Chromium, headless:
// collects console errors and page errors, reads what the page shows,
// opens a failing case's drill-down and saves a screenshot.
//
//   node report.mjs '{"file": "/abs/report.html", "screenshot": "...png", "chromium": "/usr/bin/chromium"}'
//
// Prints what it found, as JSON.
import { chromium } from "playwright-core";

const args = JSON.parse(process.argv[2]);
const browser = await chromium.launch({
  executablePath: args.chromium,
  args: ["--no-sandbox", "--disable-gpu"],
});
const out = { consoleErrors: [], pageErrors: [], requests: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 1300 } });
  page.on("console", (m) => { if (m.type() === "error") out.consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => out.pageErrors.push(String(e)));
  page.on("request", (r) => { if (!r.url().startsWith("file:")) out.requests.push(r.url()); });
  await page.goto("file://" + args.file);
  out.title = await page.title();
  out.figures = await page.locator(".figure").allTextContents();
  out.tagBars = await page.locator("svg[aria-label='score by tag'] rect").count();
  out.histograms = await page.locator("figure svg").count();
  out.cases = await page.locator("details").count();
  const firstFail = page.locator("details").filter({ has: page.locator("summary .fail") }).first();
  await firstFail.locator("summary").click();
  out.drillDown = await firstFail.innerText();
  await page.screenshot({ path: args.screenshot, fullPage: false });
} catch (e) {
  out.error = String(e);
}
await browser.close();
console.log(JSON.stringify(out));
