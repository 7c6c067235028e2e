import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  anchorOf,
  type ChartAssets,
  chartAssets,
  escapeHtml,
  type ReportData,
  type ReportInsight,
  type ReportKey,
  renderReport,
  scriptJson,
} from '../../src/emit/report.ts';

const T0 = Date.UTC(2026, 0, 5, 8, 0);
const MINUTE_MS = 60_000;
/** A key id as an attacker would pick it: a principal ARN or a CSV key ending the script and adding markup. */
const EVIL = `principalAction|call|1|arn:aws:iam::1:user/</script><img src=x onerror="window.pwned=1">|s3|Put'"&`;

function insight(keyId: string, over: Partial<ReportInsight> = {}): ReportInsight {
  return {
    keyId,
    type: 'ApiCallRateInsight · action',
    startMs: T0 + 30 * MINUTE_MS,
    endMs: T0 + 34 * MINUTE_MS,
    score: 0.8,
    run: 'base',
    change: null,
    ...over,
  };
}

function key(id: string, insights: ReportInsight[]): ReportKey {
  const t = Array.from({ length: 60 }, (_, i) => T0 + i * MINUTE_MS);
  return {
    id,
    peakScore: 0.8,
    asked: false,
    seriesFrom: 'base',
    series: { t, value: t.map((_, i) => (i === 31 ? 50 : 5)), expected: t.map(() => 5), low: t.map(() => 0), high: t.map(() => 14) },
    points: 60,
    threshold: 0.6,
    insights,
  };
}

function data(over: Partial<ReportData> = {}): ReportData {
  const insights = [insight(EVIL), insight('action|call|1|us-east-1|ec2|RunInstances')];
  return {
    title: 'trailwatch backtest report',
    generatedAt: '2026-01-06T00:00:00Z',
    inputs: ['events.jsonl'],
    format: 'jsonl',
    bucketMs: MINUTE_MS,
    fromMs: T0,
    toMs: T0 + 60 * MINUTE_MS,
    summary: [['events read', '600']],
    base: {
      label: 'defaults',
      threshold: 0.6,
      histogram: { counts: Array.from({ length: 50 }, (_, i) => (i < 10 ? 100 - i : i === 40 ? 2 : 0)), zero: 300 },
      insights,
      perDay: { days: [Date.UTC(2026, 0, 5)], types: ['ApiCallRateInsight · action'], counts: [[2]] },
    },
    compare: null,
    keys: insights.map((i) => key(i.keyId, [i])),
    leftOut: [],
    leftOutTotal: 0,
    maxKeys: 50,
    unmatched: [],
    ...over,
  };
}

/** A stand-in for uPlot where the test is about the page around it. */
const STUB: ChartAssets = { script: 'window.uPlot = function () {};', style: '.u-legend{}', name: 'uPlot test', licence: 'MIT -- test' };

/** The page's script elements, in order, with their bodies. */
function scripts(html: string): Array<{ attrs: string; body: string }> {
  return [...html.matchAll(/<script([^>]*)>([\s\S]*?)<\/script>/g)].map((m) => ({ attrs: m[1] ?? '', body: m[2] ?? '' }));
}

