import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createLogger } from '../../src/logger.ts';
import { LateEventLog } from '../../src/observe/late.ts';

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger({ level: 'info', destination: { write: (l: string) => void lines.push(JSON.parse(l)) } });
  return { log, lines };
}

const late = (partition: number, count: number, minLateMs: number, maxLateMs: number) => ({
  topic: 'ev',
  partition,
  count,
  minLateMs,
  maxLateMs,
});

describe('the late-event log line', () => {
  test('one line per partition and minute: the first at once, the rest summed when the minute is over', () => {
    const { log, lines } = capture();
    let now = 0;
    const l = new LateEventLog({ log, allowedLatenessMs: 300_000, now: () => now });
    l.note(late(0, 3, 10_000, 90_000));
    assert.equal(lines.length, 1);
    assert.equal(lines[0]?.lateEvents, 3);
    assert.equal(lines[0]?.partition, 0);
    assert.equal(lines[0]?.maxLateMs, 90_000);
    assert.match(
      String(lines[0]?.msg),
      /3 late events on partition 0 not counted in the rates: .* up to 1\.5 min before \(detector\.allowedLatenessMs = 5 min\)/,
    );

    now = 10_000;
    l.note(late(0, 2, 5_000, 20_000));
    l.note(late(1, 1, 1_000, 1_000)); // another partition has its own minute
    now = 30_000;
    l.note(late(0, 4, 30_000, 200_000));
    l.flush();
    assert.deepEqual(
      lines.map((x) => [x.partition, x.lateEvents]),
      [
        [0, 3],
        [1, 1],
      ],
    );
    now = 60_000;
    l.flush();
    assert.equal(lines.length, 3);
    assert.deepEqual([lines[2]?.partition, lines[2]?.lateEvents, lines[2]?.minLateMs, lines[2]?.maxLateMs], [0, 6, 5_000, 200_000]);
    now = 200_000;
    l.flush();
    assert.equal(lines.length, 3, 'nothing pending: no line');
  });
});
