/**
 * CloudTrail in real time through EventBridge: an event whose `detail` is the CloudTrail record.
 *
 *   {"version":"0","id":"…","detail-type":"AWS API Call via CloudTrail","source":"aws.ec2",
 *    "account":"111122223333","time":"…","region":"us-east-1","resources":[],"detail":{…record…}}
 *
 * As a file: one event a line (what an S3 sink connector writes) or events run together (what
 * Firehose writes); as a message: one event. The record is normalized as a delivery's would be, so
 * the same call read from S3 and from EventBridge has the same eventId and the detector counts it
 * once. CloudTrail sends its other record kinds under other detail-types ("AWS Console Sign In via
 * CloudTrail", "AWS Service Event via CloudTrail", "AWS Console Action via CloudTrail"): they are the
 * same records a trail delivers to S3 (console sign-ins feed the CIS rules), so they are taken too.
 * "AWS Insight via CloudTrail" is skipped like an Insights delivery; any other detail-type is not a
 * CloudTrail record and is refused, naming it.
 */
import { BadRecordError, ErrorCodes } from '../../errors.ts';
import type { NormalizeOptions } from '../cloudtrail.ts';
import { errorItem, type Normalized, type Position, type ReadItem, Skip, type Source } from '../source.ts';
import { normalizeRecord } from './cloudtrail.ts';
import { isObject, jsonTextItems, kindOf, messageText, readJsonValueFile, str } from './shared.ts';

export const API_CALL_DETAIL_TYPE = 'AWS API Call via CloudTrail';

/** detail-types whose detail is a CloudTrail record, as a trail would deliver it to S3. */
const CLOUDTRAIL_DETAIL_TYPES: ReadonlySet<string> = new Set([
  API_CALL_DETAIL_TYPE,
  'AWS Console Sign In via CloudTrail',
  'AWS Console Action via CloudTrail',
  'AWS Service Event via CloudTrail',
]);
const INSIGHT_DETAIL_TYPE = 'AWS Insight via CloudTrail';

export const EVENTBRIDGE_EXTENSIONS: readonly string[] = ['.jsonl', '.ndjson', '.json', '.jsonl.gz', '.ndjson.gz', '.json.gz', '.gz'];

export function eventBridgeSource(options: NormalizeOptions = {}): Source {
  return {
    format: 'eventbridge',
    description: `EventBridge events, detail-type "${API_CALL_DETAIL_TYPE}" (detail = the CloudTrail record), one a line or run together`,
    extensions: EVENTBRIDGE_EXTENSIONS,
    matchesPath: () => false, // the name says nothing: .json is a delivery's too
    sniff: (head) => /^\s*[[{][\s\S]{0,1000}?"detail-type"\s*:/.test(head),
    planFile: () => ({ kind: 'read', timeMs: null }),
    read: (file, readOptions) => readJsonValueFile(file, readOptions, envelopeItems),
    decode: (bytes, origin) => {
      const text = messageText(bytes, origin);
      if ('error' in text) return [text.error];
      return jsonTextItems(text.text, { origin, line: null, index: null }, envelopeItems);
    },
    normalize: (record) => normalizeEnvelope(record, options),
  };
}

/** An event is one record; an array of events (a PutEvents batch, a test file) is one record each. */
function envelopeItems(value: unknown, at: Position, text: string): ReadItem[] {
  if (Array.isArray(value)) return value.map((v, index) => ({ kind: 'record', at: { ...at, index }, record: v }));
  if (!isObject(value)) {
    const item = errorItem(at, ErrorCodes.NORMALIZE, `not an EventBridge event: ${kindOf(value)}, not a JSON object`);
    return [item.kind === 'error' ? { ...item, text } : item];
  }
  return [{ kind: 'record', at, record: value }];
}

/** One EventBridge event → the AuditEvent of its CloudTrail record. */
export function normalizeEnvelope(envelope: unknown, options: NormalizeOptions = {}): Normalized {
  if (!isObject(envelope)) return refused(`an EventBridge event is a JSON object (got ${kindOf(envelope)})`);
  const detailType = envelope['detail-type'];
  if (typeof detailType !== 'string') {
    const keys = Object.keys(envelope).slice(0, 6).join(', ');
    return refused(
      `not an EventBridge event: no "detail-type" (top-level keys: ${keys || 'none'}); a CloudTrail record alone is --format cloudtrail`,
    );
  }
  if (detailType === INSIGHT_DETAIL_TYPE)
    return new Skip('a CloudTrail Insight event (detail-type "AWS Insight via CloudTrail"), not an API call');
  if (!CLOUDTRAIL_DETAIL_TYPES.has(detailType)) {
    return refused(
      `detail-type ${JSON.stringify(detailType)} (source ${JSON.stringify(envelope.source ?? null)}) is not a CloudTrail record: ` +
        `only "${API_CALL_DETAIL_TYPE}" and CloudTrail's other "… via CloudTrail" events are audit events; ` +
        'narrow the EventBridge rule to detail-type "AWS API Call via CloudTrail"',
    );
  }
  const detail = envelope.detail;
  if (!isObject(detail)) return refused(`"detail" is not an object (got ${kindOf(detail)})`);
  // EventBridge's own account and region stand in for fields a record may leave out.
  const account = str(envelope.account);
  const region = str(envelope.region);
  const needsFill = (detail.recipientAccountId == null && account !== null) || (detail.awsRegion == null && region !== null);
  const record = needsFill
    ? { ...detail, recipientAccountId: detail.recipientAccountId ?? account, awsRegion: detail.awsRegion ?? region }
    : detail;
  return normalizeRecord(record, options);
}

function refused(reason: string): BadRecordError {
  return new BadRecordError(ErrorCodes.NORMALIZE, reason);
}
