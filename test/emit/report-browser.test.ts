/**
 * The backtest report in a real browser: Debian's Chromium, driven by playwright-core (no browser
 * download, no mock). The page made from the demo fixture with a compare config must load
 * without a console error or a page error, touch no network, and draw every chart; a key id made
 * to inject markup must stay text. A full-page screenshot is checked to be a real picture.
 *
 * Chromium comes from CHROMIUM_PATH, else /usr/bin/chromium, else `chromium` on PATH. Missing, the
 * test fails in CI (CI=true: `.ci/run` installs it) and skips elsewhere, naming the package.
 * TRAILWATCH_REPORT_SCREENSHOT=/tmp/report-screenshot.png keeps a copy of the screenshot.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { type Browser, chromium, type Page } from 'playwright-core';
import { BACKTEST_FIXTURES, COUNTS_CSV, ensureFixtures, SPIKE_JSONL } from '../backtest/fixtures.ts';
import { REPO_ROOT } from '../helpers/shared.ts';

const run = promisify(execFile);
const MAIN = join(REPO_ROOT, 'src/cli/main.ts');
const IN_CI = process.env.CI === 'true' || process.env.CI === '1';
const EVIL = `</script><img src=x onerror="window.pwned=1">`;

function findChromium(): string | null {
  const given = process.env.CHROMIUM_PATH;
  if (given) return existsSync(given) ? given : null;
  if (existsSync('/usr/bin/chromium')) return '/usr/bin/chromium';
  try {
    const found = execFileSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' }).trim();
    return found === '' ? null : found;
  } catch {
    return null;
  }
}

const CHROMIUM = findChromium();
const MISSING = CHROMIUM
  ? null
  : `Chromium not found${process.env.CHROMIUM_PATH ? ` at CHROMIUM_PATH=${process.env.CHROMIUM_PATH}` : ''}: install Debian's package chromium (apt-get install -y chromium) or set CHROMIUM_PATH`;
// Outside CI a machine without Chromium skips; in CI it is an error (.ci/run installs it).
const skip = MISSING !== null && !IN_CI ? MISSING : false;

async function backtest(args: string[]): Promise<string> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TRAILWATCH_')));
  const { stderr } = await run(process.execPath, [MAIN, 'backtest', ...args], { cwd: REPO_ROOT, env: clean, maxBuffer: 16 * 1024 * 1024 });
  return stderr;
}

/** What a page did that it should not: console errors, uncaught errors, requests for anything but the file itself. */
function watch(page: Page, file: string): { errors: string[]; requests: string[] } {
  const seen = { errors: [] as string[], requests: [] as string[] };
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') seen.errors.push(`console.${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => seen.errors.push(`page error: ${e.message}`));
  page.on('request', (r) => {
    if (r.url() !== pathToFileURL(file).href) seen.requests.push(r.url());
  });
  return seen;
}

/** The few browser types the page-side functions below use: the project compiles without the DOM library. */
interface Context2d {
  getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
  drawImage(image: unknown, x: number, y: number): void;
}
interface CanvasElement {
  width: number;
  height: number;
  getContext(kind: '2d'): Context2d | null;
  getBoundingClientRect(): { width: number; height: number };
}
interface ChartElement {
  getAttribute(name: string): string | null;
  querySelector(selector: 'canvas'): CanvasElement | null;
}
declare const document: { querySelectorAll(selector: string): Iterable<ChartElement>; createElement(tag: 'canvas'): CanvasElement };
declare const Image: new () => { src: string; naturalWidth: number; naturalHeight: number; decode(): Promise<void> };

interface CanvasFacts {
  chart: string;
  width: number;
  height: number;
  /** Pixels with any paint. */
  painted: number;
  /** Distinct colours, quantised to 4 bits a channel. */
  colours: number;
  /** Pixels of the rate line (#1d4ed8) and of a base Insight span (red fill). */
  rate: number;
  baseSpan: number;
}

