import { randomUUID } from 'node:crypto';
import type { Kafka } from 'kafkajs';
import type { Finding, Insight } from '../../contracts/types.ts';
import { globToRegExp } from '../../detect/overrides.ts';
import { findingJson } from '../../emit/finding.ts';
import { insightJson } from '../../emit/insight.ts';
import { ErrorCodes, TrailwatchError } from '../../errors.ts';
import { EventCodec } from '../../runtime/codec.ts';
import { createKafka } from '../../runtime/kafka.ts';
import { createRegistry } from '../../runtime/registry.ts';
import { COMMON_HELP, intOption, listOption, orList, parse, sinceOption, usageError } from '../args.ts';
import { openSession } from '../connect.ts';
import { waitForSignal } from './run.ts';

export const TAIL_USAGE = `Usage: trailwatch tail [options]

Prints the Insights on the alerts topic as the detector commits them; with --findings the
findings topic's OCSF Detection Findings instead, with --all both. Follows the topics until
Ctrl-C (or --max, --timeout-ms); --no-follow prints what they hold now and exits.

On a terminal each record is one readable line (colour unless NO_COLOR is set):
  Start   2026-05-01 12:03:00Z  ApiCallRate   principalAction  arn:aws:iam::123456789012:role/ci ec2:RunInstances  42/min vs 1.5/min  score 0.87  3f2a1b9c
  state, event time (UTC), insight type, scope, key (principal or account and region, then
  service:action, and the error code of an error-rate Insight), rate against the baseline
  (per minute; an End adds how long it lasted), score, and the start of sharedEventID, which
  a Start and its End share. A finding: Create/Update, time, kind, severity, principal and
  action, title, count, and the start of its uid.
Anywhere else (a pipe, a file) each record is one JSON object a line, CloudTrail-Insights-shaped
for an Insight and OCSF (null fields left out) for a finding, so scripts and forwarders keep
working; --human and --json choose either way.

Output:
      --human             readable lines even when not on a terminal
      --json              JSON lines even on a terminal
      --cloudtrail-only   JSON: drop trailwatch's own "trailwatch" field from Insights
Records:
      --topic NAME        alerts topic (default: topics.alerts, "trailwatch.insights")
      --findings          the findings topic instead (topics.findings, "trailwatch.findings")
      --all               the alerts and the findings topics, interleaved as they come
      --type T            only these types: ApiCallRateInsight (or call), ApiErrorRateInsight
                          (or error); for findings rule, correlation, first-seen, breadth.
                          Repeatable, or comma-separated
      --principal P       only this principal: a glob (* any run of characters, ? one) on the
                          whole ARN, or without * and ? a part of it; case-insensitive. A
                          per-action Insight matches when any principal it attributes does.
                          Repeatable
      --action A          only this action: a glob or part of the eventName (Run*, Instances),
                          or of service:action when it holds a colon (ec2:*); repeatable
      --since T           only records written since T: an ISO time (2026-05-01T12:00:00Z) or a
                          duration back from now (15m, 2h, 1d); reads from there
Where to start and stop:
      --from-beginning    start at the oldest record (default: only new ones)
      --follow            keep printing records as they are committed (the default)
      --no-follow         stop at the end of what the topics hold now; reads them from the
                          beginning unless --since says from when
      --max N             exit after N records printed
      --timeout-ms N      exit after N ms (default: run until SIGINT/SIGTERM)
${COMMON_HELP}

Reads only committed records, in a consumer group of its own that moves no one's offsets.`;

const INSIGHT_TYPES: Record<string, Insight['insightDetails']['insightType']> = {
  apicallrateinsight: 'ApiCallRateInsight',
  apicallrate: 'ApiCallRateInsight',
  callrate: 'ApiCallRateInsight',
  call: 'ApiCallRateInsight',
  apierrorrateinsight: 'ApiErrorRateInsight',
  apierrorrate: 'ApiErrorRateInsight',
  errorrate: 'ApiErrorRateInsight',
  error: 'ApiErrorRateInsight',
};

