import { randomUUID } from 'node:crypto';
import type { Kafka, Message } from 'kafkajs';
import { ErrorCodes, TrailwatchError } from '../../errors.ts';
import {
  type DeadLetterFilter,
  type DeadLetterRecord,
  deadLetterAddress,
  matchesDeadLetter,
  previewBytes,
  replayRecord,
} from '../../runtime/dead-letter.ts';
import { committedOffsets, scanDeadLetters } from '../../runtime/dead-letter-scan.ts';
import { createKafka, idempotentProducer } from '../../runtime/kafka.ts';
import { COMMON_HELP, errorCodesOption, intOption, listOption, parse, sinceOption, unknownAction, usageError } from '../args.ts';
import { openSession } from '../connect.ts';
import { waitForSignal } from './run.ts';

export const DLQ_USAGE = `Usage: trailwatch dlq <show|replay> [options]      (trailwatch dlq <show|replay> --help for each)

The dead-letter topic (topics.deadLetter, "trailwatch.dlq") holds every record the detector could
not use: its original key, bytes and headers, plus headers naming why (tw.error.code,
tw.error.reason) and where it came from (tw.source.topic|partition|offset, tw.failed.at).

  show     print dead letters with their reason, source and a safe preview, and a count per code
  replay   publish dead letters again to their source topic once the cause is fixed`;

export const DLQ_SHOW_USAGE = `Usage: trailwatch dlq show [options]

Prints dead letters — when they failed, error code and reason, source topic/partition/offset,
key, value size and a preview (text as a JSON string, binary as hex, cut short) — then a count
per error code of every dead letter that matched. Reads the topic up to where it ended when the
command started (with --follow, then keeps printing new ones); commits nothing, in a consumer
group of its own, so it disturbs no one.

Options:
      --topic NAME          dead-letter topic (default: topics.deadLetter, "trailwatch.dlq")
      --code CODE           only this error code (TW_DESERIALIZE or deserialize; repeatable,
                            or comma-separated)
      --source-topic NAME   only dead letters from this topic (repeatable, or comma-separated)
      --limit N             print at most N (default 20): the latest N, or with --from-beginning
                            or --since the first N; the counts cover every match
      --from-beginning      print from the oldest dead letter on
      --since WHEN          only dead letters that failed at or after WHEN: an ISO time
                            (2026-05-01T12:00:00Z) or a duration back from now (15m, 1h, 2d)
      --json                one JSON object per dead letter, then {"summary": …}
      --follow              after the existing ones, print new dead letters until SIGINT/SIGTERM
${COMMON_HELP}

Exit status: 0 shown (also when there were none); 1 no such topic, no Kafka, bad arguments.`;

export const DLQ_REPLAY_USAGE = `Usage: trailwatch dlq replay [options]

Once the cause is fixed (a schema registered, a producer corrected), publishes each matching
dead letter again — its original key, value bytes and headers, without the tw.* dead-letter
headers, plus tw.replayed.from = <dlq topic>/<partition>/<offset> — to the topic it came from
(or --to), with an idempotent producer. Progress is kept in a consumer group, committed only
after the broker acknowledged the records, so running replay again sends nothing twice (a
crash between the two can repeat the last batch). Dead letters that do not match the filters
are passed over and committed too: they are not replayed later by the same group, so give
each separate fix its own --group.

Options:
      --topic NAME          dead-letter topic (default: topics.deadLetter, "trailwatch.dlq")
      --code CODE           only this error code (repeatable, or comma-separated)
      --source-topic NAME   only dead letters from this topic (repeatable, or comma-separated)
      --to NAME             publish to this topic instead of each record's source topic
      --group ID            consumer group keeping the progress (default "trailwatch-dlq-replay")
      --limit N             replay at most N, then stop (the rest wait for the next run)
      --dry-run             list what would be replayed; send and commit nothing
${COMMON_HELP}

Exit status: 0 done; 2 some dead letters name no source topic (passed over; use --to);
1 no such topic, no Kafka, bad arguments.`;

const DEFAULT_REPLAY_GROUP = 'trailwatch-dlq-replay';

