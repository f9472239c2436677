import { existsSync, readFileSync } from 'node:fs';

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: CpuProfileNode[];
  samples?: number[];
  timeDeltas?: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  file: string;
  /** CPU time sampled (idle excluded); percentages below are of this. */
  total_ms: number;
  idle_ms: number;
  /** Self time by function (top entries). */
  top_functions: { fn: string; self_ms: number; pct: number }[];
  /** Inclusive time of the project's own functions (src/, bench/). */
  top_inclusive: { fn: string; self_ms: number; pct: number }[];
  /** Self time by package / area (node_modules/<pkg>, src/<dir>, node internals, GC, idle). */
  by_area: { area: string; self_ms: number; pct: number }[];
}

/**
 * Summarises a V8 `.cpuprofile` (written by `node --cpu-prof`): where the coordinator's
 * CPU went, by function and by package, from the sample counts.
 */
export function summarizeProfile(file: string, top = 25): ProfileSummary | undefined {
  if (!existsSync(file)) return undefined;
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) selfUs.set(samples[i], (selfUs.get(samples[i]) ?? 0) + (deltas[i] ?? 0));
  let idle = 0;
  for (const [id, us] of selfUs) if (byId.get(id)?.callFrame.functionName === '(idle)') idle += us;
  // Percentages of the busy time: a server waiting on the network is idle most of a run.
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0) - idle || 1;

  const fnTime = new Map<string, number>();
  const areaTime = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node || node.callFrame.functionName === '(idle)') continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const short = url
      .replace(/^file:\/\//, '')
      .replace(/^.*\/node_modules\//, 'node_modules/')
      .replace(/^.*\/dist\//, 'dist/');
    const fn = `${functionName || '(anonymous)'} ${short ? `${short}:${lineNumber + 1}` : ''}`.trim();
    fnTime.set(fn, (fnTime.get(fn) ?? 0) + us);
    areaTime.set(area(functionName, url), (areaTime.get(area(functionName, url)) ?? 0) + us);
  }
  const ms = (us: number) => Math.round(us / 100) / 10;
  const pct = (us: number) => Math.round((us / total) * 1000) / 10;
  // Inclusive time per function (self + callees), counted once per stack even under recursion.
  const inclusive = new Map<string, number>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const label = (n: CpuProfileNode) => {
    const short = n.callFrame.url
      .replace(/^file:\/\//, '')
      .replace(/^.*\/node_modules\//, 'node_modules/')
      .replace(/^.*\/dist\//, 'dist/');
    return `${n.callFrame.functionName || '(anonymous)'} ${short ? `${short}:${n.callFrame.lineNumber + 1}` : ''}`.trim();
  };
  for (const [id, us] of selfUs) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const node = byId.get(cur);
      if (!node || node.callFrame.functionName === '(idle)' || node.callFrame.functionName === '(root)') continue;
      const l = label(node);
      if (seen.has(l)) continue;
      seen.add(l);
      inclusive.set(l, (inclusive.get(l) ?? 0) + us);
    }
  }
  return {
    file,
    top_inclusive: [...inclusive.entries()]
      .filter(([fn]) => fn.includes('dist/src/') || fn.includes('dist/bench/'))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([fn, us]) => ({ fn, self_ms: ms(us), pct: pct(us) })),
    total_ms: ms(total),
    idle_ms: ms(idle),
    top_functions: [...fnTime.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([fn, us]) => ({ fn, self_ms: ms(us), pct: pct(us) })),
    by_area: [...areaTime.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([a, us]) => ({ area: a, self_ms: ms(us), pct: pct(us) })),
  };
}

function area(functionName: string, url: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native/builtin)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1];
  const src = /\/dist\/(src\/[^/]+|bench)/.exec(url);
  if (src) return src[1];
  if (url.startsWith('node:')) return 'node:' + url.slice(5).split('/')[0];
  return url;
}

export function renderProfile(p: ProfileSummary, lines = 15): string {
  const out = [
    `CPU profile ${p.file}: ${p.total_ms} ms busy (+ ${p.idle_ms} ms idle); shares of the busy time`,
    '  by area:',
  ];
  for (const a of p.by_area.slice(0, lines)) out.push(`    ${String(a.pct).padStart(5)}%  ${a.area}`);
  out.push("  the project's functions, inclusive time (callees included):");
  for (const f of p.top_inclusive.slice(0, lines)) out.push(`    ${String(f.pct).padStart(5)}%  ${f.fn}`);
  out.push('  top functions (self time):');
  for (const f of p.top_functions.slice(0, lines)) out.push(`    ${String(f.pct).padStart(5)}%  ${f.fn}`);
  return out.join('\n');
}
