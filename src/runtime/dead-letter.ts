import type { IHeaders, KafkaMessage, Message, Producer } from 'kafkajs';
import type { TrailwatchError } from '../errors.ts';

/** Headers every dead letter carries, so `trailwatch dlq` and any consumer can tell why. */
export const DLQ_HEADERS = {
  code: 'tw.error.code',
  reason: 'tw.error.reason',
  topic: 'tw.source.topic',
  partition: 'tw.source.partition',
  offset: 'tw.source.offset',
  failedAt: 'tw.failed.at',
} as const;

export interface DeadLetter {
  topic: string;
  partition: number;
  message: Pick<KafkaMessage, 'key' | 'value' | 'headers' | 'offset' | 'timestamp'>;
  error: TrailwatchError;
}

const MAX_REASON_CHARS = 1_000;

/** Sends the original bytes untouched, its original headers kept, plus the reason headers. */
export async function sendDeadLetters(
  producer: Pick<Producer, 'send'>,
  deadLetterTopic: string,
  letters: DeadLetter[],
  nowMs = Date.now(),
): Promise<void> {
  if (letters.length === 0) return;
  await producer.send({ topic: deadLetterTopic, messages: deadLetterMessages(deadLetterTopic, letters, nowMs) });
}

/** The dead-letter records for `letters`, each naming its topic (for a transaction's batch). */
export function deadLetterMessages(deadLetterTopic: string, letters: DeadLetter[], nowMs = Date.now()): Array<Message & { topic: string }> {
  return letters.map((l) => {
    const headers: IHeaders = { ...(l.message.headers ?? {}) };
    headers[DLQ_HEADERS.code] = l.error.code;
    headers[DLQ_HEADERS.reason] = l.error.message.slice(0, MAX_REASON_CHARS);
    headers[DLQ_HEADERS.topic] = l.topic;
    headers[DLQ_HEADERS.partition] = String(l.partition);
    headers[DLQ_HEADERS.offset] = l.message.offset;
    headers[DLQ_HEADERS.failedAt] = new Date(nowMs).toISOString();
    return { topic: deadLetterTopic, key: l.message.key, value: l.message.value, headers, timestamp: l.message.timestamp };
  });
}

export function headerString(headers: IHeaders | undefined, name: string): string | undefined {
  const v = headers?.[name];
  if (v === undefined) return undefined;
  const first = Array.isArray(v) ? v[0] : v;
  return first === undefined ? undefined : first.toString();
}
