import type {
  Attribution,
  AttributionAttribute,
  AttributionValue,
  Insight,
  InsightDetails,
  InsightScope,
  InsightState,
  InsightType,
} from '../contracts/types.ts';
import { ErrorCodes, TrailwatchError } from '../errors.ts';
import { deterministicUuid } from './ids.ts';

export const INSIGHT_EVENT_VERSION = '1.08';
const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;

/** Per-minute contributor averages, highest first, as the engine measured them. */
export interface ContributorAverages {
  attribute: AttributionAttribute;
  insight: Array<{ value: string; average: number }>;
  baseline: Array<{ value: string; average: number }>;
}

/** What an Insight is about: the signal, and where it was measured. */
export interface InsightSubject {
  scope: InsightScope;
  insightType: InsightType;
  accountId: string;
  region: string;
  service: string;
  action: string;
  principal: string | null;
  errorCode: string | null;
}

/** What the engine knows about an anomaly when it starts or ends. */
export interface AnomalyFacts extends InsightSubject {
  state: InsightState;
  keyId: string;
  startTimeMs: number;
  /** End of the last anomalous bucket (exclusive); only on End. */
  endTimeMs: number | null;
  bucketMs: number;
  baselinePerMinute: number;
  insightPerMinute: number;
  /** Length of the baseline window the engine averages over (detector.baselineWindowMs), minutes. */
  baselineWindowMinutes: number;
  /** History the key actually has behind its baseline when the anomaly started (≤ the window), minutes; goes to `trailwatch.historyMinutes`. */
  historyMinutes: number;
  score: number;
  threshold: number;
  /** On End, the baseline lists must be the ones snapshotted at Start: the record's baseline is the Start's. */
  contributors: ContributorAverages[];
}

/** insightDetails as CloudTrail writes it: no `errorCode` key at all on a call-rate Insight. */
export type InsightDetailsJson = Omit<InsightDetails, 'errorCode'> & { errorCode?: string | null };

/** An Insight in the JSON form SIEMs parse (`tail`, `run --print`, backtest output). */
export type InsightJson = Omit<Insight, 'insightDetails'> & { insightDetails: InsightDetailsJson };

export function sharedEventIdFor(keyId: string, startTimeMs: number): string {
  return deterministicUuid('trailwatch.insight', keyId, String(startTimeMs));
}

/**
 * CloudTrail's baselineDuration: the baseline starts `windowMinutes` before the Insight, rounded
 * down to 00:00 UTC, and ends where the Insight starts; whole minutes. With the default 7-day
 * window that is 10080 + the minutes since 00:00 UTC of the start (a start at 01:42 gives 10182).
 */
export function baselineDurationMinutes(startTimeMs: number, windowMinutes: number): number {
  const baselineStartMs = Math.floor((startTimeMs - windowMinutes * MINUTE_MS) / DAY_MS) * DAY_MS;
  return Math.floor((startTimeMs - baselineStartMs) / MINUTE_MS);
}

/** Rounded so Start/End records compare equal across a live run and a replay. */
function round(n: number): number {
  return Math.round(n * 1e6) / 1e6;
}

/** Highest average first, whatever order the caller kept; ties keep the caller's order. */
function ranked(values: Array<{ value: string; average: number }>): AttributionValue[] {
  return values.map((v) => ({ value: v.value, average: round(v.average) })).sort((a, b) => b.average - a.average);
}

export function buildInsight(f: AnomalyFacts): Insight {
  const isEnd = f.state === 'End';
  if (isEnd && f.endTimeMs === null) {
    // An End without its end would go out with a null insightDuration and the Start's eventTime.
    throw new TrailwatchError(ErrorCodes.INTERNAL, `an End Insight needs endTimeMs (key ${f.keyId})`, { fault: 'internal' });
  }
  const endTimeMs = isEnd ? f.endTimeMs : null;
  const sharedEventID = sharedEventIdFor(f.keyId, f.startTimeMs);
  const attributions: Attribution[] = f.contributors.map((c) => ({
    attribute: c.attribute,
    insight: ranked(c.insight),
    baseline: ranked(c.baseline),
  }));
  return {
    eventVersion: INSIGHT_EVENT_VERSION,
    eventTime: new Date(endTimeMs ?? f.startTimeMs).toISOString().replace('.000Z', 'Z'),
    awsRegion: f.region,
    eventID: deterministicUuid('trailwatch.insight-event', sharedEventID, f.state),
    eventType: 'AwsCloudTrailInsight',
    recipientAccountId: f.accountId,
    sharedEventID,
    insightDetails: {
      state: f.state,
      eventSource: f.service,
      eventName: f.action,
      insightType: f.insightType,
      // The Avro record always has the field (a decoded one says null); insightJson leaves it out of the JSON.
      errorCode: f.insightType === 'ApiErrorRateInsight' ? f.errorCode : null,
      insightContext: {
        statistics: {
          baseline: { average: round(f.baselinePerMinute) },
          insight: { average: round(f.insightPerMinute) },
          insightDuration: endTimeMs === null ? null : Math.round((endTimeMs - f.startTimeMs) / MINUTE_MS),
          baselineDuration: baselineDurationMinutes(f.startTimeMs, f.baselineWindowMinutes),
        },
        attributions,
      },
    },
    eventCategory: 'Insight',
    trailwatch: {
      scope: f.scope,
      principal: f.principal,
      score: round(f.score),
      threshold: f.threshold,
      startTimeMs: f.startTimeMs,
      endTimeMs,
      bucketMs: f.bucketMs,
      historyMinutes: Math.round(f.historyMinutes),
      // The engine knows no versions: the runtime stamps the one it ran (withConfigVersion).
      configVersion: null,
    },
  };
}

/** The Insight as produced under config version `version` (null: the file and environment config). */
export function withConfigVersion(insight: Insight, version: number | null): Insight {
  if (insight.trailwatch.configVersion === version) return insight;
  return { ...insight, trailwatch: { ...insight.trailwatch, configVersion: version } };
}

/**
 * The Insight as CloudTrail writes it in JSON: a call-rate Insight has no `errorCode` key (Avro
 * cannot leave a field out, so the record carries null there). Works on a built Insight and on
 * one decoded from Avro alike; everything else is kept as is, `trailwatch` included.
 */
export function insightJson(insight: Insight): InsightJson {
  const { errorCode: _errorCode, ...details } = insight.insightDetails;
  const insightDetails: InsightDetailsJson =
    insight.insightDetails.insightType === 'ApiErrorRateInsight' ? { ...insight.insightDetails } : details;
  return { ...insight, insightDetails };
}
