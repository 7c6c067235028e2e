import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { IHeaders, KafkaMessage } from 'kafkajs';
import { BadRecordError, type ErrorCode, ErrorCodes } from '../../src/errors.ts';
import { DLQ_HEADERS, headerString, REPLAYED_FROM_HEADER, sendDeadLetters } from '../../src/runtime/dead-letter.ts';
import { cli, startCli } from '../helpers/cli.ts';
import { consumeUntil, createTopics, testKafka, uniqueName } from '../helpers/kafka.ts';
import { type TestStackEndpoints, testStack } from '../helpers/stack.ts';

/** Resolves once `read()` contains `text`; rejects after `timeoutMs`. */
async function waitFor(read: () => string, text: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!read().includes(text)) {
    if (Date.now() > deadline) throw new Error(`"${text}" did not show up within ${timeoutMs} ms in:\n${read()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function recordCount(brokers: string[], topic: string): Promise<number> {
  const admin = testKafka(brokers).admin();
  await admin.connect();
  try {
    return (await admin.fetchTopicOffsets(topic)).reduce((n, o) => n + Number(o.high) - Number(o.low), 0);
  } finally {
    await admin.disconnect();
  }
}

/** Every record of `topic` with its partition, waiting until `count` are there. */
async function readAll(brokers: string[], topic: string, count: number): Promise<{ partition: number; message: KafkaMessage }[]> {
  const out: { partition: number; message: KafkaMessage }[] = [];
  await consumeUntil(testKafka(brokers), topic, (message, partition) => {
    out.push({ partition, message });
    return out.length >= count;
  });
  return out;
}

// A Confluent-framed Avro-looking value with bytes no text decoder accepts, and a JSON one.
const BINARY_A = Buffer.from([0x00, 0x00, 0x00, 0x03, 0xe9, 0xff, 0xfe, 0x01, 0x80, 0x7f]);
const BINARY_B = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0xc3, 0x28]);
const JSON_VALUE = Buffer.from('{"eventName":"RunInstances","eventSource":"ec2.amazonaws.com"}');

interface Letter {
  source: string;
  offset: string;
  key: string | null;
  value: Buffer;
  headers: IHeaders;
  code: ErrorCode;
  reason: string;
}

describe('trailwatch dlq', { timeout: 180_000 }, () => {
  let stack: TestStackEndpoints;
  let env: NodeJS.ProcessEnv;
  let dlq: string;
  let source: string;
  let other: string;
  const letters: Letter[] = [];
  // createTopics' own cleanup would run at the end of the before hook: hold it to the suite's end.
  const cleanups: (() => Promise<void>)[] = [];
  const suite = { after: (fn: () => Promise<void>) => void cleanups.push(fn) };
  after(async () => {
    for (const fn of cleanups) await fn();
  });

  before(async () => {
    stack = await testStack();
    env = { KAFKA_BROKERS: stack.brokers.join(','), SCHEMA_REGISTRY_URL: stack.registryUrl };
    dlq = uniqueName('tw-dlq');
    source = uniqueName('tw-dlq-source');
    other = uniqueName('tw-dlq-other');
    // Two dead-letter partitions, so show has to merge them; `other` stays absent on purpose.
    await createTopics(stack.brokers, [dlq], 2, suite);
    await createTopics(stack.brokers, [source], 1, suite);
    letters.push(
      {
        source,
        offset: '11',
        key: 'acct|alice',
        value: BINARY_A,
        headers: { origin: 'unit-test', trace: Buffer.from([0x01, 0xff]) },
        code: ErrorCodes.DESERIALIZE,
        reason: 'not the Confluent wire format: magic byte 0x7b',
      },
      {
        source,
        offset: '12',
        key: null,
        value: BINARY_B,
        headers: { origin: 'unit-test' },
        code: ErrorCodes.DESERIALIZE,
        reason: 'Avro that does not decode: truncated',
      },
      {
        source,
        offset: '13',
        key: 'acct|bob',
        value: JSON_VALUE,
        headers: {},
        code: ErrorCodes.SCHEMA_UNKNOWN,
        reason: 'schema id 1001 is not in the registry',
      },
      {
        source: other,
        offset: '7',
        key: 'acct|carol',
        value: JSON_VALUE,
        headers: {},
        code: ErrorCodes.TIMESTAMP_OUT_OF_BOUNDS,
        reason: 'event time 1999-01-01T00:00:00.000Z is outside the bounds',
      },
    );
    const producer = testKafka(stack.brokers).producer();
    await producer.connect();
    try {
      // One at a time, a second apart: show orders by failure time across partitions.
      const baseMs = Date.now() - 60_000;
      for (const [i, l] of letters.entries()) {
        const message = {
          key: l.key === null ? null : Buffer.from(l.key),
          value: l.value,
          headers: l.headers,
          offset: l.offset,
          timestamp: String(baseMs),
        };
        await sendDeadLetters(
          producer,
          dlq,
          [{ topic: l.source, partition: 0, message, error: new BadRecordError(l.code, l.reason) }],
          baseMs + i * 1_000,
        );
      }
    } finally {
      await producer.disconnect();
    }
  });

  test('--help on dlq, dlq show and dlq replay', async () => {
    const top = await cli(['dlq', '--help']);
    assert.equal(top.code, 0);
    assert.match(top.stdout, /Usage: trailwatch dlq <show\|replay>/);
    const show = await cli(['dlq', 'show', '--help']);
    assert.equal(show.code, 0);
    assert.match(show.stdout, /Usage: trailwatch dlq show/);
    assert.match(show.stdout, /--since WHEN/);
    const replay = await cli(['dlq', 'replay', '--help']);
    assert.equal(replay.code, 0);
    assert.match(replay.stdout, /Usage: trailwatch dlq replay/);
    assert.match(replay.stdout, /--dry-run/);
    const main = await cli(['--help']);
    assert.match(main.stdout, /\n {2}dlq {9}show \| replay/);
  });

  test('show prints every dead letter with code, reason, source, preview and a count per code', async () => {
    const r = await cli(['dlq', 'show', '--topic', dlq, '--from-beginning'], env);
    assert.equal(r.code, 0, r.stderr);
    for (const l of letters) {
      assert.ok(
        r.stdout.includes(`${l.code}  from ${l.source}/0/${l.offset}`),
        `${l.code} from ${l.source}/0/${l.offset} in:\n${r.stdout}`,
      );
      assert.ok(r.stdout.includes(`reason: ${l.reason}`), l.reason);
    }
    assert.ok(r.stdout.includes(`value: 10 bytes hex:${BINARY_A.toString('hex')}`), r.stdout);
    assert.ok(r.stdout.includes('key: "acct|bob"  value: 62 bytes "{\\"eventName\\":\\"RunInstances\\"'), r.stdout);
    assert.ok(r.stdout.includes('key: null  value: 6 bytes hex:1f8b0800c328'), r.stdout);
    assert.match(r.stdout, new RegExp(`${dlq}: showing 4 of 4 dead letters\n`));
    const order = letters.map((l) => r.stdout.indexOf(`from ${l.source}/0/${l.offset}`));
    assert.deepEqual(
      order,
      [...order].sort((a, b) => a - b),
      'in the order they failed',
    );
    assert.match(r.stdout, /\n {2}TW_DESERIALIZE {14}2\n {2}TW_SCHEMA_UNKNOWN {11}1\n {2}TW_TIMESTAMP_OUT_OF_BOUNDS {2}1\n$/);
  });

  test('show --json with a code filter and a limit: the latest match, and counts of every match', async () => {
    const r = await cli(['dlq', 'show', '--topic', dlq, '--code', 'deserialize', '--limit', '1', '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(lines.length, 2);
    const [letter, summary] = lines;
    assert.equal(letter?.code, 'TW_DESERIALIZE');
    assert.deepEqual(letter?.source, { topic: source, partition: 0, offset: '12' });
    assert.equal(letter?.valueBytes, BINARY_B.length);
    assert.deepEqual(letter?.headers, { origin: '"unit-test"' });
    assert.deepEqual(summary, { summary: { topic: dlq, records: 4, matched: 2, shown: 1, byCode: { TW_DESERIALIZE: 2 } } });
  });

  test('show --source-topic and --since filter; an empty topic and a missing one say so', async (t) => {
    const bySource = await cli(['dlq', 'show', '--topic', dlq, '--source-topic', other, '--since', '10m'], env);
    assert.equal(bySource.code, 0, bySource.stderr);
    assert.match(bySource.stdout, /: showing 1 of 1 matching dead letters \(4 in the topic\)\n/);
    assert.match(bySource.stdout, /TW_TIMESTAMP_OUT_OF_BOUNDS {2}1\n$/);
    const future = await cli(['dlq', 'show', '--topic', dlq, '--since', '2999-01-01T00:00:00Z'], env);
    assert.match(future.stdout, /: showing 0 of 0 matching dead letters \(4 in the topic\)\n$/);

    const empty = uniqueName('tw-dlq-empty');
    await createTopics(stack.brokers, [empty], 1, t);
    const e = await cli(['dlq', 'show', '--topic', empty], env);
    assert.equal(e.code, 0, e.stderr);
    assert.equal(e.stdout, `${empty} is empty: no dead letters\n`);
    const m = await cli(['dlq', 'show', '--topic', uniqueName('tw-dlq-missing')], env);
    assert.equal(m.code, 1);
    assert.match(m.stderr, /no dead-letter topic "tw-dlq-missing-.*" on this cluster/);
  });

  test('show --follow prints the existing dead letters, then new ones, and the counts on SIGINT', async (t) => {
    const topic = uniqueName('tw-dlq-follow');
    await createTopics(stack.brokers, [topic], 1, t);
    const producer = testKafka(stack.brokers).producer();
    await producer.connect();
    t.after(() => producer.disconnect());
    const send = (offset: string, reason: string) =>
      sendDeadLetters(producer, topic, [
        {
          topic: source,
          partition: 0,
          message: { key: null, value: JSON_VALUE, headers: {}, offset, timestamp: String(Date.now()) },
          error: new BadRecordError(ErrorCodes.NORMALIZE, reason),
        },
      ]);
    await send('1', 'before the command started');
    const { child, stdout, stderr, closed } = startCli(['dlq', 'show', '--topic', topic, '--follow'], env);
    await waitFor(stderr, `following ${topic}`);
    assert.match(stdout(), /reason: before the command started/);
    await send('2', 'while it followed');
    await waitFor(stdout, 'reason: while it followed');
    child.kill('SIGINT');
    assert.equal(await closed, 0, stderr());
    assert.match(stdout(), new RegExp(`${topic}: showing 2 of 2 dead letters\n {2}TW_NORMALIZE {2}2\n$`));
  });

  test('replay: a dry run sends nothing; then exactly the matching records, once, with their bytes and headers', async () => {
    const group = uniqueName('tw-dlq-replay');
    const args = ['dlq', 'replay', '--topic', dlq, '--group', group, '--code', 'TW_DESERIALIZE'];

    const dry = await cli([...args, '--dry-run'], env);
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(dry.stdout.match(/^would replay /gm)?.length, 2, dry.stdout);
    assert.match(dry.stdout, /2 would be replayed \(dry run: nothing sent, nothing committed\), 2 skipped by filter/);
    assert.equal(await recordCount(stack.brokers, source), 0);

    const first = await cli(args, env);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout.match(new RegExp(`^replayed ${dlq}/\\d/\\d → ${source}  TW_DESERIALIZE`, 'gm'))?.length, 2, first.stdout);
    assert.match(first.stdout, /2 replayed, 2 skipped by filter/);

    const dead = new Map(
      (await readAll(stack.brokers, dlq, letters.length)).map(({ partition, message }) => [
        `${dlq}/${partition}/${message.offset}`,
        headerString(message.headers, DLQ_HEADERS.offset),
      ]),
    );
    const replayed = await readAll(stack.brokers, source, 2);
    assert.equal(replayed.length, 2);
    const bySourceOffset = new Map<string, KafkaMessage>();
    for (const { message } of replayed) {
      const from = headerString(message.headers, REPLAYED_FROM_HEADER);
      assert.ok(from && dead.has(from), `replayed-from ${from} names a dead letter`);
      bySourceOffset.set(dead.get(from) ?? '', message);
      assert.deepEqual(
        Object.keys(message.headers ?? {}).filter((h) => h.startsWith('tw.')),
        [REPLAYED_FROM_HEADER],
        'no dead-letter headers are carried over',
      );
    }
    for (const l of letters.filter((x) => x.code === ErrorCodes.DESERIALIZE)) {
      const m = bySourceOffset.get(l.offset);
      assert.ok(m, `dead letter from offset ${l.offset} replayed`);
      assert.deepEqual(m.value, l.value);
      assert.equal(m.key?.toString() ?? null, l.key);
      for (const [name, value] of Object.entries(l.headers)) assert.deepEqual(m.headers?.[name], Buffer.from(value as Buffer | string));
    }

    const again = await cli(args, env);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, `nothing to replay: group ${group} has passed every record of ${dlq}\n`);
    const dryAgain = await cli([...args, '--dry-run'], env);
    assert.match(dryAgain.stdout, /nothing to replay/);
    assert.equal(await recordCount(stack.brokers, source), 2);
  });

  test('replay --limit stops and the next run goes on; --to a missing topic is refused', async (t) => {
    const group = uniqueName('tw-dlq-replay-limit');
    const to = uniqueName('tw-dlq-to');
    await createTopics(stack.brokers, [to], 1, t);
    const args = ['dlq', 'replay', '--topic', dlq, '--group', group, '--to', to];
    const one = await cli([...args, '--limit', '1'], env);
    assert.equal(one.code, 0, one.stderr);
    assert.match(one.stdout, /^1 replayed, 0 skipped by filter, .*stopped at --limit 1/m);
    const rest = await cli(args, env);
    assert.equal(rest.code, 0, rest.stderr);
    assert.match(rest.stdout, /^3 replayed, 0 skipped by filter/m);
    assert.equal(await recordCount(stack.brokers, to), 4);

    const missing = await cli(['dlq', 'replay', '--topic', dlq, '--group', uniqueName('tw-dlq-g'), '--to', uniqueName('tw-dlq-nope')], env);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /target topic "tw-dlq-nope-.*" does not exist/);
  });
});