/** Every chart container's canvas, measured from its pixels. */
function canvases(page: Page): Promise<CanvasFacts[]> {
  return page.evaluate(() =>
    [...document.querySelectorAll('[data-chart]')].map((el) => {
      const canvas = el.querySelector('canvas');
      const facts = { chart: el.getAttribute('data-chart') ?? '', width: 0, height: 0, painted: 0, colours: 0, rate: 0, baseSpan: 0 };
      if (!canvas) return facts;
      const box = canvas.getBoundingClientRect();
      facts.width = box.width;
      facts.height = box.height;
      const px = canvas.getContext('2d')?.getImageData(0, 0, canvas.width, canvas.height).data;
      if (!px) return facts;
      const colours = new Set<number>();
      for (let i = 0; i < px.length; i += 4) {
        const [r, g, b, a] = [px[i] ?? 0, px[i + 1] ?? 0, px[i + 2] ?? 0, px[i + 3] ?? 0];
        if (a === 0) continue;
        facts.painted++;
        colours.add(((r >> 4) << 12) | ((g >> 4) << 8) | ((b >> 4) << 4) | (a >> 4));
        if (a > 200 && Math.abs(r - 29) < 24 && Math.abs(g - 78) < 24 && Math.abs(b - 216) < 24) facts.rate++;
        if (a > 20 && a < 120 && r > 180 && g < 80 && b < 80) facts.baseSpan++;
      }
      facts.colours = colours.size;
      return facts;
    }),
  );
}

