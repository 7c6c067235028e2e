/**
 * CloudTrail in real time through a CloudWatch Logs subscription: a gzip JSON payload
 *
 *   {"messageType":"DATA_MESSAGE","owner":"111122223333","logGroup":"CloudTrail/logs",
 *    "logStream":"111122223333_CloudTrail_us-east-1","subscriptionFilters":["…"],
 *    "logEvents":[{"id":"…","timestamp":1432826855000,"message":"{…one CloudTrail record…}"}]}
 *
 * each `logEvents[i].message` one record. CONTROL_MESSAGE payloads (CloudWatch Logs checking that
 * the destination is reachable) carry no records and are skipped. A message may be the gzip bytes
 * (Kinesis, Firehose), base64 of them (a Lambda's `awslogs.data`), the `{"awslogs":{"data":…}}`
 * wrapper, or plain JSON. A file holds one payload or several run together (Firehose to S3),
 * gzipped or not. EKS control-plane audit logs arrive the same way (log group
 * `/aws/eks/<cluster>/cluster`): a message that is a Kubernetes audit event is normalized as one,
 * the cluster taken from the log group.
 */
import { BadRecordError, ErrorCodes } from '../../errors.ts';
import type { NormalizeOptions } from '../cloudtrail.ts';
import { decodeUtf8, fileError, loadFileBytes, splitJsonValues } from '../files.ts';
import { errorItem, type Normalized, type Position, type ReadItem, type ReadOptions, type Source } from '../source.ts';
import { normalizeRecord } from './cloudtrail.ts';
import { isK8sAuditEvent, type K8sAuditOptions, normalizeK8sAudit } from './k8s-audit.ts';
import { isObject, kindOf, messageText, str } from './shared.ts';

export const DATA_MESSAGE = 'DATA_MESSAGE';
export const CONTROL_MESSAGE = 'CONTROL_MESSAGE';

export const CWLOGS_EXTENSIONS: readonly string[] = ['.json', '.json.gz', '.gz', '.jsonl', '.jsonl.gz'];

/** One log event of a DATA_MESSAGE, with the payload it came in. */
export interface LogEventRecord {
  message: unknown;
  id: unknown;
  timestamp: unknown;
  logGroup: string | null;
  owner: string | null;
}

const EKS_LOG_GROUP = /^\/aws\/eks\/([^/]+)\/cluster$/;

export function cwLogsSource(options: NormalizeOptions & { k8s?: K8sAuditOptions } = {}): Source {
  return {
    format: 'cwlogs',
    description: 'CloudWatch Logs subscription payloads (gzip JSON, DATA_MESSAGE, logEvents[].message = one CloudTrail record)',
    extensions: CWLOGS_EXTENSIONS,
    matchesPath: () => false,
    sniff: (head) => /^\s*\{[\s\S]{0,1000}?"(?:messageType|awslogs)"\s*:/.test(head),
    planFile: () => ({ kind: 'read', timeMs: null }),
    read: (file, readOptions) => readPayloadFile(file, readOptions),
    decode: (bytes, origin) => decodePayload(bytes, { origin, line: null, index: null }),
    normalize: (record) => normalizeLogEvent(record, options),
  };
}

async function* readPayloadFile(file: string, options: ReadOptions): AsyncGenerator<ReadItem[]> {
  const at: Position = { origin: file, line: null, index: null };
  const loaded = await loadFileBytes(file, options.maxFileBytes);
  if ('error' in loaded) {
    yield [{ kind: 'error', at, error: loaded.error.error }];
    return;
  }
  const text = decodeUtf8(loaded.bytes);
  if (text === null) {
    yield [{ kind: 'error', at, error: fileError(file, null, 'not valid UTF-8 text').error }];
    return;
  }
  const { values, rest } = splitJsonValues(text);
  for (const v of values) yield payloadTextItems(v.text, { origin: file, line: v.line, index: null });
  // A value cut off is the truncation's doing when there is one; otherwise it is bad input.
  if (loaded.truncated) yield [{ kind: 'error', at, error: loaded.truncated.error }];
  else if (rest !== null) {
    yield [
      errorItem(
        { origin: file, line: rest.line, index: null },
        ErrorCodes.DESERIALIZE,
        'not a JSON object where a CloudWatch Logs payload should start, or a payload left unfinished',
      ),
    ];
  }
}

function decodePayload(bytes: Uint8Array, at: Position): ReadItem[] {
  const text = messageText(bytes, at.origin);
  if ('error' in text) return [text.error];
  return payloadTextItems(text.text, at);
}

function payloadTextItems(text: string, at: Position): ReadItem[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const item = errorItem(at, ErrorCodes.DESERIALIZE, `malformed CloudWatch Logs payload: ${(err as Error).message}`, err);
    return [item.kind === 'error' ? { ...item, text } : item];
  }
  return payloadItems(value, at, text);
}

