import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { defaultCheckpointPath, formatProgress, ProgressReporter, type ProgressSnapshot } from '../../src/cli/commands/publish.ts';

const snapshot: ProgressSnapshot = {
  records: 123_456,
  recordsPerSecond: 52_310.4,
  filesDone: 230,
  filesTotal: 545,
  fraction: 0.42,
  etaSeconds: 65,
  verb: 'published',
};

/** A stderr stand-in that keeps what is written. */
function fakeStream(isTTY: boolean): { stream: NodeJS.WriteStream; written: string[] } {
  const written: string[] = [];
  const stream = { isTTY, columns: 100, write: (s: string) => written.push(s) > 0 } as unknown as NodeJS.WriteStream;
  return { stream, written };
}

async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setTimeout(resolve, 5));
}

describe('publish progress', () => {
  test('a plain line for logs: records, rate, files done and left, ETA', () => {
    assert.equal(
      formatProgress(snapshot, 'line'),
      'publish: 123,456 records published (52,310/s), 230 of 545 files done, 315 left, ETA 1m05s',
    );
    assert.match(formatProgress({ ...snapshot, etaSeconds: null }, 'line'), /ETA \?$/);
    assert.match(formatProgress({ ...snapshot, etaSeconds: 2 * 3600 + 5 * 60 }, 'line'), /ETA 2h05m$/);
  });

  test('a bar for a terminal, within its width', () => {
    const bar = formatProgress(snapshot, 'bar', 100);
    assert.equal(bar, '[############..................]  42% 123,456 records 52,310/s files 230/545 ETA 1m05s');
    for (const width of [40, 60, 200]) assert.ok(formatProgress(snapshot, 'bar', width).length < width);
    assert.match(formatProgress({ ...snapshot, fraction: 1 }, 'bar', 100), /^\[#+\] 100% /);
  });

  test('not a terminal: a line every interval, from the state it reads', async () => {
    const { stream, written } = fakeStream(false);
    let records = 0;
    const reporter = new ProgressReporter(
      stream,
      () => {
        records += 100;
        return { records, filesDone: 1, bytesDone: 10 };
      },
      { files: 4, bytes: 40, verb: 'published' },
      10,
    );
    reporter.start();
    await until(() => written.length >= 2);
    reporter.stop();
    assert.ok(
      written.every((line) => /^publish: [\d,]+ records published \([\d,]+\/s\), 1 of 4 files done, 3 left, ETA \S+\n$/.test(line)),
      written.join(''),
    );
  });

  test('a terminal: one line redrawn in place, taken off before other output and at the end', async () => {
    const { stream, written } = fakeStream(true);
    const reporter = new ProgressReporter(
      stream,
      () => ({ records: 5, filesDone: 2, bytesDone: 20 }),
      { files: 4, bytes: 40, verb: 'published' },
      10,
    );
    reporter.start();
    await until(() => written.length >= 1);
    const first = written[0] as string;
    assert.ok(first.startsWith('\r') && first.endsWith('\x1b[K'), JSON.stringify(first));
    assert.match(first.slice(1, -3), /^\[#+\.+\] {2}50% 5 records .*files 2\/4 ETA \S+$/);
    reporter.clear();
    assert.equal(written.at(-1), '\r\x1b[K');
    reporter.stop();
    assert.ok(!(written.at(-1) as string).includes('\n'), 'no line left behind');
  });

  test('the default checkpoint is one per scope, under TRAILWATCH_CACHE_DIR', () => {
    const a = defaultCheckpointPath({ topic: 'a', format: 'cloudtrail' }, { TRAILWATCH_CACHE_DIR: '/var/tw' });
    assert.match(a, /^\/var\/tw\/publish\/[0-9a-f]{20}\.jsonl$/);
    assert.equal(defaultCheckpointPath({ topic: 'a', format: 'cloudtrail' }, { TRAILWATCH_CACHE_DIR: '/var/tw' }), a);
    assert.notEqual(defaultCheckpointPath({ topic: 'b', format: 'cloudtrail' }, { TRAILWATCH_CACHE_DIR: '/var/tw' }), a);
  });
});
