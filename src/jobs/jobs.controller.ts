import { Body, Controller, Get, HttpCode, Inject, Param, Query, Req, Res } from '@nestjs/common';
import {
  ApiBody,
  ApiCreatedResponse,
  ApiNoContentResponse,
  ApiOkResponse,
  ApiOperation,
  ApiSecurity,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Principal } from '../auth/api-keys';
import { CurrentPrincipal, Roles } from '../auth/auth.guard';
import { ApiErrors, KEYED, PAYMENT_TERMS, POST } from '../common/api-errors';
import { batchAnswer, inPlace, itemError, validateItem } from '../common/batch';
import { DomainError } from '../common/errors';
import { PostRoute } from '../common/write-routes';
import type { AppConfig } from '../config/app-config';
import { APP_CONFIG } from '../config/config.module';
import {
  CreateJobDto,
  JobBatchDto,
  JobBatchItemView,
  JobBatchView,
  JobFailureDto,
  JobPage,
  JobResultDto,
  JobView,
  ListJobsQuery,
  MinerView,
  RegisterMinerDto,
} from './dto/job.dto';
import { ExtendJobDto, ExtensionView } from './dto/job-extension.dto';
import { JobExtension } from './job-extension.service';
import { toJobView, toMinerView } from './job.view';
import { toPaymentView } from '../payments/payment.view';
import type { Job } from './job.entity';
import { JobsService } from './jobs.service';

@ApiTags('jobs')
@ApiSecurity('api-key')
@Controller('v1/jobs')
export class JobsController {
  constructor(
    private readonly jobs: JobsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly extension: JobExtension,
  ) {}

  @PostRoute()
  @Roles('client')
  @ApiOperation({
    summary: 'Create a job; with payment_amount its payment is escrowed in the same request',
    description:
      'A payment the wallet daemon refuses (the payer is short of funds) is still a 201: the job is `failed` with `payment_status: failed` ' +
      'and the reason in `error`. While the daemon does not answer, the job is `queued` with `payment_status: pending` until the escrow is held.',
  })
  @ApiBody({
    type: CreateJobDto,
    examples: {
      paid: {
        summary: 'A paid job (paid from your configured wallet)',
        value: {
          payload: { job_type: 'ai_inference', parameters: { model: 'gpt-4', prompt: 'Hello' } },
          constraints: {},
          ttl_seconds: 900,
          payment_amount: '0.001',
          payment_currency: 'BTC',
          escrow_timeout_seconds: 3600,
        },
      },
      unpaid: {
        summary: 'A job without payment',
        value: { payload: { job_type: 'ai_inference', parameters: { model: 'gpt-4', prompt: 'Hello' } } },
      },
    },
  })
  @ApiCreatedResponse({ type: JobView })
  @ApiErrors(KEYED, POST, PAYMENT_TERMS)
  async create(@CurrentPrincipal() principal: Principal, @Body() body: CreateJobDto): Promise<JobView> {
    return toJobView(this.config, await this.jobs.create(principal, body));
  }

  @PostRoute('batch')
  @HttpCode(200)
  @Roles('client')
  @ApiOperation({
    summary: 'Create up to 100 jobs in one request; their payments are escrowed together',
    description:
      'Each item gets exactly the answer its single POST /v1/jobs would get (status_code 201 and the job, or the error), in request order; ' +
      'a failing item never fails its neighbours. A malformed envelope (not an array, 0 or more than 100 items) is a 400 with nothing done.',
  })
  @ApiOkResponse({ type: JobBatchView })
  @ApiErrors(KEYED, POST)
  async batch(
    @CurrentPrincipal() principal: Principal,
    @Body() body: JobBatchDto,
    @Req() request: FastifyRequest,
  ): Promise<JobBatchView> {
    const checked = body.items.map((raw) => validateItem(CreateJobDto, raw));
    const valid = checked.filter((item): item is CreateJobDto => !(item instanceof DomainError));
    const outcomes = inPlace(checked, await this.jobs.createMany(principal, valid));
    const items = outcomes.map((outcome, index): JobBatchItemView => {
      if (outcome.error === undefined)
        return { index, status_code: 201, job: toJobView(this.config, (outcome as { value: Job }).value) };
      const error = itemError(outcome.error, String(request.id));
      return { index, status_code: error.status_code, error };
    });
    return batchAnswer(items);
  }

  @Get()
  @Roles('client', 'admin')
  @ApiOperation({ summary: 'List jobs (own jobs for clients), newest first' })
  @ApiOkResponse({ type: JobPage })
  @ApiErrors(KEYED, 'VALIDATION_FAILED')
  async list(@CurrentPrincipal() principal: Principal, @Query() query: ListJobsQuery): Promise<JobPage> {
    const page = await this.jobs.list(principal, query.limit ?? 20, query.cursor);
    return { items: page.items.map((job) => toJobView(this.config, job)), next_cursor: page.next_cursor };
  }

  @Get(':job_id')
  @Roles('client', 'admin')
  @ApiOperation({ summary: "A job (clients: their own; another client's job is 404)" })
  @ApiOkResponse({ type: JobView })
  @ApiErrors(KEYED, 'JOB_NOT_FOUND')
  async get(@CurrentPrincipal() principal: Principal, @Param('job_id') jobId: string): Promise<JobView> {
    return toJobView(this.config, await this.jobs.get(principal, jobId));
  }

