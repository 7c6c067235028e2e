import type { Admin } from './types.ts';

/**
 * Until every partition of a topic just created answers a ListOffsets on its leader (a new leader
 * may not host it yet): the last failure is thrown after `timeoutMs`.
 */
export async function partitionsReady(
  admin: Pick<Admin, 'topicOffsets'>,
  topic: string,
  partitions: number,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await admin.topicOffsets(topic)).length >= partitions) return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
