import { trackPid } from './cpu';
import { LoadResult, runLoad, Step } from './load';
import { Coordinator, startCoordinator } from './processes';
import { freePort } from '../src/database/embedded-postgres';
import { progress, round } from './util';

/** One measured run of paid-job creation: throughput and CPU per paid job, by process. */
export interface CreateCost {
  providers: number;
  jobs_per_s: number;
  p99_ms: number;
  cpu_ms_per_job: number;
  cpu_ms_coordinator: number;
}

export interface RoutingPhaseResult {
  /** Alternating runs: one provider (the main coordinator), three (a coordinator routing by volume split). */
  runs: CreateCost[];
  one_provider_cpu_ms: number;
  three_providers_cpu_ms: number;
  /** CPU per paid job routed over three providers relative to one (the goal: ≤ 1.05). */
  cpu_ratio: number;
}

/**
 * What routing costs (issue #14's goal: ≤ 5 % CPU per paid job). The same paid-job creation
 * load runs, alternately, against the main coordinator (the default single provider) and
 * against a second coordinator whose PAYMENT_PROVIDERS lists three providers — all the one
 * local daemon under three ids, so the daemon's and PostgreSQL's work is the same and only
 * the routing differs — with PAYMENT_ROUTING=volume_split. CPU is summed over the
 * coordinator under load, the daemon and PostgreSQL, per 201.
 */
export async function measureRoutingCost(options: {
  main: Coordinator;
  /** The coordinator environment, given the port to listen on. */
  env: (port: number) => Record<string, string>;
  daemon: { url: string; token: string };
  logFile: string;
  connections: number;
  seconds: number;
  rounds: number;
  step: () => Step;
}): Promise<RoutingPhaseResult> {
  const providers = ['route-a', 'route-b', 'route-c'].map((id, i) => ({
    id,
    url: options.daemon.url,
    token: options.daemon.token,
    currencies: ['BTC', 'AITBC'],
    priority: i + 1,
    weight: 1,
  }));
  const routed = await startCoordinator(
    'routed',
    {
      ...options.env(await freePort()),
      PAYMENT_PROVIDERS: JSON.stringify(providers),
      PAYMENT_ROUTING: 'volume_split',
    },
    options.logFile,
  );
  const runs: CreateCost[] = [];
  try {
    for (let round_ = 0; round_ < options.rounds; round_++) {
      for (const [count, coordinator] of [
        [1, options.main],
        [3, routed],
      ] as const) {
        trackPid('coordinator', coordinator.pid);
        const load = await runLoad(`create (${count} provider${count > 1 ? 's' : ''})`, {
          url: coordinator.url,
          connections: options.connections,
          duration: options.seconds,
          steps: [options.step()],
          expect: { create: [201] },
        });
        runs.push(cost(count, load));
        const last = runs[runs.length - 1];
        progress(
          `  routing: ${count} provider(s): ${last.jobs_per_s} jobs/s, p99 ${last.p99_ms} ms, CPU ${last.cpu_ms_per_job} ms per paid job (coordinator ${last.cpu_ms_coordinator})`,
        );
      }
    }
  } finally {
    trackPid('coordinator', options.main.pid);
    await routed.stop();
  }
  const mean = (n: number) => {
    const of = runs.filter((r) => r.providers === n);
    return of.reduce((sum, r) => sum + r.cpu_ms_per_job, 0) / of.length;
  };
  const one = mean(1);
  const three = mean(3);
  return {
    runs,
    one_provider_cpu_ms: round(one, 2),
    three_providers_cpu_ms: round(three, 2),
    cpu_ratio: round(three / one, 3),
  };
}

function cost(providers: number, load: LoadResult): CreateCost {
  const created = load.steps.create?.status['201'] ?? 0;
  const seconds = load.cpu_s ?? load.duration_s;
  const cpu = load.cpu ?? {};
  const ms = (percent: number | undefined) => ((percent ?? 0) / 100) * seconds * 1000;
  const all = ms(cpu['coordinator']) + ms(cpu['wallet daemon']) + ms(cpu['postgres backends']);
  return {
    providers,
    jobs_per_s: round(created / load.duration_s, 0),
    p99_ms: load.p99_ms,
    cpu_ms_per_job: created ? round(all / created, 2) : 0,
    cpu_ms_coordinator: created ? round(ms(cpu['coordinator']) / created, 2) : 0,
  };
}
