import type { Principal } from '../auth/api-keys';
import type { JobPayment } from './job-payment.entity';
import { canSeePayment, releasedAmountOf, releaseAmountProblem, SettleAsk, settlementRefusal } from './payment-rules';

const client: Principal = { id: 'client-1', role: 'client' };
const otherClient: Principal = { id: 'client-2', role: 'client' };
const admin: Principal = { id: 'admin-1', role: 'admin' };
const miner: Principal = { id: 'miner-1', role: 'miner' };

const payment = (over: Partial<JobPayment> = {}): JobPayment =>
  ({
    payment_id: 'p-1',
    job_id: 'j-1',
    client_id: 'client-1',
    amount: '0.00100000',
    status: 'escrowed',
    payee_address: 'bcrt1qpayee',
    ...over,
  }) as JobPayment;
const ask = (over: Partial<SettleAsk> = {}): SettleAsk => ({ payment_id: 'p-1', action: 'release', ...over });

describe('canSeePayment', () => {
  it.each([
    [client, true],
    [otherClient, false],
    [admin, true],
    [miner, false],
  ])("%o sees client-1's payment: %s", (principal, visible) => {
    expect(canSeePayment(principal, payment())).toBe(visible);
  });
});

describe('settlementRefusal', () => {
  // [what, principal, ask, payment (undefined: none), job state, expected code (undefined: may be decided)]
  const table: [string, Principal, SettleAsk, JobPayment | undefined, string, string | undefined][] = [
    ['release of an escrowed payment with a payee', client, ask(), payment(), 'running', undefined],
    [
      "refund of a queued job's payment",
      client,
      ask({ action: 'refund' }),
      payment({ payee_address: null }),
      'queued',
      undefined,
    ],
    ['no such payment', client, ask(), undefined, 'running', 'PAYMENT_NOT_FOUND'],
    ["another client's payment (404, never 403)", otherClient, ask(), payment(), 'running', 'PAYMENT_NOT_FOUND'],
    ['a miner', miner, ask(), payment(), 'running', 'PAYMENT_NOT_FOUND'],
    ['the wrong job named', client, ask({ job_id: 'j-2' }), payment(), 'running', 'PAYMENT_JOB_MISMATCH'],
    ['the right job named', client, ask({ job_id: 'j-1' }), payment(), 'running', undefined],
    [
      'release of part of the amount (partial release)',
      client,
      ask({ amount: '0.0005' }),
      payment(),
      'running',
      undefined,
    ],
    ['release of the smallest unit', client, ask({ amount: '0.00000001' }), payment(), 'running', undefined],
    [
      'release of more than the amount',
      client,
      ask({ amount: '0.00100001' }),
      payment(),
      'running',
      'VALIDATION_FAILED',
    ],
    ['release of nothing', client, ask({ amount: '0' }), payment(), 'running', 'VALIDATION_FAILED'],
    ['release of a negative amount', client, ask({ amount: '-0.0001' }), payment(), 'running', 'VALIDATION_FAILED'],
    ['release past the scale', client, ask({ amount: '0.000000001' }), payment(), 'running', 'VALIDATION_FAILED'],
    ['release in exponent form', client, ask({ amount: '1e-4' }), payment(), 'running', 'VALIDATION_FAILED'],
    [
      'refund of part of the amount',
      client,
      ask({ action: 'refund', amount: '0.0005' }),
      payment(),
      'queued',
      'VALIDATION_FAILED',
    ],
    ['the whole amount, written differently', client, ask({ amount: '0.001' }), payment(), 'running', undefined],
    ['an amount that is no number', client, ask({ amount: 'all of it' }), payment(), 'running', 'VALIDATION_FAILED'],
    [
      'a partial release of a payment that is not escrowed is told its amount first',
      client,
      ask({ amount: '0.002' }),
      payment({ status: 'released' }),
      'completed',
      'VALIDATION_FAILED',
    ],
    [
      'already releasing',
      client,
      ask({ action: 'refund' }),
      payment({ status: 'releasing' }),
      'completed',
      'PAYMENT_ALREADY_SETTLED',
    ],
    ['already refunded', admin, ask(), payment({ status: 'refunded' }), 'canceled', 'PAYMENT_ALREADY_SETTLED'],
    [
      'not escrowed yet',
      client,
      ask({ action: 'refund' }),
      payment({ status: 'pending' }),
      'queued',
      'PAYMENT_NOT_ESCROWED',
    ],
    [
      'escrow failed',
      client,
      ask({ action: 'refund' }),
      payment({ status: 'failed' }),
      'failed',
      'PAYMENT_NOT_ESCROWED',
    ],
    ['release with no miner assigned', client, ask(), payment({ payee_address: null }), 'queued', 'PAYMENT_NO_PAYEE'],
    [
      'release with no miner assigned, by an admin',
      admin,
      ask(),
      payment({ payee_address: null }),
      'queued',
      'PAYMENT_NO_PAYEE',
    ],
    ['client refund once the job runs', client, ask({ action: 'refund' }), payment(), 'running', 'REFUND_NOT_ALLOWED'],
    [
      'client refund once the job completed',
      client,
      ask({ action: 'refund' }),
      payment(),
      'completed',
      'REFUND_NOT_ALLOWED',
    ],
    ['admin refund of a running job', admin, ask({ action: 'refund' }), payment(), 'running', undefined],
    [
      'status is told before the refund rule',
      client,
      ask({ action: 'refund' }),
      payment({ status: 'released' }),
      'completed',
      'PAYMENT_ALREADY_SETTLED',
    ],
  ];

  it.each(table)('%s', (_what, principal, request, current, jobState, code) => {
    expect(settlementRefusal(principal, request, current, jobState)?.code).toBe(code);
  });
});

describe('settlementRefusal at the currency scale', () => {
  it.each([
    ['0.01', 2, undefined],
    ['0.001', 2, 'has 3 decimal places; the currency allows at most 2'],
    ['0.00100000', 8, undefined],
  ])('release of %s at scale %d', (amount, scale, problem) => {
    expect(releaseAmountProblem(amount, '0.10000000', scale)).toBe(problem);
    expect(settlementRefusal(client, ask({ amount }), payment({ amount: '0.10000000' }), 'running', scale)?.code).toBe(
      problem ? 'VALIDATION_FAILED' : undefined,
    );
  });
});

describe('releasedAmountOf', () => {
  it.each([
    [ask({ amount: '0.0004' }), '0.00040000'],
    [ask({ amount: '0.001' }), '0.00100000'],
    [ask(), null],
    [ask({ action: 'refund', amount: '0.001' }), null],
  ])('%o records %s', (request, recorded) => {
    expect(releasedAmountOf(request)).toBe(recorded);
  });
});
