/**
 * The backtest report: one self-contained HTML page (`trailwatch backtest --report`). Pure: the
 * facts of one or two backtest runs in (src/backtest/report.ts collects and shapes them), an HTML
 * string out. The charts are drawn in the page by uPlot, inlined whole with its stylesheet, so
 * the page needs no network when it is opened (a report is often read offline or attached to a
 * change request).
 *
 * Everything from the data is untrusted: key ids carry principal ARNs and action names from the
 * events, and a counts CSV names its keys freely. Text goes into the HTML through `escapeHtml`,
 * the chart data through one `<script type="application/json">` block whose `<`, `>` and `&` are
 * written as JSON escapes (so no `</script>` can end it), and the page's script puts strings
 * into the document with `textContent` only.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/** One key's rate, downsampled: bucket starts and, per point, the value and its expected band (null: no reading). */
export interface ReportSeries {
  /** Bucket starts, ms since the epoch, ascending. */
  t: number[];
  /** The bucket's count (a metric series' value); 0 on a quiet bucket of a counts key, null where a gauge had no reading. */
  value: Array<number | null>;
  /** What the bucket was judged against. */
  expected: Array<number | null>;
  /** The band's edges: values at which one bucket alone would score the threshold. */
  low: Array<number | null>;
  high: Array<number | null>;
}

export type ReportRunName = 'base' | 'compare';
/** How an Insight fares under the compare configuration. */
export type ReportChange = 'appears' | 'vanishes';

/** One Insight, Start to End. */
export interface ReportInsight {
  keyId: string;
  /** `ApiCallRateInsight · action`: the insight type and the scope. */
  type: string;
  startMs: number;
  /** Exclusive; null while open at the end of the input. */
  endMs: number | null;
  /** The peak score (the Start's score while open). */
  score: number;
  run: ReportRunName;
  /** Set when a compare run was made and the Insight has no overlapping twin in the other run. */
  change: ReportChange | null;
}

export interface ReportKey {
  id: string;
  /** Highest score of any of the key's buckets, either run. */
  peakScore: number;
  /** Named by `--key`. */
  asked: boolean;
  /** Which run's buckets the chart shows (the base run's when it judged the key); null: no buckets judged. */
  seriesFrom: ReportRunName | null;
  series: ReportSeries | null;
  /** Buckets the key had before downsampling. */
  points: number;
  /** The threshold the band is drawn for. */
  threshold: number;
  insights: ReportInsight[];
}

export interface ReportHistogram {
  /** Counts of judged buckets with score in ((i)·w, (i+1)·w], w = 1 / counts.length. */
  counts: number[];
  /** Judged buckets that scored 0 (under the expectation, or vetoed by a floor): not drawn. */
  zero: number;
}

export interface ReportRun {
  /** The configuration's name as given (a file path, or "defaults"). */
  label: string;
  threshold: number;
  histogram: ReportHistogram;
  insights: ReportInsight[];
  /** Insights started per UTC day and type. */
  perDay: { days: number[]; types: string[]; counts: number[][] };
}

export interface ReportLeftOut {
  id: string;
  peakScore: number;
  insights: number;
}

export interface ReportData {
  title: string;
  /** ISO-8601, when the report was made. */
  generatedAt: string;
  inputs: string[];
  format: string;
  bucketMs: number;
  /** The time the input covers: first bucket, end of the last. */
  fromMs: number | null;
  toMs: number | null;
  /** Rows of totals: a label, the base run's value, the compare run's (when there is one). */
  summary: Array<[label: string, base: string, compare?: string]>;
  base: ReportRun;
  compare: ReportRun | null;
  keys: ReportKey[];
  /** Keys that qualified for a chart but were over the cap, highest score first (at most `leftOutListed`). */
  leftOut: ReportLeftOut[];
  leftOutTotal: number;
  maxKeys: number;
  /** `--key` patterns that matched no key. */
  unmatched: string[];
}

