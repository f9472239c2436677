import autocannon from 'autocannon';
import { cpuSince, cpuSnapshot, CpuUse, renderCpu } from './cpu';
import { now, percentile, progress, round } from './util';

/** One request of a sequence; `name` keys its own latency sample. */
export interface Step extends autocannon.Request {
  name: string;
}

export interface StepStats {
  count: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  status: Record<string, number>;
}

export interface LoadResult {
  name: string;
  connections: number;
  duration_s: number;
  requests: number;
  /** Responses per second over the run (all steps). */
  req_per_s: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  status: Record<string, number>;
  non2xx: number;
  errors: number;
  timeouts: number;
  steps: Record<string, StepStats>;
  /** CPU by process during the run (% of one core). */
  cpu?: CpuUse;
  /** Seconds the CPU figures cover (the run plus its wind-down); CPU per operation uses this, not duration_s. */
  cpu_s?: number;
}

export interface LoadOptions {
  url: string;
  connections: number;
  /** Seconds; ignored when `amount` is given. */
  duration?: number;
  /** Total number of requests (all steps). */
  amount?: number;
  /** Requests per second over all connections (autocannon's overallRate); unset: as fast as answers come. */
  overallRate?: number;
  /** Stop an `amount` run after this many seconds at the latest. */
  maxSeconds?: number;
  /** Checked after every response (step name, status): true stops the run there. */
  stopWhen?: (step: string, status: number) => boolean;
  steps: Step[];
  /** Status codes counted as expected for a step; anything else is reported. */
  expect?: Record<string, number[]>;
}

/**
 * Runs autocannon over loopback and keeps the latency of every response per step (its own
 * timing, taken by autocannon's HTTP client), so sequences such as poll → result report
 * each call separately. Prints a progress line every 2 seconds.
 */
export async function runLoad(name: string, options: LoadOptions): Promise<LoadResult> {
  if (options.amount !== undefined && options.amount < 1)
    throw new Error(`${name}: nothing to send (amount ${options.amount})`);
  const samples: Record<string, number[]> = {};
  const statuses: Record<string, Record<string, number>> = {};
  for (const step of options.steps) {
    samples[step.name] = [];
    statuses[step.name] = {};
  }
  const all: number[] = [];
  let responses = 0;

  const cpuStart = await cpuSnapshot();
  const cpuFrom = now();
  let lastResponse = 0;
  const instance = autocannon({
    url: options.url,
    connections: options.amount ? Math.max(1, Math.min(options.connections, options.amount)) : options.connections,
    ...(options.amount ? { amount: options.amount } : { duration: options.duration }),
    timeout: 30,
    ...(options.overallRate ? { overallRate: options.overallRate } : {}),
    requests: options.steps,
  });
  instance.on('response', (client: any, status: number, _bytes: number, ms: number) => {
    const step: string = client?.requestIterator?.currentRequest?.name ?? options.steps[0].name;
    (samples[step] ??= []).push(ms);
    const s = (statuses[step] ??= {});
    s[status] = (s[status] ?? 0) + 1;
    all.push(ms);
    responses++;
    lastResponse = Date.now();
    if (options.stopWhen?.(step, status) && !stopped) {
      stopped = true;
      instance.stop();
    }
  });
  let stopped = false;
  let last = 0;
  const started = Date.now();
  const ticker = setInterval(() => {
    const n = responses - last;
    last = responses;
    progress(`  ${name}: ${responses} responses, ${Math.round(n / 2)}/s now`);
  }, 2000);
  const stopper = options.maxSeconds ? setTimeout(() => instance.stop(), options.maxSeconds * 1000) : undefined;
  let result: autocannon.Result;
  try {
    result = await instance;
  } finally {
    clearInterval(ticker);
    if (stopper) clearTimeout(stopper);
  }
  // autocannon ends an `amount` run on its next one-second tick, after the last response:
  // that idle tail is not the server's time, so such runs end at their last response.
  const duration =
    options.amount !== undefined && lastResponse > 0
      ? (lastResponse - started) / 1000
      : Math.max(result.duration, (Date.now() - started) / 1000);
  const cpu = await cpuSince(cpuStart);
  const cpuSeconds = (now() - cpuFrom) / 1000;

  const steps: Record<string, StepStats> = {};
  for (const [step, values] of Object.entries(samples)) {
    steps[step] = {
      count: values.length,
      p50_ms: round(percentile(values, 50)),
      p99_ms: round(percentile(values, 99)),
      max_ms: round(percentile(values, 100)),
      status: statuses[step] ?? {},
    };
  }
  const status: Record<string, number> = {};
  for (const s of Object.values(statuses))
    for (const [code, n] of Object.entries(s)) status[code] = (status[code] ?? 0) + n;
  const out: LoadResult = {
    name,
    connections: options.connections,
    duration_s: round(duration, 2),
    requests: all.length,
    req_per_s: round(all.length / duration),
    p50_ms: round(percentile(all, 50)),
    p99_ms: round(percentile(all, 99)),
    max_ms: round(percentile(all, 100)),
    status,
    non2xx: Object.entries(status).reduce((n, [code, c]) => (code.startsWith('2') ? n : n + c), 0),
    errors: result.errors,
    timeouts: result.timeouts,
    steps,
    cpu,
    cpu_s: round(cpuSeconds, 2),
  };
  const unexpected = unexpectedStatuses(out, options.expect);
  progress(
    `  ${name}: ${out.requests} in ${out.duration_s}s = ${out.req_per_s}/s, p50 ${out.p50_ms} ms, p99 ${out.p99_ms} ms` +
      (out.errors ? `, ${out.errors} errors` : '') +
      (unexpected ? `, UNEXPECTED ${unexpected}` : ''),
  );
  progress(`    cpu: ${renderCpu(cpu)}`);
  return out;
}

export function unexpectedStatuses(result: LoadResult, expect: Record<string, number[]> | undefined): string {
  if (!expect) return '';
  const problems: string[] = [];
  for (const [step, stats] of Object.entries(result.steps)) {
    const allowed = expect[step];
    if (!allowed) continue;
    for (const [code, n] of Object.entries(stats.status))
      if (!allowed.includes(Number(code))) problems.push(`${step}: ${n}× ${code}`);
  }
  return problems.join(', ');
}

/** Round-robin over keys, one per request sequence (autocannon resets the context per loop). */
export function rotating<T>(items: T[]): () => T {
  let i = 0;
  return () => items[i++ % items.length];
}
