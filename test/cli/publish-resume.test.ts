import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { EventCodec } from '../../src/runtime/codec.ts';
import { createRegistry } from '../../src/runtime/registry.ts';
import { cli, startCli } from '../helpers/cli.ts';
import { consumeUntil, testKafka, uniqueName } from '../helpers/kafka.ts';
import { testStack } from '../helpers/stack.ts';

const FILES = 160;
const RECORDS_PER_FILE = 25;

/** Delivery `f` of the tree: records whose eventIDs say which file and which place they are. */
function delivery(f: number): Buffer {
  const records = Array.from({ length: RECORDS_PER_FILE }, (_, i) => ({
    eventVersion: '1.08',
    userIdentity: { type: 'IAMUser', arn: `arn:aws:iam::111122223333:user/u${(f + i) % 5}`, accountId: '111122223333' },
    eventTime: `${new Date(Date.UTC(2026, 0, 1) + f * 60_000 + i * 1_000).toISOString().slice(0, 19)}Z`,
    eventSource: 'ec2.amazonaws.com',
    eventName: 'DescribeInstances',
    awsRegion: 'us-east-1',
    requestID: randomUUID(),
    eventID: eventId(f, i),
    recipientAccountId: '111122223333',
  }));
  return gzipSync(JSON.stringify({ Records: records }));
}

function eventId(f: number, i: number): string {
  return `f${String(f).padStart(3, '0')}-r${String(i).padStart(2, '0')}`;
}

function fileName(f: number): string {
  return `delivery-${String(f).padStart(3, '0')}.json.gz`;
}

/** The files a checkpoint records as finished (by name). */
function checkpointed(path: string): Set<string> {
  if (!existsSync(path)) return new Set();
  const lines = readFileSync(path, 'utf8').split('\n').slice(1);
  return new Set(lines.filter((l) => l.endsWith('}')).map((l) => (JSON.parse(l) as { file: string }).file.split('/').pop() as string));
}

interface Setup {
  stack: Awaited<ReturnType<typeof testStack>>;
  tree: string;
  topic: string;
  checkpoint: string;
  env: NodeJS.ProcessEnv;
  args: string[];
}

/** A tree of FILES deliveries, a topic and a checkpoint path of the test's own, removed after it. */
async function setup(t: TestContext, prefix: string): Promise<Setup> {
  const stack = await testStack();
  const dir = await mkdtemp(join(tmpdir(), `${prefix}-`));
  const tree = join(dir, 'tree');
  await mkdir(tree);
  const topic = uniqueName(prefix);
  t.after(async () => {
    await rm(dir, { recursive: true, force: true });
    const admin = testKafka(stack.brokers).admin();
    await admin.connect();
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
  });
  for (let f = 0; f < FILES; f++) await writeFile(join(tree, fileName(f)), delivery(f));
  const checkpoint = join(dir, 'state', 'publish.checkpoint');
  const env = { KAFKA_BROKERS: stack.brokers.join(','), SCHEMA_REGISTRY_URL: stack.registryUrl, TRAILWATCH_TOPICS__PARTITIONS: '3' };
  return { stack, tree, topic, checkpoint, env, args: ['publish', 'cloudtrail', '--topic', topic, '--checkpoint', checkpoint] };
}

/**
 * Starts a publish of small requests on one worker, long enough to be stopped part of the way,
 * and sends `signal` once a dozen files are recorded; the files recorded after it ended.
 */