  @PostRoute(':job_id/cancel')
  @HttpCode(200)
  @Roles('client', 'admin')
  @ApiOperation({ summary: 'Cancel a queued or running job; its escrow is refunded' })
  @ApiOkResponse({ type: JobView })
  @ApiErrors(KEYED, POST, 'JOB_NOT_FOUND', 'INVALID_JOB_TRANSITION', 'PAYMENT_ALREADY_SETTLED', 'PAYMENT_NOT_ESCROWED')
  async cancel(@CurrentPrincipal() principal: Principal, @Param('job_id') jobId: string): Promise<JobView> {
    return toJobView(this.config, await this.jobs.cancel(principal, jobId));
  }

  @PostRoute(':job_id/extend')
  @HttpCode(200)
  @Roles('client', 'admin')
  @ApiOperation({
    summary: "Give a queued or running job more time: its deadline and its escrow's expiry move `seconds` later",
    description:
      "Owner or admin. Both deadlines move by exactly `seconds`, within JOB_TTL_MAX_SECONDS of the job's request and " +
      "ESCROW_MAX_TIMEOUT_SECONDS of the escrow's hold (400 `EXTENSION_OUT_OF_RANGE`, `details.max_seconds` says how much is left). " +
      '409 when the job is final (`INVALID_JOB_TRANSITION`), past its deadline (`JOB_EXPIRED`), or its payment is not `escrowed` (`PAYMENT_NOT_ESCROWED`: still pending, ' +
      'or already releasing, refunding or settled). The extension is recorded (event `escrow_extended`) before the wallet daemon is told; ' +
      'a 503 `WALLET_DAEMON_UNAVAILABLE` means it is recorded and in force and the daemon call is retried automatically ' +
      '(a retry with the same Idempotency-Key does not extend again).',
  })
  @ApiBody({
    type: ExtendJobDto,
    examples: {
      halfHour: { summary: 'Thirty more minutes', value: { seconds: 1800 } },
    },
  })
  @ApiOkResponse({ type: ExtensionView })
  @ApiErrors(
    KEYED,
    POST,
    'JOB_NOT_FOUND',
    'INVALID_JOB_TRANSITION',
    'JOB_EXPIRED',
    'PAYMENT_NOT_ESCROWED',
    'EXTENSION_OUT_OF_RANGE',
    'WALLET_DAEMON_UNAVAILABLE',
  )
  async extend(
    @CurrentPrincipal() principal: Principal,
    @Param('job_id') jobId: string,
    @Body() body: ExtendJobDto,
  ): Promise<ExtensionView> {
    const { job, payment } = await this.extension.extend(principal, jobId, body.seconds);
    return { job: toJobView(this.config, job), payment: payment && toPaymentView(this.config, payment) };
  }
}

@ApiTags('miners')
@ApiSecurity('api-key')
@Controller('v1/miners')
export class MinersController {
  constructor(
    private readonly jobs: JobsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  @PostRoute('register')
  @HttpCode(200)
  @Roles('miner')
  @ApiOperation({ summary: 'Register (or change) the payout address; required before paid work' })
  @ApiOkResponse({ type: MinerView })
  @ApiErrors(KEYED, POST, 'INVALID_ADDRESS')
  async register(@CurrentPrincipal() principal: Principal, @Body() body: RegisterMinerDto): Promise<MinerView> {
    return toMinerView(await this.jobs.registerMiner(principal, body.payout_address));
  }

  @PostRoute('poll')
  @HttpCode(200)
  @Roles('miner')
  @ApiOperation({ summary: 'Claim the oldest dispatchable job (204 when there is none)' })
  @ApiOkResponse({ type: JobView })
  @ApiNoContentResponse({ description: 'No job to hand out' })
  @ApiErrors(KEYED, POST)
  async poll(
    @CurrentPrincipal() principal: Principal,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<JobView | undefined> {
    const job = await this.jobs.poll(principal);
    if (!job) {
      reply.status(204);
      return undefined;
    }
    return toJobView(this.config, job);
  }

  @PostRoute('jobs/:job_id/result')
  @HttpCode(200)
  @Roles('miner')
  @ApiOperation({ summary: 'Report a result: running → completed; the escrow is released to this miner' })
  @ApiOkResponse({ type: JobView })
  @ApiErrors(
    KEYED,
    POST,
    'JOB_NOT_FOUND',
    'JOB_NOT_ASSIGNED',
    'JOB_EXPIRED',
    'INVALID_JOB_TRANSITION',
    'PAYMENT_ALREADY_SETTLED',
    'PAYMENT_NOT_ESCROWED',
  )
  async result(
    @CurrentPrincipal() principal: Principal,
    @Param('job_id') jobId: string,
    @Body() body: JobResultDto,
  ): Promise<JobView> {
    return toJobView(this.config, await this.jobs.complete(principal, jobId, body.result, body.metrics));
  }

  @PostRoute('jobs/:job_id/fail')
  @HttpCode(200)
  @Roles('miner')
  @ApiOperation({ summary: 'Report a failure: running → failed; the escrow is refunded' })
  @ApiOkResponse({ type: JobView })
  @ApiErrors(
    KEYED,
    POST,
    'JOB_NOT_FOUND',
    'JOB_NOT_ASSIGNED',
    'JOB_EXPIRED',
    'INVALID_JOB_TRANSITION',
    'PAYMENT_ALREADY_SETTLED',
    'PAYMENT_NOT_ESCROWED',
  )
  async fail(
    @CurrentPrincipal() principal: Principal,
    @Param('job_id') jobId: string,
    @Body() body: JobFailureDto,
  ): Promise<JobView> {
    return toJobView(this.config, await this.jobs.fail(principal, jobId, body.error));
  }
}
