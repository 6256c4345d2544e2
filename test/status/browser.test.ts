/**
 * The status page in a real headless Chromium (Debian's, driven by playwright-core): after a
 * known sequence of pulls it renders, its figures equal /metrics, its charts drew, the fill in
 * flight shows its progress, nothing on it names the private upstream's repository, and it
 * asks nothing of any host but the mirror. A screenshot is kept in test-artifacts/.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { which, requireTool } from '../helpers/tools.js';
import { parseMetrics } from '../helpers/metrics.js';
import { figuresFromMetrics, HIDDEN, metricsText, pullScenario, PUBLIC, SECRET, settledSnapshot, type Scenario } from './scenario.js';

const ROOT = join(import.meta.dirname, '..', '..');
const SCREENSHOT = join(ROOT, 'test-artifacts', 'status-page.png');

// Without these Chromium reaches for Google's services at start-up, and on a closed network
// its connections are refused; the page itself needs none of them.
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** The series' stroke colours in status.js: pixels of these prove a line was drawn, not only axes. */
const STROKES = { 'hit-ratio': [[42, 122, 176]], bytes: [[46, 133, 64], [192, 57, 43]] };

/**
 * What the functions run in the page use of its DOM, typed here: the project compiles without
 * the DOM library (its timers and fetch would clash with Node's).
 */
interface PageElement {
  dataset: Record<string, string | undefined>;
  textContent: string | null;
  /** A <progress>'s value. */
  value?: number;
  querySelector(selector: string): PageElement | null;
}
interface PageCanvas {
  width: number;
  height: number;
  getContext(kind: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } } | null;
}
declare const document: {
  querySelector(selector: string): (PageElement & PageCanvas) | null;
  querySelectorAll(selector: string): Iterable<PageElement>;
  body: { innerText: string };
};

const haveChromium = requireTool('chromium', 'apt-get install chromium');

