import {
  decodeFeedbackRecord,
  documentWithPolicySuppression,
  encodeFeedbackRecord,
  evaluatePolicy,
  type FeedbackRecord,
  type FeedbackSubject,
  findingSubject,
  insightSubject,
  newFeedbackRecord,
  type PolicyOutcome,
  suppressionsFor,
  type Verdict,
} from '../../config/feedback.ts';
import { type ConfigHistory, type ConfigRecord, documentOf, documentYaml, FEEDBACK_POLICY_AUTHOR, sha256 } from '../../config/record.ts';
import type { Config } from '../../config/schema.ts';
import type { Finding, Insight } from '../../contracts/types.ts';
import { partitionFor } from '../../detect/topology.ts';
import { ErrorCodes, TrailwatchError } from '../../errors.ts';
import type { Logger } from '../../logger.ts';
import { EventCodec } from '../../runtime/codec.ts';
import { CONFIG_READ_TIMEOUT_MS, readConfigHistory, writeConfigVersion } from '../../runtime/config-topic.ts';
import { createRegistry } from '../../runtime/registry.ts';
import { createTransport } from '../../transport/index.ts';
import { readToEnd } from '../../transport/read-to-end.ts';
import type { Transport } from '../../transport/types.ts';
import { COMMON_HELP, intOption, parse, usageError } from '../args.ts';
import { openSession } from '../connect.ts';
import { defaultAuthor } from './config.ts';

export const FEEDBACK_USAGE = `Usage: trailwatch feedback ID (--false-positive | --true-positive) --reason TEXT [--author NAME]

Records a verdict on one Insight (ID: its sharedEventID) or one finding (ID: its
finding_info.uid), as \`trailwatch tail\` prints them. The record is looked up on the alerts
topic, then the findings topic, to learn its key (scope, account, region or principal, service,
action); an ID found on neither is refused. The verdict goes to the feedback topic (topics.feedback,
"trailwatch.feedback"; created if missing) with the reason, the author and the key.

Then the feedback policy (config \`feedback\`) is judged on that key: falsePositivesToSuppress
(3) false positives on one Insight key within withinDays (14), with no true positive there, become a
suppression of the key for suppressForDays (7), written as a new config version by author
feedback-policy with the verdicts' reasons (\`trailwatch config history\` shows it); running detectors
take it at their next batch boundary. Verdicts that led to a suppression do not count toward the
next. A finding's key is its rule, account and principal: the same count on it becomes a
findings.suppressions entry matching those three (a finding about no single principal is recorded
only).

Options:
      --false-positive     the record is not worth anyone's attention
      --true-positive      it was real (recorded; it also holds the policy off this key for withinDays)
      --reason TEXT        why (required)
      --author NAME        who says so (default: $USER)
      --timeout-ms N       give up reading a topic after N ms (default ${CONFIG_READ_TIMEOUT_MS})
${COMMON_HELP}`;

export async function feedbackCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      'false-positive': { type: 'boolean' },
      'true-positive': { type: 'boolean' },
      reason: { type: 'string' },
      author: { type: 'string' },
      'timeout-ms': { type: 'string' },
    },
    FEEDBACK_USAGE,
  );
  if (values.help) {
    process.stdout.write(`${FEEDBACK_USAGE}\n`);
    return 0;
  }
  const [id, ...extra] = positionals;
  if (!id || extra.length > 0) throw usageError('feedback takes one ID (a sharedEventID or a finding id)', FEEDBACK_USAGE);
  if (Boolean(values['false-positive']) === Boolean(values['true-positive'])) {
    throw usageError('say which: --false-positive or --true-positive', FEEDBACK_USAGE);
  }
  const verdict: Verdict = values['false-positive'] ? 'false-positive' : 'true-positive';
  const reason = values.reason?.trim() ?? '';
  if (reason === '') throw usageError('--reason "…" is required: it is what the next person reads', FEEDBACK_USAGE);
  const author = (values.author ?? defaultAuthor()).trim();
  if (author === '') throw usageError('--author must name someone', FEEDBACK_USAGE);
  const timeoutMs = intOption(values['timeout-ms'], 'timeout-ms', FEEDBACK_USAGE) ?? CONFIG_READ_TIMEOUT_MS;

  const session = await openSession(values, { autoStart: false });
  const { config } = session;
  const transport = createTransport(config.kafka, session.logger);
  const found = await lookUp(transport, new EventCodec(createRegistry(config.registry)), config, id, timeoutMs);
  const subject = found.kind === 'insight' ? insightSubject(found.insight) : findingSubject(found.finding);
  const record = newFeedbackRecord(subject, { target: id, verdict, reason, author, atMs: Date.now() });
  await writeFeedback(transport, config, record);
  const what =
    found.kind === 'insight'
      ? `Insight ${id} (${found.insight.insightDetails.insightType} ${found.insight.insightDetails.state}, ${found.insight.eventTime})`
      : `finding ${id} (${found.finding.finding_info.title})`;
  process.stdout.write(`recorded ${verdict} on ${what}, key ${subject.key}, on ${config.topics.feedback}\n`);

  const outcome = await applyPolicy(transport, config, subject, timeoutMs, session.logger);
  if (outcome.version !== null) {
    process.stdout.write(
      `feedback policy: ${outcome.why}: suppressed until ${outcome.suppression?.expires} as config version ${outcome.version} on ${config.topics.config}\n`,
    );
  } else {
    process.stdout.write(`feedback policy: ${outcome.why}\n`);
  }
  return 0;
}

type Found = { kind: 'insight'; insight: Insight } | { kind: 'finding'; finding: Finding };

