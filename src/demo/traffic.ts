import type { AuditEvent } from '../contracts/types.ts';

/**
 * Seeded synthetic audit traffic: a few principals calling a few APIs at steady Poisson rates,
 * with an optional injected spike. The demo and the end-to-end tests use it; the same seed
 * always gives the same events (ids included).
 */

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Knuth's method: fine for the small means used here. */
export function poisson(rand: () => number, mean: number): number {
  const limit = Math.exp(-mean);
  let k = 0;
  let p = 1;
  do {
    k++;
    p *= rand();
  } while (p > limit);
  return k - 1;
}

export interface Actor {
  principal: string;
  principalType: string;
  userAgent: string;
  service: string;
  action: string;
  readOnly: boolean;
  /** Mean calls per minute. */
  ratePerMinute: number;
  errorCode?: string;
}

export interface Spike {
  actor: Actor;
  startMinute: number;
  minutes: number;
}

export interface TrafficOptions {
  seed: number;
  startMs: number;
  minutes: number;
  accountId?: string;
  region?: string;
  actors?: Actor[];
  spikes?: Spike[];
}

const ACCOUNT = '123456789012';

export const DEMO_ACTORS: Actor[] = [
  {
    principal: `arn:aws:sts::${ACCOUNT}:assumed-role/deploy-pipeline`,
    principalType: 'AssumedRole',
    userAgent: 'aws-sdk-go-v2/1.30.0',
    service: 'ec2.amazonaws.com',
    action: 'RunInstances',
    readOnly: false,
    ratePerMinute: 2,
  },
  {
    principal: `arn:aws:iam::${ACCOUNT}:user/alice`,
    principalType: 'IAMUser',
    userAgent: 'aws-cli/2.17.0',
    service: 's3.amazonaws.com',
    action: 'PutObject',
    readOnly: false,
    ratePerMinute: 3,
  },
  {
    principal: `arn:aws:iam::${ACCOUNT}:user/bob`,
    principalType: 'IAMUser',
    userAgent: 'console.amazonaws.com',
    service: 'iam.amazonaws.com',
    action: 'ListRoles',
    readOnly: true,
    ratePerMinute: 1,
  },
  {
    principal: 'lambda.amazonaws.com',
    principalType: 'AWSService',
    userAgent: 'lambda.amazonaws.com',
    service: 'sts.amazonaws.com',
    action: 'AssumeRole',
    readOnly: false,
    ratePerMinute: 4,
  },
];

/** A compromised CI role launching instances far above its habit. */
export const DEMO_SPIKE_ACTOR: Actor = {
  principal: `arn:aws:sts::${ACCOUNT}:assumed-role/deploy-pipeline`,
  principalType: 'AssumedRole',
  userAgent: 'python-requests/2.31',
  service: 'ec2.amazonaws.com',
  action: 'RunInstances',
  readOnly: false,
  ratePerMinute: 40,
};

/** Events for `minutes` minutes from `startMs`, sorted by event time. */
export function generateTraffic(o: TrafficOptions): AuditEvent[] {
  const rand = mulberry32(o.seed);
  const actors = o.actors ?? DEMO_ACTORS;
  const account = o.accountId ?? ACCOUNT;
  const region = o.region ?? 'us-east-1';
  const out: AuditEvent[] = [];
  let seq = 0;
  const emit = (a: Actor, minute: number): void => {
    const n = poisson(rand, a.ratePerMinute);
    for (let i = 0; i < n; i++) {
      const t = o.startMs + minute * 60_000 + Math.floor(rand() * 60_000);
      out.push({
        eventId: `demo-${o.seed}-${seq++}`,
        eventTimeMs: t,
        source: 'aws.cloudtrail',
        accountId: account,
        region,
        principal: a.principal,
        principalType: a.principalType,
        service: a.service,
        action: a.action,
        readOnly: a.readOnly,
        errorCode: a.errorCode ?? null,
        sourceIp: '198.51.100.7',
        userAgent: a.userAgent,
        attributes: {},
      });
    }
  };
  for (let m = 0; m < o.minutes; m++) {
    for (const a of actors) emit(a, m);
    for (const s of o.spikes ?? []) if (m >= s.startMinute && m < s.startMinute + s.minutes) emit(s.actor, m);
  }
  return out.sort((a, b) => a.eventTimeMs - b.eventTimeMs || (a.eventId < b.eventId ? -1 : 1));
}
