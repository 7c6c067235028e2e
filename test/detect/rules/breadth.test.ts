import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AuditEvent } from '../../../src/contracts/types.ts';
import { mulberry32 } from '../../../src/demo/traffic.ts';
import {
  BREADTH_DEFAULTS,
  BreadthDetector,
  type BreadthFinding,
  type BreadthOptions,
  isDenied,
} from '../../../src/detect/rules/breadth.ts';
import { ConfigError, ErrorCodes, TrailwatchError } from '../../../src/errors.ts';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2024, 0, 1);
const ACCOUNT = '111122223333';
const ROLE = 'arn:aws:sts::111122223333:assumed-role/deployer';
const KEY = `${ACCOUNT}\u0000${ROLE}`;
const WINDOW = BREADTH_DEFAULTS.windowMs;

let seq = 0;
function ev(timeMs: number, over: Partial<AuditEvent> = {}): AuditEvent {
  seq++;
  return {
    eventId: `e${seq}`,
    eventTimeMs: timeMs,
    source: 'aws.cloudtrail',
    accountId: ACCOUNT,
    region: 'us-east-1',
    principal: ROLE,
    principalType: 'AssumedRole',
    service: 's3.amazonaws.com',
    action: 'GetObject',
    readOnly: true,
    errorCode: null,
    sourceIp: '10.0.0.1',
    userAgent: 'aws-sdk-js/3',
    attributes: {},
    ...over,
  };
}

/** Distinct actions across services: `ec2.amazonaws.com:Describe0`, `iam.amazonaws.com:List1`, … */
function call(i: number, timeMs: number, over: Partial<AuditEvent> = {}): AuditEvent {
  const services = ['ec2.amazonaws.com', 'iam.amazonaws.com', 's3.amazonaws.com', 'lambda.amazonaws.com'];
  const service = services[i % services.length] as string;
  return ev(timeMs, { service, action: `${service.startsWith('iam') ? 'List' : 'Describe'}${i}`, ...over });
}

const actionOf = (e: AuditEvent): string => `${e.service}:${e.action}`;

function observeAll(d: BreadthDetector, events: readonly AuditEvent[]): BreadthFinding[] {
  return events.flatMap((e) => d.observe(e));
}

/**
 * `days` days of a quiet routine from T0: at 09:00 each day the principal touches `width` distinct
 * actions (`Routine0`, …) within a minute, so its daily peak is `width`.
 */
function routine(d: BreadthDetector, days: number, width: number, principal = ROLE): void {
  for (let day = 0; day < days; day++) {
    const at = T0 + day * DAY + 9 * HOUR;
    for (let i = 0; i < width; i++) {
      assert.deepEqual(d.observe(ev(at + i * SECOND, { principal, action: `Routine${i}` })), []);
    }
    d.advance(at + HOUR);
  }
}

/**
 * The enumeration from the incident: 19 distinct actions, 35 calls in 40 s, no action more than
 * three times. Action i is first called at `start + 2i s`; the first 16 are called again 1 s later.
 */
function enumeration(start: number, width = 19, over: Partial<AuditEvent> = {}): AuditEvent[] {
  const out: AuditEvent[] = [];
  for (let i = 0; i < width; i++) {
    const first = call(i, start + 2 * i * SECOND, { attributes: { sessionName: 'recon' }, region: 'eu-west-1', ...over });
    out.push(first);
    if (i < 16) out.push({ ...first, eventId: `${first.eventId}-again`, eventTimeMs: first.eventTimeMs + SECOND });
  }
  return out.sort((a, b) => a.eventTimeMs - b.eventTimeMs);
}

function only(findings: BreadthFinding[]): BreadthFinding {
  assert.equal(findings.length, 1, JSON.stringify(findings, null, 2));
  return findings[0] as BreadthFinding;
}

/** The events as the detector keeps them for evidence. */
const kept = (events: AuditEvent[]): AuditEvent[] => events.map(({ raw: _raw, ...e }) => e);

