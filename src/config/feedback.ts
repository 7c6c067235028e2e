import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { Finding, Insight } from '../contracts/types.ts';
import { MATCH_FIELDS, type Tuning } from '../detect/overrides.ts';
import { keyId } from '../detect/signals.ts';
import { ErrorCodes, TrailwatchError } from '../errors.ts';
import { FEEDBACK_POLICY_AUTHOR } from './record.ts';
import type { DetectorSuppression, FeedbackConfig } from './schema.ts';

/**
 * Verdicts on Insights and findings (`trailwatch feedback`), as records of the feedback topic
 * (topics.feedback), and the policy that turns repeated false positives on one key into an
 * expiring suppression: pure, so the command and the tests judge alike.
 */

export const FEEDBACK_RECORD_FORMAT = 1;
const DAY_MS = 86_400_000;

export type Verdict = 'false-positive' | 'true-positive';
export type SuppressionMatch = DetectorSuppression['match'];

/** What a verdict is about: one Insight key (what a suppression can match), or one finding's rule and principal. */
export interface FeedbackSubject {
  kind: 'insight' | 'finding';
  /** The key id: an Insight's as `config explain --key` takes it; `finding|<analytic>|<account>|<principal>` for a finding. */
  key: string;
  /** The suppression that would keep this key's Insights back; null for a finding (detector.suppressions holds Insight keys only). */
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

/** A finding's key: its rule (analytic) and principal in its account. */
export function findingSubject(finding: Finding): FeedbackSubject {
  const version = Number(finding.unmapped.configVersion);
  return {
    kind: 'finding',
    key: `finding|${finding.finding_info.analytic.uid}|${finding.cloud.account.uid}|${finding.actor?.user.uid ?? '-'}`,
    match: null,
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

/** A match as one string, fields in a fixed order: what the policy groups verdicts by. */
export function matchKey(match: SuppressionMatch): string {
  return MATCH_FIELDS.map((f) => `${f}=${match[f] ?? ''}`).join('|');
}

function sameMatch(a: SuppressionMatch, b: SuppressionMatch): boolean {
  return matchKey(a) === matchKey(b);
}

/** A past config version, as the policy needs it: when it was applied and its suppressions. */
export interface VersionSuppressions {
  appliedAt: string;
  suppressions: readonly DetectorSuppression[];
}

export interface PolicyOutcome {
  /** The suppression to add, or null with `why` saying why not. */
  suppression: DetectorSuppression | null;
  why: string;
  /** The false positives counted (deduplicated), oldest first. */
  counted: FeedbackRecord[];
}

/**
 * Whether the false positives on `subject`'s key call for a suppression now. Counted: false
 * positives on the key given within `withinDays` before `nowMs`, after the policy last suppressed
 * the key (so verdicts that led to one do not lead to the next), one per Insight and author. None
 * when the policy is off, the key is a finding's, a suppression with this very match is in force,
 * or a true positive was given on the key in that time. The suppression lasts `suppressForDays`
 * from now (judged in event time, as every suppression) and its reason lists the verdicts' reasons.
 */
export function evaluatePolicy(
  subject: FeedbackSubject,
  feedback: readonly FeedbackRecord[],
  policy: FeedbackConfig,
  current: Pick<Tuning, 'suppressions'>,
  versions: readonly VersionSuppressions[],
  nowMs: number,
): PolicyOutcome {
  const none = (why: string, counted: FeedbackRecord[] = []): PolicyOutcome => ({ suppression: null, why, counted });
  const match = subject.match;
  if (match === null) return none('findings are not suppressed by detector.suppressions: the verdict is recorded only');
  if (policy.falsePositivesToSuppress === 0) return none('the feedback policy is off (feedback.falsePositivesToSuppress: 0)');
  const active = current.suppressions.find((s) => sameMatch(s.match, match) && Date.parse(s.expires) > nowMs);
  if (active) return none(`already suppressed until ${active.expires} (${active.author})`);

  const since = Math.max(nowMs - policy.withinDays * DAY_MS, lastPolicySuppressionMs(match, versions));
  const key = matchKey(match);
  const inWindow = feedback.filter((r) => {
    const at = Date.parse(r.at);
    return r.match !== null && matchKey(r.match) === key && at > since && at <= nowMs;
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
 * `current` with the policy's new suppression: an earlier policy suppression of the same match
 * (expired, or it would not be needed) makes way for it; everything else is kept as it is.
 */
export function withPolicySuppression(current: Tuning, suppression: DetectorSuppression): Tuning {
  const kept = current.suppressions.filter((s) => !(s.author === FEEDBACK_POLICY_AUTHOR && sameMatch(s.match, suppression.match)));
  return { ...current, suppressions: [...kept, suppression] };
}
