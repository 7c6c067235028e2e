import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { avroProblems, insightType } from '../../src/contracts/schemas.ts';
import type { Insight } from '../../src/contracts/types.ts';
import {
  type AnomalyFacts,
  baselineDurationMinutes,
  buildInsight,
  INSIGHT_EVENT_VERSION,
  insightJson,
  sharedEventIdFor,
} from '../../src/emit/insight.ts';
import { ErrorCodes, TrailwatchError } from '../../src/errors.ts';

const MINUTE_MS = 60_000;
const WEEK_MINUTES = 10_080;
const ROLE = 'arn:aws:sts::111122223333:assumed-role/ci';
const ALICE = 'arn:aws:iam::111122223333:user/ops/alice';

const facts: AnomalyFacts = {
  state: 'Start',
  keyId: 'action|call|111122223333|us-east-1|ec2.amazonaws.com|RunInstances',
  scope: 'action',
  insightType: 'ApiCallRateInsight',
  accountId: '111122223333',
  region: 'us-east-1',
  service: 'ec2.amazonaws.com',
  action: 'RunInstances',
  principal: null,
  errorCode: null,
  startTimeMs: Date.UTC(2026, 2, 1, 1, 42),
  endTimeMs: null,
  bucketMs: 60_000,
  baselinePerMinute: 0.0686,
  insightPerMinute: 6,
  baselineWindowMinutes: WEEK_MINUTES,
  historyMinutes: 120,
  score: 0.93,
  threshold: 0.6,
  contributors: [
    {
      attribute: 'userIdentityArn',
      insight: [
        { value: ROLE, average: 5 },
        { value: ALICE, average: 1 },
      ],
      baseline: [
        { value: ALICE, average: 0.05 },
        { value: ROLE, average: 0.0186 },
      ],
    },
    {
      attribute: 'userAgent',
      insight: [{ value: 'aws-cli/2.15.0', average: 6 }],
      baseline: [{ value: 'aws-cli/2.15.0', average: 0.0686 }],
    },
    { attribute: 'errorCode', insight: [{ value: 'null', average: 6 }], baseline: [{ value: 'null', average: 0.0686 }] },
  ],
};

const errorFacts: AnomalyFacts = {
  ...facts,
  keyId: 'action|error|111122223333|us-east-1|ec2.amazonaws.com|RunInstances|Client.UnauthorizedOperation',
  insightType: 'ApiErrorRateInsight',
  errorCode: 'Client.UnauthorizedOperation',
  startTimeMs: Date.UTC(2026, 2, 1, 23, 59),
  baselinePerMinute: 0.01,
  insightPerMinute: 4.5,
  contributors: [
    {
      attribute: 'userIdentityArn',
      insight: [{ value: ROLE, average: 4.5 }],
      baseline: [{ value: ROLE, average: 0.01 }],
    },
    { attribute: 'userAgent', insight: [{ value: 'Boto3/1.34.0', average: 4.5 }], baseline: [{ value: 'Boto3/1.34.0', average: 0.01 }] },
  ],
};

function endOf(f: AnomalyFacts, minutes: number, insightPerMinute: number): AnomalyFacts {
  return { ...f, state: 'End', endTimeMs: f.startTimeMs + minutes * MINUTE_MS, insightPerMinute };
}

type Rec = Record<string, unknown>;

/** What a SIEM reads: the JSON form, through JSON, as `tail` prints it. */
function json(insight: Insight): Rec {
  return JSON.parse(JSON.stringify(insightJson(insight))) as Rec;
}

function avroRoundTrip(insight: Insight): Insight {
  return insightType.fromBuffer(insightType.toBuffer(insight)) as Insight;
}