/** The charting library's code and stylesheet, inlined into every page. */
export interface ChartAssets {
  script: string;
  style: string;
  /** e.g. `uPlot 1.6.32`, named in the page's footer. */
  name: string;
  /** The library's licence text, carried in the page with the copy of its code. */
  licence: string;
}

let assets: ChartAssets | undefined;

/** uPlot's browser build and stylesheet, read from node_modules once. */
export function chartAssets(): ChartAssets {
  if (assets === undefined) {
    const require = createRequire(import.meta.url);
    const pkg = JSON.parse(readFileSync(require.resolve('uplot/package.json'), 'utf8')) as { version: string };
    assets = {
      script: readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8'),
      style: readFileSync(require.resolve('uplot/dist/uPlot.min.css'), 'utf8'),
      name: `uPlot ${pkg.version}`,
      licence: readFileSync(require.resolve('uplot/LICENSE'), 'utf8'),
    };
  }
  return assets;
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text for HTML content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);
}

/**
 * JSON safe inside a `<script>` element: `<`, `>` and `&` as \u escapes (no `</script>` or
 * `<!--` can appear), and the two line separators JavaScript once refused in strings.
 */
export function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Code inlined in a `<script>` element: a `</script` inside a string or regular expression would end the element. */
function inlineScript(code: string): string {
  return code.replace(/<\/(script)/gi, '<\\/$1');
}

/** Text for an HTML comment, which must not hold `--`. */
function escapeComment(text: string): string {
  return text.replace(/-{2,}/g, (dashes) => dashes.split('').join(' ')).replace(/>/g, '&gt;');
}

/** A stylesheet inlined in a `<style>` element. */
function inlineStyle(css: string): string {
  return css.replace(/<\/(style)/gi, '<\\/$1');
}

const iso = (ms: number): string => new Date(ms).toISOString().replace('.000Z', 'Z');
const score3 = (s: number): string => s.toFixed(3);
const n = (x: number): string => x.toLocaleString('en-US');

function spanText(i: ReportInsight): string {
  return `${iso(i.startMs)} → ${i.endMs === null ? 'open at end' : iso(i.endMs)}`;
}

