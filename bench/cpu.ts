import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import type { Pool } from 'pg';

/**
 * Where the machine's CPU went during a phase: the coordinator, the wallet daemon, the
 * PostgreSQL backends serving the bench databases, the load generator (this process),
 * and everything else (PostgreSQL's background writers, and any other work on the
 * machine — a figure taken while something else was busy is marked as such).
 * Percentages are of one core (200 % = both cores of a 2-core machine).
 */
const TICK = 100; // USER_HZ on Linux

const tracked = new Map<string, number>();
let backendSource: { db: Pool; databases: string[] } | undefined;

export function trackPid(name: string, pid: number): void {
  tracked.set(name, pid);
}

export function untrackPid(name: string): void {
  tracked.delete(name);
}

/** Counts the server processes of these databases (when the server runs on the same host). */
export function trackBackends(db: Pool, databases: string[]): void {
  backendSource = { db, databases };
}

interface Snapshot {
  at: number;
  machineBusy: number;
  machineTotal: number;
  procs: Map<string, number>;
  backends: Map<number, number>;
}

function procTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime + stime
  } catch {
    return undefined;
  }
}

function machineTicks(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = v[3] + (v[4] ?? 0);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

async function backendPids(): Promise<number[]> {
  if (!backendSource) return [];
  try {
    const { rows } = await backendSource.db.query(`SELECT pid FROM pg_stat_activity WHERE datname = ANY($1)`, [
      backendSource.databases,
    ]);
    return rows.map((r) => Number(r.pid));
  } catch {
    return [];
  }
}

export async function cpuSnapshot(): Promise<Snapshot> {
  const m = machineTicks();
  const procs = new Map<string, number>();
  for (const [name, pid] of tracked) {
    const t = procTicks(pid);
    if (t !== undefined) procs.set(name, t);
  }
  const self = procTicks(process.pid);
  if (self !== undefined) procs.set('load generator', self);
  const backends = new Map<number, number>();
  for (const pid of await backendPids()) {
    const t = procTicks(pid);
    if (t !== undefined) backends.set(pid, t);
  }
  return { at: Date.now(), machineBusy: m.busy, machineTotal: m.total, procs, backends };
}

export type CpuUse = Record<string, number>;

export async function cpuSince(start: Snapshot): Promise<CpuUse> {
  const end = await cpuSnapshot();
  const seconds = (end.at - start.at) / 1000;
  const pct = (ticks: number) => Math.round((ticks / TICK / seconds) * 100);
  const out: CpuUse = {};
  let attributed = 0;
  for (const [name, t] of end.procs) {
    const before = start.procs.get(name);
    if (before === undefined) continue;
    out[name] = pct(t - before);
    attributed += t - before;
  }
  // Backends that started during the phase (pools open connections on demand) count whole;
  // those that ended during it are lost (their time lands in "other").
  let pg = 0;
  for (const [pid, t] of end.backends) pg += t - (start.backends.get(pid) ?? 0);
  if (backendSource) {
    out['postgres backends'] = pct(pg);
    attributed += pg;
  }
  // /proc/stat counts in the same USER_HZ ticks, summed over CPUs.
  const busy = end.machineBusy - start.machineBusy;
  out['other (pg background, rest of machine)'] = Math.max(0, pct(busy - attributed));
  out['machine busy'] = pct(busy);
  out['machine capacity'] = cpus().length * 100;
  return out;
}

export function renderCpu(use: CpuUse | undefined): string {
  if (!use) return '';
  return Object.entries(use)
    .filter(([k]) => k !== 'machine capacity')
    .map(([k, v]) => `${k} ${v}%`)
    .join(', ');
}
