import { Body, Controller, Get, HttpCode, Inject, Param, Req } from '@nestjs/common';
import { ApiBody, ApiCreatedResponse, ApiOkResponse, ApiOperation, ApiSecurity, ApiTags } from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import type { Principal } from '../auth/api-keys';
import { ApiErrors, KEYED, PAYMENT_TERMS, POST } from '../common/api-errors';
import { assertDistinct, batchAnswer, inPlace, itemError, validateItem } from '../common/batch';
import { DomainError } from '../common/errors';
import { PostRoute } from '../common/write-routes';
import { CurrentPrincipal, Roles } from '../auth/auth.guard';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';

/** Release and refund bodies: both fields optional; a job_id that is not the payment's is a 409. */
const settleBody = (reason: string) =>
  ApiBody({
    type: SettlePaymentDto,
    required: false,
    examples: {
      reason: { summary: 'With a reason', value: { reason } },
      job: {
        summary: "Checking that it is the job's payment (use your job's id)",
        value: { job_id: '0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5c', reason },
      },
    },
  });
import {
  CreatePaymentDto,
  PaymentBatchDto,
  PaymentBatchItemDto,
  PaymentBatchItemView,
  PaymentBatchView,
  PaymentEventsView,
  PaymentView,
  ReleasePaymentDto,
  SettlePaymentDto,
} from './dto/payment.dto';
import type { JobPayment } from './job-payment.entity';
import type { SettleAsk } from './payment-rules';
import { toEventView, toPaymentView } from './payment.view';
import { PaymentsService } from './payments.service';

