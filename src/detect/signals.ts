import type { DetectorConfig } from '../config/schema.ts';
import type { AttributionAttribute, AuditEvent, InsightScope, InsightType } from '../contracts/types.ts';
import { ErrorCodes, TrailwatchError } from '../errors.ts';
import type { ValueModel } from './baseline/score.ts';
import type { SensitivityCatalog } from './rules/catalog.ts';

/**
 * The signal types the rate detector watches: what an event counts towards, how the keys of a type
 * are named, and how their values are modelled. A new insight type is one entry in SIGNALS (and its
 * name in the contracts' InsightType, and a switch in detector.insightTypes); the engine, the key
 * ids, the changelog and the attributions all read this table.
 *
 * Each type is counted per scope (per action; per principal and action) for every event tuple
 * (account, region, principal, service, action) and, for a qualified type, per qualifier: the
 * error rate has one key per error code. The qualifier is kept as the key's `errorCode`, the one
 * qualifier an InsightSubject carries.
 */

/** Which reads the call rate counts: detector.includeReadOnly and the sensitivity catalog. */
export interface ReadFilter {
  includeReadOnly: boolean;
  /** Read-only calls counted anyway (secret reads): null when detector.sensitiveReads is off or reads all count. */
  sensitiveReads: SensitivityCatalog | null;
}

export interface SignalType {
  readonly insightType: InsightType;
  /** Names the type in key ids: `scope|tag|account|where|service|action`, then `|qualifier` when qualified. */
  readonly tag: string;
  /**
   * Counts only the calls the read filter lets through (writes; reads per detector.includeReadOnly
   * and the sensitivity catalog), not every call.
   */
  readonly readFiltered: boolean;
  /**
   * The event field that qualifies its keys: one key per value of it for an event tuple (the error
   * rate: per error code), and an event without a value does not count. null: one key per tuple.
   */
  readonly qualifier: 'errorCode' | null;
  /** Whether detector.insightTypes turns it on. */
  readonly enabled: (insightTypes: DetectorConfig['insightTypes']) => boolean;
  /** How a bucket's value is modelled (an engine's valueModel option overrides it, for metric series). */
  readonly valueModel: ValueModel;
  /** Attributions its Insights report, in this order (the error rate's error code is the key itself, so not one of them). */
  readonly attributes: readonly AttributionAttribute[];
}

export const SIGNALS: readonly SignalType[] = [
  {
    insightType: 'ApiCallRateInsight',
    tag: 'call',
    readFiltered: true,
    qualifier: null,
    enabled: (t) => t.apiCallRate,
    valueModel: 'counts',
    attributes: ['userIdentityArn', 'userAgent', 'errorCode'],
  },
  {
    insightType: 'ApiErrorRateInsight',
    tag: 'error',
    readFiltered: false,
    qualifier: 'errorCode',
    enabled: (t) => t.apiErrorRate,
    valueModel: 'counts',
    attributes: ['userIdentityArn', 'userAgent'],
  },
];

const BY_TYPE = new Map<InsightType, SignalType>(SIGNALS.map((s) => [s.insightType, s]));

/** The table entry of an insight type. */
export function signalOf(insightType: InsightType): SignalType {
  const s = BY_TYPE.get(insightType);
  if (s === undefined) throw new TrailwatchError(ErrorCodes.INTERNAL, `no signal type ${insightType}`, { fault: 'internal' });
  return s;
}

/** The signal types detector.insightTypes turns on, in table order (the order an event's keys are counted in). */
export function enabledSignals(insightTypes: DetectorConfig['insightTypes']): SignalType[] {
  return SIGNALS.filter((s) => s.enabled(insightTypes));
}

/** Whether the read filter lets the call through: CloudTrail counts writes; reads too with includeReadOnly, and the catalog's sensitive reads always. */
export function passesReads(e: AuditEvent, reads: ReadFilter): boolean {
  return reads.includeReadOnly || e.readOnly === false || reads.sensitiveReads?.isSensitiveRead(e.service, e.action) === true;
}

/**
 * What an event counts under for a signal type: its qualifier (a qualified type), null (an
 * unqualified one), or undefined when the event does not count. On the hot path: a plain function
 * of the table's fields (no per-type closure to call), no allocation.
 */
export function qualifierOf(signal: SignalType, e: AuditEvent, reads: ReadFilter): string | null | undefined {
  if (signal.readFiltered && !passesReads(e, reads)) return undefined;
  if (signal.qualifier === null) return null;
  // A named load per field (a keyed load by a field name read from the table is slower).
  const q = signal.qualifier === 'errorCode' ? e.errorCode : null;
  return q ? q : undefined;
}

/**
 * A key's id: what it measures and where. `region` names an action key's place; a principal's key
 * is the principal's wherever it calls from. The one definition of the format: the engine builds
 * ids with it and the changelog decoding rebuilds them with it. `errorCode` is the key's qualifier.
 */
export function keyId(
  scope: InsightScope,
  insightType: InsightType,
  accountId: string,
  region: string,
  principal: string | null,
  service: string,
  action: string,
  errorCode: string | null,
): string {
  return signalKeyId(scope, signalOf(insightType), accountId, region, principal, service, action, errorCode);
}

/** keyId for a signal already looked up (the key-id cache builds ids with it). */
export function signalKeyId(
  scope: InsightScope,
  signal: SignalType,
  accountId: string,
  region: string,
  principal: string | null,
  service: string,
  action: string,
  errorCode: string | null,
): string {
  const where = scope === 'action' ? region : principal;
  return signal.qualifier !== null
    ? `${scope}|${signal.tag}|${accountId}|${where}|${service}|${action}|${errorCode}`
    : `${scope}|${signal.tag}|${accountId}|${where}|${service}|${action}`;
}
