import assert from 'node:assert/strict';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { backtestEvents } from '../../src/backtest/backtest.ts';
import { bandEdges, buildReport, downsampleIndices, insightKeyId, type ReportMeta, ReportRecorder } from '../../src/backtest/report.ts';
import { loadConfig } from '../../src/config/load.ts';
import type { AuditEvent, Insight } from '../../src/contracts/types.ts';
import { decadesOf, surpriseAbove, surpriseBelow } from '../../src/detect/baseline/score.ts';
import type { BucketObservation } from '../../src/detect/engine.ts';
import { buildInsight } from '../../src/emit/insight.ts';
import { chartAssets, renderReport } from '../../src/emit/report.ts';
import { BACKTEST_FIXTURES, FIXTURE_T0, spikeEvents } from './fixtures.ts';

const MINUTE_MS = 60_000;
const STRICT = join(BACKTEST_FIXTURES, 'report-strict.json');
const ACTION_ONLY = join(BACKTEST_FIXTURES, 'report-action-only.json');

let events: AuditEvent[] = [];
before(() => {
  events = spikeEvents();
});

function meta(over: Partial<ReportMeta> = {}): ReportMeta {
  return {
    generatedAt: '2026-01-06T00:00:00Z',
    inputs: ['demo-spike.jsonl'],
    format: 'jsonl',
    bucketMs: MINUTE_MS,
    valueModel: 'counts',
    base: { label: 'defaults', threshold: 0.6 },
    summary: [],
    ...over,
  };
}

/** The fixture backtested under a config file, the report recorder on the same hooks `--series` uses. */
function recorded(file?: string): { recorder: ReportRecorder; insights: Insight[]; series: BucketObservation[] } {
  const recorder = new ReportRecorder();
  const run = backtestEvents(events, loadConfig({ file, env: {} }).detector, { partitions: 3, ...recorder });
  return { recorder, insights: run.insights, series: run.series };
}

function observation(keyId: string, minute: number, count: number, score: number, expected = 5): BucketObservation {
  return {
    keyId,
    bucketStartMs: FIXTURE_T0 + minute * MINUTE_MS,
    count,
    baselineMean: expected,
    expected,
    dispersion: 1,
    score,
    rawScore: score,
    veto: null,
    direction: 'up',
    sustained: false,
  };
}

function anomaly(action: string, startMinute: number, state: 'Start' | 'End', score: number): Insight {
  return buildInsight({
    state,
    keyId: `action|call|1|r|svc|${action}`,
    scope: 'action',
    insightType: 'ApiCallRateInsight',
    accountId: '1',
    region: 'r',
    service: 'svc',
    action,
    principal: null,
    errorCode: null,
    startTimeMs: FIXTURE_T0 + startMinute * MINUTE_MS,
    endTimeMs: state === 'End' ? FIXTURE_T0 + (startMinute + 2) * MINUTE_MS : null,
    bucketMs: MINUTE_MS,
    baselinePerMinute: 5,
    insightPerMinute: 50,
    baselineWindowMinutes: 10_080,
    historyMinutes: 120,
    score,
    threshold: 0.6,
    contributors: [],
  });
}

