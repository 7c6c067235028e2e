import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { CusumRun } from '../../../src/detect/baseline/cusum.ts';
import { BURST_HALF_LIFE_MS, BurstMemory } from '../../../src/detect/baseline/memory.ts';
import { F, KeyState, SlotPool } from '../../../src/detect/state.ts';
import { DAY_MS, HOUR_MS, MINUTE_MS } from '../../../src/detect/time.ts';

const MONDAY = Date.UTC(2026, 0, 5);
const SATURDAY = Date.UTC(2026, 0, 10);
const THRESHOLD = 6;
const COLD = 2 * 1_440;
const pool = new SlotPool(5, 3, false);

function key(): KeyState {
  const k = new KeyState(
    {
      id: 'k',
      scope: 'action',
      insightType: 'ApiCallRateInsight',
      accountId: 'A',
      region: 'r',
      service: 's',
      action: 'a',
      principal: null,
      errorCode: null,
    },
    false,
    pool.alloc(),
  );
  k.prevPeakMinute = -1;
  k.nearDay = -1;
  k.observed = COLD;
  return k;
}

const memory = () => new BurstMemory(MINUTE_MS, THRESHOLD, COLD);
const slot = (k: KeyState) => Array.from(k.f.subarray(k.o, k.o + pool.stride));

describe('burst memory', () => {
  test('fades by half in a week of working days, not at all at weekends; a bucket raises it', () => {
    const m = memory();
    assert.ok(Math.abs(m.decay ** (BURST_HALF_LIFE_MS / MINUTE_MS) - 0.5) < 1e-9);
    const k = key();
    k.lastFoldedMs = MONDAY;
    k.burst = 100;
    m.fold(k, MONDAY + MINUTE_MS, 0);
    assert.equal(k.burst, 100 * m.decay);
    k.lastFoldedMs = SATURDAY;
    k.burst = 100;
    m.fold(k, SATURDAY + MINUTE_MS, 0);
    assert.equal(k.burst, 100);
    m.fold(k, SATURDAY + 2 * MINUTE_MS, 140);
    assert.equal(k.burst, 140);
  });

  test('a quiet peak that recurs the next day at about the same time is a habit; one at another time is not', () => {
    for (const [minute, habit] of [
      [2 * 60 + 45, true],
      [9 * 60, false],
    ] as const) {
      const m = memory();
      const k = key();
      k.lastFoldedMs = MONDAY - MINUTE_MS;
      m.notePeak(k, MONDAY + 2 * HOUR_MS, 40, THRESHOLD / 2);
      // Midnight: Monday's peak becomes yesterday's.
      k.lastFoldedMs = MONDAY + DAY_MS - MINUTE_MS;
      m.fold(k, MONDAY + DAY_MS, 0);
      assert.equal(k.prevPeakMinute, 120);
      m.notePeak(k, MONDAY + DAY_MS + minute * MINUTE_MS, 45, THRESHOLD / 2);
      k.lastFoldedMs = MONDAY + 2 * DAY_MS - MINUTE_MS;
      m.fold(k, MONDAY + 2 * DAY_MS, 0);
      // Joined at midnight, then faded by that one bucket.
      assert.equal(k.burst, habit ? 45 * m.decay : 0, `peak at minute ${minute}`);
    }
  });

  test('a near miss that recurs within a week is a habit at any time of day', () => {
    const m = memory();
    const k = key();
    m.notePeak(k, MONDAY + 2 * HOUR_MS, 40, 0.85 * THRESHOLD);
    assert.equal(k.dayPeakNear, true);
    k.lastFoldedMs = MONDAY + 3 * HOUR_MS;
    m.fold(k, MONDAY + 3 * DAY_MS, 0);
    assert.equal(k.nearDay, MONDAY / DAY_MS);
    assert.equal(k.burst, 0, 'once is not a habit');
    m.notePeak(k, MONDAY + 3 * DAY_MS + 17 * HOUR_MS, 50, 0.85 * THRESHOLD);
    k.lastFoldedMs = MONDAY + 3 * DAY_MS + 18 * HOUR_MS;
    m.fold(k, MONDAY + 4 * DAY_MS, 0);
    assert.equal(k.burst, 50 * m.decay);
  });

  test('only suspicious buckets (half the threshold) are peaks, the highest of the day', () => {
    const m = memory();
    const k = key();
    m.notePeak(k, MONDAY, 90, THRESHOLD / 2 - 0.01);
    assert.equal(k.dayPeak, 0);
    m.notePeak(k, MONDAY + 5 * MINUTE_MS, 30, THRESHOLD / 2);
    m.notePeak(k, MONDAY + 9 * MINUTE_MS, 20, THRESHOLD);
    assert.equal(k.dayPeak, 30);
    assert.equal(k.dayPeakMinute, 5);
    assert.equal(k.dayPeakNear, false);
  });

  test('foldZeros is exactly fold(0) bucket by bucket, across midnights and a weekend', () => {
    const m = memory();
    const a = key();
    const b = key();
    for (const k of [a, b]) {
      k.lastFoldedMs = MONDAY + 3 * DAY_MS + 22 * HOUR_MS;
      k.burst = 80;
      k.runPeak = 12;
      m.notePeak(k, MONDAY + 3 * DAY_MS + 21 * HOUR_MS, 60, THRESHOLD);
      k.prevPeakMinute = 21 * 60 + 30;
      k.nearDay = MONDAY / DAY_MS + 1;
    }
    const from = a.lastFoldedMs + MINUTE_MS;
    const gap = 4 * 1_440 + 77;
    m.foldZeros(a, from, gap, MINUTE_MS);
    for (let i = 0; i < gap; i++) {
      m.fold(b, from + i * MINUTE_MS, 0);
      b.lastFoldedMs = from + i * MINUTE_MS;
    }
    // foldZeros leaves lastFoldedMs to the expectation.
    a.lastFoldedMs = b.lastFoldedMs;
    assert.deepEqual(slot(a), slot(b));
    assert.ok(a.burst >= 60, 'the recurring near miss joined the memory at midnight');
  });
});

