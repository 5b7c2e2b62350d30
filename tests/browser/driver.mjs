// Drives headless Chromium for the dashboard tests, one command per stdin line,
// one answer per stdout line ("ok <value>" or "error <message>"):
//   goto <url> | wait <css> | gone <css> | text <css> | screenshot <path> | paint <url>
//   | viewport <w> <h> | scheme dark|light | eval <js expression> | errors | quit
// `paint` loads the page in a fresh tab and answers with the milliseconds from
// navigation start to the first render of the topology and to first contentful paint.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const TIMEOUT = Number(process.env.DRIVER_TIMEOUT_MS || 15000);
const profile = mkdtempSync(join(tmpdir(), "diskwatch-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const page = context.pages()[0] || (await context.newPage());
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));

async function paint(url) {
  const tab = await context.newPage();
  await tab.goto(url);
  await tab.waitForFunction(() => performance.getEntriesByName("diskwatch-first-render").length > 0, null, { timeout: TIMEOUT });
  const t = await tab.evaluate(() => ({
    render: performance.getEntriesByName("diskwatch-first-render")[0].startTime,
    fcp: (performance.getEntriesByName("first-contentful-paint")[0] || { startTime: -1 }).startTime,
    disks: document.querySelectorAll("[data-disk-id]").length,
    mounts: document.querySelectorAll("[data-mount-id]").length,
  }));
  await tab.close();
  return JSON.stringify(t);
}

async function handle(line) {
  const space = line.indexOf(" ");
  const cmd = space < 0 ? line : line.slice(0, space);
  const arg = space < 0 ? "" : line.slice(space + 1);
  switch (cmd) {
    case "goto": await page.goto(arg); return "";
    case "wait": await page.waitForSelector(arg, { state: "attached", timeout: TIMEOUT }); return "";
    case "gone": await page.waitForSelector(arg, { state: "detached", timeout: TIMEOUT }); return "";
    case "text": return JSON.stringify(await page.textContent(arg, { timeout: TIMEOUT }));
    case "screenshot": await page.screenshot({ path: arg, fullPage: true }); return "";
    case "paint": return await paint(arg);
    case "errors": return JSON.stringify(errors);
    case "viewport": { const [width, height] = arg.split(" ").map(Number); await page.setViewportSize({ width, height }); return ""; }
    case "scheme": await page.emulateMedia({ colorScheme: arg }); return "";
    case "eval": return JSON.stringify(await page.evaluate(arg));
    default: throw new Error(`unknown command ${cmd}`);
  }
}

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (line === "quit") break;
  try {
    process.stdout.write(`ok ${await handle(line)}\n`);
  } catch (e) {
    process.stdout.write(`error ${String(e.message || e).split("\n")[0]}\n`);
  }
}
await context.close();
rmSync(profile, { recursive: true, force: true });