/** finding_info.types of trailwatch's findings. */
export const FINDING_KINDS = ['rule', 'correlation', 'first-seen', 'breadth'] as const;

/** What `--type`, `--principal`, `--action` and `--since` keep; an absent field keeps everything. */
export interface TailFilter {
  /** Insight types (ApiCallRateInsight, …) and finding kinds (rule, …). */
  types?: Set<string>;
  principal?: Array<(value: string) => boolean>;
  action?: Array<(value: string) => boolean>;
  /** Records written before this (the record's timestamp, ms) are left out. */
  sinceMs?: number;
}

/** `--type` values as the record types they name; a usage error for anything else. */
export function typeOption(values: string[] | undefined, usage: string): Set<string> | undefined {
  const given = listOption(values);
  if (!given) return undefined;
  const out = new Set<string>();
  for (const g of given) {
    const insightType = INSIGHT_TYPES[g.toLowerCase().replace(/[^a-z]/g, '')];
    const kind = FINDING_KINDS.find((k) => k === g.toLowerCase());
    if (!insightType && !kind) {
      throw usageError(`--type: unknown type "${g}" (one of ApiCallRateInsight, ApiErrorRateInsight, ${FINDING_KINDS.join(', ')})`, usage);
    }
    out.add(insightType ?? (kind as string));
  }
  return out;
}

/**
 * A `--principal` or `--action` pattern as a test: a glob on the whole value when it holds `*` or
 * `?`, else a part of the value; case-insensitive either way.
 */
export function textMatcher(pattern: string): (value: string) => boolean {
  const p = pattern.toLowerCase();
  if (!/[*?]/.test(p)) return (value) => value.toLowerCase().includes(p);
  const re = globToRegExp(p);
  return (value) => re.test(value.toLowerCase());
}

/** `ec2` from `ec2.amazonaws.com`: what a reader calls the service. */
export function shortService(eventSource: string): string {
  return eventSource.replace(/\.amazonaws\.com$/, '');
}

/** Each test sees the action alone and as service:action (short and full service name). */
function actionMatches(tests: TailFilter['action'], service: string, action: string): boolean {
  if (!tests) return true;
  return tests.some((t) => t(action) || t(`${shortService(service)}:${action}`) || t(`${service}:${action}`));
}

/** A pattern with a colon is matched against service:action, one without against the action alone. */
export function actionTests(values: string[] | undefined): TailFilter['action'] {
  const given = listOption(values);
  if (!given) return undefined;
  return [...given].map((pattern) => {
    const test = textMatcher(pattern);
    return pattern.includes(':') ? (v: string) => v.includes(':') && test(v) : (v: string) => !v.includes(':') && test(v);
  });
}

export function principalTests(values: string[] | undefined): TailFilter['principal'] {
  const given = listOption(values);
  return given ? [...given].map(textMatcher) : undefined;
}

/** Does the Insight pass the filter? `recordMs` is the record's timestamp (when it was written). */
export function insightMatches(insight: Insight, filter: TailFilter, recordMs: number): boolean {
  const d = insight.insightDetails;
  if (filter.sinceMs !== undefined && recordMs < filter.sinceMs) return false;
  if (filter.types && !filter.types.has(d.insightType)) return false;
  if (!actionMatches(filter.action, d.eventSource, d.eventName)) return false;
  if (filter.principal) {
    const principals =
      insight.trailwatch.principal !== null
        ? [insight.trailwatch.principal]
        : d.insightContext.attributions.filter((a) => a.attribute === 'userIdentityArn').flatMap((a) => a.insight.map((v) => v.value));
    if (!principals.some((p) => filter.principal?.some((t) => t(p)))) return false;
  }
  return true;
}

