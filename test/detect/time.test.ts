import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { mulberry32 } from '../../src/demo/traffic.ts';
import { DAY_MS, dayOf, HOUR_MS, hourOfDay, isWeekend, MINUTE_MS, minuteOfDay, modFloor, remainder } from '../../src/detect/time.ts';

describe('event-time arithmetic', () => {
  test('modFloor and remainder agree with the % they replace, past 2^31 and below zero', () => {
    const r = mulberry32(11);
    for (let i = 0; i < 10_000; i++) {
      const a = Math.floor((r() - 0.3) * 4e12);
      for (const b of [MINUTE_MS, HOUR_MS, DAY_MS, 7]) {
        assert.equal(modFloor(a, b), ((a % b) + b) % b, `${a} mod ${b}`);
        assert.equal(remainder(a, b), a % b, `${a} rem ${b}`);
      }
    }
    assert.equal(modFloor(2.5, 2), 0.5, 'not an integer: the % path');
    assert.equal(modFloor(2 ** 53, 7), ((2 ** 53 % 7) + 7) % 7);
  });

  test('UTC days, hours, minutes and weekends', () => {
    const monday = Date.UTC(2026, 0, 5);
    assert.equal(dayOf(monday), monday / DAY_MS);
    assert.equal(hourOfDay(monday + 13 * HOUR_MS + 59 * MINUTE_MS), 13);
    assert.equal(minuteOfDay(monday + 13 * HOUR_MS + 59 * MINUTE_MS), 13 * 60 + 59);
    assert.equal(hourOfDay(-1), 23, 'before the epoch too');
    const days = Array.from({ length: 7 }, (_, d) => isWeekend(monday + d * DAY_MS + 12 * HOUR_MS));
    assert.deepEqual(days, [false, false, false, false, false, true, true]);
    assert.equal(isWeekend(0), false, '1970-01-01 was a Thursday');
  });
});
