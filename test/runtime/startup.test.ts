import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCodes, TrailwatchError } from '../../src/errors.ts';
import { untilStarted } from '../../src/runtime/startup.ts';

const timeout = () =>
  new TrailwatchError(ErrorCodes.REGISTRY, 'schema registry unreachable while registering (Timeout (10000ms))', {
    fault: 'external',
    canRetry: true,
  });

describe('untilStarted', () => {
  test('a step that times out while the registry warms up is tried again until it succeeds, and each wait is logged', async () => {
    let calls = 0;
    const warnings: unknown[] = [];
    const id = await untilStarted(
      async () => {
        if (++calls < 3) throw timeout();
        return 7;
      },
      { log: { warn: (o: unknown) => warnings.push(o) } },
    );
    assert.equal(id, 7);
    assert.equal(calls, 3);
    assert.equal(warnings.length, 2);
    assert.match(JSON.stringify(warnings[0]), /Timeout \(10000ms\)/);
  });

  test('a refusal no retry can change is thrown at once', async () => {
    let calls = 0;
    const refused = new TrailwatchError(ErrorCodes.REGISTRY, 'incompatible', { fault: 'user', canRetry: false });
    await assert.rejects(
      untilStarted(async () => {
        calls++;
        throw refused;
      }),
      (err) => err === refused,
    );
    assert.equal(calls, 1);
  });

  test('past the wait the last failure is thrown', async () => {
    let clock = 0;
    let calls = 0;
    await assert.rejects(
      untilStarted(
        async () => {
          calls++;
          clock += 60_000;
          throw timeout();
        },
        { waitMs: 100_000, now: () => clock },
      ),
      /unreachable/,
    );
    assert.equal(calls, 2);
  });

  test('kafkajs errors marked retriable are waited for too', async () => {
    let calls = 0;
    const value = await untilStarted(async () => {
      if (++calls === 1)
        throw Object.assign(new Error('There is no leader for this topic-partition'), { name: 'KafkaJSProtocolError', retriable: true });
      return 'ok';
    });
    assert.equal(value, 'ok');
  });
});