export async function dlqCommand(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  if (action === 'show') return dlqShow(rest);
  if (action === 'replay') return dlqReplay(rest);
  if (action === '--help' || action === '-h' || action === 'help') {
    process.stdout.write(`${DLQ_USAGE}\n`);
    return 0;
  }
  throw unknownAction('dlq', action, ['show', 'replay'], DLQ_USAGE);
}

async function dlqShow(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      topic: { type: 'string' },
      code: { type: 'string', multiple: true },
      'source-topic': { type: 'string', multiple: true },
      limit: { type: 'string' },
      'from-beginning': { type: 'boolean' },
      since: { type: 'string' },
      json: { type: 'boolean' },
      follow: { type: 'boolean' },
    },
    DLQ_SHOW_USAGE,
  );
  if (values.help) {
    process.stdout.write(`${DLQ_SHOW_USAGE}\n`);
    return 0;
  }
  if (positionals.length > 0) throw usageError(`unexpected argument "${positionals[0]}"`, DLQ_SHOW_USAGE);
  if (values['from-beginning'] && values.since !== undefined)
    throw usageError('--from-beginning and --since exclude each other', DLQ_SHOW_USAGE);
  const limit = intOption(values.limit, 'limit', DLQ_SHOW_USAGE) ?? 20;
  const filter = filterOptions(values, DLQ_SHOW_USAGE);
  const fromStart = values['from-beginning'] === true || filter.sinceMs !== undefined;
  const json = values.json ?? false;
  const session = await openSession(values, { autoStart: false });
  const topic = values.topic ?? session.config.topics.deadLetter;
  const kafka = createKafka(session.config.kafka, session.logger);

  // The latest (or first) `limit` per partition; merged by failure time once the scan caught up.
  const kept = new Map<number, DeadLetterRecord[]>();
  const byCode = new Map<string, number>();
  let scanned = 0;
  let matched = 0;
  let shown = 0;
  let live = false;
  const print = (letter: DeadLetterRecord): void => {
    shown++;
    process.stdout.write(json ? `${JSON.stringify(deadLetterJson(letter))}\n` : formatDeadLetter(letter));
  };
  const abort = new AbortController();
  if (values.follow) void waitForSignal().then(() => abort.abort());
  const { backlog } = await scanDeadLetters({
    kafka,
    topic,
    groupId: `trailwatch-dlq-show-${randomUUID()}`,
    follow: values.follow ?? false,
    signal: abort.signal,
    onBatch: async (letters, { partition }) => {
      for (const letter of letters) {
        scanned++;
        if (!matchesDeadLetter(letter, filter)) continue;
        matched++;
        byCode.set(letter.code, (byCode.get(letter.code) ?? 0) + 1);
        if (live) {
          print(letter);
          continue;
        }
        const list = kept.get(partition) ?? [];
        kept.set(partition, list);
        if (!fromStart || list.length < limit) list.push(letter);
        if (list.length > limit) list.shift();
      }
      return false;
    },
    onCaughtUp: () => {
      const all = [...kept.values()].flat().sort(byFailureTime);
      for (const letter of fromStart ? all.slice(0, limit) : all.slice(Math.max(0, all.length - limit))) print(letter);
      kept.clear();
      live = true;
      if (values.follow && !json) process.stderr.write(`… following ${topic} (Ctrl-C to stop)\n`);
    },
  });
  const codes = Object.fromEntries([...byCode].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  if (json) {
    process.stdout.write(`${JSON.stringify({ summary: { topic, records: Math.max(backlog, scanned), matched, shown, byCode: codes } })}\n`);
  } else if (scanned === 0) {
    process.stdout.write(`${topic} is empty: no dead letters\n`);
  } else {
    const of = matched === scanned ? `${scanned} dead letters` : `${matched} matching dead letters (${scanned} in the topic)`;
    process.stdout.write(`${topic}: showing ${shown} of ${of}\n`);
    const width = Math.max(...Object.keys(codes).map((c) => c.length));
    for (const [code, n] of Object.entries(codes)) process.stdout.write(`  ${code.padEnd(width)}  ${n}\n`);
  }
  return 0;
}

