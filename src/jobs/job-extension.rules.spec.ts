import type { PaymentStatus } from '../payments/job-payment.entity';
import { ExtensionFacts, planExtension } from './job-extension.rules';

const T0 = Date.parse('2026-11-30T12:00:00.000Z');
const at = (seconds: number) => new Date(T0 + seconds * 1000);
const limits = { jobTtlMaxSeconds: 3600, escrowMaxTimeoutSeconds: 7200 };

/** A job requested at T0 with a 900 s TTL, read at T0 + 100 s; its payment held at T0 + 1 s for 600 s. */
const facts = (
  job: Partial<ExtensionFacts['job']> = {},
  payment: Partial<NonNullable<ExtensionFacts['payment']>> | null = {},
): ExtensionFacts => ({
  now: at(100),
  job: { job_id: 'j-1', state: 'running', requested_at: at(0), expires_at: at(601), ...job },
  payment:
    payment === null
      ? undefined
      : { payment_id: 'p-1', status: 'escrowed' as PaymentStatus, expires_at: at(601), escrowed_at: at(1), ...payment },
});

describe('planExtension', () => {
  // [what, facts, seconds, expected code (undefined: extended), new job deadline (s after T0), new escrow expiry]
  const table: [string, ExtensionFacts, number, string | undefined, number?, number?][] = [
    ['a running paid job', facts(), 300, undefined, 901, 901],
    ['a queued paid job', facts({ state: 'queued' }), 60, undefined, 661, 661],
    ['an unpaid job', facts({ expires_at: at(900) }, null), 2700, undefined, 3600],
    ['up to the job maximum exactly', facts({}, null), 2999, undefined, 3600],
    ['one second past the job maximum', facts({}, null), 3000, 'EXTENSION_OUT_OF_RANGE'],
    ['up to the escrow maximum exactly', facts({}, { escrowed_at: at(-4000) }), 2599, undefined, 3200, 3200],
    ['one second past the escrow maximum', facts({}, { escrowed_at: at(-4000) }), 2600, 'EXTENSION_OUT_OF_RANGE'],
    ['a completed job', facts({ state: 'completed' }), 60, 'INVALID_JOB_TRANSITION'],
    ['an expired job', facts({ state: 'expired' }), 60, 'INVALID_JOB_TRANSITION'],
    ['a canceled job', facts({ state: 'canceled' }), 60, 'INVALID_JOB_TRANSITION'],
    ['a live job past its deadline (not swept yet)', facts({ expires_at: at(100) }), 60, 'JOB_EXPIRED'],
    ['a pending payment', facts({}, { status: 'pending' }), 60, 'PAYMENT_NOT_ESCROWED'],
    ['a releasing payment', facts({}, { status: 'releasing' }), 60, 'PAYMENT_NOT_ESCROWED'],
    ['a refunded payment', facts({}, { status: 'refunded' }), 60, 'PAYMENT_NOT_ESCROWED'],
    [
      'final is told before the payment',
      facts({ state: 'failed' }, { status: 'failed' }),
      60,
      'INVALID_JOB_TRANSITION',
    ],
    ['the payment is told before the maximum', facts({}, { status: 'releasing' }), 99_999, 'PAYMENT_NOT_ESCROWED'],
  ];

  // Rows are read whole: a callback declaring more parameters than a row has would be taken for a `done` callback.
  it.each(table)('%s', (...row) => {
    const [, input, seconds, code, jobAt, escrowAt] = row;
    const { plan, refusal } = planExtension(input, seconds, limits);
    expect(refusal?.code).toBe(code);
    if (code !== undefined) return;
    expect(plan?.jobExpiresAt).toEqual(at(jobAt as number));
    expect(plan?.escrowExpiresAt).toEqual(escrowAt === undefined ? undefined : at(escrowAt));
  });

  it('tells how many seconds are left within the maximum', () => {
    const { refusal } = planExtension(facts({}, null), 5000, limits);
    expect(refusal?.details).toMatchObject({ max_seconds: 2999, limit: 'JOB_TTL_MAX_SECONDS' });
  });
});
