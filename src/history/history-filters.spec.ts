import type { Principal } from '../auth/api-keys';
import { DomainError } from '../common/errors';
import {
  decodeFeed,
  decodeKeyset,
  encodeFeed,
  encodeKeyset,
  parseEventTypes,
  parseFilters,
  parseGroupBy,
  parseTimeBound,
  rollupPlan,
} from './history-filters';
import { canReadReceipt, eventType } from './history-rules';

const admin: Principal = { role: 'admin', id: 'admin-1' };
const client: Principal = { role: 'client', id: 'client-1' };
const miner: Principal = { role: 'miner', id: 'miner-1' };
const currencies = new Set(['BTC', 'AITBC']);

/** The field names a 400 carries, or undefined when `run` did not throw. */
function badFields(run: () => unknown): string[] | undefined {
  try {
    run();
    return undefined;
  } catch (error) {
    expect(error).toBeInstanceOf(DomainError);
    expect((error as DomainError).code).toBe('VALIDATION_FAILED');
    return Object.keys(((error as DomainError).details as { fields: object }).fields);
  }
}

describe('parseTimeBound', () => {
  it.each([
    ['2026-11-01', '2026-11-01T00:00:00Z', true],
    ['2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z', true],
    ['2026-11-01T02:00:00+02:00', '2026-11-01T02:00:00+02:00', true],
    ['2026-11-01T00:00:00.000001Z', '2026-11-01T00:00:00.000001Z', false],
    ['2026-11-01T12:30Z', '2026-11-01T12:30Z', false],
  ])('%s → %s (midnight %s)', (input, text, midnight) => {
    expect(parseTimeBound(input)).toEqual({ text, midnight });
  });

  it.each(['yesterday', '2026-11-01T10:00:00', '2026-02-31', '2026-11-01 10:00:00Z', '1700000000'])(
    'refuses %s',
    (input) => expect(parseTimeBound(input)).toBeUndefined(),
  );
});

describe('parseFilters', () => {
  it('parses every filter for an admin', () => {
    expect(
      parseFilters(
        {
          status: 'released, refunded',
          currency: 'BTC',
          job_id: '0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5c',
          client_id: 'client-2',
          miner_id: 'miner-2',
          created_from: '2026-11-01',
          amount_min: '0.001',
          amount_max: '10',
        },
        admin,
        currencies,
      ),
    ).toMatchObject({
      statuses: ['released', 'refunded'],
      currency: 'BTC',
      clientId: 'client-2',
      minerId: 'miner-2',
      createdFrom: { text: '2026-11-01T00:00:00Z', midnight: true },
      amountMin: '0.001',
      amountMax: '10',
    });
  });

  it.each([
    [{ status: 'paid' }, admin, ['status']],
    [{ currency: 'EUR' }, admin, ['currency']],
    [{ job_id: 'abc' }, admin, ['job_id']],
    [{ client_id: 'client-2' }, client, ['client_id']],
    [{ miner_id: 'miner-2' }, client, ['miner_id']],
    [{ amount_min: '1e3', amount_max: '0.123456789' }, admin, ['amount_min', 'amount_max']],
    [{ settled_to: 'now' }, admin, ['settled_to']],
  ])('refuses %j from %j naming %j', (raw, who, fields) => {
    expect(badFields(() => parseFilters(raw, who, currencies))).toEqual(fields);
  });

  it('scopes a client to its own payments and a miner to what was released to it', () => {
    expect(parseFilters({}, client, currencies)).toEqual({ clientId: 'client-1' });
    expect(parseFilters({}, miner, currencies)).toEqual({ minerId: 'miner-1', statuses: ['released'] });
    expect(parseFilters({ status: 'refunded' }, miner, currencies)).toEqual({ minerId: 'miner-1', statuses: [] });
  });
});

describe('parseGroupBy', () => {
  it('always includes currency', () => {
    expect([...parseGroupBy(undefined, client)]).toEqual(['currency']);
    expect([...parseGroupBy('status,day', client)]).toEqual(['currency', 'status', 'day']);
  });
  it.each([
    ['weekday', admin],
    ['day,month', admin],
    ['client_id,miner_id', admin],
    ['client_id', client],
    ['miner_id', miner],
  ])('refuses %s for %j', (raw, who) => {
    expect(badFields(() => parseGroupBy(raw, who))).toEqual(['group_by']);
  });
});

