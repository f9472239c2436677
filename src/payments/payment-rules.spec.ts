import type { Principal } from '../auth/api-keys';
import type { JobPayment } from './job-payment.entity';
import { canSeePayment, SettleAsk, settlementRefusal } from './payment-rules';

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
    ['part of the amount', client, ask({ amount: '0.0005' }), payment(), 'running', 'VALIDATION_FAILED'],
    ['the whole amount, written differently', client, ask({ amount: '0.001' }), payment(), 'running', undefined],
    ['an amount that is no number', client, ask({ amount: 'all of it' }), payment(), 'running', 'VALIDATION_FAILED'],
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
