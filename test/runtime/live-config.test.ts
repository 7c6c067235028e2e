/**
 * `trailwatch run --config f.yaml --watch` against the real broker and registry: Insights come
 * out; the file is rewritten to raise one action's threshold; the next spikes fire for the other
 * action only, without a restart; an invalid rewrite is refused and the running config kept.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { stringify } from 'yaml';
import type { AuditEvent } from '../../src/contracts/types.ts';
import { jsonLines, startCli } from '../helpers/cli.ts';
import { detectorTestConfig, publishEvents } from '../helpers/detector.ts';
import { auditEvent } from '../helpers/events.ts';
import { deleteTopicsWithPrefix } from '../helpers/kafka.ts';

const MIN = 60_000;
const PRINCIPAL = 'arn:aws:sts::111122223333:assumed-role/svc-orders';

/** Two actions at 10 a minute from `fromMin` to `toMin` (minutes after `t0`), spiking to `spike` a minute for 3 minutes at `spikeAt`. */
function traffic(t0: number, fromMin: number, toMin: number, spikeAt: number, spike: number): AuditEvent[] {
  const out: AuditEvent[] = [];
  // In event-time order: a minute of both actions, then the next (a later minute first would make the earlier late).
  for (let m = fromMin; m < toMin; m++) {
    for (const action of ['PutItem', 'DeleteItem']) {
      const n = m >= spikeAt && m < spikeAt + 3 ? spike : 10;
      for (let i = 0; i < n; i++) {
        out.push(auditEvent({ eventId: `${action}-${m}-${i}`, eventTimeMs: t0 + m * MIN + i * 50, principal: PRINCIPAL, action }));
      }
    }
  }
  return out;
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => T | undefined, last: () => string = () => ''): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}\n${last().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface Printed {
  insightDetails: { state: string; eventName: string };
}

describe('run --config FILE --watch', { timeout: 420_000 }, () => {
  test('a rewritten file changes which keys fire, without a restart', async () => {
    const base = await detectorTestConfig('tw-live', {
      detector: { minHistoryMs: 30 * MIN, burstMargin: 0, idleAdvanceMs: 3_600_000 },
      observe: { port: 0 },
      log: { level: 'info' },
    });
    const name = base.detector.groupId;
    const dir = mkdtempSync(join(tmpdir(), 'tw-live-'));
    const file = join(dir, 'trailwatch.yaml');
    const write = (config: object) => writeFileSync(file, stringify(config));
    write(base);
    after(async () => {
      rmSync(dir, { recursive: true, force: true });
      await deleteTopicsWithPrefix(base.kafka.brokers, name);
    });

    const run = startCli(['run', '--config', file, '--watch', '--print']);
    after(() => {
      if (run.child.exitCode === null) run.child.kill('SIGKILL');
    });
    const logs = () => jsonLines<Record<string, unknown>>(run.stderr());
    const printed = () => jsonLines<Printed>(run.stdout());
    const starts = (action: string) =>
      printed().filter((i) => i.insightDetails.state === 'Start' && i.insightDetails.eventName === action).length;
    const ends = () => printed().filter((i) => i.insightDetails.state === 'End').length;

    await waitFor('detector running', 120_000, () => (logs().some((l) => l.msg === 'detector running') ? true : undefined), run.stderr);
    const first = logs().find((l) => l.msg === 'config version');
    assert.match(String(first?.configVersion), /^1-[0-9a-f]{12}$/);

    // Phase 1: both actions spike; each fires (per action and per principal × action).
    const t0 = Date.now() - 8 * 60 * MIN;
    await publishEvents(base, traffic(t0, 0, 120, 90, 300));
    await waitFor(
      'both actions fire, and end',
      180_000,
      () => (starts('PutItem') >= 1 && starts('DeleteItem') >= 1 && ends() >= starts('PutItem') + starts('DeleteItem') ? true : undefined),
      () => run.stdout() + run.stderr(),
    );
    const before = { put: starts('PutItem'), del: starts('DeleteItem') };

    // An invalid rewrite is refused, naming the problem; the running config stays.
    writeFileSync(file, `${stringify(base)}\ndetector:\n  bogus: 1\n`);
    await waitFor(
      'the invalid version refused',
      30_000,
      () => (logs().some((l) => l.msg === 'config refused: the running config is kept') ? true : undefined),
      run.stderr,
    );

    // Raise PutItem's threshold above any score: applied live, with a new version.
    write({ ...base, detector: { ...base.detector, overrides: [{ match: { action: 'PutItem' }, scoreThreshold: 0.999 }] } });
    const applied = await waitFor('the new version applied', 30_000, () => logs().find((l) => l.msg === 'config applied'), run.stderr);
    assert.match(String(applied.configVersion), /^[2-9]-[0-9a-f]{12}$/);

    // Phase 2: both spike again, larger; only DeleteItem fires.
    await publishEvents(base, traffic(t0, 120, 240, 200, 600));
    await waitFor(
      'DeleteItem fires again',
      180_000,
      () => (starts('DeleteItem') > before.del ? true : undefined),
      () => run.stdout() + run.stderr(),
    );
    // Its End comes once the watermark is 3 buckets and the lateness past the spike: PutItem's spike is judged by then too.
    await waitFor(
      'the Insights of phase 2 end',
      120_000,
      () => (ends() >= starts('PutItem') + starts('DeleteItem') ? true : undefined),
      () => run.stdout(),
    );
    assert.equal(starts('PutItem'), before.put, 'PutItem no longer fires: its own threshold is 0.999');
    assert.ok(run.child.exitCode === null, 'still the same process');
  });
});
