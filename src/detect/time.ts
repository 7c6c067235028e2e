/**
 * Event-time arithmetic the detector shares: UTC days, hours and weekends of millisecond
 * timestamps, and the remainders they need, exact and cheap for event times past 2^31.
 */

export const MINUTE_MS = 60_000;
export const HOUR_MS = 60 * MINUTE_MS;
export const DAY_MS = 24 * HOUR_MS;

/** Integers below this (in magnitude) keep every product and difference in modFloor exact. */
const MOD_EXACT_BELOW = 2 ** 52;

/**
 * ((a % b) + b) % b, the remainder rounded towards −∞, for an integer `b`. Event times are past
 * 2^31, where `%` of doubles is a call to fmod: this is the same number in a few instructions
 * (integers only; anything else takes the `%`).
 */
export function modFloor(a: number, b: number): number {
  if (!Number.isInteger(a) || a >= MOD_EXACT_BELOW || a <= -MOD_EXACT_BELOW) return ((a % b) + b) % b;
  const r = a - Math.floor(a / b) * b;
  return r < 0 ? r + b : r >= b ? r - b : r;
}

/** a % b (the sign of `a`), for an integer `b`; see modFloor. */
export function remainder(a: number, b: number): number {
  return a >= 0 ? modFloor(a, b) : a % b;
}

/** Saturday or Sunday, UTC (1970-01-01 was a Thursday). */
export const isWeekend = (ms: number): boolean => (((Math.floor(ms / DAY_MS) + 3) % 7) + 7) % 7 >= 5;

/** The UTC hour of the day, 0–23. */
export const hourOfDay = (ms: number): number => Math.floor(modFloor(ms, DAY_MS) / HOUR_MS);

/** The UTC minute of the day, 0–1439. */
export const minuteOfDay = (ms: number): number => Math.floor(modFloor(ms, DAY_MS) / MINUTE_MS);

/** The UTC day number (days since the epoch). */
export const dayOf = (ms: number): number => Math.floor(ms / DAY_MS);