describe('ReportRecorder on the demo fixture', () => {
  test('every Insight names a key the series has; histogram and zero count every judged bucket', () => {
    const { recorder, insights, series } = recorded();
    assert.equal(recorder.insights.length, insights.filter((i) => i.insightDetails.state === 'Start').length);
    assert.equal(recorder.insights.length, 6);
    for (const i of insights) assert.ok(recorder.keys.has(insightKeyId(i)), `no buckets for ${insightKeyId(i)}`);
    for (const i of recorder.insights) {
      assert.ok(i.endMs !== null && i.endMs > i.startMs, 'closed, with a span');
      assert.ok(i.score >= i.threshold);
    }
    assert.equal(recorder.histogram.reduce((a, b) => a + b, 0) + recorder.zero, series.length);
    assert.equal(recorder.firstMs, Math.min(...series.map((o) => o.bucketStartMs)));
  });

  test('compare: a strict base against an action-only config: the principal Insight vanishes, two appear, one stays', () => {
    const base = recorded(STRICT).recorder;
    const other = recorded(ACTION_ONLY).recorder;
    const data = buildReport(
      base,
      other,
      meta({ base: { label: STRICT, threshold: 0.75 }, compare: { label: ACTION_ONLY, threshold: 0.6 } }),
    );
    const changes = [...data.base.insights, ...(data.compare?.insights ?? [])]
      .filter((i) => i.change !== null)
      .map((i) => `${i.change} ${i.keyId}`)
      .sort();
    assert.deepEqual(changes, [
      'appears action|call|123456789012|us-east-1|ec2.amazonaws.com|TerminateInstances',
      'appears action|error|123456789012|us-east-1|ec2.amazonaws.com|TerminateInstances|UnauthorizedOperation',
      'vanishes principalAction|call|123456789012|arn:aws:sts::123456789012:assumed-role/deploy-pipeline|ec2.amazonaws.com|RunInstances',
    ]);
    assert.equal(data.base.insights.filter((i) => i.change === null).length, 1);
    // Charted: every key that fired in either run, each with the series of the base run (which judged them all).
    assert.equal(data.keys.length, 4);
    for (const k of data.keys) {
      assert.equal(k.seriesFrom, 'base');
      assert.ok(k.series && k.series.t.length > 0);
    }
    assert.equal(data.keys.find((k) => k.id.startsWith('principalAction'))?.threshold, 0.75, 'the threshold that fired it');
    assert.deepEqual(data.compare?.perDay.types, ['ApiCallRateInsight · action', 'ApiErrorRateInsight · action']);
    assert.deepEqual(data.compare?.perDay.counts, [[2], [1]]);
  });

  test('the band contains the expectation, and the spike that fired is above it', () => {
    const { recorder } = recorded();
    const data = buildReport(recorder, null, meta());
    const run = data.keys.find((k) => k.id === 'action|call|123456789012|us-east-1|ec2.amazonaws.com|RunInstances');
    const s = run?.series;
    assert.ok(s);
    for (let i = 0; i < s.t.length; i++) {
      const [e, lo, hi] = [s.expected[i], s.low[i], s.high[i]];
      if (e == null || lo == null || hi == null) continue;
      assert.ok(lo <= e && e <= hi, `band ${lo}..${hi} around ${e} at ${i}`);
    }
    const start = run?.insights[0]?.startMs;
    const at = s.t.indexOf(start ?? -1);
    assert.ok(at >= 0, 'the Insight starts on a drawn bucket');
    assert.ok((s.value[at] ?? 0) > (s.high[at] ?? Number.POSITIVE_INFINITY), `rate ${s.value[at]} above band ${s.high[at]}`);
    // Quiet minutes of this sparse key show as zero calls, not as a line across them.
    assert.ok(s.value.includes(0));
  });

  test('the band is where the engine judged: a bucket alone scores the threshold exactly above the band', () => {
    const { recorder, series } = recorded();
    const data = buildReport(recorder, null, meta());
    let checked = 0;
    for (const k of data.keys) {
      const s = k.series;
      if (!s) continue;
      for (const o of series) {
        if (o.keyId !== k.id || o.sustained || o.veto !== null || o.direction !== 'up') continue;
        const i = s.t.indexOf(o.bucketStartMs);
        if (i < 0 || s.high[i] == null) continue;
        // Rounded to 4 significant digits in the page: compare with a margin.
        const high = s.high[i] as number;
        // The edge is exactly as rare as the threshold under what the engine judged with (its expectation and dispersion).
        if (high > o.expected + 1e-9) {
          const edge = surpriseAbove(high, o.expected, o.dispersion, 'counts');
          assert.ok(Math.abs(edge - decadesOf(k.threshold)) < 0.02, `${k.id} at ${o.bucketStartMs}: band edge ${high} is ${edge} decades`);
        }
        if (Math.abs(o.count - high) / Math.max(1, high) < 0.01) continue;
        assert.equal(
          o.rawScore >= k.threshold,
          o.count > high,
          `${k.id} at ${o.bucketStartMs}: ${o.count} vs band ${high}, score ${o.rawScore}`,
        );
        checked++;
      }
    }
    assert.ok(checked > 20, `checked ${checked} buckets`);
  });
});