async function dlqReplay(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      topic: { type: 'string' },
      code: { type: 'string', multiple: true },
      'source-topic': { type: 'string', multiple: true },
      to: { type: 'string' },
      group: { type: 'string' },
      limit: { type: 'string' },
      'dry-run': { type: 'boolean' },
    },
    DLQ_REPLAY_USAGE,
  );
  if (values.help) {
    process.stdout.write(`${DLQ_REPLAY_USAGE}\n`);
    return 0;
  }
  if (positionals.length > 0) throw usageError(`unexpected argument "${positionals[0]}"`, DLQ_REPLAY_USAGE);
  const limit = intOption(values.limit, 'limit', DLQ_REPLAY_USAGE);
  const filter = filterOptions(values, DLQ_REPLAY_USAGE);
  const dryRun = values['dry-run'] ?? false;
  const group = values.group ?? DEFAULT_REPLAY_GROUP;
  const session = await openSession(values, { autoStart: false });
  const topic = values.topic ?? session.config.topics.deadLetter;
  if (values.to === topic) throw usageError(`--to names the dead-letter topic itself ("${topic}")`, DLQ_REPLAY_USAGE);
  const kafka = createKafka(session.config.kafka, session.logger);
  const targets = new TopicCheck(kafka);
  const producer = dryRun ? undefined : idempotentProducer(kafka);
  await producer?.connect();

  let replayed = 0;
  let skipped = 0;
  let unroutable = 0;
  let result: Awaited<ReturnType<typeof scanDeadLetters>>;
  try {
    result = await scanDeadLetters({
      kafka,
      topic,
      // A dry run reads from where the group stands but in a group of its own, so it moves nothing.
      groupId: dryRun ? `trailwatch-dlq-dry-run-${randomUUID()}` : group,
      startOffsets: await committedOffsets(kafka, group, topic),
      onBatch: async (letters, { commit }) => {
        const out = new Map<string, Message[]>();
        const lines: string[] = [];
        let passed: string | undefined;
        let full = false;
        for (const letter of letters) {
          if (limit !== undefined && replayed >= limit) {
            full = true;
            break;
          }
          passed = letter.dlq.offset;
          if (!matchesDeadLetter(letter, filter)) {
            skipped++;
            continue;
          }
          const target = values.to ?? letter.source.topic;
          if (target === undefined || target === topic) {
            unroutable++;
            process.stderr.write(
              `passed over ${deadLetterAddress(letter)}: ${target === undefined ? 'no tw.source.topic header' : 'its source is the dead-letter topic'} (use --to)\n`,
            );
            continue;
          }
          if (letter.truncatedFromBytes !== null) {
            // Replaying the first bytes of a record would publish a record that never existed.
            unroutable++;
            process.stderr.write(
              `passed over ${deadLetterAddress(letter)}: it holds only the first ${letter.value?.length ?? 0} of ${letter.truncatedFromBytes} bytes ` +
                `(too large for the dead-letter topic); the whole record is at ${letter.source.topic ?? '?'}[${letter.source.partition ?? '?'}] offset ${letter.source.offset ?? '?'}\n`,
            );
            continue;
          }
          await targets.assertExists(target);
          // No timestamp: the broker's "now", so retention on the target counts from the replay.
          const messages = out.get(target) ?? [];
          out.set(target, messages);
          messages.push(replayRecord(letter));
          replayed++;
          const valueBytes = letter.value?.length ?? 0;
          lines.push(
            `${dryRun ? 'would replay' : 'replayed'} ${deadLetterAddress(letter)} → ${target}  ${letter.code}  ${valueBytes} bytes\n`,
          );
        }
        if (producer && out.size > 0) {
          await producer.sendBatch({ topicMessages: [...out].map(([t, messages]) => ({ topic: t, messages })) });
        }
        for (const line of lines) process.stdout.write(line);
        if (!dryRun && passed !== undefined) await commit((BigInt(passed) + 1n).toString());
        return full || (limit !== undefined && replayed >= limit);
      },
    });
  } finally {
    await producer?.disconnect();
  }
  if (result.backlog === 0) {
    process.stdout.write(`nothing to replay: group ${group} has passed every record of ${topic}\n`);
    return 0;
  }
  const what = dryRun ? `${replayed} would be replayed (dry run: nothing sent, nothing committed)` : `${replayed} replayed`;
  const rest = result.ended === 'stopped' ? `; stopped at --limit ${limit}, run again for the rest` : '';
  const noSource = unroutable > 0 ? `, ${unroutable} passed over with no source topic` : '';
  process.stdout.write(`${what}, ${skipped} skipped by filter${noSource}, from ${topic} in group ${group}${rest}\n`);
  return unroutable > 0 ? 2 : 0;
}

