import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Producer } from 'kafkajs';
import { backtestEvents } from '../../src/backtest/backtest.ts';
import { insightLine } from '../../src/cli/commands/tail.ts';
import { loadConfig } from '../../src/config/load.ts';
import { insightSchema } from '../../src/contracts/schemas.ts';
import type { Insight } from '../../src/contracts/types.ts';
import { insightJson } from '../../src/emit/insight.ts';
import { EventCodec } from '../../src/runtime/codec.ts';
import { createRegistry, registerContract } from '../../src/runtime/registry.ts';
import { spikeEvents } from '../backtest/fixtures.ts';
import { cli, startCli } from '../helpers/cli.ts';
import { createTopics, testKafka, uniqueName } from '../helpers/kafka.ts';
import { testStack } from '../helpers/stack.ts';

/** Resolves once `read()` contains `text`; rejects after `timeoutMs`. */
async function waitFor(read: () => string, text: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!read().includes(text)) {
    if (Date.now() > deadline) throw new Error(`"${text}" did not show up within ${timeoutMs} ms in:\n${read()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const lines = (text: string): string[] => text.split('\n').filter((l) => l !== '');
const sorted = (list: string[]): string[] => [...list].sort();

const HOUR_MS = 3_600_000;

/** The demo spike's Insights (what the detector raises on it), in the order it raised them. */
const INSIGHTS: Insight[] = backtestEvents(spikeEvents(), loadConfig({ env: {} }).detector).insights;

/** How many of them are written three hours back (by record time), the rest now. */
const OLD = 4;

describe('trailwatch tail against the broker', { timeout: 240_000 }, () => {
  let env: NodeJS.ProcessEnv;
  let alerts: string;
  let send: (insights: Insight[], timestampMs: number) => Promise<void>;
  // createTopics' own cleanup would run at the end of the before hook: hold it to the suite's end.
  const cleanups: (() => Promise<void>)[] = [];
  const suite = { after: (fn: () => Promise<void>) => void cleanups.push(fn) };
  after(async () => {
    for (const fn of cleanups) await fn();
  });

  before(async () => {
    const stack = await testStack();
    alerts = `${uniqueName('tw-tail')}.insights`;
    // Two partitions: --no-follow has to find the end of each.
    await createTopics(stack.brokers, [alerts], 2, suite);
    const registry = createRegistry({ url: stack.registryUrl });
    const schemaId = await registerContract(registry, insightSchema, alerts);
    const codec = new EventCodec(registry);
    const producer: Producer = testKafka(stack.brokers).producer();
    await producer.connect();
    cleanups.push(() => producer.disconnect());
    send = async (insights, timestampMs) => {
      const messages = await Promise.all(
        insights.map(async (i) => ({
          key: i.sharedEventID,
          value: await codec.encodeInsight(schemaId, i),
          timestamp: String(timestampMs),
        })),
      );
      await producer.send({ topic: alerts, messages });
    };
    await send(INSIGHTS.slice(0, OLD), Date.now() - 3 * HOUR_MS);
    await send(INSIGHTS.slice(OLD), Date.now());
    env = { KAFKA_BROKERS: stack.brokers.join(','), SCHEMA_REGISTRY_URL: stack.registryUrl, TRAILWATCH_TOPICS__ALERTS: alerts };
  });

  test('--human --no-follow: every Insight as one readable line, then exit at the end of the topic', async () => {
    assert.ok(INSIGHTS.length >= 8, 'the spike raises Starts and Ends on both scopes');
    const r = await cli(['tail', '--human', '--no-follow'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(sorted(lines(r.stdout)), sorted(INSIGHTS.map((i) => insightLine(i, { color: false }))));
    assert.ok(!r.stdout.includes('\u001b'), 'no colour when not on a terminal');
    assert.match(
      r.stdout,
      /^Start {3}2026-01-05 09:02:00Z {2}ApiCallRate {3}principalAction {2}arn:aws:sts::123456789012:assumed-role\/deploy-pipeline ec2:RunInstances {2}47\/min vs 1\.06\/min {2}score 0\.79 {2}[0-9a-f]{8}$/m,
    );
    assert.match(
      r.stdout,
      /^End {5}2026-01-05 09:06:00Z {2}ApiCallRate {3}action {11}123456789012 us-east-1 ec2:RunInstances {2}38\.8\/min vs 1\.06\/min for 4 min/m,
    );
  });

  test('filters: --type, --principal, --action, --since', async () => {
    const errors = await cli(['tail', '--human', '--no-follow', '--type', 'error', '--principal', 'deploy-pipeline'], env);
    assert.equal(errors.code, 0, errors.stderr);
    const expectedErrors = INSIGHTS.filter((i) => i.insightDetails.insightType === 'ApiErrorRateInsight');
    assert.equal(expectedErrors.length, 4);
    assert.deepEqual(sorted(lines(errors.stdout)), sorted(expectedErrors.map((i) => insightLine(i, { color: false }))));

    const run = await cli(['tail', '--json', '--no-follow', '--action', 'ec2:Run*'], env);
    assert.equal(run.code, 0, run.stderr);
    const expectedRun = INSIGHTS.filter((i) => i.insightDetails.eventName === 'RunInstances').map((i) => JSON.stringify(insightJson(i)));
    assert.equal(expectedRun.length, 4);
    assert.deepEqual(sorted(lines(run.stdout)), sorted(expectedRun));

    const recent = await cli(['tail', '--human', '--since', '1h', '--no-follow'], env);
    assert.equal(recent.code, 0, recent.stderr);
    assert.deepEqual(sorted(lines(recent.stdout)), sorted(INSIGHTS.slice(OLD).map((i) => insightLine(i, { color: false }))));

    const none = await cli(['tail', '--no-follow', '--principal', 'arn:aws:iam::*:user/nobody'], env);
    assert.equal(none.code, 0, none.stderr);
    assert.equal(none.stdout, '');
  });

  test('not on a terminal the default is JSON lines, as before: pipes keep working', async () => {
    const r = await cli(['tail', '--from-beginning', '--max', '3', '--cloudtrail-only'], env);
    assert.equal(r.code, 0, r.stderr);
    const printed = lines(r.stdout);
    assert.equal(printed.length, 3);
    const all = INSIGHTS.map((i) => {
      const { trailwatch: _, ...cloudtrail } = insightJson(i);
      return JSON.stringify(cloudtrail);
    });
    for (const line of printed) assert.ok(all.includes(line), line);
  });

  test('follows by default: Insights committed after it started print as they come', async (t) => {
    // --timeout-ms only so a failure cannot leave it running.
    const tail = startCli(['tail', '--human', '--max', '2', '--timeout-ms', '120000'], env);
    t.after(() => void tail.child.kill());
    await waitFor(tail.stderr, 'following');
    const fresh = [INSIGHTS[0], INSIGHTS[3]] as Insight[];
    await send(fresh, Date.now());
    assert.equal(await tail.closed, 0, tail.stderr());
    assert.deepEqual(sorted(lines(tail.stdout())), sorted(fresh.map((i) => insightLine(i, { color: false }))));
  });

  test('errors name the fix', async () => {
    const missing = await cli(['tail', '--no-follow', '--topic', `${alerts}-nope`], env);
    assert.equal(missing.code, 1);
    assert.match(
      missing.stderr,
      /no topic ".*-nope" on this cluster \(the detector creates its topics when it starts; --topic names another\)/,
    );
    const kind = await cli(['tail', '--type', 'rule'], env);
    assert.equal(kind.code, 1);
    assert.match(kind.stderr, /--type rule names findings: add --findings \(or --all for Insights too\)/);
    const both = await cli(['tail', '--human', '--json'], env);
    assert.equal(both.code, 1);
    assert.match(both.stderr, /--human and --json exclude each other/);
  });
});
