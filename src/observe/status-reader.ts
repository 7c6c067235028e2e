import { ErrorCodes, TrailwatchError } from '../errors.ts';
import { readToEnd } from '../transport/read-to-end.ts';
import type { Transport } from '../transport/types.ts';
import { decodeStatus, type MemberStatus } from './status.ts';

/**
 * Reads the status topic up to the end it has now and returns the latest record of each member
 * (a tombstone removes one), in a throwaway consumer group that commits nothing.
 */
export async function readMemberStatuses(transport: Transport, topic: string, timeoutMs: number): Promise<MemberStatus[]> {
  const latest = new Map<string, MemberStatus | null>();
  const { exists } = await readToEnd(transport, {
    topic,
    timeoutMs,
    groupPrefix: 'trailwatch-status',
    timeoutHint: 'try a larger --timeout-ms',
    onRecord: (r) => {
      const key = r.key?.toString();
      if (key !== undefined) latest.set(key, decodeStatus(r.value));
    },
  });
  if (!exists) {
    throw new TrailwatchError(
      ErrorCodes.USAGE,
      `no status topic "${topic}" on this cluster: no detector has run here yet (\`trailwatch run\` creates it), or it runs with another topics.status`,
      { fault: 'user' },
    );
  }
  return [...latest.values()].filter((s): s is MemberStatus => s !== null);
}
