// How long to wait before reconnecting a dropped socket: quick at first, then backing off to a
// ceiling, so a blip recovers at once and an outage does not hammer the edge.

export const FIRST_DELAY_MS = 250;
export const MAX_DELAY_MS = 8000;

/** The delay before reconnect attempt `attempt` (0-based), with up to 20% jitter from `random`. */
export function reconnectDelay(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(FIRST_DELAY_MS * 2 ** Math.min(attempt, 10), MAX_DELAY_MS);
  return Math.round(base * (1 - 0.2 * random()));
}
