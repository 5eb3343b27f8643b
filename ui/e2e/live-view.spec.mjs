#!/usr/bin/env node
// Browser test of the live view against a running server (`apiscope capture --serve-ui`, or the
// relay). Debian's chromium through playwright-core; runs every check, exits non-zero if one failed.
//
//   APISCOPE_UI_URL=http://127.0.0.1:8089   the server (required)
//   APISCOPE_UI_TOKEN=...                    its bearer token (required)
//   APISCOPE_UI_FORBIDDEN='["s3cret",...]'   strings that must appear neither in the page's text
//                                            nor in any WebSocket frame or API response received
//   APISCOPE_UI_EXPECTED='["e2e-secret"]'    strings that must appear in what was received (so the
//                                            forbidden check saw the requests that carried them)
//   APISCOPE_UI_ARTIFACTS=dir                screenshots go here (default ./artifacts)
//   APISCOPE_UI_FILTER='verb == "get"'       a filter that narrows the stream ...
//   APISCOPE_UI_FILTER_COLUMN=verb           ... checked as: every row's data-<column> ...
//   APISCOPE_UI_FILTER_VALUE=get             ... equals this
//   APISCOPE_UI_BAD_FILTER='verb =='         a filter that does not parse ("" skips the check)
//   APISCOPE_UI_DETAIL_FILTER='...'          a filter whose rows have bodies, for the detail pane
//                                            (default: APISCOPE_UI_FILTER)
//   APISCOPE_UI_EXPECT_FRAMES=1              the detail pane must list HTTP/2 frames (0 for a relay)
//   APISCOPE_UI_TIMEOUT_MS=30000             per wait
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { launchChromium } from "./chromium.mjs";

const env = process.env;
const baseUrl = (env.APISCOPE_UI_URL ?? "").replace(/\/+$/, "");
const token = env.APISCOPE_UI_TOKEN ?? "";
if (!baseUrl || !token) {
  console.error("APISCOPE_UI_URL and APISCOPE_UI_TOKEN are required");
  process.exit(2);
}
const forbidden = JSON.parse(env.APISCOPE_UI_FORBIDDEN ?? "[]");
const expected = JSON.parse(env.APISCOPE_UI_EXPECTED ?? "[]");
const artifacts = env.APISCOPE_UI_ARTIFACTS ?? "artifacts";
const filter = env.APISCOPE_UI_FILTER ?? 'verb == "get"';
const filterColumn = env.APISCOPE_UI_FILTER_COLUMN ?? "verb";
const filterValue = env.APISCOPE_UI_FILTER_VALUE ?? "get";
const badFilter = env.APISCOPE_UI_BAD_FILTER ?? "verb ==";
const detailFilter = env.APISCOPE_UI_DETAIL_FILTER ?? filter;
const expectFrames = (env.APISCOPE_UI_EXPECT_FRAMES ?? "1") === "1";
const timeout = Number(env.APISCOPE_UI_TIMEOUT_MS ?? 30_000);
mkdirSync(artifacts, { recursive: true });

let failures = 0;
function check(condition, what) {
  console.log(`${condition ? "ok  " : "FAIL"} ${what}`);
  if (!condition) failures++;
  return condition;
}

/** Everything the browser received, for the forbidden-strings check. */
const received = [];
function watchTraffic(page) {
  page.on("websocket", (ws) => ws.on("framereceived", ({ payload }) => received.push(String(payload))));
  page.on("response", async (response) => {
    if (!response.url().includes("/api/")) return;
    try {
      const text = await response.text();
      received.push(text);
      // Body bytes travel as base64: decoded, they must not hold a forbidden string either.
      for (const match of text.matchAll(/"(?:request|response)_bytes":"([A-Za-z0-9+/=]*)"/g)) {
        received.push(Buffer.from(match[1], "base64").toString("latin1"));
      }
    } catch {
      // a response without a body (redirect, aborted)
    }
  });
}

async function pageText(page) {
  return page.evaluate(() => document.body.innerText + "\n" + document.documentElement.outerHTML);
}
const pageTexts = [];

async function rowValues(page, column) {
  return page.$$eval(`[data-testid=row]`, (rows, c) => rows.map((r) => r.getAttribute(`data-${c}`)), column);
}

async function applyFilter(page, text) {
  await page.fill("[data-testid=filter]", text);
  await page.press("[data-testid=filter]", "Enter");
}