describe('buildReport: which keys', () => {
  function many(fired: number, quiet: number): ReportRecorder {
    const r = new ReportRecorder();
    for (let k = 0; k < fired + quiet; k++) {
      const action = k < fired ? `Fired${k}` : `Quiet${k}`;
      for (let m = 0; m < 30; m++)
        r.onBucket(
          observation(`action|call|1|r|svc|${action}`, m, m === 20 && k < fired ? 60 : 5, m === 20 && k < fired ? 0.6 + k / 1000 : 0.1),
        );
      if (k < fired) {
        r.onInsight(anomaly(action, 20, 'Start', 0.6 + k / 1000));
        r.onInsight(anomaly(action, 20, 'End', 0.6 + k / 1000));
      }
    }
    return r;
  }

  test('capped at maxKeys, highest peak first; the rest counted and the first listed', () => {
    const data = buildReport(many(120, 5), null, meta(), { maxKeys: 50, leftOutListed: 10 });
    assert.equal(data.keys.length, 50);
    assert.equal(data.keys[0]?.id, 'action|call|1|r|svc|Fired119');
    assert.ok(data.keys.every((k, i) => i === 0 || (data.keys[i - 1]?.peakScore ?? 0) >= k.peakScore));
    assert.equal(data.leftOutTotal, 70);
    assert.equal(data.leftOut.length, 10);
    assert.equal(data.leftOut[0]?.id, 'action|call|1|r|svc|Fired69');
  });

  test('--key: asked keys come first whatever their score; globs match; a pattern that matched nothing is named', () => {
    const data = buildReport(many(120, 5), null, meta(), { maxKeys: 5, keys: ['*Quiet12?', 'action|call|1|r|svc|Fired3', 'nobody*'] });
    assert.deepEqual(
      data.keys.map((k) => [k.id, k.asked]),
      [
        ['action|call|1|r|svc|Fired3', true],
        ['action|call|1|r|svc|Quiet120', true],
        ['action|call|1|r|svc|Quiet121', true],
        ['action|call|1|r|svc|Quiet122', true],
        ['action|call|1|r|svc|Quiet123', true],
      ],
    );
    assert.deepEqual(data.unmatched, ['nobody*']);
    assert.equal(data.leftOutTotal, 120, 'Quiet124 and the 119 other fired keys');
  });

  test('a page with 200 firing keys of 10,000 buckets each stays small: 50 charts of at most 600 points', () => {
    const r = new ReportRecorder();
    for (let k = 0; k < 200; k++) {
      for (let m = 0; m < 10_000; m++)
        r.onBucket(observation(`action|call|1|r|svc|A${k}`, m, m === 5_000 ? 90 : 4 + (m % 3), m === 5_000 ? 0.7 : 0.05, 5));
      r.onInsight(anomaly(`A${k}`, 5_000, 'Start', 0.7));
    }
    const data = buildReport(r, null, meta());
    assert.equal(data.keys.length, 50);
    assert.equal(data.leftOutTotal, 150);
    for (const k of data.keys) {
      assert.ok(k.series && k.series.t.length <= 600, `${k.series?.t.length} points`);
      assert.equal(k.points, 10_000);
      assert.ok(k.series.value.includes(90), 'the spike survives downsampling');
      assert.equal(k.insights[0]?.endMs, null, 'open at the end');
    }
    const html = renderReport(data, chartAssets());
    assert.ok(html.length < 2_500_000, `${html.length} bytes`);
    assert.match(html, /150 more keys fired/);
  });
});

describe('downsampleIndices', () => {
  test('short series are kept whole; long ones keep each stretch’s extremes, in order', () => {
    assert.deepEqual(downsampleIndices([3, 1, 2], 3, 10), [0, 1, 2]);
    const values = Array.from({ length: 10_000 }, (_, i) => (i === 7_777 ? 100 : i === 1_234 ? -5 : i % 7));
    const kept = downsampleIndices(values, values.length, 600);
    assert.ok(kept.length <= 600);
    assert.ok(kept.includes(7_777) && kept.includes(1_234));
    assert.deepEqual(
      kept,
      [...kept].sort((a, b) => a - b),
    );
    assert.equal(new Set(kept).size, kept.length);
  });
});

describe('bandEdges', () => {
  const decades = decadesOf(0.6);

  test('counts: the high edge is where one bucket alone reaches the threshold', () => {
    for (const [expected, dispersion] of [
      [5, 1],
      [0.3, 4],
      [1_000, 2.5],
    ] as const) {
      const { low, high } = bandEdges(expected, dispersion, 'counts', decades);
      assert.ok(Math.abs(surpriseAbove(high, expected, dispersion, 'counts') - decades) < 0.01, `${expected}/${dispersion}: ${high}`);
      assert.ok(low <= expected && high > expected);
      if (low > 0) assert.ok(Math.abs(surpriseBelow(low, expected, dispersion, 'counts') - decades) < 0.01);
    }
    // Zero calls is not rare at five a minute: the band reaches zero.
    assert.equal(bandEdges(5, 1, 'counts', decades).low, 0);
    const wide = bandEdges(1_000, 2.5, 'counts', decades).low;
    assert.ok(wide > 740 && wide < 800, String(wide)); // about 4.75 standard deviations of √(1000 × 2.5) below
  });

  test('gauge: symmetric around the expectation, about 4.75 standard deviations at 10⁻⁶', () => {
    const { low, high } = bandEdges(120, 16, 'gauge', decades);
    assert.ok(Math.abs(120 - low - (high - 120)) < 1e-3);
    assert.ok(Math.abs((high - 120) / 4 - 4.753) < 0.01, String((high - 120) / 4));
  });
});