async function stopPartWay(
  s: Setup,
  signal: NodeJS.Signals,
): Promise<{ finished: Set<string>; code: number | null; stdout: string; stderr: string }> {
  const run = startCli([...s.args, '--batch-size', '5', '--workers', '1', s.tree], s.env);
  while (checkpointed(s.checkpoint).size < 12) {
    assert.equal(run.child.exitCode, null, `publish ended before it could be stopped: ${run.stdout()} ${run.stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  run.child.kill(signal);
  const code = await run.closed;
  const finished = checkpointed(s.checkpoint);
  assert.ok(finished.size < FILES, `stopped part of the way (${finished.size} of ${FILES} files recorded)`);
  return { finished, code, stdout: run.stdout(), stderr: run.stderr() };
}

/** How often each eventId is on the topic, decoded through the registry, once all are there. */
async function eventCounts(s: Setup): Promise<{ counts: Map<string, number>; total: number }> {
  const codec = new EventCodec(createRegistry({ url: s.stack.registryUrl }));
  const counts = new Map<string, number>();
  let total = 0;
  await consumeUntil(
    testKafka(s.stack.brokers),
    s.topic,
    async (message) => {
      const e = await codec.decodeEvent(message.value);
      counts.set(e.eventId, (counts.get(e.eventId) ?? 0) + 1);
      total++;
      return counts.size >= FILES * RECORDS_PER_FILE;
    },
    120_000,
    { settleMs: 2_000 },
  );
  assert.equal(counts.size, FILES * RECORDS_PER_FILE, 'every record published');
  return { counts, total };
}

describe('trailwatch publish: resume', { timeout: 240_000 }, () => {
  test('killed mid-way and run again: every record on the topic, none of a checkpointed file twice, only files in flight at least once', async (t) => {
    const s = await setup(t, 'tw-publish-resume');
    const { tree, topic, checkpoint, env, args } = s;
    const { finished } = await stopPartWay(s, 'SIGKILL');

    const second = await cli([...args, tree], env);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stderr, new RegExp(`skipped ${finished.size} files already published \\(checkpoint ${checkpoint};`));
    const left = FILES - finished.size;
    assert.match(
      second.stdout,
      new RegExp(
        `^${left * RECORDS_PER_FILE} records published to ${topic} from ${left} files, 0 rejected, ${finished.size} files already published`,
      ),
    );
    assert.equal(checkpointed(checkpoint).size, FILES, 'every file recorded at the end');

    const { counts, total } = await eventCounts(s);
    const twice = new Map<number, number[]>();
    for (let f = 0; f < FILES; f++) {
      for (let i = 0; i < RECORDS_PER_FILE; i++) {
        const n = counts.get(eventId(f, i)) ?? 0;
        if (finished.has(fileName(f))) assert.equal(n, 1, `${eventId(f, i)} of a checkpointed file is there once`);
        else assert.ok(n === 1 || n === 2, `${eventId(f, i)} is there once or, being in flight at the kill, twice (${n})`);
        if (n === 2) twice.set(f, [...(twice.get(f) ?? []), i]);
      }
    }
    // One worker reads the files in order and they are recorded in order: the checkpoint holds
    // the first files. At least once only for what was in flight at the kill, right after them:
    // files acknowledged whose line was not written yet (whole), then the one a request was
    // carrying (the part acknowledged before the kill, a prefix of it).
    const k = finished.size;
    assert.deepEqual(
      [...finished].sort(),
      Array.from({ length: k }, (_, f) => fileName(f)),
      'the checkpoint holds the first files',
    );
    const inFlight = [...twice.keys()].sort((a, b) => a - b);
    assert.deepEqual(
      inFlight,
      inFlight.map((_, n) => k + n),
      `records twice only in the files right after the checkpointed ones (${inFlight.join(', ')})`,
    );
    inFlight.forEach((f, n) => {
      const indexes = twice.get(f) as number[];
      if (n < inFlight.length - 1) assert.equal(indexes.length, RECORDS_PER_FILE, `file ${f} was acknowledged whole`);
      assert.deepEqual(
        indexes,
        indexes.map((_, i) => i),
        `file ${f}: what is there twice is a prefix`,
      );
    });
    const duplicates = [...twice.values()].reduce((n, xs) => n + xs.length, 0);
    assert.equal(total, FILES * RECORDS_PER_FILE + duplicates, 'the topic holds each record once, plus the in-flight ones again');
  });

  test('Ctrl-C: the file in hand is finished and recorded, exit 130; run again, every record is there exactly once', async (t) => {
    const s = await setup(t, 'tw-publish-interrupt');
    const stopped = await stopPartWay(s, 'SIGINT');
    assert.equal(stopped.code, 130, stopped.stderr);
    assert.match(
      stopped.stderr,
      new RegExp(`interrupted: ${FILES - stopped.finished.size} of ${FILES} files not finished; run the same command again`),
    );
    assert.match(
      stopped.stdout,
      new RegExp(`^${stopped.finished.size * RECORDS_PER_FILE} records published to ${s.topic} from ${stopped.finished.size} files`),
    );

    const second = await cli([...s.args, s.tree], s.env);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stderr, new RegExp(`skipped ${stopped.finished.size} files already published`));
    const { counts, total } = await eventCounts(s);
    assert.equal(total, FILES * RECORDS_PER_FILE, 'nothing twice');
    assert.ok([...counts.values()].every((n) => n === 1));
  });
});