function filterOptions(values: { code?: string[]; 'source-topic'?: string[]; since?: string }, usage: string): DeadLetterFilter {
  const filter: DeadLetterFilter = {};
  const codes = errorCodesOption(values.code, usage);
  const sourceTopics = listOption(values['source-topic']);
  const sinceMs = sinceOption(values.since, Date.now(), usage);
  if (codes) filter.codes = codes;
  if (sourceTopics) filter.sourceTopics = sourceTopics;
  if (sinceMs !== undefined) filter.sinceMs = sinceMs;
  return filter;
}

/** Knows which topics exist, asking the cluster again only for a name it has not seen. */
class TopicCheck {
  private known: Set<string> | undefined;
  private readonly kafka: Kafka;
  constructor(kafka: Kafka) {
    this.kafka = kafka;
  }
  async assertExists(topic: string): Promise<void> {
    if (this.known?.has(topic)) return;
    const admin = this.kafka.admin();
    await admin.connect();
    try {
      this.known = new Set(await admin.listTopics());
    } finally {
      await admin.disconnect();
    }
    if (!this.known.has(topic)) {
      // Never let the broker auto-create a topic from a mistyped --to or an old header.
      throw new TrailwatchError(ErrorCodes.USAGE, `target topic "${topic}" does not exist (create it, or name another with --to)`, {
        fault: 'user',
      });
    }
  }
}

function byFailureTime(a: DeadLetterRecord, b: DeadLetterRecord): number {
  return a.failedAtMs - b.failedAtMs || a.dlq.partition - b.dlq.partition || Number(BigInt(a.dlq.offset) - BigInt(b.dlq.offset));
}

function source(letter: DeadLetterRecord): string {
  if (letter.input) return `${letter.input.position}${letter.input.format ? ` (${letter.input.format})` : ''}`;
  const s = letter.source;
  return `${s.topic ?? '?'}/${s.partition ?? '?'}/${s.offset ?? '?'}`;
}

/** Three lines: when, code, source and dead-letter address; the reason; key and value. */
export function formatDeadLetter(letter: DeadLetterRecord): string {
  const when = Number.isFinite(letter.failedAtMs) ? new Date(letter.failedAtMs).toISOString() : 'unknown time';
  const reason = JSON.stringify(letter.reason).slice(1, -1);
  return (
    `${when}  ${letter.code}  from ${source(letter)}  (${deadLetterAddress(letter)})\n` +
    `  reason: ${reason}\n` +
    `  key: ${previewBytes(letter.key, 40)}  value: ${letter.value?.length ?? 0} bytes ${previewBytes(letter.value)}\n`
  );
}

export function deadLetterJson(letter: DeadLetterRecord): Record<string, unknown> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(letter.originalHeaders)) {
    const first = Array.isArray(value) ? value[0] : value;
    if (first !== undefined) headers[name] = previewBytes(Buffer.from(first));
  }
  return {
    failedAt: Number.isFinite(letter.failedAtMs) ? new Date(letter.failedAtMs).toISOString() : null,
    code: letter.code,
    reason: letter.reason,
    source: letter.source,
    ...(letter.input ? { input: letter.input } : {}),
    deadLetter: letter.dlq,
    key: previewBytes(letter.key, 40),
    valueBytes: letter.value?.length ?? 0,
    value: previewBytes(letter.value),
    headers,
  };
}
