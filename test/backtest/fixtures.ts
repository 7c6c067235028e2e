/**
 * The committed backtest fixtures, and how they were made: `UPDATE_GOLDEN=1` (or a missing file)
 * rewrites them from the seeded demo generator, so they can be regenerated, never hand-edited.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AuditEvent } from '../../src/contracts/types.ts';
import { DEMO_ACTORS, DEMO_SPIKE_ACTOR, generateTraffic, mulberry32, poisson } from '../../src/demo/traffic.ts';
import { FIXTURES_DIR } from '../helpers/shared.ts';

export const BACKTEST_FIXTURES = join(FIXTURES_DIR, 'backtest');
/** 75 minutes of demo traffic at half rate, a RunInstances spike at minute 62 and an error storm at 66. */
export const SPIKE_JSONL = join(BACKTEST_FIXTURES, 'demo-spike.jsonl');
/** Two metric series, 100 minutes, `checkout.requests` spiking at minute 80 for 5 minutes. */
export const COUNTS_CSV = join(BACKTEST_FIXTURES, 'counts-spike.csv');
/**
 * A metric series (`timestamp,host,key,value`), 6 hours: `queue.depth` about 120 with fractional
 * noise, moving to about 480 at minute 300 for 20 minutes (METRIC_LEVEL_CHANGE); `cpu.load`
 * about 0.4, nothing planted.
 */
export const METRIC_CSV = join(BACKTEST_FIXTURES, 'metric-level.csv');
export const METRIC_LEVEL_CHANGE = { key: 'queue.depth', startMinute: 300, minutes: 20 } as const;
/** Good events with bad lines among them (handwritten). */
export const BAD_LINES_JSONL = join(BACKTEST_FIXTURES, 'bad-lines.jsonl');

export const FIXTURE_T0 = Date.UTC(2026, 0, 5, 8, 0, 0);

/** The events of SPIKE_JSONL, in file order. */
export function spikeEvents(): AuditEvent[] {
  ensureFixtures();
  return readFileSync(SPIKE_JSONL, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as AuditEvent);
}

export function ensureFixtures(): void {
  const update = process.env.UPDATE_GOLDEN === '1';
  mkdirSync(BACKTEST_FIXTURES, { recursive: true });
  if (update || !existsSync(SPIKE_JSONL)) {
    const events = generateTraffic({
      seed: 7,
      startMs: FIXTURE_T0,
      minutes: 75,
      actors: DEMO_ACTORS.map((a) => ({ ...a, ratePerMinute: a.ratePerMinute / 2 })),
      spikes: [
        { actor: DEMO_SPIKE_ACTOR, startMinute: 62, minutes: 4 },
        {
          actor: { ...DEMO_SPIKE_ACTOR, action: 'TerminateInstances', errorCode: 'UnauthorizedOperation', ratePerMinute: 20 },
          startMinute: 66,
          minutes: 3,
        },
      ],
    });
    writeFileSync(SPIKE_JSONL, events.map((e) => `${JSON.stringify(e)}\n`).join(''));
  }
  if (update || !existsSync(COUNTS_CSV)) {
    const rand = mulberry32(11);
    const lines = ['timestamp,key,count'];
    for (let m = 0; m < 100; m++) {
      const t = FIXTURE_T0 + m * 60_000;
      const spike = m >= 80 && m < 85;
      // Both timestamp spellings the reader accepts: ISO-8601 for one series, epoch ms for the other.
      lines.push(`${new Date(t).toISOString()},checkout.requests,${spike ? 150 + poisson(rand, 10) : poisson(rand, 20)}`);
      lines.push(`${t},"login,failures",${poisson(rand, 3)}`);
    }
    writeFileSync(COUNTS_CSV, `${lines.join('\n')}\n`);
  }
  if (update || !existsSync(METRIC_CSV)) {
    const rand = mulberry32(13);
    // About normal: the sum of four uniforms, centred, standard deviation 1.
    const noise = (): number => (rand() + rand() + rand() + rand() - 2) * Math.sqrt(3);
    const { startMinute, minutes } = METRIC_LEVEL_CHANGE;
    const lines = ['timestamp,host,key,value'];
    for (let m = 0; m < 360; m++) {
      const t = new Date(FIXTURE_T0 + m * 60_000).toISOString();
      const level = m >= startMinute && m < startMinute + minutes ? 480 : 120;
      lines.push(`${t},h1,${METRIC_LEVEL_CHANGE.key},${(level + 4 * noise()).toFixed(2)}`);
      lines.push(`${t},h1,cpu.load,${(0.4 + 0.03 * noise()).toFixed(3)}`);
    }
    writeFileSync(METRIC_CSV, `${lines.join('\n')}\n`);
  }
}
