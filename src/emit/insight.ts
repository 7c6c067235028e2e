import type { Attribution, AttributionAttribute, Insight, InsightScope, InsightState, InsightType } from '../contracts/types.ts';
import { deterministicUuid } from './ids.ts';

export const INSIGHT_EVENT_VERSION = '1.08';
const MINUTE_MS = 60_000;

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
  baselineMinutes: number;
  score: number;
  threshold: number;
  contributors: ContributorAverages[];
}

export function sharedEventIdFor(keyId: string, startTimeMs: number): string {
  return deterministicUuid('trailwatch.insight', keyId, String(startTimeMs));
}

/** Rounded so Start/End records compare equal across a live run and a replay. */
function round(n: number): number {
  return Math.round(n * 1e6) / 1e6;
}

export function buildInsight(f: AnomalyFacts): Insight {
  const sharedEventID = sharedEventIdFor(f.keyId, f.startTimeMs);
  const isEnd = f.state === 'End';
  const eventTimeMs = isEnd && f.endTimeMs !== null ? f.endTimeMs : f.startTimeMs;
  const attributions: Attribution[] = f.contributors.map((c) => ({
    attribute: c.attribute,
    insight: c.insight.map((v) => ({ value: v.value, average: round(v.average) })),
    baseline: c.baseline.map((v) => ({ value: v.value, average: round(v.average) })),
  }));
  return {
    eventVersion: INSIGHT_EVENT_VERSION,
    eventTime: new Date(eventTimeMs).toISOString().replace('.000Z', 'Z'),
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
      errorCode: f.insightType === 'ApiErrorRateInsight' ? f.errorCode : null,
      insightContext: {
        statistics: {
          baseline: { average: round(f.baselinePerMinute) },
          insight: { average: round(f.insightPerMinute) },
          insightDuration: isEnd && f.endTimeMs !== null ? Math.round((f.endTimeMs - f.startTimeMs) / MINUTE_MS) : null,
          baselineDuration: Math.round(f.baselineMinutes),
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
      endTimeMs: isEnd ? f.endTimeMs : null,
      bucketMs: f.bucketMs,
    },
  };
}
