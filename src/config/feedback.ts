import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { Finding, Insight } from '../contracts/types.ts';
import { FINDING_MATCH_FIELDS } from '../detect/finding-overrides.ts';
import { MATCH_FIELDS } from '../detect/overrides.ts';
import { keyId } from '../detect/signals.ts';
import { ErrorCodes, TrailwatchError } from '../errors.ts';
import { type ConfigDocument, FEEDBACK_POLICY_AUTHOR } from './record.ts';
import type { DetectorSuppression, FeedbackConfig, FindingSuppression } from './schema.ts';

/**
 * Verdicts on Insights and findings (`trailwatch feedback`), as records of the feedback topic
 * (topics.feedback), and the policy that turns repeated false positives on one key into an
 * expiring suppression: pure, so the command and the tests judge alike.
 */

export const FEEDBACK_RECORD_FORMAT = 1;
const DAY_MS = 86_400_000;

export type Verdict = 'false-positive' | 'true-positive';
/** A suppression the policy writes: to detector.suppressions for an Insight key, to findings.suppressions for a finding's. */
export type PolicySuppression = DetectorSuppression | FindingSuppression;
export type SuppressionMatch = PolicySuppression['match'];

/** What a verdict is about: one Insight key (what a suppression can match), or one finding's rule and principal. */
export interface FeedbackSubject {
  kind: 'insight' | 'finding';
  /** The key id: an Insight's as `config explain --key` takes it; `finding|<analytic>|<account>|<principal>` for a finding. */
  key: string;
  /**
   * The suppression match that would keep this key back: a detector.suppressions match for an
   * Insight, a findings.suppressions one (rule, accountId, principal) for a finding; null for a
   * finding about no single principal (no match names its key alone).
   */
  match: SuppressionMatch | null;
  /** Event time of the record the verdict is on, ISO 8601. */
  eventTime: string;
  /** The config version that produced it (null: none recorded). */
  configVersion: number | null;
}

export interface FeedbackRecord extends FeedbackSubject {
  format: typeof FEEDBACK_RECORD_FORMAT;
  /** Unique per verdict. */
  id: string;
  /** The sharedEventID of the Insight, or the finding's finding_info.uid. */
  target: string;
  verdict: Verdict;
  reason: string;
  author: string;
  /** When the verdict was given, ISO 8601. */
  at: string;
}

const matchSchema = z.record(z.string(), z.string());
const recordSchema = z.object({
  format: z.literal(FEEDBACK_RECORD_FORMAT),
  id: z.string().min(1),
  target: z.string().min(1),
  kind: z.enum(['insight', 'finding']),
  key: z.string().min(1),
  match: matchSchema.nullable(),
  eventTime: z.string(),
  configVersion: z.number().int().nullable(),
  verdict: z.enum(['false-positive', 'true-positive']),
  reason: z.string().min(1),
  author: z.string().min(1),
  at: z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'an ISO 8601 time'),
});

/** The key of an Insight, as a suppression would match it (the error code is not matchable, so an error-rate key covers every code). */
export function insightSubject(insight: Insight): FeedbackSubject {
  const d = insight.insightDetails;
  const t = insight.trailwatch;
  const match: SuppressionMatch =
    t.scope === 'action'
      ? {
          scope: 'action',
          insightType: d.insightType,
          accountId: insight.recipientAccountId,
          region: insight.awsRegion,
          service: d.eventSource,
          action: d.eventName,
        }
      : {
          scope: 'principalAction',
          insightType: d.insightType,
          accountId: insight.recipientAccountId,
          principal: t.principal ?? '',
          service: d.eventSource,
          action: d.eventName,
        };
  return {
    kind: 'insight',
    key: keyId(t.scope, d.insightType, insight.recipientAccountId, insight.awsRegion, t.principal, d.eventSource, d.eventName, d.errorCode),
    match,
    eventTime: insight.eventTime,
    configVersion: t.configVersion ?? null,
  };
}

/**
 * A finding's key: its rule (the analytic's id, which a `rule` glob matches as well as its name)
 * and principal in its account.
 */
export function findingSubject(finding: Finding): FeedbackSubject {
  const version = Number(finding.unmapped.configVersion);
  const rule = finding.finding_info.analytic.uid;
  const accountId = finding.cloud.account.uid;
  const principal = finding.actor?.user.uid;
  return {
    kind: 'finding',
    key: `finding|${rule}|${accountId}|${principal ?? '-'}`,
    // Without a principal, a match would cover the rule's findings on every principal: wider than the key.
    match: principal ? { rule, accountId, principal } : null,
    eventTime: new Date(finding.time).toISOString(),
    configVersion: Number.isInteger(version) ? version : null,
  };
}