describe('run memory and the runs in the slot', () => {
  const run = (over: Partial<CusumRun> = {}): CusumRun => ({ s: 3, startMs: MONDAY, sum: 120, buckets: 4, peak: 8, ...over });

  test('a run is kept and read back at its own offsets, up and down apart', () => {
    const m = memory();
    const k = key();
    m.writeRun(k, 'up', run());
    m.writeRun(k, 'down', run({ s: 1, sum: 2, buckets: 2, peak: 1 }));
    assert.equal(k.f[k.o + F.cusumUp + 2], 120);
    assert.equal(k.f[k.o + F.cusumDown + 2], 2);
    const back = m.readRun(k, 'up', run({ s: 0, sum: 0 }));
    assert.deepEqual(back, run());
  });

  test('a run that mattered (half the threshold’s evidence; a quarter when cold) joins the run memory by its average', () => {
    const m = memory();
    const k = key();
    // The run's peak is in decades, whichever CUSUM made it.
    m.rememberRun(k, 120, 4, 0.49 * THRESHOLD);
    assert.equal(k.runPeak, 0);
    m.rememberRun(k, 120, 4, 0.5 * THRESHOLD);
    assert.equal(k.runPeak, 30);
    const cold = key();
    cold.observed = COLD - 1;
    m.rememberRun(cold, 40, 4, 0.3 * THRESHOLD);
    assert.equal(cold.runPeak, 10);
  });

  test('empty buckets drain a run upwards by what each costs it; an emptied run is remembered and cleared', () => {
    const m = memory();
    const k = key();
    m.writeRun(k, 'up', run({ s: 9 }));
    m.drainRise(k, 2, 2);
    assert.equal(k.f[k.o + F.cusumUp], 5);
    m.drainRise(k, 4, 0.5);
    assert.equal(k.f[k.o + F.cusumUp], 3);
    m.drainRise(k, 3, 2);
    assert.deepEqual(m.readRun(k, 'up', run()), { s: 0, startMs: 0, sum: 0, buckets: 0, peak: 0 });
    assert.equal(k.runPeak, 30);
  });

  test('a reported rise becomes a habit and its run is over; a reported drop only clears its run', () => {
    const m = memory();
    const k = key();
    m.writeRun(k, 'up', run());
    m.writeRun(k, 'down', run());
    m.reported(k, 'down', 0);
    assert.equal(k.f[k.o + F.cusumDown], 0);
    assert.equal(k.f[k.o + F.cusumUp], 3);
    assert.equal(k.burst, 0);
    m.reported(k, 'up', 75);
    assert.equal(k.burst, 75);
    assert.equal(k.f[k.o + F.cusumUp], 0);
    assert.equal(k.runPeak, 30);
  });
});