describe('renderReport', () => {
  test('a key id that closes the script and adds markup stays text: three scripts, no <img>, the data parses back', () => {
    const html = renderReport(data(), STUB);
    const found = scripts(html);
    assert.deepEqual(
      found.map((s) => s.attrs.trim()),
      ['type="application/json" id="tw-data"', '', ''],
    );
    assert.equal(html.match(/<\/script/gi)?.length, 3, 'only the three script elements end a script');
    assert.doesNotMatch(html, /<img/i);
    assert.doesNotMatch(html, /onerror="/);
    // In the tables and headings the id is escaped text…
    assert.ok(html.includes(escapeHtml(EVIL)));
    assert.match(html, /&lt;\/script&gt;&lt;img src=x onerror=&quot;window\.pwned=1&quot;&gt;/);
    // …and in the data block it is JSON that gives the id back exactly.
    const parsed = JSON.parse(found[0]?.body ?? '') as { keys: Array<{ id: string }> };
    assert.equal(parsed.keys[0]?.id, EVIL);
  });

  test('scriptJson writes <, >, & and the line separators as escapes, and parses back to the same value', () => {
    const value = { s: '</script><!-- & \u2028\u2029 -->' };
    const json = scriptJson(value);
    assert.doesNotMatch(json, /[<>&\u2028\u2029]/);
    assert.deepEqual(JSON.parse(json), value);
  });

  test('one chart container per key with a series, plus per-day and histogram; a key without buckets says so', () => {
    const d = data();
    const bare = { ...key('action|call|1|us-east-1|iam|CreateUser', []), series: null, seriesFrom: null, points: 0 };
    const html = renderReport({ ...d, keys: [...d.keys, bare] }, STUB);
    assert.equal(html.match(/data-chart="key"/g)?.length, 2);
    assert.equal(html.match(/data-chart="per-day"/g)?.length, 1);
    assert.equal(html.match(/data-chart="histogram"/g)?.length, 1);
    assert.match(html, /No bucket of this key was judged/);
    assert.match(html, /300 of 1,257 judged buckets scored 0/);
  });

  test('self-contained: the library is inlined, nothing is fetched, and a CSP forbids fetching', () => {
    const assets = chartAssets();
    assert.match(assets.name, /^uPlot \d+\.\d+\.\d+$/);
    assert.ok(assets.script.length > 20_000, 'the real uPlot build');
    const html = renderReport(data(), assets);
    assert.ok(html.includes(assets.script.slice(0, 200)));
    assert.doesNotMatch(html, /<(script|link|img|iframe)[^>]+(src|href)=/i);
    assert.doesNotMatch(html, /https?:\/\/(?!github\.com\/leeoniya)/, 'no URL but the library licence banner');
    assert.match(html, /Content-Security-Policy" content="default-src 'none'/);
    assert.match(
      html,
      /<!-- uPlot [\d.]+: The MIT License \(MIT\)\s+Copyright \(c\) \d+ Leon Sorokin/,
      'the licence travels with the copy',
    );
  });

  test('with a compare run: the changes table lists what appears and vanishes, and the counts add up', () => {
    const d = data();
    const vanished = insight(EVIL, { change: 'vanishes' });
    const stays = insight('action|call|1|us-east-1|ec2|RunInstances');
    const appears = insight('action|call|1|us-east-1|iam|CreateUser', { run: 'compare', change: 'appears', score: 0.66 });
    const twin = insight('action|call|1|us-east-1|ec2|RunInstances', { run: 'compare' });
    const html = renderReport(
      {
        ...d,
        base: { ...d.base, insights: [vanished, stays] },
        compare: { ...d.base, label: 'strict.yaml', threshold: 0.7, insights: [twin, appears] },
        keys: [key(EVIL, [vanished]), key(stays.keyId, [stays, twin]), key(appears.keyId, [appears])],
        summary: [['events read', '600', '600']],
      },
      STUB,
    );
    assert.match(html, /1 Insight appear, 1 vanish; 1 stay/);
    const changes = html.slice(html.indexOf('id="changes"'), html.indexOf('id="keys"'));
    assert.equal(changes.match(/class="chg appears"/g)?.length, 1);
    assert.equal(changes.match(/class="chg vanishes"/g)?.length, 1);
    assert.ok(changes.includes('action|call|1|us-east-1|iam|CreateUser'));
    assert.equal(html.match(/data-chart="per-day"/g)?.length, 2, 'one per run');
    assert.match(html, /<b>compare<\/b> strict\.yaml \(threshold 0\.7\)/);
    // Spans reach the page as [start, end, run, change] with run 1 = compare and change 1 = appears.
    const parsed = JSON.parse(scripts(html)[0]?.body ?? '') as { keys: Array<{ spans: unknown[] }> };
    assert.deepEqual(parsed.keys[2]?.spans, [[appears.startMs, appears.endMs, 1, 1]]);
  });

  test('keys over the cap: counted, listed by name (escaped), and not charted', () => {
    const html = renderReport(data({ leftOut: [{ id: `${EVIL}-2`, peakScore: 0.61, insights: 1 }], leftOutTotal: 7, maxKeys: 2 }), STUB);
    assert.match(
      html,
      /7 more keys fired or matched <code>--key<\/code> but are over the cap of 2 charts; the 1 highest-scoring are listed/,
    );
    assert.ok(html.includes(escapeHtml(`${EVIL}-2`)));
    assert.equal(html.match(/data-chart="key"/g)?.length, 2);
  });

  test('--key patterns that matched nothing are named', () => {
    const html = renderReport(data({ unmatched: ['*<b>nobody</b>*'] }), STUB);
    assert.match(html, /--key matched no key: <code>\*&lt;b&gt;nobody&lt;\/b&gt;\*<\/code>/);
  });

  test('anchors are stable and made of hex digits whatever the id holds', () => {
    assert.equal(anchorOf(EVIL), anchorOf(EVIL));
    assert.notEqual(anchorOf(EVIL), anchorOf(`${EVIL} `));
    assert.match(anchorOf(EVIL), /^key-[0-9a-f]{1,8}$/);
  });
});
