import { performance } from 'node:perf_hooks';

const began = performance.now();

/** One progress line, prefixed with the time since the benchmark started. */
export function progress(line: string): void {
  const s = ((performance.now() - began) / 1000).toFixed(1).padStart(6);
  process.stdout.write(`[bench ${s}s] ${line}\n`);
}

export const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, ms));

export const now = () => performance.now();

/** Percentile (nearest rank) of an unsorted sample; 0 for an empty one. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

export function round(value: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export function ratio(value: number | undefined, ceiling: number | undefined): number | undefined {
  if (!value || !ceiling) return undefined;
  return Math.round((value / ceiling) * 100) / 100;
}

/** 2026-11-24T00:13:34.123Z → 20261124_001334 (database names, file names). */
export function stamp(date = new Date()): string {
  return date.toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15);
}

/** Runs `work` over `items` with at most `limit` in flight. */
export async function pool<T>(
  items: T[],
  limit: number,
  work: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        await work(items[i], i);
      }
    }),
  );
}

export async function waitFor(
  what: string,
  timeoutMs: number,
  check: () => Promise<boolean>,
  everyMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/**
 * Whether Node `version` satisfies an engines range of `^a.b.c` and `>=a.b.c`
 * alternatives joined by `||` (the forms package.json's engines uses); any other form
 * counts as not satisfied, so the bench warns rather than guesses.
 */
export function satisfiesEngines(version: string, range: string): boolean {
  const parse = (v: string) => v.split('.').map(Number);
  const atLeast = (a: number[], b: number[]) => {
    for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] > b[i];
    return true;
  };
  const have = parse(version);
  return range.split('||').some((alternative) => {
    const match = /^\s*(\^|>=)(\d+)\.(\d+)\.(\d+)\s*$/.exec(alternative);
    if (!match) return false;
    const floor = [Number(match[2]), Number(match[3]), Number(match[4])];
    return atLeast(have, floor) && (match[1] === '>=' || have[0] === floor[0]);
  });
}