export function findingMatches(finding: Finding, filter: TailFilter, recordMs: number): boolean {
  if (filter.sinceMs !== undefined && recordMs < filter.sinceMs) return false;
  if (filter.types && !finding.finding_info.types.some((t) => filter.types?.has(t))) return false;
  if (filter.action && !(finding.api && actionMatches(filter.action, finding.api.service.name, finding.api.operation))) return false;
  if (filter.principal) {
    const uid = finding.actor?.user.uid;
    if (uid === undefined || !filter.principal.some((t) => t(uid))) return false;
  }
  return true;
}

export interface HumanStyle {
  /** ANSI colours (a terminal, NO_COLOR unset). */
  color: boolean;
}

const ANSI = { bold: '1', dim: '2', red: '31', green: '32', yellow: '33', cyan: '36' } as const;

function paint(style: HumanStyle, code: keyof typeof ANSI, text: string): string {
  return style.color ? `\x1b[${ANSI[code]}m${text}\x1b[0m` : text;
}

/** `2026-05-01 12:03:00Z`: second precision reads better than ISO with milliseconds. */
function timeText(ms: number): string {
  return Number.isFinite(ms)
    ? new Date(ms)
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, 'Z')
    : 'unknown time';
}

/** Three significant digits, whole numbers from 100 up. */
function rateText(perMinute: number): string {
  return perMinute >= 100 ? Math.round(perMinute).toLocaleString('en-US') : String(Number(perMinute.toPrecision(3)));
}

/** One line, no newline: state, event time, type, scope, key, rate vs baseline, score, id. */
export function insightLine(insight: Insight, style: HumanStyle): string {
  const d = insight.insightDetails;
  const t = insight.trailwatch;
  const stats = d.insightContext.statistics;
  const state = d.state === 'Start' ? paint(style, 'red', 'Start'.padEnd(6)) : paint(style, 'green', 'End'.padEnd(6));
  const where = t.principal ?? `${insight.recipientAccountId} ${insight.awsRegion}`;
  const error = d.insightType === 'ApiErrorRateInsight' && d.errorCode ? ` (${d.errorCode})` : '';
  const key = `${where} ${shortService(d.eventSource)}:${d.eventName}${error}`;
  const lasted = d.state === 'End' && stats.insightDuration !== null ? ` for ${stats.insightDuration} min` : '';
  return [
    state,
    timeText(Date.parse(insight.eventTime)),
    d.insightType.replace(/Insight$/, '').padEnd(12),
    t.scope.padEnd(15),
    paint(style, 'bold', key),
    `${rateText(stats.insight.average)}/min vs ${rateText(stats.baseline.average)}/min${lasted}`,
    `score ${t.score.toFixed(2)}`,
    paint(style, 'dim', insight.sharedEventID.slice(0, 8)),
  ].join('  ');
}

const SEVERITY_COLOR: Record<string, keyof typeof ANSI> = { critical: 'red', high: 'red', medium: 'yellow' };

/** One line, no newline: activity, time, kind, severity, principal and action, title, count, id. */
export function findingLine(finding: Finding, style: HumanStyle): string {
  const severity = finding.severity.toLowerCase();
  const api = finding.api ? ` ${shortService(finding.api.service.name)}:${finding.api.operation}` : '';
  const who = finding.actor?.user.uid ?? '-';
  return [
    paint(style, 'cyan', finding.activity_name.padEnd(6)),
    timeText(finding.time),
    (finding.finding_info.types[0] ?? 'finding').padEnd(12),
    paint(style, SEVERITY_COLOR[severity] ?? 'dim', severity.padEnd(15)),
    paint(style, 'bold', `${who}${api}`),
    JSON.stringify(finding.finding_info.title),
    `×${finding.count}`,
    paint(style, 'dim', finding.finding_info.uid.slice(0, 8)),
  ].join('  ');
}

/** Where each partition starts, and (to stop at the end) where it ends now. */
interface Range {
  start: bigint;
  high: bigint;
}