describe('BreadthDetector', () => {
  it('fires once on an enumeration after four quiet days, with the window that crossed', () => {
    const d = new BreadthDetector();
    routine(d, 4, 3);
    const burst = enumeration(T0 + 4 * DAY + 10 * HOUR);
    assert.equal(burst.length, 35);
    assert.ok(burst[34] !== undefined && burst[34].eventTimeMs - (burst[0] as AuditEvent).eventTimeMs <= 40 * SECOND);
    const f = only(observeAll(d, burst));
    const firsts = burst.filter((e) => !e.eventId.endsWith('-again'));
    const crossing = firsts[9] as AuditEvent;
    assert.deepEqual(f, {
      kind: 'actions',
      accountId: ACCOUNT,
      principal: ROLE,
      principalType: 'AssumedRole',
      sessionName: 'recon',
      region: 'eu-west-1',
      windowStartMs: (burst[0] as AuditEvent).eventTimeMs,
      timeMs: crossing.eventTimeMs,
      distinct: 10,
      threshold: 10, // max(10, 2 × 3)
      baselinePeak: 3,
      actions: firsts.slice(0, 10).map(actionOf),
      evidences: kept(firsts.slice(0, 10)),
    });
  });

  it('lists at most 50 actions and maxEvidences evidences, earliest first', () => {
    const d = new BreadthDetector({ minDistinct: 60, maxEvidences: 3, learningMs: 0 });
    const events = Array.from({ length: 60 }, (_, i) => call(i, T0 + i * SECOND, { raw: '{"big":"record"}' }));
    const f = only(observeAll(d, events));
    assert.equal(f.distinct, 60);
    assert.deepEqual(f.actions, events.slice(0, 50).map(actionOf));
    assert.deepEqual(f.evidences, kept(events.slice(0, 3)));
    assert.equal(f.evidences[0]?.raw, undefined);
  });

  it('judges a busy principal by its own peaks: 15 a day is normal, 19 is not news, 30 is', () => {
    const d = new BreadthDetector();
    routine(d, 4, 15);
    assert.deepEqual(observeAll(d, enumeration(T0 + 4 * DAY + 10 * HOUR, 19)), []);
    const wider = enumeration(T0 + 4 * DAY + 11 * HOUR, 31);
    const f = only(observeAll(d, wider));
    assert.equal(f.baselinePeak, 15);
    assert.equal(f.threshold, 30);
    assert.equal(f.distinct, 30);
    assert.equal(f.actions.length, 30);
    assert.equal(f.timeMs, T0 + 4 * DAY + 11 * HOUR + 2 * 29 * SECOND);
  });

  it('only counts the last historyDays completed days, not today', () => {
    const d = new BreadthDetector({ historyDays: 2 });
    routine(d, 1, 15); // day 0: peak 15, out of a 2-day history on day 3
    for (let day = 1; day <= 3; day++) d.observe(ev(T0 + day * DAY + 9 * HOUR));
    // This morning reached 9 (2 × 9 would be 18), the last two days 1: the bar is the floor.
    for (let i = 0; i < 9; i++) assert.deepEqual(d.observe(ev(T0 + 3 * DAY + 10 * HOUR + i * SECOND, { action: `Today${i}` })), []);
    const f = only(observeAll(d, enumeration(T0 + 3 * DAY + 12 * HOUR, 10)));
    assert.equal(f.baselinePeak, 1);
    assert.equal(f.threshold, 10);
  });

  it('stays silent while the principal is learning, but remembers its peaks', () => {
    const d = new BreadthDetector();
    assert.deepEqual(observeAll(d, enumeration(T0 + 10 * HOUR, 40)), []);
    assert.deepEqual(observeAll(d, enumeration(T0 + 2 * DAY + 10 * HOUR, 40)), []);
    // Learning ends after three days; its 40-action days are its habit now: 2 × 40 = 80.
    assert.deepEqual(observeAll(d, enumeration(T0 + 4 * DAY + 10 * HOUR, 60)), []);
    const f = only(observeAll(d, enumeration(T0 + 4 * DAY + 11 * HOUR, 90)));
    assert.equal(f.baselinePeak, 40);
    assert.equal(f.threshold, 80);
  });

  it('judges from learningMs after the first event on', () => {
    const d = new BreadthDetector({ learningMs: DAY });
    d.observe(ev(T0 + 6 * HOUR));
    // Ten distinct 2 s before learning ends: silent; the next call, judged, fires.
    const f = only(observeAll(d, enumeration(T0 + DAY + 6 * HOUR - 20 * SECOND, 15)));
    assert.equal(f.timeMs, T0 + DAY + 6 * HOUR);
    assert.equal(f.distinct, 11);
    assert.equal(f.threshold, 10);
  });

  it('counts denied actions as a dimension of their own', () => {
    const d = new BreadthDetector();
    routine(d, 4, 3);
    const codes = [
      'AccessDenied',
      'Client.UnauthorizedOperation',
      'Forbidden',
      'UnauthorizedAccess',
      'AccessDeniedException',
      'UnauthorizedOperation',
    ];
    const start = T0 + 4 * DAY + 10 * HOUR;
    const events: AuditEvent[] = [];
    for (let i = 0; i < 12; i++) {
      // Every other call is denied; the rest are throttled or succeed, which is not a denial.
      const errorCode = i % 2 === 0 ? (codes[i / 2] as string) : i % 4 === 1 ? 'ThrottlingException' : null;
      events.push(call(i, start + i * SECOND, { errorCode }));
    }
    const findings = observeAll(d, events);
    assert.deepEqual(
      findings.map((f) => [f.kind, f.distinct, f.threshold, f.timeMs]),
      [
        ['denied', 5, 5, start + 8 * SECOND],
        ['actions', 10, 10, start + 9 * SECOND],
      ],
    );
    const denied = findings[0] as BreadthFinding;
    const deniedCalls = events.filter((e) => isDenied(e.errorCode)).slice(0, 5);
    assert.deepEqual(denied.actions, deniedCalls.map(actionOf));
    assert.deepEqual(denied.evidences, kept(deniedCalls));
    assert.equal(denied.baselinePeak, 0);
  });

  it('recognizes denial error codes', () => {
    for (const code of [
      'AccessDenied',
      'AccessDeniedException',
      'UnauthorizedOperation',
      'UnauthorizedAccess',
      'Client.UnauthorizedOperation',
      'Forbidden',
      'accessdenied',
      'KMS.AccessDeniedException',
      'ForbiddenException',
    ]) {
      assert.equal(isDenied(code), true, code);
    }
    for (const code of [null, 'ThrottlingException', 'NoSuchBucket', 'ValidationException', 'InvalidClientTokenId']) {
      assert.equal(isDenied(code), false, String(code));
    }
  });

  it('gives one finding for one long burst, even as its count hovers at the threshold', () => {
    const d = new BreadthDetector({ learningMs: 0 });
    // Ten minutes, a new action every 30 s: ten distinct in the window at every call, nine between calls.
    const events = Array.from({ length: 21 }, (_, i) => call(i, T0 + i * 30 * SECOND));
    const findings = observeAll(d, events);
    assert.equal(findings.length, 1, JSON.stringify(findings.map((f) => f.timeMs)));
    assert.equal(findings[0]?.timeMs, T0 + 9 * 30 * SECOND);
  });

  it('counts the window (t − windowMs, t]', () => {
    const at = T0 + HOUR;
    const nine = Array.from({ length: 9 }, (_, i) => call(i, at));
    const d = new BreadthDetector({ learningMs: 0 });
    observeAll(d, nine);
    assert.deepEqual(d.observe(call(9, at + WINDOW)), []);
    const e = new BreadthDetector({ learningMs: 0 });
    observeAll(e, nine);
    assert.equal(only(e.observe(call(9, at + WINDOW - 1))).distinct, 10);
  });

  it('is not re-armed by a straggler from before the crossing', () => {
    const d = new BreadthDetector({ learningMs: 0 });
    const events = Array.from({ length: 12 }, (_, i) => call(i, T0 + HOUR + i * SECOND));
    assert.equal(only(observeAll(d, events.slice(0, 10))).timeMs, T0 + HOUR + 9 * SECOND);
    // Its window held two actions: below the threshold then, but the burst is still on now.
    assert.deepEqual(d.observe(call(50, T0 + HOUR + 500)), []);
    assert.deepEqual(observeAll(d, events.slice(10)), []);
  });

  it('re-arms once the count has dropped below the threshold', () => {
    const d = new BreadthDetector({ learningMs: 0 });
    const first = only(observeAll(d, enumeration(T0, 12)));
    // Still inside the first burst's window: the same burst.
    assert.deepEqual(observeAll(d, enumeration(T0 + 2 * MINUTE, 12, { action: 'Again' }).slice(0, 3)), []);
    d.advance(T0 + 20 * MINUTE);
    const second = only(observeAll(d, enumeration(T0 + 20 * MINUTE, 12)));
    assert.equal(first.timeMs, T0 + 18 * SECOND);
    assert.equal(second.timeMs, T0 + 20 * MINUTE + 18 * SECOND);
    assert.equal(second.threshold, 10);
  });

  it('lets a fired burst raise tomorrow’s bar only to threshold − 1 per factor', () => {
    const d = new BreadthDetector();
    routine(d, 4, 3);
    assert.equal(only(observeAll(d, enumeration(T0 + 4 * DAY + 10 * HOUR, 19))).threshold, 10);
    // Tomorrow the same attack fires again: the peak it left is 9, not 19, so the bar is 18, not 38.
    const again = only(observeAll(d, enumeration(T0 + 5 * DAY + 10 * HOUR, 19)));
    assert.equal(again.baselinePeak, 9);
    assert.equal(again.threshold, 18);
    assert.equal(again.distinct, 18);
  });

  it('ignores and counts events older than watermark − windowMs', () => {
    const d = new BreadthDetector({ learningMs: 0 });
    const wm = T0 + HOUR;
    for (let i = 0; i < 9; i++) assert.deepEqual(d.observe(call(i, wm - 10 * SECOND + i * SECOND)), []);
    d.advance(wm);
    const before = d.stateSize;
    assert.deepEqual(d.observe(call(100, wm - WINDOW - 1)), []);
    assert.deepEqual(d.observe(call(101, wm - WINDOW - MINUTE)), []);
    assert.equal(d.lateEvents, 2);
    assert.deepEqual(d.stateSize, before);
    // At the bound it is not late, and completes a window.
    const edge = call(102, wm - WINDOW);
    assert.equal(only([...d.observe(edge)]).timeMs, edge.eventTimeMs);
    assert.equal(d.lateEvents, 2);
  });

  it('counts events out of order within the window where they belong', () => {
    const d = new BreadthDetector({ learningMs: 0 });
    const events = Array.from({ length: 10 }, (_, i) => call(i, T0 + HOUR + i * SECOND));
    const findings = observeAll(d, [...events].reverse());
    const f = only(findings);
    // Only the last to arrive (the earliest) completes the window ending at the latest call.
    assert.equal(f.timeMs, T0 + HOUR);
    assert.equal(f.distinct, 10);
    assert.equal(f.windowStartMs, T0 + HOUR);
    assert.deepEqual(f.actions, events.map(actionOf));
    assert.deepEqual(f.evidences, kept(events));
  });

  it('does not count an out-of-order call with the window it missed', () => {
    const d = new BreadthDetector({ learningMs: 0 });
    const start = T0 + HOUR;
    for (let i = 0; i < 9; i++) d.observe(call(i, start + WINDOW + i * SECOND));
    // Older than the nine by more than a window: in none of their windows.
    assert.deepEqual(d.observe(call(9, start - SECOND)), []);
    assert.equal(d.lateEvents, 0);
  });

  it('does not count an action through a gap between its presences', () => {
    const d = new BreadthDetector({ learningMs: 0 });
    const start = T0 + HOUR;
    for (let i = 1; i <= 9; i++) d.observe(call(i, start + WINDOW + 30 * SECOND + i * SECOND));
    // Action 0 now, after the nine have left the window, and once before they came: never with them.
    assert.deepEqual(d.observe(call(0, start + 2 * WINDOW + 40 * SECOND)), []);
    assert.deepEqual(d.observe(call(0, start)), []);
  });

  it('shows recent calls as evidence: the earliest kept, refreshed once it has left the window', () => {
    const d = new BreadthDetector({ learningMs: 0 });
    const start = T0 + HOUR;
    // An action called every 2 minutes since `start`; its first call is long out of the window.
    const steady = Array.from({ length: 10 }, (_, i) => ev(start + i * 2 * MINUTE, { action: 'GetCallerIdentity' }));
    observeAll(d, steady);
    // A call that arrives after a later one of the same action is the evidence.
    const later = call(1, start + 20 * MINUTE + 5 * SECOND);
    const earlier = { ...later, eventId: 'earlier', eventTimeMs: start + 20 * MINUTE + SECOND };
    d.observe(later);
    d.observe(earlier);
    const f = only(
      observeAll(
        d,
        Array.from({ length: 8 }, (_, i) => call(i + 2, start + 20 * MINUTE + (6 + i) * SECOND)),
      ),
    );
    // Re-anchored at 6, 12 and 18 minutes: each time the kept call had left the window.
    assert.equal(f.windowStartMs, start + 18 * MINUTE);
    assert.deepEqual(f.evidences.slice(0, 2), kept([steady[9] as AuditEvent, earlier]));
  });

  it('does not fire again for a late event of a burst that already fired', () => {
    const d = new BreadthDetector({ learningMs: 0 });
    const burst = Array.from({ length: 12 }, (_, i) => call(i, T0 + HOUR + 2 * i * SECOND));
    const late = burst.splice(3, 1)[0] as AuditEvent; // the only call of its action
    assert.equal(observeAll(d, burst).length, 1);
    // The burst's window has emptied and the principal moved on: it is re-armed …
    assert.deepEqual(d.observe(call(50, T0 + HOUR + 6 * MINUTE)), []);
    // … yet a straggler of the old burst is that burst, not a new one.
    assert.deepEqual(d.observe(late), []);
  });

  it('does not fire again for a late repeat of a call in a long burst', () => {
    const d = new BreadthDetector({ learningMs: 0 });
    // Twelve minutes, a new action every 10 s: 30 distinct in the window all along; one finding.
    const burst = Array.from({ length: 72 }, (_, i) => call(i, T0 + HOUR + i * 10 * SECOND));
    assert.equal(observeAll(d, burst).length, 1);
    assert.deepEqual(d.observe(call(100, T0 + HOUR + 18 * MINUTE)), []); // re-armed
    // A repeat of a call ten minutes in: its action was in those windows already.
    const repeat = burst[60] as AuditEvent;
    assert.deepEqual(d.observe({ ...repeat, eventId: 'repeat', eventTimeMs: repeat.eventTimeMs + 500 }), []);
  });

  it('keeps at most maxPrincipals, evicting the least recently observed', () => {
    const d = new BreadthDetector({ maxPrincipals: 3 });
    const principal = (n: number): string => `arn:aws:iam::${ACCOUNT}:user/u${n}`;
    for (const n of [1, 2, 3, 1, 4, 5]) d.observe(ev(T0 + n * SECOND, { principal: principal(n) }));
    assert.equal(d.stateSize.principals, 3);
    const changes = new Map(d.drainChanges());
    assert.equal(changes.get(`${ACCOUNT}\u0000${principal(2)}`), null);
    assert.equal(changes.get(`${ACCOUNT}\u0000${principal(3)}`), null);
    for (const n of [1, 4, 5]) assert.equal(typeof changes.get(`${ACCOUNT}\u0000${principal(n)}`), 'string', `u${n}`);
  });

  it('keeps at most maxActionsPerPrincipal per dimension, so a window cannot count past it', () => {
    const d = new BreadthDetector({ maxActionsPerPrincipal: 4, minDistinct: 5, minDeniedDistinct: 5, learningMs: 0 });
    const events = Array.from({ length: 8 }, (_, i) => call(i, T0 + i * SECOND, { errorCode: 'AccessDenied' }));
    assert.deepEqual(observeAll(d, events), []);
    assert.deepEqual(d.stateSize, { principals: 1, actions: 8 }); // 4 actions + 4 denied
    const wider = new BreadthDetector({ maxActionsPerPrincipal: 5, minDistinct: 5, minDeniedDistinct: 5, learningMs: 0 });
    assert.deepEqual(
      observeAll(wider, events).map((f) => f.kind),
      ['actions', 'denied'],
    );
  });

  it('expires window entries as the watermark moves on', () => {
    const d = new BreadthDetector();
    observeAll(
      d,
      Array.from({ length: 5 }, (_, i) => call(i, T0 + i * SECOND)),
    );
    d.drainChanges();
    // Until watermark − 2 × window: a call accepted at watermark − window counts a window back.
    d.advance(T0 + 2 * WINDOW - 1);
    assert.equal(d.stateSize.actions, 5);
    assert.deepEqual(
      d.drainChanges().map(([k]) => k),
      ['meta'],
    );
    d.advance(T0 + 4 * SECOND + 2 * WINDOW);
    assert.equal(d.stateSize.actions, 0);
    assert.equal(d.stateSize.principals, 1);
    assert.deepEqual(
      d.drainChanges().map(([k]) => k),
      [KEY, 'meta'],
    );
  });

  it('drops the expired actions of a principal still active when it is observed', () => {
    const d = new BreadthDetector();
    d.observe(ev(T0, { action: 'Once' }));
    for (let minute = 1; minute <= 20; minute++) {
      d.advance(T0 + minute * MINUTE);
      d.observe(ev(T0 + minute * MINUTE));
    }
    assert.deepEqual(d.stateSize, { principals: 1, actions: 1 });
  });

  it('drops a principal idle longer than historyDays, and a returning one learns again', () => {
    const d = new BreadthDetector({ historyDays: 3 });
    routine(d, 4, 12);
    const lastMs = T0 + 3 * DAY + 9 * HOUR + 11 * SECOND;
    d.drainChanges();
    d.advance(lastMs + 3 * DAY);
    assert.equal(d.stateSize.principals, 1);
    d.advance(lastMs + 3 * DAY + 1);
    assert.equal(d.stateSize.principals, 0);
    assert.deepEqual(d.drainChanges(), [
      [KEY, null],
      ['meta', JSON.stringify([1, lastMs + 3 * DAY + 1, 0, 48])],
    ]);
    // Without the sweep, observing it late starts it over just the same: learning, so silent.
    const e = new BreadthDetector({ historyDays: 3 });
    routine(e, 4, 12);
    assert.deepEqual(observeAll(e, enumeration(lastMs + 3 * DAY + HOUR, 30)), []);
    const f = new BreadthDetector({ historyDays: 3 });
    routine(f, 4, 12);
    assert.equal(only(observeAll(f, enumeration(lastMs + 2 * DAY, 30))).threshold, 24);
  });

  it('drains each change once, and the meta record only when it changed', () => {
    const d = new BreadthDetector();
    assert.deepEqual(d.drainChanges(), []);
    d.advance(T0);
    assert.deepEqual(d.drainChanges(), [['meta', JSON.stringify([1, T0, 0, 0])]]);
    d.advance(T0); // no progress
    assert.deepEqual(d.drainChanges(), []);
    d.observe(ev(T0 + SECOND));
    const changes = d.drainChanges();
    assert.deepEqual(
      changes.map(([k]) => k),
      [KEY, 'meta'],
    );
    assert.deepEqual(d.drainChanges(), []);
  });

  it('writes compact records: times relative to the latest event, evidences as changes to the one before', () => {
    const d = new BreadthDetector();
    const a = ev(T0, { errorCode: 'AccessDenied', region: 'eu-west-1', attributes: { sessionName: 's' } });
    const b = ev(T0 + SECOND, { action: 'ListBuckets', principalType: 'IAMUser' });
    const c = ev(T0 + 2 * SECOND, { action: 'ListBuckets', errorCode: 'AccessDenied', attributes: { sessionName: 's' } });
    for (const e of [a, b, c]) d.observe(e);
    const changes = d.drainChanges() as Array<[string, string]>;
    const record = new Map(changes).get(KEY) as string;
    assert.deepEqual(JSON.parse(record), [
      1,
      'AssumedRole',
      2,
      T0 + 2 * SECOND,
      2 * SECOND,
      [0, 2, 2],
      [
        1,
        null,
        's3.amazonaws.com:GetObject',
        2 * SECOND,
        2 * SECOND,
        [
          a.eventId,
          2 * SECOND,
          'aws.cloudtrail',
          'eu-west-1',
          null,
          's3.amazonaws.com',
          1,
          'AccessDenied',
          '10.0.0.1',
          'aws-sdk-js/3',
          { sessionName: 's' },
        ],
        's3.amazonaws.com:ListBuckets',
        SECOND,
        0,
        // 0: as in the evidence before (a).
        [b.eventId, SECOND, 0, 'us-east-1', 'IAMUser', 0, 1, null, 0, 0, {}],
      ],
      [
        1,
        null,
        's3.amazonaws.com:GetObject',
        2 * SECOND,
        2 * SECOND,
        0, // a, as in `actions`
        's3.amazonaws.com:ListBuckets',
        0,
        0,
        // Denied later than its first call (b): an evidence of its own, written against a.
        [c.eventId, 0, 0, 'us-east-1', null, 0, 1, 'AccessDenied', 0, 0, 0],
      ],
    ]);
    // Read back, it is the same state: nothing to write, and the same record after the same event.
    const restored = BreadthDetector.fromRecords(changes);
    assert.deepEqual(restored.drainChanges(), []);
    assert.deepEqual(restored.stateSize, d.stateSize);
    const next = ev(T0 + 3 * SECOND, { action: 'PutObject', errorCode: 'AccessDenied' });
    d.observe(next);
    restored.observe(next);
    assert.deepEqual(restored.drainChanges(), d.drainChanges());
  });

  it('rejects a corrupt changelog record as TW_STATE_CORRUPT', () => {
    for (const [key, value] of [
      ['meta', '{'],
      ['meta', '[2, null, 0, 0]'],
      [KEY, '[1, "AssumedRole"]'],
      [KEY, JSON.stringify([1, 'AssumedRole', 0, T0, 0, [], [1, null, 'x:Y', 0, 0, 0], [1, null]])],
      ['no-nul', JSON.stringify([1, 'AssumedRole', 0, T0, 0, [], [1, null], [1, null]])],
    ] as const) {
      assert.throws(
        () => BreadthDetector.fromRecords([[key, value]]),
        (err: unknown) => err instanceof TrailwatchError && err.code === ErrorCodes.STATE_CORRUPT,
        value,
      );
    }
  });

  it('rejects invalid options, every problem at once', () => {
    assert.throws(
      () => new BreadthDetector({ windowMs: 0, factor: 0.5, learningMs: -1, maxEvidences: 1.5, bogus: 1 } as BreadthOptions),
      (err: unknown) => err instanceof ConfigError && err.problems.length === 5,
    );
    assert.doesNotThrow(() => new BreadthDetector({ windowMs: undefined, learningMs: 0 }));
  });

  it('gives the same findings and records when rebuilt from its changelog at random points (golden restore)', () => {
    const options: BreadthOptions = { learningMs: 12 * HOUR, historyDays: 2, maxPrincipals: 10, maxActionsPerPrincipal: 40 };
    const steps = randomStream(20240101, options);
    const straight = new BreadthDetector(options);
    let restarted = new BreadthDetector(options);
    const store = new Map<string, string>();
    const expected: BreadthFinding[] = [];
    const got: BreadthFinding[] = [];
    const rand = mulberry32(7);
    let restores = 0;
    let evictedOrDropped = 0;
    for (const [n, step] of steps.entries()) {
      for (const e of step.events) {
        expected.push(...straight.observe(e));
        got.push(...restarted.observe(e));
      }
      straight.advance(step.watermarkMs);
      restarted.advance(step.watermarkMs);
      // Record for record (one per key, so their order in a drain does not matter): a state the
      // changelog lost shows at the principal's next change.
      const changes = restarted.drainChanges();
      assert.deepEqual(new Map(changes), new Map(straight.drainChanges()), `step ${n}`);
      evictedOrDropped += changes.filter(([, v]) => v === null).length;
      apply(store, changes);
      if (rand() < 0.2) {
        restarted = BreadthDetector.fromRecords(store, options);
        restores++;
      }
    }
    const kinds = (fs: BreadthFinding[], kind: string): number => fs.filter((f) => f.kind === kind).length;
    assert.ok(restores >= 1000, `${restores} restores`);
    assert.ok(
      kinds(expected, 'actions') >= 8 && kinds(expected, 'denied') >= 5,
      `${kinds(expected, 'actions')}/${kinds(expected, 'denied')}`,
    );
    assert.ok(straight.lateEvents > 0);
    assert.ok(evictedOrDropped > 10, `${evictedOrDropped} principals gone`);
    assert.deepEqual(got, expected);
    assert.equal(restarted.lateEvents, straight.lateEvents);
    assert.deepEqual(restarted.stateSize, straight.stateSize);
  });
});

