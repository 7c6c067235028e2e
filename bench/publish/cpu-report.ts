/**
 * Preloaded into the publish child by bench/publish.ts (`node --import`): writes the process's
 * CPU time in seconds (user + system, every thread) to fd 3 as it exits.
 */
import { writeSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';

// Worker threads inherit the preload; only the main thread's exit is the process's.
process.on('exit', () => {
  if (!isMainThread) return;
  const { user, system } = process.cpuUsage();
  try {
    writeSync(3, `${(user + system) / 1e6}\n`);
  } catch {
    // fd 3 is not open: run outside the benchmark
  }
});
