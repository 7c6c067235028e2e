import { z } from 'zod';

/**
 * The one configuration schema. Every default lives here; `trailwatch config` prints the
 * effective result and the README documents each key. Unknown keys are rejected everywhere.
 */

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;

const saslSchema = z.strictObject({
  mechanism: z.enum(['plain', 'scram-sha-256', 'scram-sha-512']),
  username: z.string().min(1),
  /** Secret: from TRAILWATCH_KAFKA__SASL__PASSWORD or passwordFile, printed as ****. */
  password: z.string().optional(),
  passwordFile: z.string().optional(),
});

const tlsSchema = z.strictObject({
  enabled: z.boolean().default(false),
  caFile: z.string().optional(),
  certFile: z.string().optional(),
  keyFile: z.string().optional(),
  rejectUnauthorized: z.boolean().default(true),
});

/**
 * A bootstrap broker: `host:port`, the host a name, an IPv4 address or a bracketed IPv6 one
 * (`[::1]:9092`). Checked here so a mistyped KAFKA_BROKERS fails at start, naming itself, instead
 * of as a connection timeout later.
 */
const brokerSchema = z.string().refine(
  (b) => {
    const m = /^(?:\[[0-9A-Fa-f:.]+(?:%[\w.-]+)?\]|[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?):(\d{1,5})$/.exec(b);
    return m !== null && Number(m[1]) >= 1 && Number(m[1]) <= 65_535;
  },
  { error: (issue) => `${JSON.stringify(issue.input)} is not host:port (e.g. localhost:9092)` },
);

export const kafkaSchema = z.strictObject({
  /** Bootstrap brokers, each host:port. Empty means: the local stack (`trailwatch stack up`). */
  brokers: z.array(brokerSchema).default([]),
  clientId: z.string().default('trailwatch'),
  connectionTimeoutMs: z.number().int().positive().default(10_000), // ten seconds
  requestTimeoutMs: z.number().int().positive().default(30_000), // thirty seconds
  /**
   * How long a command waits to reach any broker at all the first time; past it, it fails naming
   * the brokers. A broker lost after that first contact is waited for as long as the client retries.
   */
  initialConnectTimeoutMs: z.number().int().positive().default(15_000), // fifteen seconds
  /**
   * The Kafka client behind the transport seam (src/transport/): kafkajs, or @platformatic/kafka.
   * Both pass the same conformance, catch-up and crash tests, and platformatic measured faster
   * (BENCHMARKS.md: the detector 1.5×, a no-op consumer 1.5–2.1×, a plain producer 2.7×); kafkajs
   * stays the default until a start-up that once did not return under load with platformatic
   * (test/runtime/detector-startup.test.ts in a full CI run) is understood.
   */
  client: z.enum(['kafkajs', 'platformatic']).default('kafkajs'),
  sasl: saslSchema.nullable().default(null),
  tls: tlsSchema.default({ enabled: false, rejectUnauthorized: true }),
});

export const registrySchema = z.strictObject({
  /** Confluent-compatible API root, e.g. http://127.0.0.1:18080/apis/ccompat/v7. Empty: the local stack. */
  url: z.string().default(''),
  username: z.string().optional(),
  /** Secret: from TRAILWATCH_REGISTRY__PASSWORD or passwordFile, printed as ****. */
  password: z.string().optional(),
  passwordFile: z.string().optional(),
});

export const topicsSchema = z.strictObject({
  events: z.string().min(1).default('trailwatch.events'),
  alerts: z.string().min(1).default('trailwatch.insights'),
  /** Findings (OCSF Detection Findings): rule matches and the other detections that are not rate Insights. */
  findings: z.string().min(1).default('trailwatch.findings'),
  deadLetter: z.string().min(1).default('trailwatch.dlq'),
  /**
   * The detector's repartition topic (per-action bucket counts keyed by action, and watermarks).
   * Null: `<detector.groupId>-actions-repartition`, so two detector groups never share one.
   */
  actions: z.string().min(1).nullable().default(null),
  /** Partitions for topics trailwatch creates itself. */
  partitions: z.number().int().positive().default(3),
  replicationFactor: z.number().int().positive().default(1),
  /**
   * `retention.ms` of the events topic when trailwatch creates it (-1: keep forever). Records are
   * stamped with the time they were published, so this is how long a detector may fall behind.
   */
  eventsRetentionMs: z
    .number()
    .int()
    .min(-1)
    .refine((v) => v !== 0, 'must be -1 (keep forever) or a positive number of ms')
    .default(7 * DAY_MS),
  /** `retention.ms` of the alerts and findings topics when trailwatch creates them (-1: keep forever). */
  alertsRetentionMs: z
    .number()
    .int()
    .min(-1)
    .refine((v) => v !== 0, 'must be -1 (keep forever) or a positive number of ms')
    .default(30 * DAY_MS),
  /**
   * Each running detector member's latest status (partitions, lag, keys, open Insights), keyed by
   * group and member: compacted, one partition; what `trailwatch status` reads.
   */
  status: z.string().min(1).default('trailwatch.status'),
  /**
   * Versions of the detection tuning (`trailwatch config apply`), one record per version, kept
   * forever (compacted, one partition); running members follow it (detector.configPollMs).
   */
  config: z.string().min(1).default('trailwatch.config'),
  /** False- and true-positive verdicts on Insights and findings (`trailwatch feedback`). */
  feedback: z.string().min(1).default('trailwatch.feedback'),
});

const directionSchema = z.enum(['up', 'down', 'both']);

/** Globs (`*` any run of characters, `?` one) on a key's identity; at least one. */
const matchSchema = z
  .strictObject({
    scope: z.string().min(1).optional(),
    insightType: z.string().min(1).optional(),
    accountId: z.string().min(1).optional(),
    region: z.string().min(1).optional(),
    service: z.string().min(1).optional(),
    action: z.string().min(1).optional(),
    principal: z.string().min(1).optional(),
  })
  .refine(
    (m) => Object.keys(m).length > 0,
    'name at least one field to match (scope, insightType, accountId, region, service, action, principal)',
  );

/** Per-key settings: each field absent keeps the detector-wide value. */
const overrideSchema = z.strictObject({
  match: matchSchema,
  scoreThreshold: z.number().gt(0).lt(1).optional(),
  minEventsPerBucket: z.number().int().nonnegative().optional(),
  minRatio: z.number().nonnegative().optional(),
  burstMargin: z.number().nonnegative().optional(),
  minHistoryMs: z.number().int().nonnegative().optional(),
  direction: directionSchema.optional(),
  /** false: the key is never judged (nor learned) and never reported. */
  enabled: z.boolean().optional(),
});

/** What `match` names is not emitted until `expires` (event time); `reason` and `author` say why and who. */
function suppressionOf<M extends z.ZodType>(match: M) {
  return z.strictObject({
    match,
    reason: z.string().trim().min(1),
    author: z.string().trim().min(1),
    /** ISO 8601 with a zone, e.g. 2026-07-01T00:00:00Z. */
    expires: z.iso.datetime({ offset: true }),
  });
}

/** Keys whose Insights are not emitted until `expires` (event time); they still learn their baseline. */
const suppressionSchema = suppressionOf(matchSchema);

export type DetectorOverride = z.infer<typeof overrideSchema>;
export type DetectorSuppression = z.infer<typeof suppressionSchema>;

export const detectorSchema = z.strictObject({
  groupId: z.string().min(1).default('trailwatch-detector'),
  /** Width of an event-time bucket: rates are counts per bucket. */
  bucketMs: z.number().int().positive().default(MINUTE_MS),
  /** Watermark = max event time seen − allowedLatenessMs; later events are counted as late, not folded in. */
  allowedLatenessMs: z
    .number()
    .int()
    .nonnegative()
    .default(5 * MINUTE_MS), // CloudTrail delivers within ~5 min
  /** With no new events for this long, event time advances with the wall clock so an End is not held back. */
  idleAdvanceMs: z.number().int().positive().default(30_000),
  /** Events stamped further ahead of the wall clock are dead-lettered (clock skew), not bucketed. */
  maxFutureSkewMs: z
    .number()
    .int()
    .nonnegative()
    .default(15 * MINUTE_MS),
  /** Events older than this (by the wall clock) are dead-lettered by the live detector; backtests take any age. */
  maxEventAgeMs: z
    .number()
    .int()
    .positive()
    .default(35 * DAY_MS),
  /** Length of history the baseline averages over. */
  baselineWindowMs: z
    .number()
    .int()
    .positive()
    .default(7 * DAY_MS),
  /** hourOfDay: once a key has two days of history, a bucket is compared with the same UTC hour's profile. */
  seasonality: z.enum(['hourOfDay', 'none']).default('hourOfDay'),
  /** No Insight for a key before it has this much history. */
  minHistoryMs: z.number().int().nonnegative().default(HOUR_MS),
  /**
   * Score in [0, 1) above which a bucket is anomalous. The score is the bucket's (or its sustained
   * run's) rarity under the key's own expectation: d decades of tail probability score d / (d + 4),
   * so 0.5 is one in 10⁴, 0.6 one in a million, 0.75 one in 10¹² (src/detect/baseline/score.ts).
   */
  scoreThreshold: z.number().gt(0).lt(1).default(0.6),
  /**
   * Which way a key's rate is watched: `up` (rises), `down` (drops: a service that stopped calling,
   * or stopped being logged; judged against the hour's expectation, so quiet nights are not drops),
   * or `both`. Per key by `overrides`.
   */
  direction: directionSchema.default('up'),
  /**
   * Settings for the keys a pattern matches: `match` holds globs (`*` any run of characters, `?` one)
   * on the key's scope, insightType, accountId, region, service, action and principal; the most
   * specific match wins (the most fields that are not `*`), the first listed among equals. It sets
   * any of scoreThreshold, minEventsPerBucket, minRatio, burstMargin, minHistoryMs, direction and
   * enabled (false: the key is never judged nor reported); the rest keeps the detector-wide value.
   */
  overrides: z.array(overrideSchema).default([]),
  /**
   * Keys whose Insights are not emitted (counted as suppressed) while the Insight's bucket is before
   * `expires`: `match` as in overrides, `reason` and `author` required. An expired one stops applying
   * by itself (judged in event time, so a replay is exact) and is logged once.
   */
  suppressions: z.array(suppressionSchema).default([]),
  /** Consecutive anomalous buckets before a Start. */
  startAfterBuckets: z.number().int().positive().default(1),
  /** Consecutive normal buckets before an End. */
  endAfterBuckets: z.number().int().positive().default(3),
  /** An Insight open this long is closed with an End. */
  maxDurationMs: z
    .number()
    .int()
    .positive()
    .default(6 * HOUR_MS),
  /** Floor: a bucket with fewer events never fires. */
  minEventsPerBucket: z.number().int().nonnegative().default(5),
  /** Floor: the bucket's count must be at least this many times the baseline. */
  minRatio: z.number().nonnegative().default(3),
  /**
   * Floor: the count must also exceed this many times the key's burst memory (its highest count
   * of a bucket, fading with a one-week half-life), so recurring legitimate bursts (deployments,
   * nightly jobs) stay quiet. 0 turns it off.
   */
  burstMargin: z.number().nonnegative().default(2),
  /** Attributions kept per attribute (CloudTrail Insights keeps 5). */
  topN: z.number().int().positive().max(100).default(5),
  scopes: z
    .strictObject({
      /** Per (account, region, eventSource, eventName): CloudTrail Insights parity. */
      action: z.boolean().default(true),
      /** Per (account, principal, eventSource, eventName). */
      principalAction: z.boolean().default(true),
    })
    .default({ action: true, principalAction: true }),
  insightTypes: z
    .strictObject({
      apiCallRate: z.boolean().default(true),
      apiErrorRate: z.boolean().default(true),
    })
    .default({ apiCallRate: true, apiErrorRate: true }),
  /** Count read-only calls in call-rate Insights too (CloudTrail counts writes only). */
  includeReadOnly: z.boolean().default(false),
  /**
   * Count the sensitivity catalog's read-only calls (secret and parameter reads, …) in call-rate
   * Insights even when includeReadOnly is false: secret harvesting is reads only.
   */
  sensitiveReads: z.boolean().default(true),
  /** Most keys kept in memory; the least recently active is evicted beyond it. */
  maxKeys: z.number().int().positive().default(1_000_000),
  /** A key with no events for this long is dropped. */
  keyIdleTtlMs: z
    .number()
    .int()
    .positive()
    .default(7 * DAY_MS),
  /** Larger event records are dead-lettered (TW_RECORD_TOO_LARGE) without being decoded. */
  maxRecordBytes: z
    .number()
    .int()
    .positive()
    .default(1024 * 1024), // 1 MiB: an audit event is a few hundred bytes
  /**
   * Most bytes fetched per partition and batch: bounds memory and the size of one transaction.
   * Large, so a backlog drains in few transactions (each costs broker round trips); a transaction
   * is cut into produce requests under the topics' max.message.bytes whatever its size.
   */
  fetchMaxBytes: z
    .number()
    .int()
    .positive()
    .default(8 * 1024 * 1024), // 8 MiB: ~18,000 audit events
  /**
   * A batch, restore or idle advance stuck this long (a broker that never comes back, a client
   * wedged after a failover) ends the process with status 1, for its supervisor to restart:
   * state and offsets are transactional, so a restart loses nothing.
   */
  stallTimeoutMs: z
    .number()
    .int()
    .positive()
    .default(5 * 60_000), // five minutes
  /** A member silent this long is dropped from the group and its partitions move (broker minimum: 6 s). */
  sessionTimeoutMs: z.number().int().positive().default(30_000), // thirty seconds
  /**
   * How often a running member (not `run --watch`) looks for a new version on topics.config (one
   * ListOffsets request; the topic is read only when it grew); 0: do not follow the config topic.
   */
  configPollMs: z.number().int().nonnegative().default(5_000), // five seconds
});

export const rulesSchema = z.strictObject({
  /**
   * Rule files and directories (walked recursively): `*.json` EventBridge patterns, `*.yml`/`*.yaml`
   * Sigma rules; relative paths from the working directory. Env: TRAILWATCH_RULES__PATHS='["./rules"]'.
   */
  paths: z.array(z.string().min(1)).default([]),
  /** Also load trailwatch's own pack (src/detect/rules/pack/). Env: TRAILWATCH_RULES__DEFAULT_PACK=false. */
  defaultPack: z.boolean().default(true),
});

const severitySchema = z.enum(['informational', 'low', 'medium', 'high', 'critical']);

const profileSchema = z.strictObject({
  learningMs: z.number().int().nonnegative().optional(),
  forgetMs: z.number().int().positive().optional(),
  baseSeverity: severitySchema.optional(),
  catalogShift: z.number().int().min(-4).max(4).optional(),
});

/** The detector families of findings, as a finding names them in finding_info.types[0]. */
export const FINDING_KINDS = ['rule', 'correlation', 'first-seen', 'breadth'] as const;

/**
 * Globs (`*` any run of characters, `?` one) on a finding; at least one. `rule` is the analytic's
 * id or name (finding_info.analytic: a rule's id such as cis-aws-4.1-unauthorized-api-calls,
 * trailwatch-first-seen, trailwatch-breadth, trailwatch-breadth-denied), `kind` one of
 * FINDING_KINDS, `service` and `action` the finding's API call (empty when it spans several).
 */
const findingMatchSchema = z
  .strictObject({
    rule: z.string().min(1).optional(),
    kind: z.enum(FINDING_KINDS).optional(),
    accountId: z.string().min(1).optional(),
    region: z.string().min(1).optional(),
    service: z.string().min(1).optional(),
    action: z.string().min(1).optional(),
    principal: z.string().min(1).optional(),
  })
  .refine((m) => Object.keys(m).length > 0, 'name at least one field to match (rule, kind, accountId, region, service, action, principal)');

/** Per finding: each field absent leaves the finding as its detector made it. */
const findingOverrideSchema = z.strictObject({
  match: findingMatchSchema,
  /** false: the finding is dropped (counted), never emitted. */
  enabled: z.boolean().optional(),
  /** Replaces the finding's severity (severity_id and severity). */
  severity: severitySchema.optional(),
});

/** Findings not emitted until `expires` (their event time). */
const findingSuppressionSchema = suppressionOf(findingMatchSchema);

export type FindingOverride = z.infer<typeof findingOverrideSchema>;
export type FindingSuppression = z.infer<typeof findingSuppressionSchema>;

export const findingsSchema = z.strictObject({
  /**
   * Repeats of one rule by one principal within one window of this length (aligned to the epoch)
   * are one finding: the first match is a Create at once, the repeats one Update with their count
   * when the window closes.
   */
  foldMs: z.number().int().positive().default(HOUR_MS),
  firstSeen: z
    .strictObject({
      /** A principal calling an action, from a region, or with an error code it has not shown before. */
      enabled: z.boolean().default(true),
      /** No judgement before a principal has been watched this long (per type in `profiles`). */
      learningMs: z
        .number()
        .int()
        .nonnegative()
        .default(7 * DAY_MS),
      /** A value not seen for this long is forgotten. */
      forgetMs: z
        .number()
        .int()
        .positive()
        .default(30 * DAY_MS),
      /** First-seen values of one principal within this long are one finding. */
      groupMs: z
        .number()
        .int()
        .positive()
        .default(10 * MINUTE_MS),
      /**
       * Findings below this severity are counted, not emitted: a workload role's new action is
       * medium, a person's new ordinary action informational and a person's sensitive one low.
       */
      minSeverity: severitySchema.default('medium'),
      /** Per principal type (IAMUser, AssumedRole, Root, AWSService, and `Human` for people). */
      profiles: z.record(z.string(), profileSchema).default({}),
      maxPrincipals: z.number().int().positive().default(100_000),
      maxValuesPerPrincipal: z.number().int().positive().default(1_000),
    })
    .prefault({}),
  breadth: z
    .strictObject({
      /** Distinct actions (and distinct denied actions) per principal in a sliding window, against its own daily peaks. */
      enabled: z.boolean().default(true),
      windowMs: z
        .number()
        .int()
        .positive()
        .default(5 * MINUTE_MS),
      /** Floor: fewer distinct actions in the window never fire. */
      minDistinct: z.number().int().positive().default(10),
      minDeniedDistinct: z.number().int().positive().default(5),
      /**
       * Fires at max(floor, factor × the principal's highest daily peak of the last historyDays):
       * 1.5 lets a 19-action enumeration through under a busy console user whose peak is 10.
       */
      factor: z.number().gt(1).default(1.5),
      historyDays: z.number().int().positive().default(14),
      learningMs: z
        .number()
        .int()
        .nonnegative()
        .default(3 * DAY_MS),
      severity: severitySchema.default('medium'),
      maxPrincipals: z.number().int().positive().default(100_000),
    })
    .prefault({}),
  /** Changes to the shipped sensitivity catalog (src/detect/rules/catalog.ts): add, severity, remove. */
  catalog: z
    .strictObject({
      add: z
        .array(
          z.strictObject({
            service: z.string().min(1),
            action: z.string().min(1),
            category: z.string().min(1),
            severity: severitySchema,
            readOnly: z.boolean().optional(),
          }),
        )
        .optional(),
      severity: z.record(z.string(), severitySchema).optional(),
      remove: z.array(z.string()).optional(),
    })
    .default({}),
  /**
   * Settings for the findings a pattern matches (`match` as in findingMatchSchema); the most
   * specific match wins (the most fields that are not `*`), the first listed among equals. It sets
   * `enabled` (false: the finding is dropped, counted) and `severity` (replaces the finding's).
   * Judged on each finding as it is made, live and in a backtest alike; applied live (`config
   * apply`, `run --watch`) at the next batch boundary.
   */
  overrides: z.array(findingOverrideSchema).default([]),
  /**
   * Findings not emitted (counted as suppressed) while their event time (`time`, the latest
   * evidence) is before `expires`: `match` as in overrides, `reason` and `author` required. An
   * expired one stops applying by itself (judged in event time, so a replay is exact).
   */
  suppressions: z.array(findingSuppressionSchema).default([]),
});

/** A dotted path into a JSON line, e.g. `actor.id`; keys containing dots cannot be reached. */
const jsonPathSchema = z
  .string()
  .min(1)
  .regex(/^[^.]+(?:\.[^.]+)*$/, 'a dotted path into each JSON line, e.g. "actor.id"');

/**
 * How a JSON line of a service's own audit log maps to an AuditEvent (`publish jsonl`, `backtest
 * --format jsonl`). Values are dotted paths into each line; time, principal and action are
 * required in every line (a line without one is a bad record naming the field). Fields not mapped,
 * or absent from a line, take `defaults` (service must come from a path or a default).
 */
export const jsonlMappingSchema = z.strictObject({
  /** Path of the event time. */
  time: jsonPathSchema,
  /** iso8601 (with a zone, e.g. 2024-05-01T12:00:00Z), epoch-s or epoch-ms (numbers or digit strings). */
  timeFormat: z.enum(['iso8601', 'epoch-s', 'epoch-ms']).default('iso8601'),
  principal: jsonPathSchema,
  action: jsonPathSchema,
  service: jsonPathSchema.nullable().default(null),
  /** Unique id of the call; null: a hash of the line, so a line delivered twice is counted once. */
  eventId: jsonPathSchema.nullable().default(null),
  /** The error of a failed call: a string or number is the code, true is "Error", an object its `code`; absent/null/false: success. */
  error: jsonPathSchema.nullable().default(null),
  account: jsonPathSchema.nullable().default(null),
  region: jsonPathSchema.nullable().default(null),
  sourceIp: jsonPathSchema.nullable().default(null),
  userAgent: jsonPathSchema.nullable().default(null),
  principalType: jsonPathSchema.nullable().default(null),
  /** A boolean (or "true"/"false") saying the call only read. */
  readOnly: jsonPathSchema.nullable().default(null),
  /** The AuditEvent's `source`, e.g. billing.audit. */
  source: z.string().min(1).default('jsonl'),
  defaults: z
    .strictObject({
      service: z.string().min(1).nullable().default(null),
      account: z.string().min(1).default('default'),
      region: z.string().min(1).default('default'),
      principalType: z.string().min(1).default('Unknown'),
    })
    .default({ service: null, account: 'default', region: 'default', principalType: 'Unknown' }),
});

export type JsonlMappingConfig = z.infer<typeof jsonlMappingSchema>;

/** Reading audit sources (`publish`, `backtest`): the settings of the formats that need any. */
export const ingestSchema = z.strictObject({
  /** JSON lines mapping; null (default): each line is an AuditEvent as the contract has it. */
  jsonl: jsonlMappingSchema.nullable().default(null),
  /** Kubernetes audit logs carry no cluster name: what their AuditEvents name as account and region. */
  k8sAudit: z
    .strictObject({
      cluster: z.string().min(1).default('kubernetes'),
      region: z.string().min(1).default('cluster'),
    })
    .default({ cluster: 'kubernetes', region: 'cluster' }),
  /**
   * `trailwatch ingest`: the raw topics it reads (forwarders write CloudTrail, CloudWatch Logs,
   * Kubernetes audit messages there). Env: TRAILWATCH_INGEST__RAW_TOPICS=a,b.
   */
  rawTopics: z
    .preprocess(
      (v) =>
        typeof v === 'string'
          ? v
              .split(',')
              .map((s) => s.trim())
              .filter(Boolean)
          : v,
      z.array(z.string().min(1)).min(1),
    )
    .default(['trailwatch.raw']),
  /** How `trailwatch ingest` reads a raw message: one format, or auto (each message sniffed on its own). */
  format: z.enum(['auto', 'cloudtrail', 'eventbridge', 'cwlogs', 'k8s-audit', 'jsonl']).default('auto'),
  /** Consumer group of `trailwatch ingest`; also names its transactional ids. */
  groupId: z.string().min(1).default('trailwatch-ingest'),
  /** A raw message larger than this, as received or once gunzipped, is dead-lettered (TW_RECORD_TOO_LARGE) undecoded. */
  maxMessageBytes: z
    .number()
    .int()
    .positive()
    .default(16 * 1024 * 1024), // 16 MiB: a CloudWatch Logs payload is at most 1 MiB gzipped
  /** Port of /metrics, /healthz, /readyz of `trailwatch ingest` (on observe.host); 0 turns them off. A detector on the same host has observe.port. */
  observePort: z.number().int().min(0).max(65_535).default(9465),
});

/** Watching a running detector: the HTTP endpoints of `trailwatch run` and its status record. */
export const observeSchema = z.strictObject({
  /** Port of /metrics, /healthz and /readyz; 0 turns the HTTP endpoint off. Env: TRAILWATCH_OBSERVE__PORT. */
  port: z.number().int().min(0).max(65_535).default(9464), // Prometheus exporters' customary range
  /** Address to listen on: loopback by default; 0.0.0.0 for a scraper on another host (the endpoints have no auth). */
  host: z.string().min(1).default('127.0.0.1'),
  /** /readyz answers 200 only while every assigned partition is at most this many records behind its end. */
  readyMaxLagRecords: z.number().int().nonnegative().default(10_000),
  /** How often lag is measured (two admin requests per topic) and the status record published. */
  refreshMs: z.number().int().min(500).default(5_000), // five seconds
  /** Publish the member's status record to topics.status for `trailwatch status`. */
  publishStatus: z.boolean().default(true),
});

/**
 * What `trailwatch feedback` does with false positives: this many on one Insight or finding key within
 * withinDays (and no true positive there) become a suppression of the key for suppressForDays,
 * written as a new config version by author `feedback-policy`. 0 turns the policy off.
 */
export const feedbackSchema = z.strictObject({
  falsePositivesToSuppress: z.number().int().nonnegative().default(3),
  withinDays: z.number().positive().default(14),
  suppressForDays: z.number().positive().default(7),
});

export const configSchema = z.strictObject({
  kafka: kafkaSchema.default(kafkaSchema.parse({})),
  registry: registrySchema.default(registrySchema.parse({})),
  topics: topicsSchema.default(topicsSchema.parse({})),
  detector: detectorSchema.default(detectorSchema.parse({})),
  rules: rulesSchema.default(rulesSchema.parse({})),
  findings: findingsSchema.default(findingsSchema.parse({})),
  observe: observeSchema.default(observeSchema.parse({})),
  ingest: ingestSchema.default(ingestSchema.parse({})),
  feedback: feedbackSchema.default(feedbackSchema.parse({})),
  log: z
    .strictObject({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') })
    .default({ level: 'info' }),
});

export type Config = z.infer<typeof configSchema>;
export type DetectorConfig = z.infer<typeof detectorSchema>;
export type KafkaConfig = z.infer<typeof kafkaSchema>;
export type RegistryConfig = z.infer<typeof registrySchema>;
export type TopicsConfig = z.infer<typeof topicsSchema>;
export type RulesConfig = z.infer<typeof rulesSchema>;
export type FindingsConfig = z.infer<typeof findingsSchema>;
export type ObserveConfig = z.infer<typeof observeSchema>;
export type IngestConfig = z.infer<typeof ingestSchema>;
export type FeedbackConfig = z.infer<typeof feedbackSchema>;
export type ConfigInput = z.input<typeof configSchema>;
