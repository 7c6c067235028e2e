import type { LiveConfig } from '../config/live.ts';
import {
  type ConfigDocument,
  ConfigHistory,
  type ConfigRecord,
  configWithDocument,
  encodeConfigRecord,
  newConfigRecord,
  versionKey,
} from '../config/record.ts';
import type { Config } from '../config/schema.ts';
import { ErrorCodes, errorMessage, TrailwatchError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { readToEnd } from '../transport/read-to-end.ts';
import type { Admin, Transport } from '../transport/types.ts';

/**
 * The config topic (topics.config) on Kafka: reading its versions, writing a new one without
 * losing a concurrent writer's, and following it from a running detector member.
 */

/** One partition, so every reader sees the versions in one order; compacted, so each version's record is kept forever. */
export const CONFIG_TOPIC_CONFIGS = { 'cleanup.policy': 'compact' } as const;

/** How long reading the config topic to its end may take before a command gives up (it holds one small record per version). */
export const CONFIG_READ_TIMEOUT_MS = 30_000;

/** Creates the config topic when it is missing: one partition, compacted. */
export async function ensureConfigTopic(admin: Admin, config: Config): Promise<void> {
  const topic = config.topics.config;
  try {
    await admin.createTopics([
      { topic, partitions: 1, replicationFactor: config.topics.replicationFactor, configs: { ...CONFIG_TOPIC_CONFIGS } },
    ]);
  } catch (err) {
    // Two writers creating it at once: the other one's topic is as good.
    if (!(await admin.listTopics()).includes(topic)) throw err;
  }
}

/** Every version on the config topic; `exists: false` when nobody has applied one on this cluster yet. */
export async function readConfigHistory(
  transport: Transport,
  topic: string,
  timeoutMs = CONFIG_READ_TIMEOUT_MS,
): Promise<{ exists: boolean; history: ConfigHistory }> {
  const history = new ConfigHistory();
  const { exists } = await readToEnd(transport, {
    topic,
    timeoutMs,
    groupPrefix: 'trailwatch-config-read',
    onRecord: (r) => history.add(r.key?.toString() ?? null, r.value),
  });
  return { exists, history };
}

/** What a writer wants the next version to be, given the latest; null: nothing to write. */
export type VersionDraft = Pick<ConfigRecord, 'author' | 'message' | 'source' | 'sha256'> & { document: ConfigDocument };

export interface WriteVersionResult {
  /** The version written; null when the draft function had nothing to write. */
  written: ConfigRecord | null;
  /** The latest version before this write (the one the draft was made against). */
  previous: ConfigRecord | null;
  /** Versions another writer took while this one tried, in order. */
  lostRaces: ConfigRecord[];
}

/** Tries before giving up when other writers keep taking the version numbers. */
const WRITE_ATTEMPTS = 5;

/**
 * Writes a new version: reads the topic to its end, asks `draft` what to write against the latest
 * version, writes it as the highest version + 1, then reads to the end again to see whose record
 * came first under that key. Another writer first: its record is written again under the key (so
 * compaction, which keeps a key's last record, keeps the version every reader already took), and
 * the whole round is tried again one version up, with `draft` asked again against the new latest.
 */
export async function writeConfigVersion(
  transport: Transport,
  config: Config,
  draft: (latest: ConfigRecord | null, history: ConfigHistory) => VersionDraft | null | Promise<VersionDraft | null>,
  options: { now?: () => number; timeoutMs?: number } = {},
): Promise<WriteVersionResult> {
  const topic = config.topics.config;
  const now = options.now ?? Date.now;
  const admin = await transport.admin();
  try {
    await ensureConfigTopic(admin, config);
  } finally {
    await admin.close().catch(() => undefined);
  }
  const producer = transport.producer();
  await producer.connect();
  const lostRaces: ConfigRecord[] = [];
  try {
    for (let attempt = 1; attempt <= WRITE_ATTEMPTS; attempt++) {
      const { history } = await readConfigHistory(transport, topic, options.timeoutMs);
      const previous = history.latest();
      const next = await draft(previous, history);
      if (next === null) return { written: null, previous, lostRaces };
      const record = newConfigRecord({ ...next, version: history.nextVersion(), appliedAt: new Date(now()).toISOString() });
      const key = versionKey(record.version);
      await producer.send([{ topic, key, value: encodeConfigRecord(record) }]);
      const after = (await readConfigHistory(transport, topic, options.timeoutMs)).history;
      const winner = after.get(record.version);
      if (winner?.writeId === record.writeId) return { written: record, previous, lostRaces };
      if (winner) {
        await producer.send([{ topic, key, value: encodeConfigRecord(winner) }]);
        lostRaces.push(winner);
      }
    }
  } finally {
    await producer.close().catch(() => undefined);
  }
  throw new TrailwatchError(
    ErrorCodes.KAFKA,
    `could not write a config version to ${topic}: other writers took the version numbers ${WRITE_ATTEMPTS} times in a row (${lostRaces
      .map((r) => `${r.version} by ${r.author}`)
      .join(', ')}); try again`,
    { fault: 'external', canRetry: true },
  );
}

export interface ConfigFollowerOptions {
  transport: Transport;
  /** The member's own config (file and environment): a version's tuning is validated on top of it. */
  base: Config;
  live: LiveConfig;
  logger: Logger;
  /** Between looks at the topic's end offsets, ms (detector.configPollMs). */
  pollMs: number;
  /** Longest a read of the topic may take, ms. */
  readTimeoutMs?: number;
}

/** Backoff while the topic cannot be read: from the poll interval, doubling, to this. */
const MAX_BACKOFF_MS = 60_000; // a minute

/**
 * A running member following the config topic. Every pollMs it asks for the topic's end offsets;
 * when they moved it reads the topic to its end and, when the latest version is not the one
 * applied, validates its tuning on top of the member's own config and applies it to the
 * LiveConfig, which the runtime takes at its next batch boundary. Nothing here ends the process: a
 * broker that cannot be reached (restarting, or gone) is logged and tried again with backoff,
 * while the member runs on what it has (its file and environment at first).
 */
export class ConfigTopicFollower {
  private readonly opts: ConfigFollowerOptions;
  private readonly log: Logger;
  private admin: Admin | null = null;
  private timer: NodeJS.Timeout | undefined;
  private inflight: Promise<void> | null = null;
  private stopped = false;
  /** The end offsets the topic was last read to: unchanged, nothing to read. */
  private readTo = '';
  private failures = 0;
  /** Versions refused (their problems logged once), and keys logged as not records or as lost races. */
  private readonly refused = new Set<number>();
  private readonly announced = new Set<string>();

  constructor(opts: ConfigFollowerOptions) {
    this.opts = opts;
    this.log = opts.logger.child({ component: 'config', topic: opts.base.topics.config });
  }

  /** The topic's version applied now, null before any. */
  get version(): number | null {
    return this.opts.live.version.version;
  }

  /**
   * The first look, waited for at most `waitMs` (a version found is applied before the first
   * batch); then a look every pollMs. Never throws.
   */
  async start(waitMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, waitMs);
    });
    await Promise.race([this.poll(), waited]);
    clearTimeout(timer);
    if (this.inflight !== null && !this.stopped) {
      this.log.warn(
        { waitedMs: waitMs },
        'config topic not read yet: starting with the file and environment config; the latest version is applied once it is read',
      );
    }
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    // A read in hand ends by its own timeout; no need to hold the stop for it.
    const admin = this.admin;
    this.admin = null;
    await admin?.close().catch(() => undefined);
  }

  private schedule(): void {
    if (this.stopped) return;
    const delay = this.failures === 0 ? this.opts.pollMs : Math.min(MAX_BACKOFF_MS, this.opts.pollMs * 2 ** this.failures);
    this.timer = setTimeout(() => {
      void this.poll().then(() => this.schedule());
    }, delay);
    this.timer.unref();
  }

  /** One look; one at a time. Never rejects. */
  private poll(): Promise<void> {
    if (this.inflight) return this.inflight;
    this.inflight = this.look()
      .then(
        () => {
          if (this.failures > 0) this.log.info({ afterFailures: this.failures }, 'config topic readable again');
          this.failures = 0;
        },
        async (err: unknown) => {
          this.failures++;
          const admin = this.admin;
          this.admin = null;
          await admin?.close().catch(() => undefined);
          if (this.stopped) return;
          this.log.warn(
            { err: errorMessage(err), attempt: this.failures, configVersion: this.version },
            'cannot read the config topic: keeping the config in force, retrying with backoff',
          );
        },
      )
      .finally(() => {
        this.inflight = null;
      });
    return this.inflight;
  }

  private async look(): Promise<void> {
    const { transport, base } = this.opts;
    const topic = base.topics.config;
    this.admin ??= await transport.admin();
    // Listed first: asking a missing topic's offsets could have a broker auto-create it, uncompacted.
    if (!(await this.admin.listTopics()).includes(topic)) return;
    const ends = (await this.admin.topicOffsets(topic)).map((o) => `${o.partition}:${o.high}`).join(',');
    if (ends === this.readTo) return;
    const { history } = await readConfigHistory(transport, topic, this.opts.readTimeoutMs ?? CONFIG_READ_TIMEOUT_MS);
    if (this.stopped) return;
    this.readTo = ends;
    for (const bad of history.invalid)
      this.once(`invalid:${bad.key}`, () => this.log.warn({ key: bad.key, problem: bad.problem }, 'config topic: not a version, skipped'));
    const latest = history.latest();
    if (latest === null || latest.version === this.version) return;
    this.applyVersion(latest);
  }

  private applyVersion(record: ConfigRecord): void {
    const { config, problems } = configWithDocument(this.opts.base, record.document);
    if (!config) {
      if (!this.refused.has(record.version)) {
        this.refused.add(record.version);
        this.log.error(
          { configVersion: record.version, author: record.author, problems, running: this.version },
          'config version refused: its tuning is not valid on this member; the running config is kept',
        );
      }
      return;
    }
    this.opts.live.apply(config, record.sha256, record.version);
    this.log.info(
      {
        configVersion: record.version,
        author: record.author,
        sha256: record.sha256.slice(0, 12),
        source: record.source,
        message: record.message,
        appliedAt: record.appliedAt,
      },
      'config version taken: applied at the next batch boundary',
    );
  }

  private once(id: string, fn: () => void): void {
    if (this.announced.has(id)) return;
    this.announced.add(id);
    fn();
  }
}