test('a Start looks like a CloudTrail Insights record and fits the Avro contract', () => {
  const start = buildInsight(facts);
  assert.equal(start.eventTime, '2026-03-01T01:42:00Z');
  assert.equal(start.eventType, 'AwsCloudTrailInsight');
  assert.equal(start.eventCategory, 'Insight');
  assert.equal(start.insightDetails.insightContext.statistics.insightDuration, null);
  assert.equal(start.insightDetails.errorCode, null);
  assert.deepEqual(avroProblems(insightType, start), []);
  assert.match(start.sharedEventID, /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});

test('End shares the sharedEventID, has its own eventID, its end time and its duration', () => {
  const start = buildInsight(facts);
  const end = buildInsight({ ...facts, state: 'End', endTimeMs: facts.startTimeMs + 11 * MINUTE_MS });
  assert.equal(end.sharedEventID, start.sharedEventID);
  assert.notEqual(end.eventID, start.eventID);
  assert.equal(end.eventTime, '2026-03-01T01:53:00Z');
  assert.equal(end.insightDetails.insightContext.statistics.insightDuration, 11);
  assert.deepEqual(avroProblems(insightType, end), []);
});

test('an End without its end time is a bug in the caller, not a record', () => {
  assert.throws(
    () => buildInsight({ ...facts, state: 'End', endTimeMs: null }),
    (err: unknown) => err instanceof TrailwatchError && err.code === ErrorCodes.INTERNAL && err.fault === 'internal',
  );
});

test('ids depend on the key and the start, nothing else', () => {
  assert.equal(sharedEventIdFor('k', 1), sharedEventIdFor('k', 1));
  assert.notEqual(sharedEventIdFor('k', 1), sharedEventIdFor('k', 2));
  assert.notEqual(sharedEventIdFor('k', 1), sharedEventIdFor('j', 1));
});

test('errorCode is only set on error-rate Insights', () => {
  const e = buildInsight({ ...facts, insightType: 'ApiErrorRateInsight', errorCode: 'AccessDenied' });
  assert.equal(e.insightDetails.errorCode, 'AccessDenied');
  assert.equal(buildInsight({ ...facts, errorCode: 'AccessDenied' }).insightDetails.errorCode, null);
});

describe('baselineDuration', () => {
  test('is the 7-day window rounded down to 00:00 UTC: 10080 + the minutes since midnight of the start', () => {
    assert.equal(baselineDurationMinutes(Date.UTC(2026, 2, 1, 0, 0), WEEK_MINUTES), 10_080);
    assert.equal(baselineDurationMinutes(Date.UTC(2026, 2, 1, 1, 42), WEEK_MINUTES), 10_080 + 102);
    assert.equal(baselineDurationMinutes(Date.UTC(2026, 2, 1, 23, 59), WEEK_MINUTES), 10_080 + 1439);
    // Across a month and a leap day: whole days of 1440 minutes in UTC, whatever the calendar.
    assert.equal(baselineDurationMinutes(Date.UTC(2024, 2, 3, 12, 0), WEEK_MINUTES), 10_080 + 720);
  });

  test('follows the configured window, rounding its start down to a whole UTC day', () => {
    assert.equal(baselineDurationMinutes(Date.UTC(2026, 2, 1, 6, 0), 28 * 1440), 28 * 1440 + 360);
    // 7.5 days before 03-01 06:00 is 02-21 18:00, rounded down to 02-21 00:00: 8 days and 6 hours.
    assert.equal(baselineDurationMinutes(Date.UTC(2026, 2, 1, 6, 0), 10_800), 8 * 1440 + 360);
  });

  test('counts whole minutes when buckets start mid-minute', () => {
    assert.equal(baselineDurationMinutes(Date.UTC(2026, 2, 1, 1, 42, 30), WEEK_MINUTES), 10_080 + 102);
  });

  test('comes from the start and the window; the key’s real history goes to trailwatch.historyMinutes', () => {
    const start = buildInsight({ ...facts, historyMinutes: 120 });
    assert.equal(start.insightDetails.insightContext.statistics.baselineDuration, 10_182);
    assert.equal(start.trailwatch.historyMinutes, 120);
    const young = buildInsight({ ...facts, historyMinutes: 60 });
    assert.equal(young.insightDetails.insightContext.statistics.baselineDuration, 10_182);
    assert.equal(young.trailwatch.historyMinutes, 60);
  });
});

describe('attributions', () => {
  test('each list comes out highest average first, ties in the order given', () => {
    const insight = buildInsight({
      ...facts,
      contributors: [
        {
          attribute: 'userAgent',
          insight: [
            { value: 'b', average: 1 },
            { value: 'a', average: 3 },
            { value: 'c', average: 1 },
          ],
          baseline: [
            { value: 'x', average: 0.01 },
            { value: 'y', average: 0.02 },
          ],
        },
      ],
    });
    const [ua] = insight.insightDetails.insightContext.attributions;
    assert.deepEqual(
      ua?.insight.map((v) => v.value),
      ['a', 'b', 'c'],
    );
    assert.deepEqual(
      ua?.baseline.map((v) => v.value),
      ['y', 'x'],
    );
  });

  test('End carries the baseline lists the facts give (the Start’s snapshot), not recomputed ones', () => {
    const start = buildInsight(facts);
    const end = buildInsight(endOf(facts, 9, 4));
    assert.deepEqual(
      end.insightDetails.insightContext.attributions.map((a) => a.baseline),
      start.insightDetails.insightContext.attributions.map((a) => a.baseline),
    );
    assert.equal(
      end.insightDetails.insightContext.statistics.baseline.average,
      start.insightDetails.insightContext.statistics.baseline.average,
    );
  });
});

describe('insightJson', () => {
  test('a call-rate Insight has no errorCode key; an error-rate one keeps it, in place', () => {
    const call = insightJson(buildInsight(facts));
    assert.ok(!Object.hasOwn(call.insightDetails, 'errorCode'));
    const error = insightJson(buildInsight(errorFacts));
    assert.deepEqual(Object.keys(error.insightDetails), [
      'state',
      'eventSource',
      'eventName',
      'insightType',
      'errorCode',
      'insightContext',
    ]);
    assert.equal(error.insightDetails.errorCode, 'Client.UnauthorizedOperation');
  });

  test('reads the same from a built Insight and from one decoded from Avro (what tail prints)', () => {
    for (const f of [facts, errorFacts, endOf(facts, 9, 4), endOf(errorFacts, 3, 4)]) {
      const built = buildInsight(f);
      assert.equal(JSON.stringify(insightJson(avroRoundTrip(built))), JSON.stringify(insightJson(built)));
    }
  });

  test('leaves the Insight it is given alone', () => {
    const insight = buildInsight(facts);
    const before = JSON.stringify(insight);
    insightJson(insight);
    assert.equal(JSON.stringify(insight), before);
    assert.ok(Object.hasOwn(insight.insightDetails, 'errorCode'));
  });
});

/**
 * Field by field against ../shared/reference/cloudtrail.md §1: what tools that parse CloudTrail
 * Insights records find in trailwatch's JSON form.
 */
describe('shape of the JSON form against the CloudTrail Insights record', () => {
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;
  const TOP_LEVEL = [
    'eventVersion',
    'eventTime',
    'awsRegion',
    'eventID',
    'eventType',
    'recipientAccountId',
    'sharedEventID',
    'insightDetails',
    'eventCategory',
    'trailwatch',
  ];

  const cases = [
    { name: 'call-rate', start: facts, end: endOf(facts, 14, 3.2), attributes: ['userIdentityArn', 'userAgent', 'errorCode'] },
    { name: 'error-rate', start: errorFacts, end: endOf(errorFacts, 3, 4.1), attributes: ['userIdentityArn', 'userAgent'] },
  ] as const;

  for (const c of cases) {
    const start = json(buildInsight(c.start));
    const end = json(buildInsight(c.end));
    const isError = c.start.insightType === 'ApiErrorRateInsight';
    const details = (r: Rec): Rec => r.insightDetails as Rec;
    const context = (r: Rec): Rec => details(r).insightContext as Rec;
    const stats = (r: Rec): Rec => context(r).statistics as Rec;

    test(`${c.name}: Start and End fit the Avro contract, as built and through Avro`, () => {
      for (const f of [c.start, c.end]) {
        const built = buildInsight(f);
        assert.deepEqual(avroProblems(insightType, built), []);
        assert.deepEqual(json(avroRoundTrip(built)), json(built));
      }
    });

    for (const [state, r] of [
      ['Start', start],
      ['End', end],
    ] as const) {
      test(`${c.name} ${state}: top level`, () => {
        assert.deepEqual(Object.keys(r), TOP_LEVEL);
        assert.equal(r.eventVersion, INSIGHT_EVENT_VERSION);
        assert.match(r.eventVersion as string, /^1\.\d{2}$/);
        assert.match(r.eventTime as string, ISO_UTC);
        assert.equal(r.awsRegion, 'us-east-1');
        assert.match(r.eventID as string, UUID);
        assert.equal(r.eventType, 'AwsCloudTrailInsight');
        assert.equal(r.recipientAccountId, '111122223333');
        assert.match(r.sharedEventID as string, UUID);
        assert.equal(r.eventCategory, 'Insight');
      });

      test(`${c.name} ${state}: insightDetails`, () => {
        const d = details(r);
        const keys = ['state', 'eventSource', 'eventName', 'insightType', ...(isError ? ['errorCode'] : []), 'insightContext'];
        assert.deepEqual(Object.keys(d), keys);
        assert.equal(d.state, state);
        assert.equal(d.eventSource, 'ec2.amazonaws.com');
        assert.equal(d.eventName, 'RunInstances');
        assert.equal(d.insightType, c.start.insightType);
        if (isError) assert.equal(d.errorCode, 'Client.UnauthorizedOperation');
        assert.deepEqual(Object.keys(context(r)), ['statistics', 'attributions']);
      });

      test(`${c.name} ${state}: statistics`, () => {
        const s = stats(r);
        assert.deepEqual(Object.keys(s), ['baseline', 'insight', 'insightDuration', 'baselineDuration']);
        assert.deepEqual(Object.keys(s.baseline as object), ['average']);
        assert.deepEqual(Object.keys(s.insight as object), ['average']);
        assert.equal((s.baseline as { average: number }).average, c.start.baselinePerMinute);
        // Start: over the first minute(s); End: over the whole anomaly, as the facts say.
        assert.equal((s.insight as { average: number }).average, state === 'Start' ? c.start.insightPerMinute : c.end.insightPerMinute);
        // Ends where the Insight starts, so the End has the Start's; ≥ 7 days, from 00:00 UTC.
        const startMs = c.start.startTimeMs;
        const sinceMidnight = (startMs % 86_400_000) / MINUTE_MS;
        assert.ok(Number.isInteger(s.baselineDuration));
        assert.ok((s.baselineDuration as number) >= WEEK_MINUTES);
        assert.equal(s.baselineDuration, WEEK_MINUTES + sinceMidnight);
      });

      test(`${c.name} ${state}: attributions`, () => {
        const attributions = context(r).attributions as Array<Rec>;
        assert.deepEqual(
          attributions.map((a) => a.attribute),
          c.attributes,
        );
        for (const a of attributions) {
          assert.deepEqual(Object.keys(a), ['attribute', 'insight', 'baseline']);
          for (const list of [a.insight, a.baseline] as Array<Array<Rec>>) {
            assert.ok(list.length <= 5, `${String(a.attribute)}: at most 5 values`);
            for (const v of list) {
              assert.deepEqual(Object.keys(v), ['value', 'average']);
              assert.equal(typeof v.value, 'string');
              assert.ok(typeof v.average === 'number' && v.average >= 0);
            }
            const averages = list.map((v) => v.average as number);
            assert.deepEqual(
              averages,
              [...averages].sort((x, y) => y - x),
              'highest average first',
            );
          }
          if (a.attribute === 'userIdentityArn') {
            for (const v of [...(a.insight as Array<Rec>), ...(a.baseline as Array<Rec>)]) {
              // Assumed roles without the session name.
              if (String(v.value).includes(':assumed-role/')) assert.match(String(v.value), /^arn:aws:sts::\d{12}:assumed-role\/[^/]+$/);
            }
          }
          if (a.attribute === 'errorCode') {
            // A call without an error is the string "null", never a JSON null.
            assert.deepEqual(
              (a.insight as Array<Rec>).map((v) => v.value),
              ['null'],
            );
          }
        }
      });

      test(`${c.name} ${state}: the only null in CloudTrail's part is a Start's insightDuration`, () => {
        const { trailwatch: _tw, ...cloudtrail } = r;
        const nulls: string[] = [];
        const walk = (v: unknown, path: string): void => {
          if (v === null) nulls.push(path);
          else if (typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, `${path}.${k}`);
        };
        walk(cloudtrail, '');
        assert.deepEqual(nulls, state === 'Start' ? ['.insightDetails.insightContext.statistics.insightDuration'] : []);
      });
    }

    test(`${c.name}: Start and End of one anomaly`, () => {
      assert.equal(start.sharedEventID, end.sharedEventID);
      assert.notEqual(start.eventID, end.eventID);
      assert.equal(start.eventTime, new Date(c.start.startTimeMs).toISOString().replace('.000Z', 'Z'));
      assert.equal(end.eventTime, new Date(c.end.endTimeMs as number).toISOString().replace('.000Z', 'Z'));
      assert.equal(stats(start).insightDuration, null);
      const minutes = stats(end).insightDuration;
      assert.ok(Number.isInteger(minutes));
      assert.equal(minutes, ((c.end.endTimeMs as number) - c.end.startTimeMs) / MINUTE_MS);
      assert.equal(stats(end).baselineDuration, stats(start).baselineDuration);
      assert.deepEqual(
        (context(end).attributions as Array<Rec>).map((a) => a.baseline),
        (context(start).attributions as Array<Rec>).map((a) => a.baseline),
      );
    });
  }
});