function apply(store: Map<string, string>, changes: Array<[string, string | null]>): void {
  for (const [k, v] of changes) {
    if (v === null) store.delete(k);
    else store.set(k, v);
  }
}

/**
 * Five days of twelve principals (more than maxPrincipals; two of them rare, so evicted): routine
 * calls all day, bursts of 2 to 35 distinct actions a minute for 1 to 4 minutes (half of them
 * mostly denied), two principals that go quiet for days (past historyDays), in batches of a minute
 * whose events arrive up to 30 s out of order, and now and then a late one.
 */
function randomStream(seed: number, options: BreadthOptions): { events: AuditEvent[]; watermarkMs: number }[] {
  const rand = mulberry32(seed);
  const pick = (n: number): number => Math.floor(rand() * n);
  const window = options.windowMs ?? WINDOW;
  const principals = Array.from({ length: 12 }, (_, i) => `arn:aws:iam::${ACCOUNT}:user/p${i}`);
  const steps: { events: AuditEvent[]; watermarkMs: number }[] = [];
  const bursts: { principal: string; untilMs: number; denied: boolean; next: number; width: number }[] = [];
  for (let minute = 0; minute < 5 * 24 * 60; minute++) {
    const startMs = T0 + minute * MINUTE;
    const day = Math.floor(minute / (24 * 60));
    const events: AuditEvent[] = [];
    for (const [i, principal] of principals.entries()) {
      if ((i === 6 && day >= 1 && day <= 3) || (i === 7 && day === 2)) continue; // asleep
      const busy = i >= 10 ? 0.01 : 0.2;
      if (rand() < busy) {
        events.push(
          ev(startMs + pick(MINUTE), { principal, action: `Routine${pick(4 + i)}`, errorCode: rand() < 0.02 ? 'AccessDenied' : null }),
        );
      }
      if (rand() < 0.0008) {
        bursts.push({ principal, untilMs: startMs + (1 + pick(4)) * MINUTE, denied: rand() < 0.5, next: pick(20), width: 4 + pick(30) });
      }
    }
    for (const b of bursts) {
      if (b.untilMs <= startMs) continue;
      for (let n = 2 + pick(b.width); n > 0; n--) {
        const i = b.next++;
        events.push(
          call(i, startMs + pick(MINUTE), { principal: b.principal, errorCode: b.denied && rand() < 0.8 ? 'UnauthorizedOperation' : null }),
        );
      }
    }
    const jittered = events.map((e) => ({ e, at: e.eventTimeMs + pick(30 * SECOND) })).sort((a, b) => a.at - b.at);
    const batch = jittered.map(({ e }) => e);
    if (rand() < 0.02) batch.push(ev(startMs - 2 * window - pick(MINUTE), { principal: principals[pick(12)] as string, action: 'Late' }));
    steps.push({ events: batch, watermarkMs: startMs + MINUTE - 30 * SECOND });
  }
  return steps;
}
