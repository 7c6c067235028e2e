import { isStale, type MemberStatus, STALE_AFTER_INTERVALS, statusTable } from '../../observe/status.ts';
import { readMemberStatuses } from '../../observe/status-reader.ts';
import { createTransport } from '../../transport/index.ts';
import { COMMON_HELP, intOption, parse, usageError } from '../args.ts';
import { openSession } from '../connect.ts';

export const STATUS_USAGE = `Usage: trailwatch status [options]

Shows each detector member as a table: its partitions (e: events topic, a: repartition topic),
consumer lag in records, keys in memory, open Insights, the detection config it runs (version, or
a hash of the detector, rules and findings settings until configs are versioned), whether it is
ready, and when it last reported. Every running member (\`trailwatch run\`) publishes its status
each observe.refreshMs (5 s) to topics.status ("trailwatch.status") and removes it when it stops;
a member silent for ${STALE_AFTER_INTERVALS} intervals (killed, or stuck) is shown as stale.

Options:
      --group ID        only this consumer group (default: detector.groupId, "trailwatch-detector")
      --all             every group that reports to the status topic
      --json            the members' status records as JSON ({"members": [...]}), each with "stale"
      --timeout-ms N    give up reading the status topic after N ms (default 15000)
${COMMON_HELP}

Exit status: 0 when at least one member is live (reported recently), 1 when none is.`;

export async function statusCommand(argv: string[]): Promise<number> {
  const { values } = parse(
    argv,
    { group: { type: 'string' }, all: { type: 'boolean' }, json: { type: 'boolean' }, 'timeout-ms': { type: 'string' } },
    STATUS_USAGE,
  );
  if (values.help) {
    process.stdout.write(`${STATUS_USAGE}\n`);
    return 0;
  }
  if (values.all && values.group !== undefined) throw usageError('--group and --all exclude each other', STATUS_USAGE);
  const timeoutMs = intOption(values['timeout-ms'], 'timeout-ms', STATUS_USAGE) ?? 15_000;
  const session = await openSession(values, { autoStart: false });
  const { config } = session;
  const group = values.all ? null : (values.group ?? config.detector.groupId);
  const transport = createTransport(config.kafka, session.logger);
  const all = await readMemberStatuses(transport, config.topics.status, timeoutMs);
  const nowMs = Date.now();
  const members = all
    .filter((m) => group === null || m.groupId === group)
    .sort((a, b) => a.groupId.localeCompare(b.groupId) || a.memberId.localeCompare(b.memberId));
  const live = members.filter((m) => !isStale(m, nowMs));
  if (values.json) {
    process.stdout.write(
      `${JSON.stringify({ members: members.map((m): MemberStatus & { stale: boolean } => ({ ...m, stale: isStale(m, nowMs) })) }, null, 2)}\n`,
    );
  } else if (members.length > 0) {
    process.stdout.write(`${statusTable(members, nowMs)}\n`);
  }
  if (live.length === 0) {
    const whose = group === null ? 'no detector member' : `no member of group "${group}"`;
    process.stderr.write(
      `trailwatch: ${whose} reported to ${config.topics.status} in the last ${STALE_AFTER_INTERVALS} intervals: ` +
        `start one with \`trailwatch run\`${group === null ? '' : ', or name its group with --group (--all lists every group)'}\n`,
    );
    return 1;
  }
  return 0;
}
