import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** The range the kernel hands out for port-0 binds: Linux's setting, else the IANA default. */
function ephemeralPorts(): { low: number; high: number } {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (low > 1024 && high >= low) return { low, high };
  } catch {
    // Not Linux: fall through to the IANA range.
  }
  return { low: 49152, high: 65535 };
}

function canListen(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/**
 * A free port below the ephemeral range, for a server a test stops and starts again on
 * the same address. A port-0 port is free for the kernel to hand to any other listener
 * while its server is down — another jest worker's app or daemon — which would then
 * answer the calls meant for the stopped one; ports below the range are never handed
 * out that way.
 */
export async function portOutsideEphemeralRange(host = '127.0.0.1'): Promise<number> {
  const floor = 10_000;
  const { low } = ephemeralPorts();
  if (low - floor < 1_000) throw new Error(`the ephemeral port range starts at ${low}: no room below it`);
  for (let tries = 0; tries < 50; tries++) {
    const port = floor + Math.floor(Math.random() * (low - floor));
    if (await canListen(port, host)) return port;
  }
  throw new Error(`no free port between ${floor} and ${low}`);
}
