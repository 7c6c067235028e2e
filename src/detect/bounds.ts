import { createHash } from 'node:crypto';
import type { AuditEvent } from '../contracts/types.ts';

/**
 * Identity and attribution fields longer than this many characters are cut before they name a
 * key or a contributor. An AWS ARN is at most 2,048 characters; a longer principal or user agent
 * is a producer bug or an attack on the detector's memory, and uncut it would make every state
 * record, partial and Insight that names it unbounded (a 300 KB principal once made a changelog
 * record no broker accepts).
 */
export const MAX_FIELD_CHARS = 2_048;

const BOUNDED = ['eventId', 'accountId', 'region', 'principal', 'service', 'action', 'errorCode', 'userAgent'] as const;
const HASH_CHARS = 16;

/**
 * The value cut to `max` characters: a prefix, then `…#` and a hash of the whole, so two long
 * values that share a prefix still name two keys.
 */
export function boundValue(value: string, max = MAX_FIELD_CHARS): string {
  if (value.length <= max) return value;
  const hash = createHash('sha256').update(value).digest('hex').slice(0, HASH_CHARS);
  return `${value.slice(0, max - HASH_CHARS - 2)}…#${hash}`;
}

/** The event itself when every field is short (the common case: no copy), else a copy with its long fields cut. */
export function boundEvent(e: AuditEvent, max = MAX_FIELD_CHARS): AuditEvent {
  let copy: AuditEvent | undefined;
  for (const field of BOUNDED) {
    const v = e[field];
    if (v === null || v.length <= max) continue;
    copy ??= { ...e };
    copy[field] = boundValue(v, max);
  }
  return copy ?? e;
}
