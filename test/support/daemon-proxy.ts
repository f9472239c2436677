import { createServer, request as httpRequest, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * An HTTP pass-through in front of a wallet daemon that records every call (route,
 * Idempotency-Key, the daemon's answer) and can hold answers back from the caller: the
 * daemon has done the work, the caller is still waiting. For tests that must know a call
 * really reached the daemon before they crash its caller.
 */

export interface ProxiedCall {
  method: string;
  path: string;
  idempotencyKey: string | undefined;
  /** The daemon's status and body, once it answered. */
  status?: number;
  answer?: string;
  /** Whether the answer was passed on to the caller. */
  delivered: boolean;
}

export interface DaemonProxy {
  url: string;
  calls: ProxiedCall[];
  /** Answers to calls matching `predicate` are kept from the caller (undefined: pass everything on). */
  holdAnswers(predicate: ((call: ProxiedCall) => boolean) | undefined): void;
  /** Calls matching `predicate` are not passed on at all and never answered: the call is on its way, the daemon never sees it. */
  holdRequests(predicate: ((call: ProxiedCall) => boolean) | undefined): void;
  /** Calls matching `predicate` are answered 404 here, as by a daemon without that route. */
  withoutRoutes(predicate: ((call: ProxiedCall) => boolean) | undefined): void;
  /** Passes every answer held so far on to its caller (if it is still there). */
  deliverHeld(): void;
  close(): Promise<void>;
}

export async function startDaemonProxy(target: string): Promise<DaemonProxy> {
  const calls: ProxiedCall[] = [];
  const held = new Map<ServerResponse, () => void>();
  let hold: ((call: ProxiedCall) => boolean) | undefined;
  let swallow: ((call: ProxiedCall) => boolean) | undefined;
  let missing: ((call: ProxiedCall) => boolean) | undefined;

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const key = req.headers['idempotency-key'];
      const call: ProxiedCall = {
        method: req.method ?? 'GET',
        path: req.url ?? '',
        idempotencyKey: typeof key === 'string' ? key : undefined,
        delivered: false,
      };
      calls.push(call);
      if (swallow?.(call)) return;
      if (missing?.(call)) {
        call.status = 404;
        call.delivered = true;
        res
          .writeHead(404, { 'content-type': 'application/json' })
          .end(JSON.stringify({ code: 'NOT_FOUND', message: 'no such route' }));
        return;
      }
      const upstream = httpRequest(`${target}${req.url}`, { method: req.method, headers: req.headers }, (answer) => {
        const body: Buffer[] = [];
        answer.on('data', (chunk: Buffer) => body.push(chunk));
        answer.on('end', () => {
          call.status = answer.statusCode;
          call.answer = Buffer.concat(body).toString('utf8');
          const deliver = () => {
            call.delivered = true;
            res.writeHead(answer.statusCode ?? 502, answer.headers).end(call.answer);
          };
          if (hold?.(call)) {
            held.set(res, deliver);
            return;
          }
          deliver();
        });
      });
      upstream.on('error', () => res.destroy());
      upstream.end(Buffer.concat(chunks));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    holdAnswers(predicate) {
      hold = predicate;
    },
    holdRequests(predicate) {
      swallow = predicate;
    },
    withoutRoutes(predicate) {
      missing = predicate;
    },
    deliverHeld() {
      for (const [res, deliver] of held) if (!res.destroyed) deliver();
      held.clear();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of held.keys()) res.destroy();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