async function topicRanges(kafka: Kafka, topics: string[], from: 'end' | 'beginning' | number): Promise<Map<string, Map<number, Range>>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = topics.filter((t) => !existing.has(t));
    if (missing.length > 0) {
      throw new TrailwatchError(
        ErrorCodes.USAGE,
        `no topic ${orList(missing.map((t) => `"${t}"`))} on this cluster (the detector creates its topics when it starts; --topic names another)`,
        { fault: 'user' },
      );
    }
    const out = new Map<string, Map<number, Range>>();
    for (const topic of topics) {
      const ranges = new Map<number, Range>();
      const at = typeof from === 'number' ? await admin.fetchTopicOffsetsByTimestamp(topic, from) : [];
      for (const o of await admin.fetchTopicOffsets(topic)) {
        const high = BigInt(o.high);
        let start = from === 'end' ? high : BigInt(o.low);
        if (typeof from === 'number') {
          // -1: nothing written since, so the end.
          const byTime = BigInt(at.find((a) => a.partition === o.partition)?.offset ?? -1);
          start = byTime >= 0n ? byTime : high;
        }
        ranges.set(o.partition, { start, high });
      }
      out.set(topic, ranges);
    }
    return out;
  } finally {
    await admin.disconnect();
  }
}

export async function tailCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      topic: { type: 'string' },
      'from-beginning': { type: 'boolean' },
      follow: { type: 'boolean' },
      'no-follow': { type: 'boolean' },
      max: { type: 'string' },
      'timeout-ms': { type: 'string' },
      'cloudtrail-only': { type: 'boolean' },
      findings: { type: 'boolean' },
      all: { type: 'boolean' },
      human: { type: 'boolean' },
      json: { type: 'boolean' },
      type: { type: 'string', multiple: true },
      principal: { type: 'string', multiple: true },
      action: { type: 'string', multiple: true },
      since: { type: 'string' },
    },
    TAIL_USAGE,
  );
  if (values.help) {
    process.stdout.write(`${TAIL_USAGE}\n`);
    return 0;
  }
  if (positionals.length > 0) throw usageError(`unexpected argument "${positionals[0]}"`, TAIL_USAGE);
  if (values.human && values.json) throw usageError('--human and --json exclude each other', TAIL_USAGE);
  if (values.follow && values['no-follow']) throw usageError('--follow and --no-follow exclude each other', TAIL_USAGE);
  if (values['from-beginning'] && values.since !== undefined)
    throw usageError('--from-beginning and --since exclude each other', TAIL_USAGE);
  const max = intOption(values.max, 'max', TAIL_USAGE);
  const timeoutMs = intOption(values['timeout-ms'], 'timeout-ms', TAIL_USAGE);
  const filter: TailFilter = {};
  const types = typeOption(values.type, TAIL_USAGE);
  const readsFindings = values.findings || values.all;
  const kinds = [...(types ?? [])].filter((t) => (FINDING_KINDS as readonly string[]).includes(t));
  if (kinds.length > 0 && !readsFindings) {
    throw usageError(`--type ${kinds.join(',')} names findings: add --findings (or --all for Insights too)`, TAIL_USAGE);
  }
  if (types) filter.types = types;
  const principal = principalTests(values.principal);
  if (principal) filter.principal = principal;
  const action = actionTests(values.action);
  if (action) filter.action = action;
  const sinceMs = sinceOption(values.since, Date.now(), TAIL_USAGE);
  if (sinceMs !== undefined) filter.sinceMs = sinceMs;
  const follow = !values['no-follow'];
  const human = values.human || (!values.json && process.stdout.isTTY === true);
  const style: HumanStyle = { color: human && process.stdout.isTTY === true && !process.env.NO_COLOR };

  const session = await openSession(values, { autoStart: false });
  const alerts = values.findings ? null : (values.topic ?? session.config.topics.alerts);
  const findingsTopic = readsFindings ? session.config.topics.findings : null;
  const topics = [alerts, findingsTopic].filter((t): t is string => t !== null);
  const codec = new EventCodec(createRegistry(session.config.registry));
  const kafka = createKafka(session.config.kafka, session.logger);
  const from = sinceMs ?? (values['from-beginning'] || !follow ? 'beginning' : 'end');
  const ranges = await topicRanges(kafka, topics, from);
  // --no-follow: the partitions still to be read to their end as it was at the start.
  const pending = new Set<string>();
  for (const [topic, parts] of ranges) for (const [p, r] of parts) if (r.start < r.high) pending.add(`${topic}/${p}`);
  if (!follow && pending.size === 0) return 0;

  let printed = 0;
  let done: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });

  const next = new Map<string, bigint>();
  // A throwaway group: tail never moves anyone else's offsets.
  const consumer = kafka.consumer({ groupId: `trailwatch-tail-${randomUUID()}`, readUncommitted: false, maxWaitTimeInMs: 500 });
  // Fired after every fetched batch, also one holding only transaction markers (which never reach
  // eachMessage): the one reliable sign that a partition has been read to its end.
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    const id = `${payload.topic}/${payload.partition}`;
    const range = ranges.get(payload.topic)?.get(payload.partition);
    if (follow || !range || !pending.has(id)) return;
    if (BigInt(payload.lastOffset) + 1n >= range.high) {
      pending.delete(id);
      if (pending.size === 0) done();
    }
  });
  await consumer.connect();
  await consumer.subscribe({ topics, fromBeginning: from !== 'end' });
  await consumer.run({
    eachMessage: async ({ topic, message, partition }) => {
      if (max !== undefined && printed >= max) return;
      const range = ranges.get(topic)?.get(partition);
      const offset = BigInt(message.offset);
      // Before the start, or again after the seek below moved a partition back: printed once only.
      const id = `${topic}/${partition}`;
      if (offset < (next.get(id) ?? range?.start ?? 0n)) return;
      next.set(id, offset + 1n);
      if (!follow && (!range || offset >= range.high)) return;
      const recordMs = Number(message.timestamp);
      try {
        let line: string | null;
        if (topic === findingsTopic) {
          const finding = await codec.decodeFinding(message.value);
          line = !findingMatches(finding, filter, recordMs)
            ? null
            : human
              ? findingLine(finding, style)
              : JSON.stringify(findingJson(finding));
        } else {
          const insight = await codec.decodeInsight(message.value);
          const { trailwatch, ...cloudtrail } = insightJson(insight);
          line = !insightMatches(insight, filter, recordMs)
            ? null
            : human
              ? insightLine(insight, style)
              : JSON.stringify(values['cloudtrail-only'] ? cloudtrail : { ...cloudtrail, trailwatch });
        }
        if (line === null) return;
        process.stdout.write(`${line}\n`);
        printed++;
        if (max !== undefined && printed >= max) done();
      } catch (err) {
        session.logger.warn(
          { topic, partition, offset: message.offset, err: (err as Error).message },
          `skipping a record that is not ${topic === findingsTopic ? 'a Finding' : 'an Insight'}`,
        );
      }
    },
  });
  // Each partition from where it stood when tail started (kafkajs applies it at the next fetch):
  // a record written while the group was joining is not lost to the reset to the latest offset.
  for (const [topic, parts] of ranges) for (const [partition, r] of parts) consumer.seek({ topic, partition, offset: r.start.toString() });
  if (follow && (human || process.stderr.isTTY)) process.stderr.write(`… following ${topics.join(', ')} (Ctrl-C to stop)\n`);
  const timers: NodeJS.Timeout[] = [];
  if (timeoutMs !== undefined) timers.push(setTimeout(done, timeoutMs));
  await Promise.race([finished, waitForSignal()]);
  for (const t of timers) clearTimeout(t);
  await consumer.disconnect();
  return 0;
}