/**
 * The Insight or finding with this id: records are keyed by it and placed by its murmur2 hash
 * (as the detector produces them), so only that partition of each topic is read.
 */
async function lookUp(transport: Transport, codec: EventCodec, config: Config, id: string, timeoutMs: number): Promise<Found> {
  const read = async <T>(topic: string, decode: (value: Buffer | null) => Promise<T>): Promise<T | null> => {
    const admin = await transport.admin();
    let partitions = 0;
    try {
      if ((await admin.listTopics()).includes(topic)) partitions = (await admin.topicOffsets(topic)).length;
    } finally {
      await admin.close().catch(() => undefined);
    }
    if (partitions === 0) return null;
    let hit: T | null = null;
    await readToEnd(transport, {
      topic,
      timeoutMs,
      groupPrefix: 'trailwatch-feedback-lookup',
      partitions: [partitionFor(id, partitions)],
      timeoutHint: 'try a larger --timeout-ms',
      onRecord: async (r) => {
        // The first record of the id: a Start (its End has the same key) or a finding's Create.
        if (hit === null && r.key?.toString() === id) hit = await decode(r.value);
      },
    });
    return hit;
  };
  const insight = await read(config.topics.alerts, (v) => codec.decodeInsight(v));
  if (insight) return { kind: 'insight', insight };
  const finding = await read(config.topics.findings, (v) => codec.decodeFinding(v));
  if (finding) return { kind: 'finding', finding };
  throw new TrailwatchError(
    ErrorCodes.USAGE,
    `no Insight with sharedEventID ${id} on ${config.topics.alerts} and no finding with id ${id} on ${config.topics.findings}: ` +
      'check the id (`trailwatch tail --no-follow` prints them), and that it is younger than topics.alertsRetentionMs',
    { fault: 'user' },
  );
}

const FEEDBACK_TOPIC_CONFIGS = { 'retention.ms': '-1' } as const; // verdicts are an audit trail: kept

async function writeFeedback(transport: Transport, config: Config, record: FeedbackRecord): Promise<void> {
  const admin = await transport.admin();
  try {
    await admin.createTopics([
      {
        topic: config.topics.feedback,
        partitions: 1,
        replicationFactor: config.topics.replicationFactor,
        configs: { ...FEEDBACK_TOPIC_CONFIGS },
      },
    ]);
  } catch (err) {
    if (!(await admin.listTopics()).includes(config.topics.feedback)) throw err;
  } finally {
    await admin.close().catch(() => undefined);
  }
  const producer = transport.producer();
  await producer.connect();
  try {
    await producer.send([{ topic: config.topics.feedback, key: record.key, value: encodeFeedbackRecord(record) }]);
  } finally {
    await producer.close().catch(() => undefined);
  }
}

/**
 * The policy, judged here, by the command that just recorded a verdict: the only moment the
 * answer can change, with no other process to run or keep alive. It reads the feedback topic to
 * its end (this verdict included) and writes through the same race-checked path as `config
 * apply`, judging again against whatever version is latest on each try: two verdicts at once
 * cannot write the suppression twice. A policy write that fails leaves the verdict recorded; the
 * next verdict on the key judges again.
 */
async function applyPolicy(
  transport: Transport,
  config: Config,
  subject: FeedbackSubject,
  timeoutMs: number,
  logger: Logger,
): Promise<PolicyOutcome & { version: number | null }> {
  if (subject.match === null || config.feedback.falsePositivesToSuppress === 0) {
    return { ...evaluatePolicy(subject, [], config.feedback, { suppressions: [] }, [], Date.now()), version: null };
  }
  const feedback: FeedbackRecord[] = [];
  await readToEnd(transport, {
    topic: config.topics.feedback,
    timeoutMs,
    groupPrefix: 'trailwatch-feedback-read',
    timeoutHint: 'try a larger --timeout-ms',
    onRecord: (r) => {
      if (r.key?.toString() !== subject.key || r.value === null) return;
      try {
        feedback.push(decodeFeedbackRecord(r.value));
      } catch (err) {
        logger.warn({ offset: String(r.offset), err: (err as Error).message }, 'feedback topic: not a feedback record, skipped');
      }
    },
  });
  const judge = (latest: ConfigRecord | null, history: ConfigHistory) => {
    // Before the first version, the tuning this command's own config has; the rest of it is carried forward as it is.
    const current = latest?.document ?? documentOf(config);
    const versions = history.list().map((v) => ({ appliedAt: v.appliedAt, suppressions: suppressionsFor(v.document, subject.kind) }));
    const suppressions = suppressionsFor(current, subject.kind);
    return { current, outcome: evaluatePolicy(subject, feedback, config.feedback, { suppressions }, versions, Date.now()) };
  };
  const { history } = await readConfigHistory(transport, config.topics.config, timeoutMs);
  let judged = judge(history.latest(), history).outcome;
  if (judged.suppression === null) return { ...judged, version: null };
  const result = await writeConfigVersion(
    transport,
    config,
    (latest, now) => {
      const { current, outcome } = judge(latest, now);
      judged = outcome;
      if (outcome.suppression === null) return null;
      const document = documentWithPolicySuppression(current, subject.kind, outcome.suppression);
      return {
        author: FEEDBACK_POLICY_AUTHOR,
        message: `${outcome.suppression.reason}: suppress ${subject.key} until ${outcome.suppression.expires}`,
        source: FEEDBACK_POLICY_AUTHOR,
        sha256: sha256(documentYaml(document)),
        document,
      };
    },
    { timeoutMs },
  );
  return { ...judged, version: result.written?.version ?? null };
}
