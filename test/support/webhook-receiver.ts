import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { waitFor } from './flow';

/**
 * A real webhook receiver on loopback, as a client would write one: it verifies every
 * request with the `standardwebhooks` library against the secrets it was given and
 * records what arrived. Its answer is up to the test (a status, or "hold": keep the
 * request open until released or the sender goes away).
 */

// Bodies are checked field by field in the specs.
type Body = any;

export interface ReceivedWebhook {
  id: string;
  timestamp: string;
  signature: string;
  raw: string;
  body: Body;
  /** Indexes into the receiver's secrets of those that verify this request. */
  verifiedBy: number[];
  /** The attempt number of this webhook-id at this receiver (1 for the first). */
  attempt: number;
  /** What the receiver answered (0 while held, or when the sender went away first). */
  status: number;
  at: number;
}

export type Answer = number | 'hold';

export class WebhookReceiver {
  readonly received: ReceivedWebhook[] = [];
  /** Secrets the receiver verifies with; a test sets them after registering its endpoint. */
  secrets: string[] = [];
  /** The answer for each request; 204 unless the test says otherwise. */
  answer: (webhook: ReceivedWebhook) => Answer = () => 204;
  /** Largest number of requests for one webhook-id in flight at the same time. */
  maxInFlightPerId = 0;
  private readonly inFlight = new Map<string, number>();
  private readonly held = new Set<ServerResponse>();

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(path = '/hooks'): Promise<WebhookReceiver> {
    // The handler runs only once the server listens, after `receiver` is set below.
    const server = createServer((req, res) => receiver.handle(req, res));
    server.keepAliveTimeout = 60_000;
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    const { port } = server.address() as AddressInfo;
    const receiver = new WebhookReceiver(server, `http://127.0.0.1:${port}${path}`);
    return receiver;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const headers = {
        'webhook-id': String(req.headers['webhook-id'] ?? ''),
        'webhook-timestamp': String(req.headers['webhook-timestamp'] ?? ''),
        'webhook-signature': String(req.headers['webhook-signature'] ?? ''),
      };
      const verifiedBy = this.secrets.flatMap((secret, index) => {
        try {
          new Webhook(secret).verify(raw, headers);
          return [index];
        } catch {
          return [];
        }
      });
      const id = headers['webhook-id'];
      const webhook: ReceivedWebhook = {
        id,
        timestamp: headers['webhook-timestamp'],
        signature: headers['webhook-signature'],
        raw,
        body: safeParse(raw),
        verifiedBy,
        attempt: this.received.filter((w) => w.id === id).length + 1,
        status: 0,
        at: Date.now(),
      };
      this.received.push(webhook);
      const inFlight = (this.inFlight.get(id) ?? 0) + 1;
      this.inFlight.set(id, inFlight);
      this.maxInFlightPerId = Math.max(this.maxInFlightPerId, inFlight);
      const done = () => this.inFlight.set(id, (this.inFlight.get(id) ?? 1) - 1);
      const answer = this.answer(webhook);
      if (answer === 'hold') {
        this.held.add(res);
        res.on('close', () => {
          this.held.delete(res);
          done();
        });
        return;
      }
      webhook.status = answer;
      res.statusCode = answer;
      res.end(answer >= 200 && answer < 300 ? '' : 'not now');
      done();
    });
  }

  /** Answers every held request with `status`. */
  releaseHeld(status = 204): void {
    for (const res of this.held) {
      res.statusCode = status;
      res.end();
    }
    this.held.clear();
  }

  /** The first 2xx-answered request of each webhook-id. */
  accepted(): Map<string, ReceivedWebhook> {
    const out = new Map<string, ReceivedWebhook>();
    for (const w of this.received) if (w.status >= 200 && w.status < 300 && !out.has(w.id)) out.set(w.id, w);
    return out;
  }

  /** Accepted webhooks whose body matches. */
  acceptedWhere(match: (body: Body) => boolean): ReceivedWebhook[] {
    return [...this.accepted().values()].filter((w) => match(w.body));
  }

  /** Waits for an accepted webhook of `type` about a payment or job id; returns it. */
  waitFor(type: string, id: string, timeoutMs = 20_000): Promise<ReceivedWebhook> {
    return waitFor(
      `a ${type} webhook about ${id}`,
      async () =>
        this.acceptedWhere(
          (b) => b?.type === type && (b.data?.payment?.payment_id === id || b.data?.job?.job_id === id),
        )[0],
      timeoutMs,
      25,
    );
  }

  attemptsById(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const w of this.received) counts.set(w.id, (counts.get(w.id) ?? 0) + 1);
    return counts;
  }

  async close(): Promise<void> {
    this.releaseHeld(503);
    this.server.closeAllConnections();
    await new Promise<void>((done) => this.server.close(() => done()));
  }
}

function safeParse(raw: string): Body {
  try {
    return JSON.parse(raw);
  } catch {
    return undefined;
  }
}
