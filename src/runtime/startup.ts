import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';

/** How long start-up waits for a broker or registry that is restarting, busy or slow to answer. */
export const STARTUP_WAIT_MS = 120_000;

/** Whether a Kafka client error is worth another try (broker restarting, leader moving, coordinator loading). */
function retriable(err: unknown): boolean {
  const e = err as { retriable?: boolean; name?: string; canRetry?: boolean };
  return e?.retriable === true || e?.canRetry === true || /Connection|NotLeader|Coordinator|Leader|Timeout/i.test(e?.name ?? '');
}

export interface StartupWait {
  /** Give up after this long; default STARTUP_WAIT_MS. */
  waitMs?: number;
  log?: Pick<Logger, 'warn'>;
  now?: () => number;
}

/**
 * Runs a start-up step until it succeeds, while what fails it can mend itself (a registry that
 * times out while it warms up, a broker restarting), backing off 0.5 s → 5 s. A failure no retry
 * can change (a refusal, a bad config) and the last one past the wait are thrown as they are.
 */
export async function untilStarted<T>(step: () => Promise<T>, options: StartupWait = {}): Promise<T> {
  const now = options.now ?? Date.now;
  const deadline = now() + (options.waitMs ?? STARTUP_WAIT_MS);
  for (let attempt = 1; ; attempt++) {
    try {
      return await step();
    } catch (err) {
      if (!retriable(err) || now() > deadline) throw err;
      options.log?.warn({ err: errorMessage(err), attempt }, 'Kafka or the registry is not ready: retrying');
      await new Promise((r) => setTimeout(r, Math.min(5_000, 250 * 2 ** attempt)));
    }
  }
}