describe.skipIf(!haveChromium)('status page in Chromium', () => {
  let scenario: Scenario | undefined;
  let context: BrowserContext | undefined;
  let profile: string | undefined;
  afterEach(async () => {
    await context?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
    await scenario?.dispose();
    [scenario, context, profile] = [undefined, undefined, undefined];
  });

  it('shows the figures /metrics has, draws its charts, shows a fill in progress, hides private repositories, and stays on 127.0.0.1', async () => {
    scenario = await pullScenario();
    const { mirror: m, slow, expected } = scenario;
    await settledSnapshot(m, expected);

    profile = await mkdtemp(join(tmpdir(), 'oci-mirror-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: which('chromium')!,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 900 },
    });
    const requested: string[] = [];
    context.on('request', (r) => requested.push(r.url()));
    const page = context.pages()[0] ?? (await context.newPage());
    const problems: string[] = [];
    page.on('console', (msg) => {
      if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`${msg.type()}: ${msg.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));

    const response = await page.goto(`${m.url}/_mirror/`);
    expect(response?.status()).toBe(200);
    await page.waitForSelector('body[data-status="ready"]', { timeout: 15_000 });
    await page.waitForSelector(`tr[data-digest="${slow.digest}"]`, { timeout: 15_000 });

    const shown = await page.evaluate(() => {
      const value = (el: PageElement | null) => el?.dataset.value ?? null;
      const figure = (name: string) => Number(value(document.querySelector(`[data-metric="${name}"]`)));
      const upstreams = Object.fromEntries(
        [...document.querySelectorAll('tr[data-upstream]')].map((tr) => [
          tr.dataset.upstream,
          {
            state: value(tr.querySelector('[data-metric="upstream-state"]')),
            requests: Number(value(tr.querySelector('[data-metric="upstream-requests"]'))),
            errors: Number(value(tr.querySelector('[data-metric="upstream-errors"]'))),
          },
        ]),
      );
      const fills = [...document.querySelectorAll('tr[data-digest]')].map((tr) => ({
        digest: tr.dataset.digest,
        repository: tr.querySelector('[data-metric="fill-repository"]')?.textContent,
        percent: Number(value(tr.querySelector('[data-metric="fill-percent"]'))),
        bar: tr.querySelector('progress')?.value,
        received: Number(value(tr.querySelector('[data-metric="fill-received"]'))),
        size: Number(value(tr.querySelector('[data-metric="fill-size"]'))),
        clients: Number(value(tr.querySelector('[data-metric="fill-clients"]'))),
      }));
      const rows = (table: string) => [...document.querySelectorAll(`[data-table="${table}"] [data-metric="repository"]`)].map((td) => td.textContent);
      return {
        figures: {
          hits: figure('hits'),
          misses: figure('misses'),
          hitRatio: figure('hit-ratio'),
          cacheBytes: figure('cache-bytes'),
          upstreamBytes: figure('upstream-bytes'),
          fillsInFlight: figure('fills-in-flight'),
        },
        hitRatioText: document.querySelector('[data-metric="hit-ratio"]')?.textContent,
        upstreams,
        fills,
        largest: rows('largest'),
        pulled: rows('pulled'),
        hiddenFills: document.querySelector('[data-metric="hidden-fills"]')?.textContent,
        text: document.body.innerText,
      };
    });

    // The same test reads /metrics: the page must say what it says.
    const metrics = figuresFromMetrics(parseMetrics(await metricsText(m)));
    expect(metrics).toMatchObject({ ...expected, fillsInFlight: 1 });
    const { upstreams: metricUpstreams, ...totals } = metrics;
    expect(shown.figures).toEqual(totals);
    expect(shown.hitRatioText).toBe(`${(metrics.hitRatio * 100).toFixed(1)}%`);
    expect(shown.upstreams).toEqual({
      [PUBLIC]: { state: 'up', ...metricUpstreams[PUBLIC] },
      [SECRET]: { state: 'up', ...metricUpstreams[SECRET] },
    });
    expect(metricUpstreams[PUBLIC]!.requests).toBeGreaterThan(0);

    expect(shown.fills).toHaveLength(1);
    const fill = shown.fills[0]!;
    expect(fill).toMatchObject({ digest: slow.digest, repository: `${PUBLIC}/team/app`, size: slow.size, clients: 1 });
    expect(fill.received).toBeGreaterThanOrEqual(slow.held);
    expect(fill.received).toBeLessThan(slow.size);
    expect(fill.percent).toBeCloseTo((fill.received / slow.size) * 100, 6);
    expect(fill.bar).toBeCloseTo(fill.percent, 6);

    expect(shown.largest).toEqual([`${PUBLIC}/team/app`, `${PUBLIC}/team/tools`]);
    expect(shown.pulled).toEqual([`${PUBLIC}/team/app`, `${PUBLIC}/team/tools`]);
    expect(shown.hiddenFills).toBe('');
    expect(shown.text).not.toContain(HIDDEN);
    expect(await page.content()).not.toContain('payroll');

    // The charts drew: canvases with a size, and pixels of each series' colour on them.
    const charts = await page.evaluate((strokes) => {
      return Object.entries(strokes).map(([name, colours]) => {
        const canvas = document.querySelector(`[data-chart="${name}"] canvas`);
        if (!canvas) return { name, width: 0, height: 0, painted: 0, series: colours.map(() => 0) };
        const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
        let painted = 0;
        const series = colours.map(() => 0);
        for (let i = 0; i < data.length; i += 4) {
          if (data[i + 3]! === 0) continue;
          painted++;
          colours.forEach(([r, g, b], j) => {
            if (Math.abs(data[i]! - r!) + Math.abs(data[i + 1]! - g!) + Math.abs(data[i + 2]! - b!) < 60 && data[i + 3]! > 128) series[j]!++;
          });
        }
        return { name, width: canvas.width, height: canvas.height, painted, series };
      });
    }, STROKES);
    for (const chart of charts) {
      expect(chart.width, chart.name).toBeGreaterThan(0);
      expect(chart.height, chart.name).toBeGreaterThan(0);
      expect(chart.painted, chart.name).toBeGreaterThan(1000);
      for (const [i, count] of chart.series.entries()) expect(count, `${chart.name} series ${i + 1}`).toBeGreaterThan(10);
    }

    await mkdir(join(ROOT, 'test-artifacts'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    console.log(`status page screenshot: ${SCREENSHOT}`);

    // Offline: the page and its chart library came from the mirror, and nothing went elsewhere.
    const origin = `${m.url}/`;
    expect(requested.filter((url) => !url.startsWith(origin))).toEqual([]);
    for (const asset of ['assets/uPlot.iife.min.js', 'assets/uPlot.min.css', 'assets/status.js', 'assets/status.css', 'status.json']) {
      expect(requested, asset).toContain(`${origin}_mirror/${asset}`);
    }
    // A CSP violation or a script error is reported on the console.
    expect(problems).toEqual([]);
  });
});