const browser = await launchChromium();
try {
  const page = await browser.context.newPage();
  watchTraffic(page);

  // 1. Rows appear; the token leaves the address bar.
  await page.goto(`${baseUrl}/#token=${encodeURIComponent(token)}`);
  await page.waitForSelector("[data-testid=status][data-state=live]", { timeout });
  const firstRow = await page.waitForSelector("[data-testid=row]", { timeout }).catch(() => null);
  check(firstRow !== null, "rows appear");
  check(!page.url().includes("token="), "the token is removed from the address bar");
  await page.screenshot({ path: join(artifacts, "live-view.png") });
  pageTexts.push(await pageText(page));

  // 1b. Scrolling up pauses the feed; the badge resumes it. The client map draws edges.
  await page.waitForFunction(() => {
    const el = document.querySelector("[data-testid=table-scroller]");
    return el && el.scrollHeight > el.clientHeight * 1.5;
  }, null, { timeout }).catch(() => null);
  const scrollable = await page.$eval("[data-testid=table-scroller]", (el) => el.scrollHeight > el.clientHeight);
  if (check(scrollable, "enough rows to scroll")) {
    await page.hover("[data-testid=table-scroller]");
    await page.mouse.wheel(0, -600);
    const paused = await page.waitForSelector("[data-testid=resume]", { timeout }).catch(() => null);
    check(paused !== null, "scrolling up pauses the live feed (resume badge shown)");
    await page.screenshot({ path: join(artifacts, "paused.png") });
    await paused?.click();
    const resumed = await page.waitForSelector("[data-testid=resume]", { state: "detached", timeout }).catch(() => "still paused");
    check(resumed !== "still paused", "the badge resumes the feed");
  }
  await page.click("[data-testid=map-toggle]");
  const edge = await page.waitForSelector("[data-testid=map-edge]", { timeout }).catch(() => null);
  check(edge !== null, `the client map draws edges (${(await page.$$("[data-testid=map-edge]")).length})`);
  await page.screenshot({ path: join(artifacts, "client-map.png") });
  await page.click("[data-testid=map-toggle]");

  // 2. A filter narrows the rows; the URL carries it.
  await applyFilter(page, filter);
  await page
    .waitForFunction(
      ([c, v]) => {
        const rows = [...document.querySelectorAll("[data-testid=row]")];
        return rows.length > 0 && rows.every((r) => r.getAttribute(`data-${c}`) === v);
      },
      [filterColumn, filterValue],
      { timeout },
    )
    .catch(() => null);
  let values = await rowValues(page, filterColumn);
  check(values.length > 0 && values.every((v) => v === filterValue), `filter ${filter} narrows the rows (${values.length} shown, all ${filterColumn}=${filterValue})`);
  check(new URL(page.url()).searchParams.get("filter") === filter, "the URL keeps the filter");
  await page.screenshot({ path: join(artifacts, "filtered.png") });

  // 3. A reload keeps the filter (and the token, from sessionStorage).
  await page.reload();
  await page.waitForSelector("[data-testid=status][data-state=live]", { timeout });
  check((await page.inputValue("[data-testid=filter]")) === filter, "after a reload the filter bar holds the filter");
  await page.waitForSelector("[data-testid=row]", { timeout }).catch(() => null);
  values = await rowValues(page, filterColumn);
  check(values.length > 0 && values.every((v) => v === filterValue), "after a reload the rows are still filtered");

  // 4. A filter that does not parse: the server's message and column are shown.
  if (badFilter) {
    await applyFilter(page, badFilter);
    const error = await page.waitForSelector("[data-testid=filter-error]", { timeout }).catch(() => null);
    check(error !== null, `a bad filter (${badFilter}) shows the server's error: ${error ? await error.innerText() : "none"}`);
    check((await page.$("[data-testid=filter-caret]")) !== null, "the error's column is marked");
    await page.screenshot({ path: join(artifacts, "filter-error.png") });
  }

  // 5. The detail pane: frames and a hex dump.
  await applyFilter(page, detailFilter);
  await page.waitForSelector("[data-testid=row]", { timeout });
  // The header's count renders with the rows it counts, not a throttle interval later.
  const kept = await page.innerText("[data-testid=row-count]");
  check(!kept.startsWith("0 "), `the header counts the rows shown (${kept})`);
  await page.click("[data-testid=row] >> nth=0");
  await page.waitForSelector("[data-testid=detail] section", { timeout });
  if (expectFrames) {
    const frame = await page.waitForSelector("[data-testid=frame]", { timeout }).catch(() => null);
    check(frame !== null, `the detail pane lists HTTP/2 frames (${(await page.$$("[data-testid=frame]")).length})`);
  }
  const hex = await page.waitForSelector("[data-testid=dump-hex]", { timeout }).catch(() => null);
  const hexText = hex ? await hex.innerText() : "";
  check(/^0{8}  [0-9a-f]{2} /.test(hexText), "the detail pane shows a hex dump");
  await hex?.scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(artifacts, "detail.png") });
  for (const view of ["base64", "binary", "ascii", "utf8"]) {
    const button = await page.$(`[data-testid=bytes-request] [data-testid=view-${view}], [data-testid=bytes-response] [data-testid=view-${view}]`);
    if (button) {
      await button.click();
      pageTexts.push(await pageText(page));
    }
  }
  pageTexts.push(await pageText(page));

  // 6. Nothing the policy withheld reached the browser.
  for (const secret of forbidden) {
    const inFrames = received.filter((payload) => payload.includes(secret)).length;
    const inPage = pageTexts.filter((text) => text.includes(secret)).length;
    check(inFrames === 0 && inPage === 0, `forbidden string ${JSON.stringify(secret.slice(0, 4) + "…")} absent (${received.length} frames/responses, ${pageTexts.length} page snapshots)`);
  }
  check(received.length > 0, `WebSocket frames were received (${received.length})`);
  for (const text of expected) {
    check(received.some((payload) => payload.includes(text)), `the stream carried ${JSON.stringify(text)}`);
  }

  // 7. A wrong token is refused, clearly.
  const intruder = await browser.context.newPage();
  await intruder.goto(`${baseUrl}/#token=wrong-${Date.now()}`);
  const refused = await intruder.waitForSelector("[data-testid=refused]", { timeout }).catch(() => null);
  check(refused !== null, "a wrong token is refused");
  check((await intruder.$$("[data-testid=row]")).length === 0, "a refused page shows no rows");
  await intruder.screenshot({ path: join(artifacts, "token-refused.png") });
} finally {
  await browser.close();
}
console.log(failures === 0 ? "live view: all checks passed" : `live view: ${failures} checks failed`);
process.exit(failures === 0 ? 0 : 1);
