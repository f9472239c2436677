import { PageQuery } from '../common/page.query';
import { Controller, Get, Query, Res } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiProduces, ApiSecurity, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { Readable } from 'node:stream';
import type { Principal } from '../auth/api-keys';
import { CurrentPrincipal, Roles } from '../auth/auth.guard';
import { ApiErrors, KEYED } from '../common/api-errors';
import {
  EventsQuery,
  ExportQuery,
  FeedPage,
  ListPaymentsQuery,
  PaymentPage,
  PayoutPage,
  SummaryQuery,
  SummaryView,
} from './dto/history.dto';
import { HistoryService } from './history.service';
import { EXPORT_COLUMNS } from './payment-history.repository';

const FILTERS_NOTE =
  'Filters (all optional, combined with AND): status (comma list), currency, job_id, client_id and miner_id (admins), ' +
  'created_from/created_to and settled_from/settled_to (ISO-8601, half-open [from, to)), amount_min/amount_max (inclusive decimal strings). ' +
  'A bad filter is a 400 VALIDATION_FAILED naming it in details.fields.';

// Static paths (`payments/summary`, `payments/export`) take precedence over `payments/:payment_id` in Fastify's router.
@ApiTags('history')
@ApiSecurity('api-key')
@Controller('v1')
export class HistoryController {
  constructor(private readonly history: HistoryService) {}

  @Get('payments')
  @Roles('client', 'admin')
  @ApiOperation({
    summary: 'List payments (own payments for clients), newest first, with filters and cursor pagination',
    description: `${FILTERS_NOTE} Newest first by created_at; pages neither skip nor repeat rows while payments are added.`,
  })
  @ApiOkResponse({ type: PaymentPage })
  @ApiErrors(KEYED, 'VALIDATION_FAILED')
  list(@CurrentPrincipal() principal: Principal, @Query() query: ListPaymentsQuery): Promise<PaymentPage> {
    return this.history.list(principal, query);
  }

  @Get('payments/summary')
  @Roles('client', 'miner', 'admin')
  @ApiOperation({
    summary: 'Counts and exact amounts per currency (and status, day or month, client or miner)',
    description:
      `${FILTERS_NOTE} Clients see their own payments, miners the payments released to them, admins everything. ` +
      'Amounts are exact decimal strings and never summed across currencies.',
  })
  @ApiOkResponse({ type: SummaryView })
  @ApiErrors(KEYED, 'VALIDATION_FAILED')
  summary(@CurrentPrincipal() principal: Principal, @Query() query: SummaryQuery): Promise<SummaryView> {
    return this.history.summary(principal, query);
  }

  @Get('payments/export')
  @Roles('client', 'admin')
  @ApiOperation({
    summary: 'Every matching payment, streamed as CSV (RFC 4180) or NDJSON',
    description:
      `${FILTERS_NOTE} Same scoping and order as the list, no limit. CSV columns, in this order: ${EXPORT_COLUMNS.join(', ')}; ` +
      'amounts are exact strings at the currency scale, null is an empty field. NDJSON: one PaymentView per line.',
  })
  @ApiProduces('text/csv', 'application/x-ndjson')
  @ApiOkResponse({
    description: 'An attachment (Content-Disposition), streamed',
    content: {
      'text/csv': {
        schema: { type: 'string' },
        example:
          `${EXPORT_COLUMNS.join(',')}\r\n` +
          '0193a5b0-7c1f-7000-8000-000000000001,0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5c,client-1,0.00100000,BTC,released,escrow,' +
          'esc_1,bcrt1qescrow,bcrt1qpayer,bcrt1qpayer,bcrt1qpayee,miner-1,local,0.00100000,0.00000000,9f2c,,' +
          '2026-11-30T10:00:00.000Z,2026-11-30T10:00:02.000Z,2026-11-30T10:00:00.050Z,2026-11-30T10:00:02.000Z,,2026-11-30T11:00:00.000Z,,"done, thanks"\r\n',
      },
      'application/x-ndjson': { schema: { type: 'string' } },
    },
  })
  @ApiErrors(KEYED, 'VALIDATION_FAILED')
  async export(
    @CurrentPrincipal() principal: Principal,
    @Query() query: ExportQuery,
    @Res() reply: FastifyReply,
  ): Promise<void> {
    const out = await this.history.export(principal, query);
    const headers = {
      'Content-Type': out.contentType,
      'Content-Disposition': `attachment; filename="${out.filename}"`,
      'Cache-Control': 'no-store',
    };
    if (out.body instanceof Readable) {
      await reply.headers(headers).send(out.body);
      return;
    }
    // The CSV export writes the response itself (each buffer goes back to its worker once
    // the socket has it), so Fastify hands the reply over, with the headers set so far
    // (security, rate limit) written out here.
    const csv = out.body;
    try {
      reply.hijack();
      for (const [name, value] of Object.entries(reply.getHeaders()))
        if (value !== undefined) reply.raw.setHeader(name, value);
      reply.raw.writeHead(200, headers);
    } catch (error) {
      csv.stop();
      throw error;
    }
    await csv.writeTo(reply.raw);
  }

  @Get('events')
  @Roles('client', 'admin')
  @ApiOperation({
    summary: 'The payment event feed, oldest first, in commit order',
    description:
      'Keep `next_cursor` and pass it as `after`: every event is seen exactly once, in commit order, none skipped even when ' +
      'transactions commit out of id order (events appear once no older transaction is still running). Clients see events of their own payments.',
  })
  @ApiOkResponse({ type: FeedPage })
  @ApiErrors(KEYED, 'VALIDATION_FAILED')
  events(@CurrentPrincipal() principal: Principal, @Query() query: EventsQuery): Promise<FeedPage> {
    return this.history.events(principal, query);
  }

  @Get('miners/me/payouts')
  @Roles('miner')
  @ApiTags('miners')
  @ApiOperation({ summary: 'Payments released to this miner, newest release first' })
  @ApiOkResponse({ type: PayoutPage })
  @ApiErrors(KEYED, 'VALIDATION_FAILED')
  payouts(@CurrentPrincipal() principal: Principal, @Query() query: PageQuery): Promise<PayoutPage> {
    return this.history.payouts(principal, query);
  }
}