/** A PNG's size from its header, and how many colours it has, decoded by the browser itself. */
async function pngFacts(browser: Browser, png: Buffer): Promise<{ width: number; height: number; colours: number; topShare: number }> {
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  const width = png.readUInt32BE(16);
  const height = png.readUInt32BE(20);
  const page = await browser.newPage();
  try {
    const { colours, topShare } = await page.evaluate(async (b64) => {
      const img = new Image();
      img.src = `data:image/png;base64,${b64}`;
      await img.decode();
      const c = document.createElement('canvas');
      c.width = img.naturalWidth;
      c.height = img.naturalHeight;
      const ctx = c.getContext('2d');
      if (!ctx) throw new Error('no 2d context');
      ctx.drawImage(img, 0, 0);
      const px = ctx.getImageData(0, 0, c.width, c.height).data;
      const counts = new Map<number, number>();
      for (let i = 0; i < px.length; i += 4) {
        const key = (((px[i] ?? 0) >> 3) << 10) | (((px[i + 1] ?? 0) >> 3) << 5) | ((px[i + 2] ?? 0) >> 3);
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      return { colours: counts.size, topShare: Math.max(...counts.values()) / (px.length / 4) };
    }, png.toString('base64'));
    return { width, height, colours, topShare };
  } finally {
    await page.close();
  }
}

let dir = '';
let browser: Browser | undefined;
before(async () => {
  ensureFixtures();
  dir = await mkdtemp(join(tmpdir(), 'tw-report-browser-'));
  if (CHROMIUM) browser = await chromium.launch({ executablePath: CHROMIUM });
});
after(async () => {
  await browser?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('backtest report in Chromium', { timeout: 180_000 }, () => {
  test('the demo fixture with --compare: loads clean, offline, every chart drawn, a real screenshot', { skip }, async () => {
    if (MISSING) assert.fail(`${MISSING} (CI=true: the browser test must run)`);
    assert.ok(browser);
    const file = join(dir, 'report.html');
    await backtest([
      '--config',
      join(BACKTEST_FIXTURES, 'report-strict.json'),
      '--compare',
      join(BACKTEST_FIXTURES, 'report-action-only.json'),
      '--report',
      file,
      '--insights',
      join(dir, 'insights.jsonl'),
      SPIKE_JSONL,
    ]);
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const seen = watch(page, file);
    await page.goto(pathToFileURL(file).href);
    await page.waitForSelector('body[data-rendered]', { timeout: 30_000 });
    // 4 keys, Insights per day for each run, one histogram.
    assert.equal(await page.getAttribute('body', 'data-rendered'), '7');

    const charts = await canvases(page);
    assert.deepEqual(
      charts.map((c) => c.chart),
      ['per-day', 'per-day', 'histogram', 'key', 'key', 'key', 'key'],
    );
    for (const c of charts) {
      assert.ok(c.width > 300 && c.height > 100, `${c.chart}: ${c.width}×${c.height}`);
      assert.ok(c.painted > c.width * c.height * 0.02, `${c.chart}: ${c.painted} painted pixels`);
      assert.ok(c.colours >= 4, `${c.chart}: ${c.colours} colours`);
    }
    const keys = charts.filter((c) => c.chart === 'key');
    for (const k of keys) assert.ok(k.rate > 50, `rate line drawn: ${k.rate} pixels`);
    // The base run's spans are filled red over the plot's height: the two keys that fired in it show red, the others none.
    assert.deepEqual(
      keys.map((k) => k.baseSpan > 100),
      [true, true, false, false],
    );
    assert.deepEqual(
      await page.locator('[data-chart="key"]').evaluateAll((els) => els.map((e) => e.getAttribute('data-spans'))),
      ['1/1', '1/0', '0/1', '0/1'],
      'spans drawn per key, base/compare: the action key in both runs, the principal key in the base run only, two keys under compare only',
    );
    assert.equal(await page.locator('#changes .chg.appears').count(), 2);
    assert.equal(await page.locator('#changes .chg.vanishes').count(), 1);

    const png = await page.screenshot({ fullPage: true });
    const shot = join(dir, 'report.png');
    await writeFile(shot, png);
    assert.ok((await stat(shot)).size > 50_000, `screenshot of ${png.length} bytes`);
    const facts = await pngFacts(browser, png);
    assert.equal(facts.width, 1280);
    assert.ok(facts.height > 2_000, `a full page: ${facts.height} px high`);
    assert.ok(facts.colours > 50, `${facts.colours} colours`);
    assert.ok(facts.topShare < 0.95, `not one colour: the commonest covers ${(facts.topShare * 100).toFixed(1)} %`);
    if (process.env.TRAILWATCH_REPORT_SCREENSHOT) await copyFile(shot, process.env.TRAILWATCH_REPORT_SCREENSHOT);

    assert.deepEqual(seen.errors, []);
    assert.deepEqual(seen.requests, [], 'no network: everything is inlined');
    await page.close();
  });

  test('a key id that closes the script and adds an <img onerror> is shown as text and runs nothing', { skip }, async () => {
    if (MISSING) assert.fail(`${MISSING} (CI=true: the browser test must run)`);
    assert.ok(browser);
    const csv = join(dir, 'evil.csv');
    // The counts fixture with its spiking series renamed: CSV keys are free text, as principal ARNs and user agents are.
    await writeFile(csv, (await readFile(COUNTS_CSV, 'utf8')).replaceAll('checkout.requests', `"${EVIL.replaceAll('"', '""')}"`));
    const file = join(dir, 'evil.html');
    const stderr = await backtest(['--report', file, '--insights', join(dir, 'evil.jsonl'), csv]);
    assert.match(stderr, /1 key chart\)/);
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const seen = watch(page, file);
    await page.goto(pathToFileURL(file).href);
    await page.waitForSelector('body[data-rendered]', { timeout: 30_000 });
    assert.equal(await page.getAttribute('body', 'data-rendered'), '3');
    assert.equal(await page.evaluate(() => (globalThis as { pwned?: number }).pwned), undefined);
    assert.equal(await page.locator('img').count(), 0);
    assert.equal(await page.locator('section.key h3').textContent(), `action|call|000000000000|counts|counts|${EVIL}`);
    const charts = await canvases(page);
    assert.ok(charts.every((c) => c.painted > 0));
    assert.deepEqual(seen.errors, []);
    assert.deepEqual(seen.requests, []);
    await page.close();
  });
});
