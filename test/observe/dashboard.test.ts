import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { createMetricsRegistry, exposedNames } from '../../src/observe/metrics.ts';
import { REPO_ROOT } from '../helpers/shared.ts';

const DASHBOARD = join(REPO_ROOT, 'docs/grafana-dashboard.json');

/** Every PromQL query in the dashboard: panels' `expr`, nested rows included, and the variables' queries. */
function queries(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const n of node) queries(n, out);
  else if (node !== null && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if ((k === 'expr' || k === 'definition') && typeof v === 'string') out.push(v);
      else queries(v, out);
    }
  }
  return out;
}

const KEYWORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'bool',
  'offset',
  'and',
  'or',
  'unless',
  'inf',
  'nan',
]);

/**
 * The metric names a PromQL expression reads: identifiers left once strings, label matchers,
 * ranges and grouping clauses are gone, that are not called as functions and not keywords.
 */
export function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '');
  const names: string[] = [];
  for (const m of bare.matchAll(/(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const called = /^\s*\(/.test(bare.slice(m.index + m[0].length));
    if (!called && !KEYWORDS.has(m[0].toLowerCase())) names.push(m[0]);
  }
  return names;
}

describe('the Grafana dashboard', () => {
  test('the metric-name extraction reads PromQL as written', () => {
    assert.deepEqual(
      metricNames(
        'histogram_quantile(0.99, sum by (le, stage) (rate(trailwatch_batch_duration_seconds_bucket{job=~"$job"}[$__rate_interval])))',
      ),
      ['trailwatch_batch_duration_seconds_bucket'],
    );
    assert.deepEqual(metricNames('sum(a_total{x="sum(b)"}) / ignoring (p) c_count offset 5m'), ['a_total', 'c_count']);
    assert.deepEqual(metricNames('label_values(trailwatch_build_info{job=~"$job"}, instance)'), ['trailwatch_build_info', 'instance']);
  });

  test('every query names only metrics the registry exposes', () => {
    const dashboard: unknown = JSON.parse(readFileSync(DASHBOARD, 'utf8'));
    const exprs = queries(dashboard);
    assert.ok(exprs.length >= 30, `${exprs.length} queries`);
    const { registry } = createMetricsRegistry(
      { view: () => null, lags: () => null, ready: () => false, now: () => 0 },
      { version: '0', configHash: '0', configVersion: '' },
    );
    const exposed = exposedNames(registry);
    const used = new Set<string>();
    const unknown: string[] = [];
    for (const expr of exprs) {
      // label_values(metric, label): the second argument is a label.
      const names = expr.startsWith('label_values(') ? metricNames(expr).slice(0, 1) : metricNames(expr);
      assert.ok(names.length > 0, `no metric in ${expr}`);
      for (const name of names) {
        used.add(name);
        if (!exposed.has(name)) unknown.push(`${name} (in ${expr})`);
      }
    }
    assert.deepEqual(unknown, [], 'metrics the dashboard names but the registry does not expose');
    // The dashboard covers what issue 11 asks to watch.
    for (const name of [
      'trailwatch_events_in_total',
      'trailwatch_events_late_total',
      'trailwatch_events_duplicate_total',
      'trailwatch_dead_letters_total',
      'trailwatch_insights_total',
      'trailwatch_findings_total',
      'trailwatch_insights_open',
      'trailwatch_keys_active',
      'trailwatch_keys_evicted_total',
      'trailwatch_changelog_written_bytes_total',
      'trailwatch_consumer_lag_records',
      'trailwatch_watermark_delay_seconds',
      'trailwatch_batch_duration_seconds_bucket',
      'trailwatch_transaction_duration_seconds_bucket',
      'trailwatch_restores_total',
      'trailwatch_restore_duration_seconds_bucket',
    ]) {
      assert.ok(used.has(name), `the dashboard shows ${name}`);
    }
  });
});
