/**
 * The two contracts trailwatch speaks, as TypeScript types. They match the Avro schemas in
 * `schemas/` field for field (Avro `["null", T]` unions decode to `T | null`), so a record decoded
 * from the registry is used as is, with no mapping layer.
 */

/** A normalized audit event: what every producer publishes to the events topic (schemas/AuditEvent.avsc). */
export interface AuditEvent {
  /** Unique id of the call at its source (CloudTrail eventID); duplicates are counted once. */
  eventId: string;
  /** When the call happened, ms since the epoch (Avro timestamp-millis). */
  eventTimeMs: number;
  /** Which audit source produced it: `aws.cloudtrail`, `k8s.audit`, … */
  source: string;
  accountId: string;
  region: string;
  /** Normalized principal: an assumed-role ARN without its session name, as CloudTrail Insights attributes it. */
  principal: string;
  /** Root, IAMUser, AssumedRole, AWSService, … */
  principalType: string;
  /** The service that was called (CloudTrail eventSource, e.g. `ec2.amazonaws.com`). */
  service: string;
  /** The API that was called (CloudTrail eventName, e.g. `RunInstances`). */
  action: string;
  /** true for reads, false for writes, null when the source does not say. */
  readOnly: boolean | null;
  errorCode: string | null;
  sourceIp: string | null;
  userAgent: string | null;
  /** Source-specific attributes kept for context (eventType, sessionName, invokedBy, …). */
  attributes: Record<string, string>;
}

export type InsightState = 'Start' | 'End';
export type InsightType = 'ApiCallRateInsight' | 'ApiErrorRateInsight';
export type AttributionAttribute = 'userIdentityArn' | 'userAgent' | 'errorCode';
export type InsightScope = 'action' | 'principalAction';

export interface AttributionValue {
  value: string;
  /** Calls (or errors) per minute attributed to this value. */
  average: number;
}

export interface Attribution {
  attribute: AttributionAttribute;
  insight: AttributionValue[];
  baseline: AttributionValue[];
}

export interface InsightStatistics {
  baseline: { average: number };
  insight: { average: number };
  /** Whole minutes from the start of the anomaly to its end; null on a Start. */
  insightDuration: number | null;
  /** Minutes of history the baseline was computed from. */
  baselineDuration: number;
}

export interface InsightDetails {
  state: InsightState;
  eventSource: string;
  eventName: string;
  insightType: InsightType;
  /** Only on ApiErrorRateInsight: the error code whose rate is unusual. */
  errorCode: string | null;
  insightContext: {
    statistics: InsightStatistics;
    attributions: Attribution[];
  };
}

/** trailwatch's own fields, beyond what CloudTrail Insights carries. */
export interface TrailwatchInsightFields {
  scope: InsightScope;
  /** The principal, on a per principal × action Insight; null on a per-action one. */
  principal: string | null;
  /** Anomaly score in [0, 1] when the Insight fired (Start) or its peak (End). */
  score: number;
  /** Score threshold that fired. */
  threshold: number;
  /** Start of the first anomalous bucket, ms since the epoch. */
  startTimeMs: number;
  /** End of the last anomalous bucket (exclusive), ms; null on a Start. */
  endTimeMs: number | null;
  /** Bucket width the rates are measured in, ms. */
  bucketMs: number;
}

/** An Insight event as CloudTrail Insights writes it, plus `trailwatch` (schemas/Insight.avsc). */
export interface Insight {
  eventVersion: string;
  /** ISO-8601 UTC. Start: when the unusual activity began; End: when it stopped. */
  eventTime: string;
  awsRegion: string;
  eventID: string;
  eventType: 'AwsCloudTrailInsight';
  recipientAccountId: string;
  /** Shared by the Start and the End of one anomaly. */
  sharedEventID: string;
  insightDetails: InsightDetails;
  eventCategory: 'Insight';
  trailwatch: TrailwatchInsightFields;
}
