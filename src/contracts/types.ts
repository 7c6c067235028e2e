/**
 * The contracts trailwatch speaks (AuditEvent, Insight, Finding), as TypeScript types. They match the Avro schemas in
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
  /** The source record as JSON, for rules; absent or null when the producer left it out. */
  raw?: string | null;
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
  /**
   * The baseline period, minutes, as CloudTrail counts it: from the baseline window before the
   * start, rounded down to 00:00 UTC, to the start (≥ 10080 with the default 7-day window). The
   * key's real history is `trailwatch.historyMinutes`.
   */
  baselineDuration: number;
}

export interface InsightDetails {
  state: InsightState;
  eventSource: string;
  eventName: string;
  insightType: InsightType;
  /** Only on ApiErrorRateInsight: the error code whose rate is unusual; null otherwise (the JSON form, `insightJson`, leaves the key out). */
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
  /** History the key really had behind its baseline when the anomaly started, minutes; null on records written before it existed. */
  historyMinutes: number | null;
  /** The config topic's version the detector ran when it produced the Insight; null without one (file and environment config). */
  configVersion: number | null;
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

/** OCSF service: the service that was called (CloudTrail eventSource). */
export interface OcsfService {
  name: string;
}

/** OCSF api: one API call (CloudTrail eventName and eventSource). */
export interface OcsfApi {
  operation: string;
  service: OcsfService;
}

export interface OcsfAccount {
  /** AWS account id. */
  uid: string;
}

export interface OcsfUser {
  /** Normalized principal ARN, or a service principal. */
  uid: string;
  name: string | null;
  /** 0 Unknown, 1 User, 2 Admin, 3 System, 99 Other. */
  type_id: number | null;
  /** CloudTrail userIdentity.type verbatim: Root, IAMUser, AssumedRole, … */
  type: string | null;
  account: OcsfAccount | null;
}

export interface OcsfSession {
  /** Session name of an assumed role. */
  uid: string | null;
  /** Role ARN that issued the session. */
  issuer: string | null;
}

export interface OcsfActor {
  user: OcsfUser;
  session: OcsfSession | null;
}

/** OCSF network_endpoint: an IP address, or the service name CloudTrail gives instead of one. */
export interface OcsfNetworkEndpoint {
  ip: string | null;
  domain: string | null;
}

/** One audit event behind a finding (OCSF evidences). */
export interface OcsfEvidence {
  /** The audit event id (CloudTrail eventID). */
  uid: string | null;
  /** Event time, ms since the epoch; a trailwatch addition to OCSF evidences. */
  time: number | null;
  api: OcsfApi | null;
  actor: OcsfActor | null;
  src_endpoint: OcsfNetworkEndpoint | null;
  /** The AuditEvent as a JSON string. */
  data: string | null;
}

/** 1 Rule, 2 Behavioral, 3 Statistical, 4 Learning (ML/DL). */
export interface OcsfAnalytic {
  uid: string;
  name: string;
  type_id: number;
  type: string;
}

export interface OcsfFindingInfo {
  /** Deterministic: from the analytic, the principal and the window start. */
  uid: string;
  title: string;
  desc: string | null;
  /** rule, correlation, first-seen, breadth. */
  types: string[];
  analytic: OcsfAnalytic;
  first_seen_time: number | null;
  last_seen_time: number | null;
  created_time: number | null;
  src_url: string | null;
}

export interface OcsfAttack {
  technique: { uid: string; name: string | null };
  tactic: { uid: string | null; name: string | null } | null;
}

export interface OcsfMetadata {
  product: { name: string; vendor_name: string; version: string | null };
  /** OCSF schema version followed. */
  version: string;
  /** Id of this finding event: differs between a Create and each Update. */
  uid: string | null;
  log_name: string | null;
}

/** A rule, correlation, first-seen or breadth finding as an OCSF Detection Finding (schemas/Finding.avsc). */
export interface Finding {
  class_uid: 2004;
  class_name: 'Detection Finding';
  category_uid: 2;
  category_name: 'Findings';
  /** 1 Create, 2 Update (a fold of repeats of the same finding_info.uid). */
  activity_id: 1 | 2;
  activity_name: 'Create' | 'Update';
  /** class_uid * 100 + activity_id. */
  type_uid: 200401 | 200402;
  type_name: 'Detection Finding: Create' | 'Detection Finding: Update';
  /** ms since the epoch. */
  time: number;
  /** 0 Unknown, 1 Informational, 2 Low, 3 Medium, 4 High, 5 Critical, 6 Fatal, 99 Other. */
  severity_id: number;
  severity: string;
  /** 1 New. */
  status_id: number;
  status: string;
  message: string;
  finding_info: OcsfFindingInfo;
  cloud: { provider: string; account: OcsfAccount; region: string };
  actor: OcsfActor | null;
  api: OcsfApi | null;
  src_endpoint: OcsfNetworkEndpoint | null;
  evidences: OcsfEvidence[];
  attacks: OcsfAttack[];
  /** Times the finding fired in its window. */
  count: number;
  metadata: OcsfMetadata;
  /** trailwatch extras OCSF has no field for. */
  unmapped: Record<string, string>;
}
