// Drives Debian's Chromium headless through the serve example's page:
// ask for the time (a tool call, streamed answer), then ask to email the
// team and approve the call; saves a screenshot.
//
//   node browser.mjs '{"url": "...", "screenshot": "...png", "chromium": "/usr/bin/chromium"}'
//
// Prints what the page showed, as JSON.
import { chromium } from "playwright-core";

const args = JSON.parse(process.argv[2]);
const browser = await chromium.launch({
  executablePath: args.chromium,
  args: ["--no-sandbox", "--disable-gpu"],
});
const out = {};
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 900 } });
  page.setDefaultTimeout(20000);
  await page.goto(args.url);

  // A streamed answer: its text grows piece by piece. Each text the page
  // shows is recorded in the page as it is set (polling from here would
  // miss pieces on a busy machine).
  await page.evaluate(() => {
    window.answerLengths = new Set();
    new MutationObserver((records) => {
      for (const r of records) {
        if (!r.target.classList?.contains("answer")) continue;
        for (const n of r.addedNodes) window.answerLengths.add(n.textContent.length);
      }
    }).observe(document.body, { childList: true, subtree: true });
  });
  await page.fill("#question", "What time is it?");
  await page.click("#send");
  const answer = page.locator(".turn").nth(0).locator(".answer");
  await page.waitForFunction(() => /UTC\.$/.test(document.querySelector(".answer")?.textContent ?? ""));
  out.firstAnswer = await answer.textContent();
  out.answerLengthsSeen = await page.evaluate(() => window.answerLengths.size);
  out.firstToolCall = await page.locator(".turn").nth(0).locator(".tool-call .tool-name").textContent();
  out.firstToolResult = await page.locator(".turn").nth(0).locator(".tool-result").textContent();

  await page.fill("#question", "Please email the team");
  await page.click("#send");
  await page.locator(".approval").waitFor();
  out.secondToolCall = await page.locator(".turn").nth(1).locator(".tool-call .tool-name").first().textContent();
  out.approvalQuestion = await page.locator(".approval .question").textContent();
  out.approvalCall = await page.locator(".approval code").textContent();
  await page.click(".approval button.approve");
  await page.waitForFunction(() => [...document.querySelectorAll(".answer")].some((a) => /^Done: .*\)\.$/.test(a.textContent)));
  const answers = await page.locator(".answer").allTextContents();
  out.lastAnswer = answers[answers.length - 1];
  out.toolResults = await page.locator(".turn").nth(1).locator(".tool-result").allTextContents();
  await page.screenshot({ path: args.screenshot, fullPage: true });
  out.screenshot = args.screenshot;
} catch (e) {
  out.error = String(e && e.message ? e.message : e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
