/** Reading a source the way publish and backtest do, one thread, for assertions. */
import type { AuditEvent } from '../../../src/contracts/types.ts';
import { outcomeOf, planInputs, readPlanned } from '../../../src/ingest/inputs.ts';
import { formatPosition, type Source } from '../../../src/ingest/source.ts';

export interface SourceRun {
  events: AuditEvent[];
  /** `position: reason` of each error, e.g. `file:3: missing auditID`. */
  errors: Array<{ position: string; code: string; message: string; text: string | undefined }>;
  skips: Array<{ position: string; reason: string }>;
}

export async function runSource(source: Source, paths: string[]): Promise<SourceRun> {
  const run: SourceRun = { events: [], errors: [], skips: [] };
  const plan = await planInputs(paths, source);
  for await (const { items } of readPlanned(plan.entries, source)) {
    for (const item of items) {
      const o = outcomeOf(source, item);
      if (o.kind === 'event') run.events.push(o.event);
      else if (o.kind === 'skip') run.skips.push({ position: formatPosition(item.at), reason: o.reason });
      else
        run.errors.push({
          position: formatPosition(item.at),
          code: o.error.code,
          message: o.error.message,
          text: item.kind === 'error' ? item.text : undefined,
        });
    }
  }
  return run;
}
