import type { RulesConfig } from '../../config/schema.ts';
import type { AuditEvent, Finding } from '../../contracts/types.ts';
import { buildFinding, techniquesFromSigmaTags } from '../../emit/finding.ts';
import { ErrorCodes, TrailwatchError } from '../../errors.ts';
import { configuredRulePaths, formatRuleProblem, type LoadedRules, loadRules, type Rule } from './load.ts';
import { RuleIndex } from './rule-index.ts';

/**
 * Single-event rules on the stream: every event of a batch against the loaded rules, each match a
 * Finding. A rule sees the CloudTrail record: the event's `raw` when the producer kept it, else
 * the record rebuilt from the normalized fields. Rules are indexed by the eventName and
 * eventSource they can match (rule-index.ts), so an event is tried only against its candidates
 * and the rules that name no call; an event without candidates costs two map lookups. The
 * normalized record is built only for a candidate that reads it, and `raw` parsed once per event,
 * only for a candidate that reads a field the normalized event does not carry: rules on
 * eventName, eventSource, errorCode, userIdentity.type and the like never pay for it.
 */

/** Record paths the normalized event can answer without the raw record. */
const NORMALIZED_PATHS: ReadonlySet<string> = new Set([
  'eventID',
  'eventTime',
  'eventSource',
  'eventName',
  'awsRegion',
  'recipientAccountId',
  'sourceIPAddress',
  'userAgent',
  'errorCode',
  'errorMessage',
  'readOnly',
  'eventType',
  'eventCategory',
  'managementEvent',
  'requestID',
  'userIdentity.type',
  'userIdentity.arn',
  'userIdentity.accountId',
  'userIdentity.invokedBy',
  'userIdentity.accessKeyId',
]);

/** The CloudTrail record as far as the normalized event holds it (fields it has no value for are left out). */
export function normalizedRecord(e: AuditEvent): Record<string, unknown> {
  const a = e.attributes;
  const identity: Record<string, unknown> = { type: e.principalType, arn: a.userIdentityArn ?? e.principal, accountId: e.accountId };
  if (a.invokedBy !== undefined) identity.invokedBy = a.invokedBy;
  if (a.accessKeyId !== undefined) identity.accessKeyId = a.accessKeyId;
  const record: Record<string, unknown> = {
    eventID: e.eventId,
    eventTime: isoTime(e.eventTimeMs),
    eventSource: e.service,
    eventName: e.action,
    awsRegion: e.region,
    recipientAccountId: e.accountId,
    readOnly: e.readOnly,
    userIdentity: identity,
  };
  if (e.sourceIp !== null) record.sourceIPAddress = e.sourceIp;
  if (e.userAgent !== null) record.userAgent = e.userAgent;
  if (e.errorCode !== null) record.errorCode = e.errorCode;
  if (a.errorMessage !== undefined) record.errorMessage = a.errorMessage;
  if (a.eventType !== undefined) record.eventType = a.eventType;
  if (a.eventCategory !== undefined) record.eventCategory = a.eventCategory;
  if (a.managementEvent !== undefined) record.managementEvent = a.managementEvent === 'true';
  if (a.requestId !== undefined) record.requestID = a.requestId;
  return record;
}

/** 10000-01-01T00:00:00Z: the fast path below writes four-digit years from 1970 on, like toISOString. */
const YEAR_10000_MS = 253_402_300_800_000;
let isoSecond = Number.NaN;
let isoPrefix = '';

/**
 * `new Date(ms).toISOString()`, which costs more than the rest of the normalized record: the text
 * up to the second is written by hand (days to civil date, H. Hinnant's algorithm) and kept for the
 * next call, since events come about in time order. Times outside 1970–9999 and non-integers are
 * left to toISOString, throwing for invalid ones as it does.
 */
function isoTime(ms: number): string {
  if (!Number.isInteger(ms) || ms < 0 || ms >= YEAR_10000_MS) return new Date(ms).toISOString();
  const second = Math.floor(ms / 1000);
  if (second !== isoSecond) {
    isoPrefix = isoSecondPrefix(second);
    isoSecond = second;
  }
  const milli = ms - second * 1000;
  return `${isoPrefix}${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
}

/** `YYYY-MM-DDTHH:MM:SS.` of a second since the epoch, from 1970 to 9999. */
function isoSecondPrefix(second: number): string {
  const days = Math.floor(second / 86_400);
  const inDay = second - days * 86_400;
  const z = days + 719_468; // days since 0000-03-01
  const era = Math.floor(z / 146_097);
  const dayOfEra = z - era * 146_097;
  const yearOfEra = Math.floor(
    (dayOfEra - Math.floor(dayOfEra / 1_460) + Math.floor(dayOfEra / 36_524) - Math.floor(dayOfEra / 146_096)) / 365,
  );
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const m = Math.floor((5 * dayOfYear + 2) / 153); // March = 0
  const day = dayOfYear - Math.floor((153 * m + 2) / 5) + 1;
  const month = m < 10 ? m + 3 : m - 9;
  const year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0);
  const two = (n: number) => (n < 10 ? `0${n}` : `${n}`);
  return `${year}-${two(month)}-${two(day)}T${two(Math.floor(inDay / 3_600))}:${two(Math.floor((inDay % 3_600) / 60))}:${two(inDay % 60)}.`;
}

/**
 * The rules `run` and `backtest` use (rules.paths and the default pack), refused whole when any
 * rule has a problem, as `trailwatch rules check` lists them.
 */
export async function ruleSetFromConfig(config: RulesConfig): Promise<{ set: RuleSet; loaded: LoadedRules }> {
  const loaded = await loadRules(configuredRulePaths(config));
  const first = loaded.problems[0];
  if (first !== undefined) {
    const n = loaded.problems.length;
    throw new TrailwatchError(
      ErrorCodes.RULE_INVALID,
      `${n} rule ${n === 1 ? 'problem' : 'problems'}, the first: ${formatRuleProblem(first)}; \`trailwatch rules check\` lists them all`,
      { fault: 'user', details: { problems: n } },
    );
  }
  return { set: new RuleSet(loaded.rules), loaded };
}