describe('rollupPlan', () => {
  const plan = (raw: Record<string, string>, who: Principal, groupBy = 'status,day') =>
    rollupPlan(parseFilters(raw, who, currencies), parseGroupBy(groupBy, who));
  it.each([
    [{}, admin, 'status,day', { scope: 'a', scopeId: '' }],
    [
      { created_from: '2026-11-01', created_to: '2026-12-01' },
      admin,
      'day',
      { scope: 'a', fromDay: '2026-11-01', toDay: '2026-12-01' },
    ],
    [{}, client, 'status', { scope: 'c', scopeId: 'client-1' }],
    [{}, admin, 'client_id', { scope: 'c', scopeId: undefined }],
    [{}, miner, 'status', { scope: 'm', scopeId: 'miner-1' }],
    [{ status: 'released' }, admin, 'miner_id', { scope: 'm', scopeId: undefined }],
  ] as [Record<string, string>, Principal, string, object][])(
    'uses the rollup for %j by %j grouped by %s',
    (raw, who, groupBy, expected) => {
      expect(plan(raw, who, groupBy)).toMatchObject(expected);
    },
  );
  it.each([
    [{ job_id: '0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5c' }, admin, 'status'],
    [{ amount_min: '1' }, admin, 'status'],
    [{ settled_from: '2026-11-01' }, admin, 'status'],
    [{ created_from: '2026-11-01T12:00:00Z' }, admin, 'status'],
    [{ client_id: 'client-1' }, admin, 'miner_id'],
  ] as [Record<string, string>, Principal, string][])(
    'sums the payments for %j by %j grouped by %s',
    (raw, who, groupBy) => {
      expect(plan(raw, who, groupBy)).toBeUndefined();
    },
  );
});

describe('cursors', () => {
  it('round-trip and refuse anything else', () => {
    const keyset = { at: '2026-11-30T10:00:00.123456Z', id: '0193a5b0-7c1e-7d2a-9c4b-2f1e8d7a6b5c' };
    expect(decodeKeyset(encodeKeyset(keyset))).toEqual(keyset);
    expect(decodeFeed(encodeFeed({ tx: '831', eventId: '1042' }))).toEqual({ tx: '831', eventId: '1042' });
    expect(badFields(() => decodeKeyset('garbage'))).toEqual(['cursor']);
    expect(badFields(() => decodeKeyset(encodeKeyset({ ...keyset, at: '2026-11-30' })))).toEqual(['cursor']);
    expect(badFields(() => decodeFeed(encodeFeed({ tx: '99999999999999999999', eventId: '1' })))).toEqual(['after']);
    expect(badFields(() => decodeFeed(encodeFeed({ tx: '-1', eventId: '1' })))).toEqual(['after']);
  });
});

describe('event types and receipts', () => {
  it('names events after the status they reach', () => {
    expect(eventType({ from_status: null, to_status: 'pending', reason: 'payment_created' })).toBe('payment.created');
    expect(eventType({ from_status: 'releasing', to_status: 'released', reason: 'job_completed' })).toBe(
      'payment.released',
    );
    expect(eventType({ from_status: 'escrowed', to_status: 'escrowed', reason: 'escrow_extended' })).toBe(
      'payment.escrow_extended',
    );
    expect(eventType({ from_status: 'pending', to_status: 'pending', reason: 'provider_failover' })).toBe(
      'payment.provider_changed',
    );
    expect(badFields(() => parseEventTypes('payment.created,payment.paid'))).toEqual(['types']);
    expect(parseEventTypes('payment.created, payment.failed')).toEqual(['payment.created', 'payment.failed']);
  });

  it.each([
    [admin, 'escrowed', null, true],
    [client, 'escrowed', null, true],
    [{ role: 'client', id: 'client-2' }, 'released', 'miner-1', false],
    [miner, 'released', 'miner-1', true],
    [miner, 'releasing', 'miner-1', false],
    [miner, 'released', 'miner-2', false],
  ] as [Principal, string, string | null, boolean][])(
    'receipt for %j of a %s payment of %s: %s',
    (who, status, minerId, readable) => {
      expect(canReadReceipt(who, { client_id: 'client-1', miner_id: minerId, status: status as never })).toBe(readable);
    },
  );
});
