import { PageQuery } from '../common/page.query';
import { Inject, Injectable } from '@nestjs/common';
import { Readable } from 'node:stream';
import type { Principal } from '../auth/api-keys';
import { notFound } from '../common/errors';
import { amountOut, iso } from '../common/format';
import { Money } from '../common/money';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import type { JobPayment } from '../payments/job-payment.entity';
import { toPaymentView } from '../payments/payment.view';
import type { CsvExport } from './csv-export';
import type {
  EventsQuery,
  ExportQuery,
  FeedPage,
  ListPaymentsQuery,
  PaymentPage,
  PayoutPage,
  SummaryQuery,
  SummaryView,
} from './dto/history.dto';
import {
  decodeFeed,
  decodeKeyset,
  encodeFeed,
  encodeKeyset,
  parseEventTypes,
  parseFilters,
  parseGroupBy,
  PaymentFilters,
  rollupPlan,
} from './history-filters';
import { canReadReceipt, EVENT_TYPE_ROWS, eventType } from './history-rules';
import { PagedPayment, PaymentHistoryRepository } from './payment-history.repository';

const isUuid = (s: string) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(s);

/** Rows per page of the NDJSON export: big enough to amortize a round trip, small enough to stay well under a MiB. */
const EXPORT_BATCH = 1000;

/**
 * An export ready to stream: its first bytes have been read, so a failure to start is
 * still an ordinary error. The body is a CSV export's worker (it writes the response
 * itself) or the NDJSON stream.
 */
export interface ExportStream {
  body: CsvExport | Readable;
  contentType: string;
  filename: string;
}

/**
 * Payment history and reporting: reads only.
 * Scoping comes from `parseFilters` (a client its own payments, a miner what was released
 * to it, an admin everything); the statements are in PaymentHistoryRepository.
 */