/** The records of one payload: one per log event of a DATA_MESSAGE; a CONTROL_MESSAGE is one skip. */
export function payloadItems(payload: unknown, at: Position, text?: string): ReadItem[] {
  // A Lambda's event: {"awslogs":{"data":"<base64 of gzip>"}}.
  if (isObject(payload) && isObject(payload.awslogs) && typeof payload.awslogs.data === 'string') {
    return decodePayload(Buffer.from(payload.awslogs.data, 'latin1'), at);
  }
  const bad = (reason: string): ReadItem[] => {
    const item = errorItem(at, ErrorCodes.DESERIALIZE, reason);
    return [item.kind === 'error' && text !== undefined ? { ...item, text } : item];
  };
  if (!isObject(payload)) return bad(`a CloudWatch Logs payload is a JSON object (got ${kindOf(payload)})`);
  const type = payload.messageType;
  if (type === CONTROL_MESSAGE)
    return [{ kind: 'skip', at, reason: 'a CloudWatch Logs CONTROL_MESSAGE (a reachability check), no records' }];
  if (type !== DATA_MESSAGE) {
    return bad(
      type === undefined
        ? `not a CloudWatch Logs payload: no "messageType" (top-level keys: ${Object.keys(payload).slice(0, 6).join(', ') || 'none'})`
        : `messageType ${JSON.stringify(type)} is neither ${DATA_MESSAGE} nor ${CONTROL_MESSAGE}`,
    );
  }
  const events = payload.logEvents;
  if (!Array.isArray(events)) return bad(`a DATA_MESSAGE without a "logEvents" array (got ${kindOf(events)})`);
  const logGroup = str(payload.logGroup);
  const owner = str(payload.owner);
  const items: ReadItem[] = new Array(events.length);
  for (let index = 0; index < events.length; index++) {
    const e = events[index];
    const record: LogEventRecord = isObject(e)
      ? { message: e.message, id: e.id, timestamp: e.timestamp, logGroup, owner }
      : { message: undefined, id: undefined, timestamp: undefined, logGroup, owner };
    items[index] = { kind: 'record', at: { ...at, index }, record };
  }
  return items;
}

/** One log event → the AuditEvent of the record in its message. */
export function normalizeLogEvent(record: unknown, options: NormalizeOptions & { k8s?: K8sAuditOptions } = {}): Normalized {
  const r = record as Partial<LogEventRecord>;
  if (!isObject(record) || typeof r.message !== 'string') {
    return new BadRecordError(
      ErrorCodes.NORMALIZE,
      `a log event's message is a string holding one JSON record (got ${kindOf(r?.message)})`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(r.message);
  } catch (err) {
    return new BadRecordError(
      ErrorCodes.NORMALIZE,
      `the log event's message is not JSON (${(err as Error).message}): is the log group a CloudTrail trail's?`,
      {
        cause: err,
      },
    );
  }
  if (isK8sAuditEvent(parsed)) {
    const cluster = EKS_LOG_GROUP.exec(r.logGroup ?? '')?.[1];
    const k8s = { ...options.k8s, ...(cluster ? { cluster } : {}), raw: options.raw };
    const out = normalizeK8sAudit(parsed, k8s);
    if (options.raw && !(out instanceof BadRecordError) && 'eventId' in out) out.raw = r.message;
    return out;
  }
  // The message is the record's JSON already: kept as it is rather than serialized again.
  const out = normalizeRecord(parsed, { ...options, raw: false });
  if (options.raw && !(out instanceof BadRecordError) && 'eventId' in out) out.raw = r.message;
  return out;
}
