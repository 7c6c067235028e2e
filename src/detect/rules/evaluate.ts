import type { RulesConfig } from '../../config/schema.ts';
import type { AuditEvent, Finding } from '../../contracts/types.ts';
import { buildFinding, techniquesFromSigmaTags } from '../../emit/finding.ts';
import { ErrorCodes, TrailwatchError } from '../../errors.ts';
import { configuredRulePaths, formatRuleProblem, type LoadedRules, loadRules, type Rule } from './load.ts';

/**
 * Single-event rules on the stream: every event of a batch against every loaded rule, each match
 * a Finding. A rule sees the CloudTrail record: the event's `raw` when the producer kept it, else
 * the record rebuilt from the normalized fields. `raw` is parsed once per event, and only when a
 * rule reads a field the normalized event does not carry: rules on eventName, eventSource,
 * errorCode, userIdentity.type and the like never pay for it.
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
    eventTime: new Date(e.eventTimeMs).toISOString(),
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
  /** Raw records that did not parse (the normalized record was used instead). */
  rawUnparsed = 0;

  constructor(rules: readonly Rule[]) {
    this.rules = rules;
    this.normalizedOnly = rules.map((r) => r.fields.every((f) => NORMALIZED_PATHS.has(f)));
  }

  get size(): number {
    return this.rules.length;
  }

  /** Every rule an event matches, in the rule set's order. */
  match(e: AuditEvent): Rule[] {
    const normalized = normalizedRecord(e);
    let full: Record<string, unknown> | null = null;
    const hits: Rule[] = [];
    for (let i = 0; i < this.rules.length; i++) {
      const rule = this.rules[i] as Rule;
      let record = normalized;
      if (!this.normalizedOnly[i] && e.raw) {
        full ??= this.parseRaw(e.raw) ?? normalized;
        record = full;
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

/** The Finding of one rule match: one event, so the window is the event's own time. */
export function ruleFinding(m: RuleMatch, logName: string): Finding {
  const { rule, event } = m;
  return buildFinding({
    kind: 'rule',
    analyticId: rule.id,
    analyticName: rule.title,
    title: rule.title,
    desc: rule.description ?? null,
    severity: rule.severity,
    timeMs: event.eventTimeMs,
    windowStartMs: event.eventTimeMs,
    accountId: event.accountId,
    region: event.region,
    principal: event.principal,
    principalType: event.principalType,
    sessionName: event.attributes.sessionName ?? null,
    api: { operation: event.action, service: event.service },
    sourceIp: event.sourceIp,
    evidences: [event],
    techniques: techniquesFromSigmaTags(rule.tags),
    extras: { rule_source: rule.source, rule_kind: rule.kind, event_uid: event.eventId },
    logName,
  });
}