function table(head: string[], rows: string[][], cls = ''): string {
  const th = head.map((h) => `<th>${escapeHtml(h)}</th>`).join('');
  const body = rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('\n');
  return `<table${cls ? ` class="${cls}"` : ''}><thead><tr>${th}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

/** Insight rows in the tables at most; the rest are counted. */
const MAX_TABLE_ROWS = 500;

function insightRows(insights: ReportInsight[], withChange: boolean, charted: Set<string>): string[][] {
  return insights.slice(0, MAX_TABLE_ROWS).map((i) => {
    const key = charted.has(i.keyId) ? `<a href="#${escapeHtml(anchorOf(i.keyId))}">${escapeHtml(i.keyId)}</a>` : escapeHtml(i.keyId);
    const cells = [`<code>${key}</code>`, escapeHtml(i.type), escapeHtml(spanText(i)), score3(i.score)];
    if (withChange) cells.unshift(i.change === null ? '' : `<span class="chg ${i.change}">${i.change}</span>`);
    return cells;
  });
}

/** A key's anchor: ids are free text, so a hash of it rather than the id itself. */
export function anchorOf(keyId: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < keyId.length; i++) h = Math.imul(h ^ keyId.charCodeAt(i), 0x01000193);
  return `key-${(h >>> 0).toString(16)}`;
}

function more(total: number, shown: number, what: string): string {
  return total > shown ? `<p class="note">${n(total - shown)} more ${what} not listed.</p>` : '';
}

/** The page's data block: what the charts draw, nothing the tables already say. */
function chartData(data: ReportData): unknown {
  const run = (r: ReportRun) => ({ label: r.label, threshold: r.threshold, histogram: r.histogram, perDay: r.perDay });
  return {
    bucketMs: data.bucketMs,
    fromMs: data.fromMs,
    toMs: data.toMs,
    base: run(data.base),
    compare: data.compare === null ? null : run(data.compare),
    keys: data.keys.map((k) => ({
      id: k.id,
      threshold: k.threshold,
      series: k.series,
      spans: k.insights.map((i) => [i.startMs, i.endMs, i.run === 'base' ? 0 : 1, i.change === null ? 0 : i.change === 'appears' ? 1 : 2]),
    })),
  };
}

/** The HTML page. */
export function renderReport(data: ReportData, chart: ChartAssets): string {
  const compare = data.compare;
  const charted = new Set(data.keys.map((k) => k.id));
  const range = data.fromMs === null || data.toMs === null ? 'no data' : `${iso(data.fromMs)} → ${iso(data.toMs)}`;
  const configs = compare
    ? `<b>base</b> ${escapeHtml(data.base.label)} (threshold ${data.base.threshold}) · <b>compare</b> ${escapeHtml(compare.label)} (threshold ${compare.threshold})`
    : `${escapeHtml(data.base.label)} (threshold ${data.base.threshold})`;

  const summary = table(
    compare ? ['', 'base', 'compare'] : ['', ''],
    data.summary.map(([label, base, other]) => [escapeHtml(label), escapeHtml(base), ...(compare ? [escapeHtml(other ?? '')] : [])]),
    'summary',
  );

  const typeNames = [...new Set([...data.base.perDay.types, ...(compare?.perDay.types ?? [])])].sort();
  const typeTotals = (r: ReportRun, type: string): number => {
    const i = r.perDay.types.indexOf(type);
    return i < 0 ? 0 : (r.perDay.counts[i] ?? []).reduce((a, b) => a + b, 0);
  };
  const perType =
    typeNames.length === 0
      ? '<p>No Insights.</p>'
      : table(
          ['type', 'Insights', ...(compare ? ['under compare'] : [])],
          typeNames.map((t) => [escapeHtml(t), n(typeTotals(data.base, t)), ...(compare ? [n(typeTotals(compare, t))] : [])]),
        );

  let changes = '';
  if (compare) {
    const changed = [...data.base.insights, ...compare.insights].filter((i) => i.change !== null).sort((a, b) => a.startMs - b.startMs);
    const appears = changed.filter((i) => i.change === 'appears').length;
    changes = `<section id="changes"><h2>What changes under ${escapeHtml(compare.label)}</h2>
<p>${n(appears)} Insight${appears === 1 ? '' : 's'} appear, ${n(changed.length - appears)} vanish; ${n(data.base.insights.length - (changed.length - appears))} stay (an Insight stays when the other run has one on the same key whose span overlaps it).</p>
${changed.length === 0 ? '<p>No Insight appears or vanishes.</p>' : table(['change', 'key', 'type', 'span', 'peak score'], insightRows(changed, true, charted))}
${more(changed.length, Math.min(changed.length, MAX_TABLE_ROWS), 'changes')}
</section>`;
  }

  const keySections = data.keys
    .map((k, i) => {
      const counts = { base: 0, compare: 0 };
      for (const ins of k.insights) counts[ins.run]++;
      const fired = compare ? `${counts.base} Insight(s), ${counts.compare} under compare` : `${counts.base} Insight(s)`;
      const sampled = k.series && k.series.t.length < k.points ? `, ${n(k.points)} buckets drawn as ${n(k.series.t.length)} points` : '';
      const from = k.seriesFrom === 'compare' ? ', rate from the compare run (the base run judged no bucket of it)' : '';
      const chart = k.series
        ? `<div class="chart" data-chart="key" data-index="${i}"></div>`
        : '<p class="note">No bucket of this key was judged: nothing to draw.</p>';
      return `<section class="key" id="${anchorOf(k.id)}"><h3><code>${escapeHtml(k.id)}</code></h3>
<p class="meta">peak score ${score3(k.peakScore)} · ${fired}${k.asked ? ' · asked for with --key' : ''}${sampled}${from}</p>
${chart}</section>`;
    })
    .join('\n');

  const leftOut =
    data.leftOutTotal === 0
      ? ''
      : `<section id="left-out"><h2>Keys left out</h2>
<p>${n(data.leftOutTotal)} more key${data.leftOutTotal === 1 ? '' : 's'} fired or matched <code>--key</code> but ${data.leftOutTotal === 1 ? 'is' : 'are'} over the cap of ${n(data.maxKeys)} charts${data.leftOut.length < data.leftOutTotal ? `; the ${n(data.leftOut.length)} highest-scoring are listed` : ''}. Narrow them down with <code>--key</code>.</p>
${table(
  ['key', 'peak score', 'Insights'],
  data.leftOut.map((k) => [`<code>${escapeHtml(k.id)}</code>`, score3(k.peakScore), n(k.insights)]),
)}</section>`;

  const unmatched =
    data.unmatched.length === 0
      ? ''
      : `<p class="warn">--key matched no key: ${data.unmatched.map((p) => `<code>${escapeHtml(p)}</code>`).join(', ')}</p>`;

  const allInsights = [...data.base.insights, ...(compare?.insights.filter((i) => i.change === 'appears') ?? [])].sort(
    (a, b) => a.startMs - b.startMs,
  );

  const hist = (r: ReportRun): number => r.histogram.counts.reduce((a, b) => a + b, 0);
  const zeroNote = `${n(data.base.histogram.zero)} of ${n(data.base.histogram.zero + hist(data.base))} judged buckets scored 0 (at or under their expectation, or vetoed by a floor) and are not drawn${
    compare ? `; under compare ${n(compare.histogram.zero)} of ${n(compare.histogram.zero + hist(compare))}` : ''
  }.`;

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<title>${escapeHtml(data.title)}</title>
<style>${inlineStyle(chart.style)}</style>
<style>${PAGE_STYLE}</style>
</head>
<body>
<main>
<header>
<h1>${escapeHtml(data.title)}</h1>
<p class="meta">${escapeHtml(data.inputs.join(', '))} (${escapeHtml(data.format)}) · ${escapeHtml(range)} · buckets of ${n(data.bucketMs / 1000)} s</p>
<p class="meta">config: ${configs}</p>
<p class="meta">made ${escapeHtml(data.generatedAt)}</p>
</header>
${summary}
${unmatched}
<section id="per-day"><h2>Insights per day and type</h2>
${data.base.perDay.days.length === 0 ? '<p>No data.</p>' : '<div class="chart" data-chart="per-day" data-run="base"></div>'}
${compare && compare.perDay.days.length > 0 ? `<h3>under ${escapeHtml(compare.label)}</h3><div class="chart" data-chart="per-day" data-run="compare"></div>` : ''}
${perType}
</section>
<section id="scores"><h2>Score distribution</h2>
<p class="note">Every judged bucket of every key; the dashed line is the score threshold. ${zeroNote} Counts on a log scale.</p>
<div class="chart" data-chart="histogram"></div>
</section>
${changes}
<section id="keys"><h2>Keys: rate and expected band</h2>
<p class="note">Per key that fired${compare ? ' in either run' : ''} or was asked for with <code>--key</code>, highest peak score first, at most ${n(data.maxKeys)}.
The line is the rate per bucket; the dashed line what the bucket was judged against; the shaded band the values one bucket alone could take without scoring the key's threshold,
for the dispersion re-learned from the key's buckets (an approximation of the engine's: a sustained run can fire inside it).
<span class="swatch base"></span> Insight span${compare ? ' <span class="swatch compare"></span> Insight span under compare; + appears, − vanishes' : ''}. Times are UTC.</p>
${keySections || '<p>No key fired and none was asked for.</p>'}
</section>
${leftOut}
<section id="insights"><h2>Insights</h2>
${allInsights.length === 0 ? '<p>None.</p>' : table(compare ? ['change', 'key', 'type', 'span', 'peak score'] : ['key', 'type', 'span', 'peak score'], insightRows(allInsights, compare !== null, charted))}
${more(allInsights.length, Math.min(allInsights.length, MAX_TABLE_ROWS), 'Insights')}
</section>
<footer><p class="meta">trailwatch backtest report · charts by ${escapeHtml(chart.name)} (MIT), inlined: the page needs no network.</p></footer>
</main>
<script type="application/json" id="tw-data">${scriptJson(chartData(data))}</script>
<!-- ${escapeComment(`${chart.name}: ${chart.licence}`)} -->
<script>${inlineScript(chart.script)}</script>
<script>${inlineScript(PAGE_SCRIPT)}</script>
</body>
</html>
`;
}