export function newFeedbackRecord(
  subject: FeedbackSubject,
  fields: { target: string; verdict: Verdict; reason: string; author: string; atMs: number },
): FeedbackRecord {
  return {
    format: FEEDBACK_RECORD_FORMAT,
    id: randomUUID(),
    target: fields.target,
    ...subject,
    verdict: fields.verdict,
    reason: fields.reason,
    author: fields.author,
    at: new Date(fields.atMs).toISOString(),
  };
}

export function encodeFeedbackRecord(r: FeedbackRecord): string {
  return JSON.stringify(r);
}

/** A feedback-topic value as a record; anything else is a TW_DESERIALIZE error. */
export function decodeFeedbackRecord(value: Buffer | string): FeedbackRecord {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString());
  } catch (err) {
    throw new TrailwatchError(ErrorCodes.DESERIALIZE, `feedback record is not JSON: ${(err as Error).message}`, { fault: 'user' });
  }
  const result = recordSchema.safeParse(parsed);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join('.') || '(record)'}: ${i.message}`);
    throw new TrailwatchError(ErrorCodes.DESERIALIZE, `not a feedback record: ${problems.join('; ')}`, { fault: 'user' });
  }
  return result.data as FeedbackRecord;
}

// Insight and finding matches share most fields; `scope` or `rule` tells the two apart in a match key.
const ALL_MATCH_FIELDS = [...new Set<string>([...MATCH_FIELDS, ...FINDING_MATCH_FIELDS])];

/** A match as one string, fields in a fixed order: what the policy groups verdicts by. */
export function matchKey(match: SuppressionMatch): string {
  const fields = match as Partial<Record<string, string>>;
  return ALL_MATCH_FIELDS.map((f) => `${f}=${fields[f] ?? ''}`).join('|');
}

/**
 * A match value taken from a record is literal, but a suppression reads it as a glob: `*` or `?`
 * in it would match more than the key. Globs have no escape, so such a key is not suppressed.
 */
function globSpecial(match: SuppressionMatch): string | null {
  return Object.values(match).find((v) => typeof v === 'string' && /[*?]/.test(v)) ?? null;
}

function sameMatch(a: SuppressionMatch, b: SuppressionMatch): boolean {
  return matchKey(a) === matchKey(b);
}

/** A past config version, as the policy needs it: when it was applied and its suppressions (of the subject's kind). */
export interface VersionSuppressions {
  appliedAt: string;
  suppressions: readonly PolicySuppression[];
}

/** The suppressions of a document that a subject of `kind` is matched by. */
export function suppressionsFor(doc: ConfigDocument, kind: FeedbackSubject['kind']): readonly PolicySuppression[] {
  return kind === 'insight' ? doc.detector.suppressions : doc.findings.suppressions;
}

export interface PolicyOutcome {
  /** The suppression to add, or null with `why` saying why not. */
  suppression: PolicySuppression | null;
  why: string;
  /** The false positives counted (deduplicated), oldest first. */
  counted: FeedbackRecord[];
}

/**
 * Whether the false positives on `subject`'s key call for a suppression now. Counted: false
 * positives on the key given within `withinDays` before `nowMs`, after the policy last suppressed
 * the key (so verdicts that led to one do not lead to the next), one per Insight (or finding) and
 * author. None when the policy is off, no match names the key alone, a suppression with this very
 * match is in force, or a true positive was given on the key in that time. `current` and
 * `versions` hold the suppressions of the subject's kind (`suppressionsFor`). The suppression lasts
 * `suppressForDays` from now (judged in event time, as every suppression) and its reason lists the
 * verdicts' reasons.
 */
export function evaluatePolicy(
  subject: FeedbackSubject,
  feedback: readonly FeedbackRecord[],
  policy: FeedbackConfig,
  current: { readonly suppressions: readonly PolicySuppression[] },
  versions: readonly VersionSuppressions[],
  nowMs: number,
): PolicyOutcome {
  const none = (why: string, counted: FeedbackRecord[] = []): PolicyOutcome => ({ suppression: null, why, counted });
  const match = subject.match;
  if (match === null) {
    return none('a finding about no single principal: no suppression matches its key alone, so the verdict is recorded only');
  }
  if (policy.falsePositivesToSuppress === 0) return none('the feedback policy is off (feedback.falsePositivesToSuppress: 0)');
  const special = globSpecial(match);
  if (special !== null) {
    return none(`"${special}" holds * or ?, which a suppression reads as a glob: the verdict is recorded only (suppress it by hand)`);
  }
  const active = current.suppressions.find((s) => sameMatch(s.match, match) && Date.parse(s.expires) > nowMs);
  if (active) return none(`already suppressed until ${active.expires} (${active.author})`);

  const since = Math.max(nowMs - policy.withinDays * DAY_MS, lastPolicySuppressionMs(match, versions));
  const key = matchKey(match);
  const inWindow = feedback.filter((r) => {
    const at = Date.parse(r.at);
    return r.kind === subject.kind && r.match !== null && matchKey(r.match) === key && at > since && at <= nowMs;
  });
  const veto = inWindow.filter((r) => r.verdict === 'true-positive').at(-1);
  const seen = new Set<string>();
  const counted: FeedbackRecord[] = [];
  for (const r of [...inWindow].sort((a, b) => Date.parse(a.at) - Date.parse(b.at))) {
    if (r.verdict !== 'false-positive') continue;
    const id = `${r.target}\u0000${r.author}`;
    if (seen.has(id)) continue;
    seen.add(id);
    counted.push(r);
  }
  const need = policy.falsePositivesToSuppress;
  if (veto) return none(`a true positive was given on this key at ${veto.at} by ${veto.author}: no suppression`, counted);
  if (counted.length < need) {
    return none(`${counted.length} of ${need} false positives on this key within ${policy.withinDays} days: no suppression yet`, counted);
  }
  const reasons = counted.map((r) => `"${r.reason}" (${r.author})`).join('; ');
  return {
    suppression: {
      match,
      reason: `${counted.length} false positives within ${policy.withinDays} days: ${reasons}`,
      author: FEEDBACK_POLICY_AUTHOR,
      // Whole seconds: read by people in `config show` and `config history`.
      expires: new Date(Math.ceil((nowMs + policy.suppressForDays * DAY_MS) / 1000) * 1000).toISOString().replace('.000Z', 'Z'),
    },
    why: `${counted.length} false positives on this key within ${policy.withinDays} days (feedback.falsePositivesToSuppress: ${need})`,
    counted,
  };
}

/**
 * When the policy last suppressed `match`: the first version holding its latest suppression of it
 * (the one expiring last); −∞ when it never did.
 */
function lastPolicySuppressionMs(match: SuppressionMatch, versions: readonly VersionSuppressions[]): number {
  let latest: { expires: number; appliedMs: number } | null = null;
  const ordered = [...versions].sort((a, b) => Date.parse(a.appliedAt) - Date.parse(b.appliedAt));
  for (const v of ordered) {
    for (const s of v.suppressions) {
      if (s.author !== FEEDBACK_POLICY_AUTHOR || !sameMatch(s.match, match)) continue;
      const expires = Date.parse(s.expires);
      if (latest === null || expires > latest.expires) latest = { expires, appliedMs: Date.parse(v.appliedAt) };
    }
  }
  return latest?.appliedMs ?? Number.NEGATIVE_INFINITY;
}

/**
 * `current` (the detector's or the findings' tuning) with the policy's new suppression: an earlier
 * policy suppression of the same match (expired, or it would not be needed) makes way for it;
 * everything else is kept as it is.
 */
export function withPolicySuppression<S extends PolicySuppression, T extends { suppressions: S[] }>(current: T, suppression: S): T {
  const kept = current.suppressions.filter((s) => !(s.author === FEEDBACK_POLICY_AUTHOR && sameMatch(s.match, suppression.match)));
  return { ...current, suppressions: [...kept, suppression] };
}

/** `doc` with the policy's suppression for a subject of `kind`, in that kind's list; the rest carried over unchanged. */
export function documentWithPolicySuppression(
  doc: ConfigDocument,
  kind: FeedbackSubject['kind'],
  suppression: PolicySuppression,
): ConfigDocument {
  // The suppression's match is the subject's (evaluatePolicy), so its kind says which list it belongs to.
  return kind === 'insight'
    ? { ...doc, detector: withPolicySuppression(doc.detector, suppression as DetectorSuppression) }
    : { ...doc, findings: withPolicySuppression(doc.findings, suppression as FindingSuppression) };
}
