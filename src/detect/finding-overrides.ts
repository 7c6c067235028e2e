import { FINDING_KINDS, type FindingOverride, type FindingSuppression, type FindingsConfig } from '../config/schema.ts';
import type { Finding } from '../contracts/types.ts';
import { type FindingKind, type FindingSeverity, SEVERITY_IDS, SEVERITY_LABELS } from '../emit/finding.ts';
import { type CompiledMatch, compileMatch, matchesSubject, mostSpecific } from './overrides.ts';

/**
 * `findings.overrides` and `findings.suppressions`, judged on each finding as the FindingStage
 * makes it: the most specific override (globs as detector overrides match keys) drops it or sets
 * its severity; a matching suppression holds it back while the finding's event time is before its
 * expiry. Findings are few (alerts, not events), so each is matched as it comes.
 */

export const FINDING_MATCH_FIELDS = ['rule', 'kind', 'accountId', 'region', 'service', 'action', 'principal'] as const;
type Field = (typeof FINDING_MATCH_FIELDS)[number];

/** What can change while the detector runs: part of a config version's document. */
export type FindingTuning = Pick<FindingsConfig, 'overrides' | 'suppressions'>;
export const FINDING_TUNING_FIELDS = ['overrides', 'suppressions'] as const satisfies ReadonlyArray<keyof FindingTuning>;

// The config names the kinds without importing emit (config sits below it): the two lists must agree.
FINDING_KINDS satisfies readonly FindingKind[];

export function findingTuningOf(config: FindingsConfig): FindingTuning {
  return { overrides: config.overrides, suppressions: config.suppressions };
}

/** What a match reads of a finding. */
export interface FindingSubject {
  /** The analytic's id and name: a rule is named either way. */
  rule: readonly string[];
  kind: string;
  accountId: string;
  region: string;
  service: string;
  action: string;
  principal: string;
}

export function findingSubjectOf(f: Finding): FindingSubject {
  const a = f.finding_info.analytic;
  return {
    rule: a.name ? [a.uid, a.name] : [a.uid],
    kind: f.finding_info.types[0] ?? '',
    accountId: f.cloud.account.uid,
    region: f.cloud.region,
    service: f.api?.service.name ?? '',
    action: f.api?.operation ?? '',
    principal: f.actor?.user.uid ?? '',
  };
}

/** Why a finding was not emitted. */
export type FindingHeld = 'disabled' | 'suppressed';

export type FindingJudgement = { finding: Finding; held: null } | { finding: null; held: FindingHeld };

export class FindingOverrides {
  readonly tuning: FindingTuning;
  private readonly overrides: CompiledMatch<Field>[];
  private readonly suppressions: CompiledMatch<Field>[];
  private readonly expiresMs: number[];

  constructor(tuning: FindingTuning) {
    this.tuning = tuning;
    this.overrides = tuning.overrides.map((o) => compileMatch(o.match, FINDING_MATCH_FIELDS));
    this.suppressions = tuning.suppressions.map((s) => compileMatch(s.match, FINDING_MATCH_FIELDS));
    this.expiresMs = tuning.suppressions.map((s) => Date.parse(s.expires));
  }

  get empty(): boolean {
    return this.overrides.length === 0 && this.suppressions.length === 0;
  }

  /** Index of the most specific override matching the finding, or −1. */
  matchIndex(subject: FindingSubject): number {
    return mostSpecific(this.overrides, subject);
  }

  match(subject: FindingSubject): FindingOverride | null {
    return this.tuning.overrides[this.matchIndex(subject)] ?? null;
  }

  /** Indexes of every suppression matching the finding (expired or not). */
  suppressionsOf(subject: FindingSubject): number[] {
    const out: number[] = [];
    this.suppressions.forEach((c, i) => {
      if (matchesSubject(c, subject)) out.push(i);
    });
    return out;
  }

  /** Whether suppression `index` holds back a finding of event time `timeMs`. */
  holds(index: number, timeMs: number): boolean {
    return timeMs < (this.expiresMs[index] ?? Number.NEGATIVE_INFINITY);
  }

  /** The finding as the tuning leaves it: dropped, suppressed, or emitted (its severity maybe replaced). */
  judge(f: Finding): FindingJudgement {
    if (this.empty) return { finding: f, held: null };
    const subject = findingSubjectOf(f);
    const o = this.match(subject);
    if (o?.enabled === false) return { finding: null, held: 'disabled' };
    if (this.suppressionsOf(subject).some((i) => this.holds(i, f.time))) return { finding: null, held: 'suppressed' };
    return { finding: o?.severity === undefined ? f : withSeverity(f, o.severity), held: null };
  }
}

/** The finding with another severity: OCSF's severity_id and its label together. */
export function withSeverity(f: Finding, severity: FindingSeverity): Finding {
  return { ...f, severity_id: SEVERITY_IDS[severity], severity: SEVERITY_LABELS[severity] };
}

export type { FindingSuppression };
