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
  /** Alternating runs: one provider (the main coordinator), three by priority, three by volume split. */
  runs: (CreateCost & { routing: string })[];
  one_provider_cpu_ms: number;
  three_providers_cpu_ms: number;
  /** CPU per paid job routed by priority over three providers relative to one (the goal: ≤ 1.05). */
  cpu_ratio: number;
  volume_split_cpu_ms: number;
  /** The same for volume split, where each coalesced group is also split into one daemon call per provider. */
  volume_split_cpu_ratio: number;
}

/**
 * What routing costs (issue #14's goal: ≤ 5 % CPU per paid job). The same paid-job creation
 * load runs, alternately, against the main coordinator (the default single provider) and
 * against coordinators whose PAYMENT_PROVIDERS lists three providers — all the one local
 * daemon under three ids, so the holds are the same work — routing by priority (every
 * payment through eligibility, breaker state and its provider recorded: the routing itself)
 * and by volume split (also a coalesced group split into one daemon call per provider).
 * Each coordinator gets an unmeasured warm-up run of the same length first. CPU is summed over the coordinator
 * under load, the daemon and PostgreSQL, per 201.
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
  /**
   * Paid jobs per second offered to every configuration alike. At full speed the CPU per
   * job follows the throughput (bigger coalesced groups when faster), which varies more
   * between runs than the 5 % looked for; at one fixed rate below every configuration's
   * limit, the groups are alike and the CPU per job compares the routing itself.
   */
  rate: number;
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
  const routed = async (routing: string) =>
    startCoordinator(
      `routed-${routing}`,
      {
        ...options.env(await freePort()),
        PAYMENT_PROVIDERS: JSON.stringify(providers),
        PAYMENT_ROUTING: routing,
      },
      options.logFile.replace(/\.log$/, `-${routing}.log`),
    );
  const targets: { routing: string; providers: number; coordinator: Coordinator }[] = [
    { routing: 'single', providers: 1, coordinator: options.main },
  ];
  const runs: RoutingPhaseResult['runs'] = [];
  try {
    for (const routing of ['priority', 'volume_split'])
      targets.push({ routing, providers: 3, coordinator: await routed(routing) });
    const load = (target: (typeof targets)[number], seconds: number, name: string) => {
      trackPid('coordinator', target.coordinator.pid);
      return runLoad(name, {
        url: target.coordinator.url,
        connections: options.connections,
        duration: seconds,
        overallRate: options.rate,
        steps: [options.step()],
        expect: { create: [201] },
      });
    };
    for (const target of targets) await load(target, options.seconds, `warm-up (${target.routing})`);
    for (let round_ = 0; round_ < options.rounds; round_++) {
      for (const target of targets) {
        const run = {
          routing: target.routing,
          ...cost(target.providers, await load(target, options.seconds, `create (${target.routing})`)),
        };
        runs.push(run);
        progress(
          `  routing ${run.routing} over ${run.providers} provider(s): ${run.jobs_per_s} jobs/s, p99 ${run.p99_ms} ms, CPU ${run.cpu_ms_per_job} ms per paid job (coordinator ${run.cpu_ms_coordinator})`,
        );
      }
    }
  } finally {
    trackPid('coordinator', options.main.pid);
    for (const target of targets.slice(1)) await target.coordinator.stop();
  }
  // The median of the rounds: one run disturbed by a checkpoint or autovacuum does not decide it.
  const median = (routing: string) => {
    const of = runs.filter((r) => r.routing === routing).map((r) => r.cpu_ms_per_job);
    of.sort((a, b) => a - b);
    const mid = Math.floor(of.length / 2);
    return of.length % 2 ? of[mid] : (of[mid - 1] + of[mid]) / 2;
  };
  const one = median('single');
  return {
    runs,
    one_provider_cpu_ms: round(one, 2),
    three_providers_cpu_ms: round(median('priority'), 2),
    cpu_ratio: round(median('priority') / one, 3),
    volume_split_cpu_ms: round(median('volume_split'), 2),
    volume_split_cpu_ratio: round(median('volume_split') / one, 3),
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