@ApiTags('payments')
@ApiSecurity('api-key')
@Controller('v1')
export class PaymentsController {
  constructor(
    private readonly payments: PaymentsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  @PostRoute('payments')
  @Roles('client')
  @ApiOperation({
    summary: 'Pay for an existing queued job of yours; the amount is escrowed at once',
    description:
      'A payment the wallet daemon refuses (the payer is short of funds) is still a 201, with `status: failed` and the reason in `failure_reason`.',
  })
  @ApiBody({
    type: CreatePaymentDto,
    examples: {
      default: {
        summary: 'Escrow 0.001 BTC from your configured wallet',
        value: { job_id: '0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5c', amount: '0.001', currency: 'BTC' },
      },
    },
  })
  @ApiCreatedResponse({ type: PaymentView })
  @ApiErrors(KEYED, POST, PAYMENT_TERMS, 'JOB_NOT_FOUND', 'JOB_ALREADY_PAID', 'INVALID_JOB_TRANSITION')
  async create(@CurrentPrincipal() principal: Principal, @Body() body: CreatePaymentDto): Promise<PaymentView> {
    return toPaymentView(this.config, await this.payments.create(principal, body));
  }

  @PostRoute('payments/batch')
  @HttpCode(200)
  @Roles('client', 'admin')
  @ApiOperation({
    summary: 'Release or refund up to 500 payments in one request',
    description:
      'Each item gets exactly the answer its single release/refund call would get (status_code, payment or error), in request order; ' +
      'a failing item never fails its neighbours. A malformed envelope (not an array, 0 or more than 500 items, a repeated payment_id) is a 400 with nothing done.',
  })
  @ApiOkResponse({ type: PaymentBatchView })
  @ApiErrors(KEYED, POST)
  async batch(
    @CurrentPrincipal() principal: Principal,
    @Body() body: PaymentBatchDto,
    @Req() request: FastifyRequest,
  ): Promise<PaymentBatchView> {
    assertDistinct(body.items, 'payment_id');
    const checked = body.items.map((raw) => validateItem(PaymentBatchItemDto, raw));
    const asks = checked.filter((item): item is PaymentBatchItemDto => !(item instanceof DomainError));
    const outcomes = inPlace(checked, await this.payments.settleRequested(principal, asks as SettleAsk[]));
    const items = outcomes.map((outcome, index): PaymentBatchItemView => {
      const raw = body.items[index];
      const head = {
        index,
        payment_id: typeof raw.payment_id === 'string' ? raw.payment_id : null,
        action: typeof raw.action === 'string' ? raw.action : null,
      };
      if (outcome.error === undefined)
        return {
          ...head,
          status_code: 200,
          payment: toPaymentView(this.config, (outcome as { payment: JobPayment }).payment),
        };
      const error = itemError(outcome.error, String(request.id));
      return { ...head, status_code: error.status_code, error };
    });
    return batchAnswer(items);
  }

  @Get('payments/:payment_id')
  @Roles('client', 'admin')
  @ApiOperation({ summary: "A payment (clients: their own; another client's payment is 404)" })
  @ApiOkResponse({ type: PaymentView })
  @ApiErrors(KEYED, 'PAYMENT_NOT_FOUND')
  async get(@CurrentPrincipal() principal: Principal, @Param('payment_id') paymentId: string): Promise<PaymentView> {
    return toPaymentView(this.config, await this.payments.get(principal, paymentId));
  }

  @Get('jobs/:job_id/payment')
  @Roles('client', 'admin')
  @ApiOperation({ summary: "A job's payment (404 when the job has none)" })
  @ApiOkResponse({ type: PaymentView })
  @ApiErrors(KEYED, 'PAYMENT_NOT_FOUND')
  async getForJob(@CurrentPrincipal() principal: Principal, @Param('job_id') jobId: string): Promise<PaymentView> {
    return toPaymentView(this.config, await this.payments.getForJob(principal, jobId));
  }

  @PostRoute('payments/:payment_id/release')
  @HttpCode(200)
  @Roles('client', 'admin')
  @ApiOperation({
    summary: "Release the escrow to the assigned miner's payout address (all of it, or `amount` of it)",
    description:
      'With `amount` (a partial release) the miner is paid that much and the rest of the escrow goes back to the refund address, ' +
      'in one settlement at the wallet daemon; the payment ends `released` with `released_amount` and `refunded_amount`. ' +
      "`amount` must be a decimal string > 0, at most the payment's amount and the currency's scale (400 otherwise, nothing done).",
  })
  @ApiBody({
    type: ReleasePaymentDto,
    required: false,
    examples: {
      reason: { summary: 'Release it all, with a reason', value: { reason: 'Job completed successfully' } },
      partial: {
        summary: 'Partial release: pay the miner 0.0004, refund the rest',
        value: { amount: '0.0004', reason: 'Half the frames rendered' },
      },
      job: {
        summary: "Checking that it is the job's payment (use your job's id)",
        value: { job_id: '0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5c', reason: 'Job completed successfully' },
      },
    },
  })
  @ApiOkResponse({ type: PaymentView })
  @ApiErrors(
    KEYED,
    POST,
    'PAYMENT_NOT_FOUND',
    'PAYMENT_JOB_MISMATCH',
    'PAYMENT_NOT_ESCROWED',
    'PAYMENT_ALREADY_SETTLED',
    'PAYMENT_NO_PAYEE',
  )
  async release(
    @CurrentPrincipal() principal: Principal,
    @Param('payment_id') paymentId: string,
    @Body() body: ReleasePaymentDto,
  ): Promise<PaymentView> {
    return toPaymentView(this.config, await this.payments.release(principal, paymentId, body ?? {}));
  }

  @PostRoute('payments/:payment_id/refund')
  @HttpCode(200)
  @Roles('client', 'admin')
  @ApiOperation({ summary: 'Refund the escrow to the refund address (clients: only before the job runs)' })
  @settleBody('Not needed any more')
  @ApiOkResponse({ type: PaymentView })
  @ApiErrors(
    KEYED,
    POST,
    'PAYMENT_NOT_FOUND',
    'PAYMENT_JOB_MISMATCH',
    'PAYMENT_NOT_ESCROWED',
    'PAYMENT_ALREADY_SETTLED',
    'REFUND_NOT_ALLOWED',
  )
  async refund(
    @CurrentPrincipal() principal: Principal,
    @Param('payment_id') paymentId: string,
    @Body() body: SettlePaymentDto,
  ): Promise<PaymentView> {
    return toPaymentView(this.config, await this.payments.refund(principal, paymentId, body ?? {}));
  }

  @Get('payments/:payment_id/events')
  @Roles('client', 'admin')
  @ApiOperation({ summary: "The payment's audit trail, oldest first" })
  @ApiOkResponse({ type: PaymentEventsView })
  @ApiErrors(KEYED, 'PAYMENT_NOT_FOUND')
  async events(
    @CurrentPrincipal() principal: Principal,
    @Param('payment_id') paymentId: string,
  ): Promise<PaymentEventsView> {
    return { items: (await this.payments.events(principal, paymentId)).map(toEventView) };
  }
}