const PAGE_STYLE = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2430; background: #fff; margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 8px 0; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #dde2ea; padding-bottom: 4px; }
h3 { font-size: 14px; margin: 18px 0 2px; word-break: break-all; }
code { font: 12px/1.3 ui-monospace, SFMono-Regular, Menlo, monospace; }
.meta, .note { color: #5a6473; margin: 2px 0; } .note { font-size: 13px; }
.warn { color: #9a3412; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { text-align: left; padding: 3px 10px 3px 0; border-bottom: 1px solid #eef1f5; vertical-align: top; }
td code { word-break: break-all; }
.chart { margin: 4px 0 8px; min-height: 40px; }
.chg { font-weight: 600; } .chg.appears { color: #1d4ed8; } .chg.vanishes { color: #b91c1c; }
.swatch { display: inline-block; width: 14px; height: 10px; vertical-align: middle; }
.swatch.base { background: rgba(220, 38, 38, 0.18); border: 1px solid rgba(220, 38, 38, 0.6); }
.swatch.compare { background: rgba(37, 99, 235, 0.25); border: 1px solid rgba(37, 99, 235, 0.8); }
footer { margin-top: 32px; }
`;

/**
 * The page's own script (plain ES2020, no build step): reads the data block and draws each
 * chart with uPlot. Strings from the data reach the document through textContent only.
 * Sets `data-rendered` on <body> when done (`data-rendered="error"` and the message on a failure),
 * which the browser test waits for.
 */
const PAGE_SCRIPT = `
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('tw-data').textContent);
  var RED = 'rgba(220, 38, 38, 0.16)', RED_EDGE = 'rgba(220, 38, 38, 0.7)';
  var BLUE = 'rgba(37, 99, 235, 0.22)', BLUE_EDGE = 'rgba(37, 99, 235, 0.9)';
  var PALETTE = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#0891b2', '#be185d', '#4d7c0f'];
  var tz = function (ts) { return uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'); };
  var width = function (el) { return Math.max(320, Math.min(1130, el.clientWidth || 1000)); };
  var fmt = function (v) { return v == null ? '–' : Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(3); };
  var charts = [];

  function vline(u, ctx, x, color, label) {
    var px = u.valToPos(x, 'x', true);
    ctx.save();
    ctx.strokeStyle = color; ctx.lineWidth = 2 * devicePixelRatio; ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
    ctx.beginPath(); ctx.moveTo(px, u.bbox.top); ctx.lineTo(px, u.bbox.top + u.bbox.height); ctx.stroke();
    // The label goes right of the line, or left of it near the right edge.
    var left = px > u.bbox.left + u.bbox.width - 120 * devicePixelRatio;
    ctx.fillStyle = color; ctx.font = (11 * devicePixelRatio) + 'px sans-serif'; ctx.textAlign = left ? 'right' : 'left'; ctx.textBaseline = 'alphabetic';
    ctx.fillText(label, px + (left ? -4 : 4) * devicePixelRatio, u.bbox.top + 12 * devicePixelRatio);
    ctx.restore();
  }

  function keyChart(el, key) {
    var s = key.series, n = s.t.length, x = new Array(n);
    for (var i = 0; i < n; i++) x[i] = s.t[i] / 1e3;
    var spans = key.spans, lowest = 0, highest = 0;
    for (var k = 0; k < n; k++) {
      var v = s.value[k], e = s.expected[k];
      if (v != null) { lowest = Math.min(lowest, v); highest = Math.max(highest, v); }
      if (e != null) { lowest = Math.min(lowest, e); highest = Math.max(highest, e); }
    }
    var opts = {
      width: width(el), height: 230, tzDate: tz,
      cursor: { sync: { key: 'tw-keys' } },
      scales: {
        x: { time: true, min: data.fromMs / 1e3, max: data.toMs / 1e3 },
        // Up to the rate and the expectation: a band that is wide (a key still learning) is cut at the top rather than flatten the rate.
        y: { range: function () { return [Math.min(0, lowest), highest > 0 ? highest * 1.25 : 1]; } }
      },
      series: [
        {},
        { label: 'rate', stroke: '#1d4ed8', width: 1.5, value: function (u, v) { return fmt(v); } },
        { label: 'expected', stroke: '#6b7280', width: 1, dash: [4, 3], points: { show: false }, value: function (u, v) { return fmt(v); } },
        { label: 'band high', stroke: 'rgba(16, 185, 129, 0.5)', width: 0.5, points: { show: false }, value: function (u, v) { return fmt(v); } },
        { label: 'band low', stroke: 'rgba(16, 185, 129, 0.5)', width: 0.5, points: { show: false }, value: function (u, v) { return fmt(v); } }
      ],
      bands: [{ series: [3, 4], fill: 'rgba(16, 185, 129, 0.14)' }],
      axes: [{}, { size: 60, values: function (u, vals) { return vals.map(fmt); } }],
      hooks: {
        drawClear: [function (u) {
          var ctx = u.ctx, top = u.bbox.top, h = u.bbox.height, right = data.toMs / 1e3, drawn = [0, 0];
          for (var j = 0; j < spans.length; j++) {
            var sp = spans[j], cmp = sp[2] === 1;
            var x0 = u.valToPos(sp[0] / 1e3, 'x', true), x1 = u.valToPos((sp[1] == null ? data.toMs : sp[1]) / 1e3, 'x', true);
            if (sp[1] == null) x1 = u.valToPos(right, 'x', true);
            var w = Math.max(x1 - x0, 2 * devicePixelRatio);
            if (x0 + w <= u.bbox.left || x0 >= u.bbox.left + u.bbox.width) continue;
            drawn[sp[2]]++;
            ctx.save();
            // The base run's spans fill the plot's height, the compare run's its lower third, so both show where they overlap.
            var y0 = cmp ? top + h * 0.66 : top, hh = cmp ? h * 0.34 : h;
            ctx.fillStyle = cmp ? BLUE : RED; ctx.fillRect(x0, y0, w, hh);
            ctx.strokeStyle = cmp ? BLUE_EDGE : RED_EDGE; ctx.lineWidth = devicePixelRatio; ctx.strokeRect(x0, y0, w, hh);
            if (sp[3] !== 0) {
              ctx.fillStyle = sp[3] === 1 ? BLUE_EDGE : RED_EDGE; ctx.font = 'bold ' + (12 * devicePixelRatio) + 'px sans-serif';
              ctx.textAlign = 'left'; ctx.textBaseline = 'alphabetic';
              ctx.fillText(sp[3] === 1 ? '+ appears' : '\\u2212 vanishes', x0 + 3 * devicePixelRatio, cmp ? y0 + hh - 4 * devicePixelRatio : top + 14 * devicePixelRatio);
            }
            ctx.restore();
          }
          // What was drawn, for a reader of the DOM (the browser test): base and compare spans in the plot.
          el.setAttribute('data-spans', drawn[0] + '/' + drawn[1]);
        }]
      }
    };
    return new uPlot(opts, [x, s.value, s.expected, s.high, s.low], el);
  }

  function histogramChart(el) {
    var base = data.base.histogram, cmp = data.compare && data.compare.histogram, bins = base.counts.length, w = 1 / bins;
    var x = [], a = [], b = [];
    for (var i = 0; i < bins; i++) {
      x.push((i + 0.5) * w);
      a.push(base.counts[i] > 0 ? base.counts[i] : null);
      if (cmp) b.push(cmp.counts[i] > 0 ? cmp.counts[i] : null);
    }
    var series = [{ label: 'score', value: function (u, v) { return v == null ? '–' : (v - w / 2).toFixed(2) + '–' + (v + w / 2).toFixed(2); } },
      { label: 'buckets', fill: 'rgba(37, 99, 235, 0.55)', stroke: '#1d4ed8', points: { show: false }, paths: uPlot.paths.bars({ size: [cmp ? 0.45 : 0.9, 100], align: cmp ? -1 : 0 }) }];
    var rows = [x, a];
    if (cmp) { series.push({ label: 'under compare', fill: 'rgba(217, 119, 6, 0.55)', stroke: '#b45309', points: { show: false }, paths: uPlot.paths.bars({ size: [0.45, 100], align: 1 }) }); rows.push(b); }
    var opts = {
      width: width(el), height: 240,
      scales: { x: { time: false, range: [0, 1] }, y: { distr: 3, range: function (u, min, max) { return [0.5, Math.max(10, (max || 1) * 2)]; } } },
      series: series,
      axes: [{ incrs: [0.05, 0.1, 0.2, 0.5], values: function (u, vals) { return vals.map(function (v) { return v.toFixed(2); }); } }, { size: 60 }],
      hooks: { draw: [function (u) {
        vline(u, u.ctx, data.base.threshold, '#dc2626', 'threshold ' + data.base.threshold);
        if (data.compare && data.compare.threshold !== data.base.threshold) vline(u, u.ctx, data.compare.threshold, '#b45309', 'compare ' + data.compare.threshold);
      }] }
    };
    return new uPlot(opts, rows, el);
  }

  function perDayChart(el, run) {
    var pd = run.perDay, days = pd.days.length, x = [], rows = [], series = [{}];
    for (var d = 0; d < days; d++) x.push(pd.days[d] / 1e3);
    // Stacked: each type drawn as the running total up to it, the largest total first.
    var cum = [], acc = new Array(days).fill(0);
    for (var t = 0; t < pd.types.length; t++) {
      acc = acc.map(function (v, i) { return v + (pd.counts[t][i] || 0); });
      cum.push(acc.slice());
    }
    rows.push(x);
    for (var k = pd.types.length - 1; k >= 0; k--) {
      (function (k) {
        rows.push(cum[k]);
        series.push({ label: pd.types[k], fill: PALETTE[k % PALETTE.length], stroke: PALETTE[k % PALETTE.length], points: { show: false },
          paths: uPlot.paths.bars({ size: [0.7, 80] }), value: function (u, v, si, i) { return i == null ? '–' : String(pd.counts[k][i]); } });
      })(k);
    }
    if (pd.types.length === 0) { rows.push(x.map(function () { return 0; })); series.push({ label: 'Insights', stroke: '#999' }); }
    var opts = {
      width: width(el), height: 200, tzDate: tz,
      scales: { x: { time: true, min: x[0] - 43200, max: x[days - 1] + 43200 }, y: { range: function (u, min, max) { return [0, Math.max(1, Math.ceil(max * 1.1))]; } } },
      axes: [{ space: 80 }, { size: 50, values: function (u, vals) { return vals.map(function (v) { return Number.isInteger(v) ? String(v) : ''; }); } }],
      series: series
    };
    return new uPlot(opts, rows, el);
  }

  try {
    document.querySelectorAll('[data-chart]').forEach(function (el) {
      var kind = el.getAttribute('data-chart');
      if (kind === 'key') charts.push(keyChart(el, data.keys[Number(el.getAttribute('data-index'))]));
      else if (kind === 'histogram') charts.push(histogramChart(el));
      else if (kind === 'per-day') charts.push(perDayChart(el, el.getAttribute('data-run') === 'compare' ? data.compare : data.base));
    });
    window.addEventListener('resize', function () {
      charts.forEach(function (u) { u.setSize({ width: width(u.root.parentNode), height: u.height }); });
    });
    document.body.setAttribute('data-rendered', String(charts.length));
  } catch (e) {
    document.body.setAttribute('data-rendered', 'error');
    var p = document.createElement('p'); p.className = 'warn'; p.textContent = 'charts failed: ' + e;
    document.querySelector('main').prepend(p);
    throw e;
  }
})();
`;
