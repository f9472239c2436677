/** One point of a connections sweep. */
export interface CurvePoint {
  connections: number;
  req_per_s: number;
  p99_ms: number;
  p50_ms: number;
}

const W = 720;
const H = 400;
const M = { left: 70, right: 70, top: 60, bottom: 56 };
const BLUE = '#1f6feb';
const ORANGE = '#d1580b';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A round axis maximum at or above `v` (1, 2, 2.5, 5 × 10^k). */
function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const f of [1, 2, 2.5, 5, 10]) if (f * p >= v) return f * p;
  return 10 * p;
}

/**
 * Throughput (left axis, blue) and p99 latency (right axis, orange) against connections
 * (log scale), as a self-contained SVG: no dependency, readable on GitHub and in a browser.
 * `limits` draws dashed horizontal goal lines on either axis.
 */
export function curveSvg(
  points: CurvePoint[],
  title: string,
  subtitle: string,
  limits: { throughput?: number; p99?: number } = {},
): string {
  const pts = [...points].sort((a, b) => a.connections - b.connections);
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const xs = pts.map((p) => Math.log2(p.connections));
  const xMin = Math.min(...xs);
  const xMax = Math.max(...xs);
  const x = (c: number) => M.left + (xMax === xMin ? plotW / 2 : ((Math.log2(c) - xMin) / (xMax - xMin)) * plotW);
  // A goal far above the data would flatten the curve: it is drawn only when within 2× of the data.
  const tData = Math.max(...pts.map((p) => p.req_per_s));
  const lData = Math.max(...pts.map((p) => p.p99_ms));
  const tGoal = limits.throughput !== undefined && limits.throughput <= tData * 2 ? limits.throughput : undefined;
  const lGoal = limits.p99 !== undefined && limits.p99 <= lData * 2 ? limits.p99 : undefined;
  const tMax = niceMax(Math.max(tData, tGoal ?? 0) * 1.1);
  const lMax = niceMax(Math.max(lData, lGoal ?? 0) * 1.1);
  const yT = (v: number) => M.top + plotH - (v / tMax) * plotH;
  const yL = (v: number) => M.top + plotH - (v / lMax) * plotH;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
  );
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`);
  out.push(`<text x="${W / 2}" y="36" text-anchor="middle" fill="#555">${esc(subtitle)}</text>`);
  // Grid and both y axes: five steps each.
  for (let i = 0; i <= 5; i++) {
    const y = Math.round(M.top + plotH - (i / 5) * plotH);
    out.push(`<line x1="${M.left}" y1="${y}" x2="${M.left + plotW}" y2="${y}" stroke="#e5e5e5"/>`);
    out.push(
      `<text x="${M.left - 6}" y="${y + 4}" text-anchor="end" fill="${BLUE}">${Math.round((tMax * i) / 5).toLocaleString('en-US')}</text>`,
    );
    out.push(
      `<text x="${M.left + plotW + 6}" y="${y + 4}" fill="${ORANGE}">${Math.round((lMax * i) / 5).toLocaleString('en-US')}</text>`,
    );
  }
  out.push(`<rect x="${M.left}" y="${M.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#999"/>`);
  for (const p of pts) {
    out.push(
      `<line x1="${x(p.connections)}" y1="${M.top + plotH}" x2="${x(p.connections)}" y2="${M.top + plotH + 5}" stroke="#999"/>`,
    );
    out.push(`<text x="${x(p.connections)}" y="${M.top + plotH + 18}" text-anchor="middle">${p.connections}</text>`);
  }
  out.push(`<text x="${M.left + plotW / 2}" y="${H - 14}" text-anchor="middle">HTTP connections (log scale)</text>`);
  out.push(
    `<text transform="translate(18 ${M.top + plotH / 2}) rotate(-90)" text-anchor="middle" fill="${BLUE}">paid jobs created per second</text>`,
  );
  out.push(
    `<text transform="translate(${W - 14} ${M.top + plotH / 2}) rotate(90)" text-anchor="middle" fill="${ORANGE}">p99 latency, ms</text>`,
  );
  if (limits.throughput !== undefined && tGoal === undefined) {
    out.push(
      `<text x="${M.left + 4}" y="${M.top - 7}" fill="${BLUE}" opacity="0.8">↑ goal ≥ ${limits.throughput.toLocaleString('en-US')}/s is above this scale</text>`,
    );
  }
  if (tGoal !== undefined) {
    out.push(
      `<line x1="${M.left}" y1="${yT(tGoal)}" x2="${M.left + plotW}" y2="${yT(tGoal)}" stroke="${BLUE}" stroke-dasharray="6 4" opacity="0.6"/>`,
    );
    out.push(
      `<text x="${M.left + 4}" y="${yT(tGoal) - 4}" fill="${BLUE}" opacity="0.8">goal ≥ ${tGoal.toLocaleString('en-US')}/s</text>`,
    );
  }
  if (lGoal !== undefined) {
    out.push(
      `<line x1="${M.left}" y1="${yL(lGoal)}" x2="${M.left + plotW}" y2="${yL(lGoal)}" stroke="${ORANGE}" stroke-dasharray="6 4" opacity="0.6"/>`,
    );
    out.push(
      `<text x="${M.left + plotW - 4}" y="${yL(lGoal) - 4}" text-anchor="end" fill="${ORANGE}" opacity="0.8">goal p99 ≤ ${lGoal} ms</text>`,
    );
  }
  const series = (
    y: (p: CurvePoint) => number,
    color: string,
    label: (p: CurvePoint) => string,
    below: (p: CurvePoint) => boolean,
  ) => {
    out.push(
      `<polyline fill="none" stroke="${color}" stroke-width="2.5" points="${pts.map((p) => `${x(p.connections).toFixed(1)},${y(p).toFixed(1)}`).join(' ')}"/>`,
    );
    for (const p of pts) {
      out.push(`<circle cx="${x(p.connections).toFixed(1)}" cy="${y(p).toFixed(1)}" r="4" fill="${color}"/>`);
      out.push(
        `<text x="${x(p.connections).toFixed(1)}" y="${(y(p) + (below(p) ? 16 : -8)).toFixed(1)}" text-anchor="middle" fill="${color}" font-size="11">${esc(label(p))}</text>`,
      );
    }
  };
  series(
    (p) => yT(p.req_per_s),
    BLUE,
    (p) => `${Math.round(p.req_per_s).toLocaleString('en-US')}/s`,
    // Each point's two labels go on the sides facing away from each other, so they never overlap.
    (p) => yT(p.req_per_s) > yL(p.p99_ms),
  );
  series(
    (p) => yL(p.p99_ms),
    ORANGE,
    (p) => `${Math.round(p.p99_ms)} ms`,
    (p) => yL(p.p99_ms) >= yT(p.req_per_s),
  );
  // Legend.
  const lx = M.left + 10;
  const ly = M.top + 12;
  out.push(`<rect x="${lx - 6}" y="${ly - 12}" width="200" height="38" fill="#ffffff" opacity="0.85" stroke="#ddd"/>`);
  out.push(
    `<line x1="${lx}" y1="${ly - 4}" x2="${lx + 22}" y2="${ly - 4}" stroke="${BLUE}" stroke-width="2.5"/><text x="${lx + 28}" y="${ly}">throughput (left axis)</text>`,
  );
  out.push(
    `<line x1="${lx}" y1="${ly + 14}" x2="${lx + 22}" y2="${ly + 14}" stroke="${ORANGE}" stroke-width="2.5"/><text x="${lx + 28}" y="${ly + 18}">p99 latency (right axis)</text>`,
  );
  out.push('</svg>');
  return out.join('\n') + '\n';
}
