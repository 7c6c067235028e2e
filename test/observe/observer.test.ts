import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import { generateTraffic } from '../../src/demo/traffic.ts';
import { createLogger } from '../../src/logger.ts';
import { Observer } from '../../src/observe/observer.ts';
import type { MemberStatus } from '../../src/observe/status.ts';
import type { Transport } from '../../src/transport/types.ts';
import { cli, jsonLines, startCli } from '../helpers/cli.ts';
import { detectorTestConfig, publishEvents } from '../helpers/detector.ts';
import { deleteTopicsWithPrefix } from '../helpers/kafka.ts';

/**
 * `trailwatch run` watched from outside, against the real broker: its /metrics move with the
 * events published (exact counts in, late, duplicate), /healthz and /readyz answer, lag falls to
 * zero, the late events get their log line, and `trailwatch status` shows the member until it
 * stops (then its tombstone removes it).
 */

const MIN = 60_000;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, last: () => string = () => ''): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} ${last()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Samples of a Prometheus text exposition: `name{labels}` → value. */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/** Sum of every sample of `name` whose labels include all of `labels` (`k="v"` pairs). */
function total(samples: Map<string, number>, name: string, ...labels: string[]): number {
  let sum = 0;
  for (const [series, v] of samples) {
    const base = series.includes('{') ? series.slice(0, series.indexOf('{')) : series;
    if (base === name && labels.every((l) => series.includes(l))) sum += v;
  }
  return sum;
}

describe('watching a running detector', { timeout: 300_000 }, () => {
  test('observe.port 0 means no endpoint', async () => {
    const config = loadConfig({ env: {}, overrides: { observe: { port: 0 } } });
    // Nothing touches Kafka before the runtime has started.
    const observer = new Observer({ config, transport: {} as Transport, logger: createLogger({ level: 'silent' }) });
    await observer.start();
    assert.equal(observer.url, null);
    await observer.stop();
  });

  test('trailwatch run: /metrics, /healthz, /readyz over HTTP, the late-event line, trailwatch status', async () => {
    const base = await detectorTestConfig('tw-observe');
    const name = base.detector.groupId;
    const config = { ...base, topics: { ...base.topics, status: `${name}.status` }, log: { level: 'info' as const } };
    const dir = mkdtempSync(join(tmpdir(), 'tw-observe-'));
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify(config));
    after(async () => {
      rmSync(dir, { recursive: true, force: true });
      await deleteTopicsWithPrefix(config.kafka.brokers, name);
    });

    const port = await freePort();
    const run = startCli(['run', '--config', file], { TRAILWATCH_OBSERVE__PORT: String(port), TRAILWATCH_OBSERVE__REFRESH_MS: '1000' });
    after(() => {
      if (run.child.exitCode === null) run.child.kill('SIGKILL');
    });
    const url = `http://127.0.0.1:${port}`;
    const logLines = () => jsonLines<Record<string, unknown>>(run.stderr());

    // The endpoint is up before the detector has its partitions: alive, not ready, and saying why.
    await waitFor('/healthz', 60_000, async () => ((await fetch(`${url}/healthz`)).status === 200 ? true : undefined), run.stderr);
    assert.ok(
      logLines().some((l) => l.msg === 'observe endpoints listening' && l.url === url),
      'the env setting TRAILWATCH_OBSERVE__PORT moved the endpoint',
    );
    let lastReady = '';
    const readyz = async () => {
      const res = await fetch(`${url}/readyz`);
      lastReady = `${res.status} ${await res.text()}`;
      return res.status === 200 ? true : undefined;
    };
    await waitFor('/readyz 200 on an empty topic', 90_000, readyz, () => lastReady);

    const scrape = async () => parseMetrics(await (await fetch(`${url}/metrics`)).text());

    // Fifty minutes of traffic, up to ten minutes ago.
    const now = Date.now();
    const first = generateTraffic({ seed: 11, startMs: now - 60 * MIN, minutes: 50 });
    await publishEvents(config, first);
    const m1 = await waitFor(
      `events in = ${first.length}`,
      120_000,
      async () => {
        const m = await scrape();
        return total(m, 'trailwatch_events_in_total') === first.length ? m : undefined;
      },
      () => '',
    );
    assert.equal(total(m1, 'trailwatch_partitions_assigned', 'stage="principal"'), 3, 'all three events partitions');
    assert.equal(total(m1, 'trailwatch_partitions_assigned', 'stage="action"'), 3, 'all three repartition partitions');
    assert.ok(total(m1, 'trailwatch_partitions_restored', 'stage="principal"') >= 1);
    assert.ok(total(m1, 'trailwatch_keys_active') > 0, 'keys in memory');
    assert.ok(total(m1, 'trailwatch_restores_total') >= 1);
    assert.ok(total(m1, 'trailwatch_batch_duration_seconds_count', 'stage="principal"') >= 1);
    assert.ok(total(m1, 'trailwatch_transaction_duration_seconds_count') >= 1);
    assert.ok(total(m1, 'trailwatch_transactions_total', 'outcome="committed"') >= 1);
    assert.ok(total(m1, 'trailwatch_changelog_written_bytes_total') > 0);
    assert.ok(total(m1, 'process_resident_memory_bytes') > 0, 'default process metrics');
    assert.equal(total(m1, 'trailwatch_events_late_total'), 0);
    assert.ok(
      [...m1.keys()].some((s) => s.startsWith('trailwatch_watermark_delay_seconds{stage="principal"')),
      'a watermark delay per events partition',
    );

    // Then: events from buckets closed long ago (late), and the five newest again (duplicates).
    const late = generateTraffic({ seed: 12, startMs: now - 58 * MIN, minutes: 2 });
    const repeats = first.slice(-5);
    await publishEvents(config, [...late, ...repeats]);
    const m2 = await waitFor('the late events and the repeats counted', 120_000, async () => {
      const m = await scrape();
      return total(m, 'trailwatch_events_in_total') === first.length + late.length + repeats.length ? m : undefined;
    });
    assert.ok(late.length > 0);
    assert.equal(total(m2, 'trailwatch_events_late_total', 'stage="principal"'), late.length, 'every late event counted late');
    assert.equal(total(m2, 'trailwatch_events_duplicate_total'), repeats.length, 'every repeat counted once');
    const lateLines = await waitFor('a late-event log line', 30_000, async () => {
      const lines = logLines().filter((l) => typeof l.msg === 'string' && /late events? on partition \d+ not counted/.test(l.msg));
      return lines.length > 0 ? lines : undefined;
    });
    for (const l of lateLines) {
      assert.equal(l.topic, config.topics.events);
      assert.ok((l.lateEvents as number) > 0 && (l.lateEvents as number) <= late.length);
      assert.ok((l.maxLateMs as number) >= 40 * MIN, `late by about 45 minutes: ${l.maxLateMs} ms`);
    }

    // Caught up: lag falls to zero on every owned partition, and /readyz says ready.
    const m3 = await waitFor(
      'lag 0 everywhere',
      60_000,
      async () => {
        const m = await scrape();
        const series = [...m.keys()].filter((s) => s.startsWith('trailwatch_consumer_lag_records{'));
        return series.length === 6 && total(m, 'trailwatch_consumer_lag_records') === 0 ? m : undefined;
      },
      () => '',
    );
    assert.equal(total(m3, 'trailwatch_ready'), 1);
    const ready = await fetch(`${url}/readyz`);
    assert.equal(ready.status, 200);
    const readyBody = (await ready.json()) as { status: string; member: string; partitions: unknown[] };
    assert.equal(readyBody.status, 'ready');
    assert.equal(readyBody.partitions.length, 6);

    // trailwatch status: the member, its partitions, lag, keys.
    const env = { TRAILWATCH_LOG_LEVEL: 'warn' };
    const json = await waitFor('the member in trailwatch status --json', 30_000, async () => {
      const r = await cli(['status', '--json', '--config', file], env);
      const members = (JSON.parse(r.stdout) as { members: Array<MemberStatus & { stale: boolean }> }).members;
      const m = members.find((x) => x.memberId === readyBody.member);
      return m?.ready && m.totals.lag === 0 ? m : undefined;
    });
    assert.equal(json.groupId, config.detector.groupId);
    assert.equal(json.stale, false);
    assert.equal(json.partitions.length, 6);
    assert.ok(json.totals.keys > 0);
    assert.equal(json.totals.eventsIn, first.length + late.length + repeats.length);
    // Late at either stage: the action stage counts partials that reach a bucket it has closed.
    assert.equal(json.totals.lateEvents, total(m3, 'trailwatch_events_late_total'));
    assert.ok(json.totals.lateEvents >= late.length);
    assert.match(json.configHash, /^[0-9a-f]{12}$/);
    const table = await cli(['status', '--config', file], env);
    assert.equal(table.code, 0, table.stderr);
    const row = table.stdout.split('\n').find((l) => l.includes(readyBody.member));
    assert.ok(row, table.stdout);
    assert.match(row, new RegExp(`^${name}\\s+\\S+\\s+ready\\s+e0-2 a0-2\\s+0\\s+[1-9]\\d*\\s+\\d+\\s+[0-9a-f]{12}\\s+\\d+s ago$`));

    // A clean stop removes the member: status finds no one and says how to start one.
    run.child.kill('SIGTERM');
    assert.equal(await run.closed, 0, run.stderr());
    const gone = await cli(['status', '--config', file], env);
    assert.equal(gone.code, 1);
    assert.equal(gone.stdout, '');
    assert.match(gone.stderr, new RegExp(`no member of group "${name}" reported to ${name}\\.status .*trailwatch run`));
  });
});