@Injectable()
export class HistoryService {
  private readonly currencyCodes: ReadonlySet<string>;
  private readonly scales: ReadonlyMap<string, number>;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly repository: PaymentHistoryRepository,
  ) {
    this.currencyCodes = new Set(config.currencies.keys());
    this.scales = new Map([...config.currencies.values()].map((c) => [c.code, c.scale]));
  }

  async list(principal: Principal, query: ListPaymentsQuery): Promise<PaymentPage> {
    const filters = parseFilters(query, principal, this.currencyCodes);
    const cursor = query.cursor === undefined ? undefined : decodeKeyset(query.cursor);
    const limit = query.limit ?? 20;
    return this.page(await this.repository.listPayments(filters, limit + 1, cursor), limit, (p) =>
      toPaymentView(this.config, p),
    );
  }

  async payouts(principal: Principal, query: PageQuery): Promise<PayoutPage> {
    const cursor = query.cursor === undefined ? undefined : decodeKeyset(query.cursor);
    const limit = query.limit ?? 20;
    return this.page(await this.repository.listPayouts(principal.id, limit + 1, cursor), limit, (p) => ({
      payment_id: p.payment_id,
      job_id: p.job_id,
      // What the miner got: after a partial release, the released part (README "Escrow lifecycle").
      amount: amountOut(this.config, p.released_amount ?? p.amount, p.currency) as string,
      currency: p.currency,
      payee_address: p.payee_address as string,
      transaction_hash: p.transaction_hash as string,
      released_at: iso(p.released_at) as string,
    }));
  }

  async summary(principal: Principal, query: SummaryQuery): Promise<SummaryView> {
    const { group_by: rawGroupBy, ...rawFilters } = query;
    const groupBy = parseGroupBy(rawGroupBy, principal);
    const filters = parseFilters(rawFilters, principal, this.currencyCodes);
    const plan = rollupPlan(filters, groupBy);
    const rows = plan
      ? await this.repository.summaryFromRollup(plan, filters, groupBy)
      : await this.repository.summaryFromPayments(filters, groupBy);
    const totals = new Map<string, { count: bigint; amount: InstanceType<typeof Money> }>();
    for (const row of rows) {
      const total = totals.get(row.currency) ?? { count: 0n, amount: new Money(0) };
      total.count += BigInt(row.count);
      total.amount = total.amount.plus(row.amount);
      totals.set(row.currency, total);
    }
    return {
      rows: rows.map((row) => ({
        ...row,
        count: Number(row.count),
        amount: amountOut(this.config, row.amount, row.currency) as string,
      })),
      totals: [...totals.entries()]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([currency, total]) => ({
          currency,
          count: Number(total.count),
          amount: amountOut(this.config, total.amount.toFixed(), currency) as string,
        })),
    };
  }

  /**
   * Every matching payment as CSV (RFC 4180: CRLF lines, fields quoted when they hold a
   * comma, quote or line break) streamed from one PostgreSQL COPY, or NDJSON read in
   * batches; either way written as the client reads it (backpressure down to the
   * database connection). Resolves once the first bytes are read, so a failure to start is
   * still an ordinary error answer.
   */
  async export(principal: Principal, query: ExportQuery): Promise<ExportStream> {
    const { format = 'csv', ...rawFilters } = query;
    const filters: PaymentFilters = parseFilters(rawFilters, principal, this.currencyCodes);
    if (format === 'csv')
      return {
        body: await this.repository.exportCsv(filters, this.scales),
        contentType: 'text/csv; charset=utf-8',
        filename: 'payments.csv',
      };
    const batches = this.repository.exportNdjsonBatches(filters, this.scales, EXPORT_BATCH);
    const first = await batches.next();
    return {
      body: new BatchStream(batches, first),
      contentType: 'application/x-ndjson; charset=utf-8',
      filename: 'payments.ndjson',
    };
  }

  async events(principal: Principal, query: EventsQuery): Promise<FeedPage> {
    const types = parseEventTypes(query.types);
    const cursor = query.after === undefined ? undefined : decodeFeed(query.after);
    const rows = await this.repository.feed(
      query.limit ?? 100,
      cursor,
      principal.role === 'admin' ? undefined : principal.id,
      types && {
        statuses: types.flatMap((t) => {
          const rows = EVENT_TYPE_ROWS[t];
          return 'to' in rows ? [rows.to] : [];
        }),
        sameStatusReasons: types.flatMap((t) => {
          const rows = EVENT_TYPE_ROWS[t];
          return 'sameStatusReason' in rows ? [rows.sameStatusReason] : [];
        }),
      },
    );
    const last = rows[rows.length - 1];
    return {
      items: rows.map((e) => ({
        event_id: e.event_id,
        type: eventType(e),
        payment_id: e.payment_id,
        job_id: e.job_id,
        from_status: e.from_status,
        to_status: e.to_status,
        reason: e.reason,
        actor: e.actor,
        created_at: iso(e.created_at) as string,
      })),
      // An empty page keeps the caller's position: calling again with it misses nothing.
      next_cursor: last ? encodeFeed({ tx: last.tx, eventId: last.event_id }) : (query.after ?? null),
    };
  }

  /** A payment whose receipt the principal may read (others' are 404, never 403). */
  async receiptPayment(principal: Principal, paymentId: string): Promise<JobPayment> {
    const payment = isUuid(paymentId) ? await this.repository.findPayment(paymentId) : undefined;
    if (!payment || !canReadReceipt(principal, payment)) throw notFound('payment', paymentId);
    return payment;
  }

  foldRollup(): Promise<number> {
    return this.repository.foldRollup();
  }

  private page<T>(
    rows: PagedPayment[],
    limit: number,
    view: (p: PagedPayment) => T,
  ): { items: T[]; next_cursor: string | null } {
    const items = rows.slice(0, limit);
    const last = items[items.length - 1];
    return {
      items: items.map(view),
      next_cursor: rows.length > limit ? encodeKeyset({ at: last.cursor_at, id: last.payment_id }) : null,
    };
  }
}

/**
 * A byte stream over the export's batches with backpressure: `_read` (called only when
 * the consumer wants more) pulls one batch; destroying the stream (client gone, error)
 * returns the generator, which ends the transaction and releases the connection.
 */
class BatchStream extends Readable {
  private started = false;

  constructor(
    private readonly batches: AsyncGenerator<string>,
    private first: IteratorResult<string> | undefined,
  ) {
    super();
  }

  override _read(): void {
    if (!this.started) {
      this.started = true;
      const first = this.first as IteratorResult<string>;
      this.first = undefined;
      this.push(first.done ? null : first.value);
      return;
    }
    this.batches.next().then(
      (next) => (next.done ? this.push(null) : this.push(next.value)),
      (error) => this.destroy(error as Error),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.batches.return(undefined).then(
      () => callback(error),
      () => callback(error),
    );
  }
}