export interface RuleMatch {
  rule: Rule;
  event: AuditEvent;
}

export class RuleSet {
  readonly rules: readonly Rule[];
  /** Per rule: whether it reads only what the normalized event answers. */
  private readonly normalizedOnly: readonly boolean[];
  private readonly index: RuleIndex;
  /** Raw records a candidate needed that did not parse (the normalized record was used instead). */
  rawUnparsed = 0;

  constructor(rules: readonly Rule[]) {
    this.rules = rules;
    // A rule that names no field (a Sigma keyword search) reads the whole record.
    this.normalizedOnly = rules.map((r) => r.fields.length > 0 && r.fields.every((f) => NORMALIZED_PATHS.has(f)));
    this.index = new RuleIndex(rules.map((r) => r.keys));
  }

  get size(): number {
    return this.rules.length;
  }

  /** Whether some rule reads a field only the raw record has (a backtest then keeps it). */
  get needsRaw(): boolean {
    return this.normalizedOnly.some((only) => !only);
  }

  /** Every rule an event matches, in the rule set's order. */
  match(e: AuditEvent): Rule[] {
    const hits: Rule[] = [];
    const candidates = this.index.candidates(e.action, e.service);
    let normalized: Record<string, unknown> | undefined;
    /** The parsed raw: undefined until a candidate needs it, null when it does not parse. */
    let full: Record<string, unknown> | null | undefined;
    for (const i of candidates) {
      const rule = this.rules[i] as Rule;
      let record: Record<string, unknown> | null = null;
      if (!this.normalizedOnly[i] && e.raw) {
        if (full === undefined) full = this.parseRaw(e.raw);
        record = full;
      }
      if (record === null) {
        normalized ??= normalizedRecord(e);
        record = normalized;
      }
      if (rule.matches(record)) hits.push(rule);
    }
    return hits;
  }

  /** Every match of a batch's events, in event order. */
  matchAll(events: readonly AuditEvent[]): RuleMatch[] {
    const out: RuleMatch[] = [];
    if (this.rules.length === 0) return out;
    for (const event of events) for (const rule of this.match(event)) out.push({ rule, event });
    return out;
  }

  private parseRaw(raw: string): Record<string, unknown> | null {
    try {
      const parsed: unknown = JSON.parse(raw);
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
    } catch {
      // counted below: a producer's raw that is not a JSON object is matched as the normalized record
    }
    this.rawUnparsed++;
    return null;
  }
}

/** How a match sits in its fold window (findings.ts): the window, what it counted, whether this record updates it. */
export interface RuleFold {
  windowStartMs: number;
  count: number;
  evidences: readonly AuditEvent[];
  update: boolean;
  foldMs: number;
}

/**
 * The Finding of one rule match. Alone, the window is the event's own time; in a fold window, the
 * window's Create (at its first or minCount-th match) or its Update carrying every match counted.
 */
export function ruleFinding(m: RuleMatch, logName: string, fold?: RuleFold): Finding {
  const { rule, event } = m;
  const minCount = rule.minCount ?? 1;
  return buildFinding({
    kind: 'rule',
    analyticId: rule.id,
    analyticName: rule.title,
    title: rule.title,
    desc: rule.description ?? null,
    severity: rule.severity,
    timeMs: event.eventTimeMs,
    windowStartMs: fold?.windowStartMs ?? event.eventTimeMs,
    createdMs: event.eventTimeMs,
    accountId: event.accountId,
    region: event.region,
    principal: event.principal,
    principalType: event.principalType,
    sessionName: event.attributes.sessionName ?? null,
    api: { operation: event.action, service: event.service },
    sourceIp: event.sourceIp,
    evidences: fold?.evidences ?? [event],
    techniques: techniquesFromSigmaTags(rule.tags),
    ...(fold ? { count: fold.count, update: fold.update } : {}),
    extras: {
      rule_source: rule.source,
      rule_kind: rule.kind,
      event_uid: event.eventId,
      ...(fold ? { fold_ms: String(fold.foldMs) } : {}),
      ...(fold && minCount > 1 ? { min_count: String(minCount) } : {}),
    },
    logName,
  });
}
