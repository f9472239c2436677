import { parse } from 'csv-parse/sync';
import { type ClientRequest, get as httpGet, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client } from 'pg';
import { HistoryService } from '../src/history/history.service';
import { EXPORT_COLUMNS } from '../src/history/payment-history.repository';
import type { TestApp } from './support/app';
import { Api, Body, Dec, expectStatus, startApp, sum } from './support/payments';

/**
 * Payment history and reporting over HTTP against the whole app, a real PostgreSQL and
 * the real local wallet daemon: the list's filters and pagination, tenant scoping, the
 * summary against the list, the export read back by a real CSV parser, and the event
 * feed while transactions commit out of order.
 */
jest.setTimeout(120_000);

type Who = 'client' | 'client2' | 'miner' | 'miner2' | 'admin';

/** RFC 4180 as the export has always written it: quoted (quotes doubled) only with a comma, quote or line break; null empty; CRLF. */
const csvField = (value: string | null) =>
  value === null ? '' : /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
const csvLine = (fields: (string | null)[]) => `${fields.map(csvField).join(',')}\r\n`;

/** A reason with every character RFC 4180 must quote. */
const AWKWARD_REASON = 'changed my mind, "really"\nsecond line';

describe('payment history (e2e)', () => {
  let t: TestApp;
  let api: Api;
  /** Every payment of the fixture, as GET /v1/payments/:id shows it after the fixture settled. */
  let all: Body[];
  let released: Body[];

  const get = (who: Who, path: string) => t.http.get(path).set('X-Api-Key', api.key(who));

  /** Every page of a list, following next_cursor. */
  async function listAll(who: Who, query: Record<string, string> = {}, limit = 7): Promise<Body[]> {
    const items: Body[] = [];
    let cursor: string | null = null;
    do {
      const params = new URLSearchParams({ ...query, limit: String(limit), ...(cursor ? { cursor } : {}) });
      const page = expectStatus(await get(who, `/v1/payments?${params}`), 200, `GET /v1/payments?${params}`);
      items.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor);
    return items;
  }

  const ids = (items: Body[]) => items.map((p) => p.payment_id);
  /** Newest first: created_at descending, then payment_id descending. */
  const newestFirst = (items: Body[]) =>
    [...items].sort((a, b) =>
      a.created_at !== b.created_at
        ? b.created_at.localeCompare(a.created_at)
        : b.payment_id.localeCompare(a.payment_id),
    );

  beforeAll(async () => {
    t = await startApp();
    api = new Api(t);
    // Fixture: client-1 pays 8 jobs of different amounts, client-2 pays 3. Some are released
    // to miner-1, one to miner-2, some refunded (one with a reason RFC 4180 must quote), the rest stay escrowed.
    const amounts = ['0.001', '0.0025', '0.1', '1.23456789', '0.00001', '2', '0.5', '0.00000999'];
    const jobs: Body[] = [];
    for (const amount of amounts) jobs.push(await api.paidJob('client', { payment_amount: amount }));
    const jobs2: Body[] = [];
    for (const amount of ['0.003', '0.07', '1']) jobs2.push(await api.paidJob('client2', { payment_amount: amount }));

    await api.registerFreshMiner('miner');
    await api.registerFreshMiner('miner2');
    // Miners take the oldest queued job: release jobs[0..2] to miner-1, jobs2[0] to miner-2 …
    for (const [job, miner] of [
      [jobs[0], 'miner'],
      [jobs[1], 'miner'],
      [jobs[2], 'miner'],
      [jobs[3], 'miner2'],
    ] as const) {
      await api.pollFor(job.job_id, miner);
      expectStatus(await api.result(miner, job.job_id), 200, 'result');
    }
    // … refund two of client-1's (one with an awkward reason) and one of client-2's.
    expectStatus(await api.refund('client', jobs[4].payment_id, { reason: AWKWARD_REASON }), 200, 'refund');
    expectStatus(await api.cancel('client', jobs[5].job_id), 200, 'cancel');
    expectStatus(await api.cancel('client2', jobs2[0].job_id), 200, 'cancel');
    for (const job of [...jobs, ...jobs2]) {
      const payment = await api.payment(job.payment_id);
      if (['releasing', 'refunding'].includes(payment.status))
        await api.redriveUntil(job.payment_id, payment.status === 'releasing' ? 'released' : 'refunded');
    }
    all = [];
    for (const job of [...jobs, ...jobs2]) all.push(await api.payment(job.payment_id));
    released = all.filter((p) => p.status === 'released');
    expect(released).toHaveLength(4);
    expect(all.filter((p) => p.status === 'refunded')).toHaveLength(3);
  });

  afterAll(async () => {
    await t?.close();
  });

  describe('GET /v1/payments', () => {
    it('lists every payment to an admin, newest first, each exactly as GET /v1/payments/:id shows it', async () => {
      const items = await listAll('admin', {}, 4);
      expect(items).toEqual(newestFirst(all));
    });

    it('gives each PaymentView miner_id, provider_id and released/refunded amounts derived from the outcome', async () => {
      const items = await listAll('admin');
      const byStatus = (status: string) => items.filter((p) => p.status === status);
      for (const p of byStatus('released')) {
        expect(p.miner_id).toMatch(/^miner-/);
        expect(p).toMatchObject({ provider_id: 'local', released_amount: p.amount, refunded_amount: '0.00000000' });
      }
      for (const p of byStatus('refunded'))
        expect(p).toMatchObject({ provider_id: 'local', released_amount: '0.00000000', refunded_amount: p.amount });
      for (const p of byStatus('escrowed')) expect(p).toMatchObject({ released_amount: null, refunded_amount: null });
    });

    const cases: [string, Record<string, string>, (p: Body) => boolean][] = [
      ['status (one)', { status: 'released' }, (p) => p.status === 'released'],
      ['status (list)', { status: 'refunded,escrowed' }, (p) => ['refunded', 'escrowed'].includes(p.status)],
      ['currency', { currency: 'BTC' }, (p) => p.currency === 'BTC'],
      ['currency with no payments', { currency: 'AITBC' }, () => false],
      ['client_id', { client_id: 'client-2' }, (p) => p.client_id === 'client-2'],
      ['miner_id', { miner_id: 'miner-1' }, (p) => p.miner_id === 'miner-1'],
      ['amount_min (inclusive)', { amount_min: '0.1' }, (p) => new Dec(p.amount).gte('0.1')],
      ['amount_max (inclusive)', { amount_max: '0.0025' }, (p) => new Dec(p.amount).lte('0.0025')],
      ['settled_from', { settled_from: '2000-01-01' }, (p) => p.released_at !== null || p.refunded_at !== null],
      ['settled_to in the past', { settled_to: '2000-01-01T00:00:00Z' }, () => false],
      [
        'combined: status, amount range and client',
        { status: 'released,escrowed', amount_min: '0.002', amount_max: '1', client_id: 'client-1' },
        (p) =>
          ['released', 'escrowed'].includes(p.status) &&
          new Dec(p.amount).gte('0.002') &&
          new Dec(p.amount).lte('1') &&
          p.client_id === 'client-1',
      ],
    ];
    it.each(cases)('filters by %s', async (_, query, keep) => {
      const expected = newestFirst(all.filter(keep));
      const items = await listAll('admin', query, 2);
      expect(ids(items)).toEqual(ids(expected));
    });

    it('filters by job_id', async () => {
      const target = all[3];
      expect(ids(await listAll('admin', { job_id: target.job_id }))).toEqual([target.payment_id]);
    });

    it('filters by created_from/created_to, half-open, to the microsecond', async () => {
      const sorted = newestFirst(all).reverse();
      const [from] = await api.query<{ at: string }>(
        `SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at FROM job_payments WHERE payment_id = $1`,
        [sorted[2].payment_id],
      );
      const [to] = await api.query<{ at: string }>(
        `SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at FROM job_payments WHERE payment_id = $1`,
        [sorted[6].payment_id],
      );
      const items = await listAll('admin', { created_from: from.at, created_to: to.at });
      expect(ids(items)).toEqual(ids(sorted.slice(2, 6).reverse()));
    });

    it('shows a client only its own payments, whatever it asks', async () => {
      const mine = await listAll('client');
      expect(ids(mine)).toEqual(ids(newestFirst(all.filter((p) => p.client_id === 'client-1'))));
      const theirs = await listAll('client2');
      expect(ids(theirs)).toEqual(ids(newestFirst(all.filter((p) => p.client_id === 'client-2'))));
      // Another client's job id finds nothing rather than leaking its payment.
      const foreignJob = all.find((p) => p.client_id === 'client-2').job_id;
      expect(await listAll('client', { job_id: foreignJob })).toEqual([]);
    });

    it('refuses client_id and miner_id filters from a client, and the list to miners', async () => {
      const answer = await get('client', '/v1/payments?client_id=client-2');
      expect(answer.status).toBe(400);
      expect(answer.body.details.fields.client_id).toBeDefined();
      expect((await get('client', '/v1/payments?miner_id=miner-1')).status).toBe(400);
      expect((await get('miner', '/v1/payments')).status).toBe(403);
    });

    it('pages without gaps or repeats while payments are being created', async () => {
      const before = ids(await listAll('admin', {}, 100));
      let creating = true;
      const created: string[] = [];
      const writer = (async () => {
        while (creating) created.push((await api.paidJob('client2', { payment_amount: '0.0001' })).payment_id);
      })();
      const seen: string[] = [];
      let cursor: string | null = null;
      try {
        do {
          const page: Body = expectStatus(
            await get('admin', `/v1/payments?limit=2${cursor ? `&cursor=${cursor}` : ''}`),
            200,
            'page',
          );
          seen.push(...ids(page.items));
          cursor = page.next_cursor;
          // Make sure inserts really interleave with the pages.
          while (created.length < seen.length / 4) await new Promise((r) => setTimeout(r, 10));
        } while (cursor);
      } finally {
        creating = false;
        await writer;
      }
      expect(created.length).toBeGreaterThan(0);
      expect(new Set(seen).size).toBe(seen.length);
      // Every payment that existed when paging began was seen, in order; newer ones only before them.
      const old = seen.filter((id) => before.includes(id));
      expect(old).toEqual(before);
      expect(seen.filter((id) => !before.includes(id)).every((id) => created.includes(id))).toBe(true);
      // Settle the new escrows so later tests see a stable fixture.
      for (const id of created) expectStatus(await api.refund('admin', id), 200, 'refund');
      all = [];
      for (const p of await listAll('admin', {}, 100)) all.push(p);
    });

    it.each([
      ['status', 'status=paid'],
      ['currency', 'currency=XYZ'],
      ['job_id', 'job_id=abc'],
      ['created_from', 'created_from=yesterday'],
      ['created_to', 'created_to=2026-11-30T10:00:00'],
      ['settled_from', 'settled_from=2026-02-31'],
      ['amount_min', 'amount_min=1e3'],
      ['amount_max', 'amount_max=-1'],
      ['limit', 'limit=0'],
      ['limit', 'limit=101'],
      ['cursor', 'cursor=not-a-cursor'],
      ['foo', 'foo=1'],
    ])('answers a bad %s (%s) with 400 VALIDATION_FAILED naming it', async (field, query) => {
      const answer = await get('admin', `/v1/payments?${query}`);
      expect(answer.status).toBe(400);
      expect(answer.body).toMatchObject({ status_code: 400, code: 'VALIDATION_FAILED' });
      expect(Object.keys(answer.body.details.fields ?? {})).toContain(field);
    });
  });

  describe('GET /v1/miners/me/payouts and receipts', () => {
    it("lists a miner's released payments only, newest release first", async () => {
      const page = expectStatus(await get('miner', '/v1/miners/me/payouts?limit=100'), 200, 'payouts');
      const mine = released
        .filter((p) => p.miner_id === 'miner-1')
        .sort((a, b) => b.released_at.localeCompare(a.released_at) || b.payment_id.localeCompare(a.payment_id));
      expect(page.items).toEqual(
        mine.map((p) => ({
          payment_id: p.payment_id,
          job_id: p.job_id,
          amount: p.amount,
          currency: p.currency,
          payee_address: p.payee_address,
          transaction_hash: p.transaction_hash,
          released_at: p.released_at,
        })),
      );
      const other = expectStatus(await get('miner2', '/v1/miners/me/payouts'), 200, 'payouts');
      expect(ids(other.items)).toEqual(ids(released.filter((p) => p.miner_id === 'miner-2')));
      // Pages of one.
      const first = expectStatus(await get('miner', '/v1/miners/me/payouts?limit=1'), 200, 'page');
      const second = expectStatus(
        await get('miner', `/v1/miners/me/payouts?limit=1&cursor=${first.next_cursor}`),
        200,
        'page',
      );
      expect([...ids(first.items), ...ids(second.items)]).toEqual(ids(mine).slice(0, 2));
      expect((await get('client', '/v1/miners/me/payouts')).status).toBe(403);
    });

    it('lets the paid miner read its receipt, and nobody else but the client and admins', async () => {
      const paid = released.find((p) => p.miner_id === 'miner-1');
      const receipt = expectStatus(await get('miner', `/v1/payments/${paid.payment_id}/receipt`), 200, 'receipt');
      expect(receipt).toMatchObject({ payment_id: paid.payment_id, miner_id: 'miner-1', status: 'released' });
      expect((await get('miner2', `/v1/payments/${paid.payment_id}/receipt`)).status).toBe(404);
      expect((await get('client2', `/v1/payments/${paid.payment_id}/receipt`)).status).toBe(404);
      const refunded = all.find((p) => p.status === 'refunded');
      expect((await get('miner', `/v1/payments/${refunded.payment_id}/receipt`)).status).toBe(404);
      // The receipt route is the only payment read a miner gets.
      expect((await get('miner', `/v1/payments/${paid.payment_id}`)).status).toBe(403);
    });
  });

  describe('GET /v1/payments/summary', () => {
    /** Expected rows computed from the list: count and exact sum per key. */
    function expectedRows(items: Body[], keys: (p: Body) => Record<string, unknown>) {
      const groups = new Map<string, { key: Record<string, unknown>; items: Body[] }>();
      for (const p of items) {
        const key = keys(p);
        const name = JSON.stringify(key);
        groups.set(name, { key, items: [...(groups.get(name)?.items ?? []), p] });
      }
      return [...groups.values()].map(({ key, items: group }) => ({
        ...key,
        count: group.length,
        amount: sum(group.map((p) => p.amount)).toFixed(8),
      }));
    }
    const sortRows = (rows: Body[]) => [...rows].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));

    async function summary(who: Who, query: string): Promise<Body> {
      return expectStatus(await get(who, `/v1/payments/summary?${query}`), 200, `summary ${query}`);
    }

    const day = (p: Body) => p.created_at.slice(0, 10);

    it('groups by currency, status and day with exact amounts equal to the list sums (before and after the fold)', async () => {
      for (const fold of [false, true]) {
        if (fold) expect(await t.app.get(HistoryService).foldRollup()).toBeGreaterThanOrEqual(0);
        const answer = await summary('admin', 'group_by=currency,status,day');
        expect(sortRows(answer.rows)).toEqual(
          sortRows(expectedRows(all, (p) => ({ currency: p.currency, status: p.status, day: day(p) }))),
        );
        expect(answer.totals).toEqual([
          { currency: 'BTC', count: all.length, amount: sum(all.map((p) => p.amount)).toFixed(8) },
        ]);
      }
    });

    it.each([
      ['status and month for a client', 'client', 'group_by=status,month', (p: Body) => p.client_id === 'client-1'],
      ['client_id for an admin', 'admin', 'group_by=client_id', () => true],
      ['miner_id for an admin', 'admin', 'group_by=miner_id&status=released', (p: Body) => p.status === 'released'],
      [
        'a filter the rollup lacks (amount_min)',
        'admin',
        'group_by=status&amount_min=0.002',
        (p: Body) => new Dec(p.amount).gte('0.002'),
      ],
      [
        'a day-aligned created range',
        'admin',
        'created_from=2000-01-01&created_to=2100-01-01&group_by=day',
        () => true,
      ],
    ] as [string, Who, string, (p: Body) => boolean][])(
      'summarizes by %s exactly as the list sums',
      async (_, who, query, keep) => {
        const params = new URLSearchParams(query);
        const group = (params.get('group_by') ?? '').split(',');
        const answer = await summary(who, query);
        const keys = (p: Body) => ({
          currency: p.currency,
          ...(group.includes('status') ? { status: p.status } : {}),
          ...(group.includes('day') ? { day: day(p) } : {}),
          ...(group.includes('month') ? { month: p.created_at.slice(0, 7) } : {}),
          ...(group.includes('client_id') ? { client_id: p.client_id } : {}),
          ...(group.includes('miner_id') ? { miner_id: p.miner_id } : {}),
        });
        expect(sortRows(answer.rows)).toEqual(sortRows(expectedRows(all.filter(keep), keys)));
      },
    );

    it('gives a miner the totals of what was released to it, and nothing else', async () => {
      const answer = await summary('miner', 'group_by=status');
      const mine = released.filter((p) => p.miner_id === 'miner-1');
      expect(answer.rows).toEqual([
        { currency: 'BTC', status: 'released', count: mine.length, amount: sum(mine.map((p) => p.amount)).toFixed(8) },
      ]);
      expect((await summary('miner', 'status=refunded')).rows).toEqual([]);
      expect((await get('miner', '/v1/payments/summary?group_by=client_id')).status).toBe(400);
    });

    it.each([['group_by=currency,weekday'], ['group_by=day,month'], ['group_by=client_id,miner_id'], ['status=bogus']])(
      'answers a bad %s with 400',
      async (query) => {
        const answer = await get('admin', `/v1/payments/summary?${query}`);
        expect(answer.status).toBe(400);
        expect(answer.body.code).toBe('VALIDATION_FAILED');
      },
    );
  });

  describe('GET /v1/payments/export', () => {
    it('streams CSV (RFC 4180) that a CSV parser reads back to exactly the list, awkward reasons included', async () => {
      const answer = await get('admin', '/v1/payments/export').buffer(true);
      expect(answer.status).toBe(200);
      expect(answer.headers['content-type']).toMatch(/^text\/csv/);
      expect(answer.headers['content-disposition']).toMatch(/^attachment; filename="payments.csv"/);
      expect(answer.headers['cache-control']).toBe('no-store');
      // The CSV export writes its own response; the security headers of every answer are on it too.
      expect(answer.headers['x-content-type-options']).toBe('nosniff');
      const records: string[][] = parse(answer.text, { relax_column_count: false });
      expect(records[0]).toEqual([...EXPORT_COLUMNS]);
      const expected = newestFirst(all).map((p) => EXPORT_COLUMNS.map((c) => (p[c] === null ? '' : String(p[c]))));
      expect(records.slice(1)).toEqual(expected);
      const awkward = records.find((r) => r[EXPORT_COLUMNS.indexOf('settle_reason')] === AWKWARD_REASON);
      expect(awkward).toBeDefined();
      // Amounts are the exact strings of the API: same digits, same sum.
      const amounts = records.slice(1).map((r) => r[EXPORT_COLUMNS.indexOf('amount')]);
      expect(sum(amounts).toFixed(8)).toBe(sum(all.map((p) => p.amount)).toFixed(8));
    });

    it('writes the CSV byte for byte: header, CRLF lines, quoting only where needed, null as an empty field', async () => {
      const answer = await get('admin', '/v1/payments/export').buffer(true);
      expect(answer.status).toBe(200);
      const expected =
        csvLine([...EXPORT_COLUMNS]) +
        newestFirst(all)
          .map((p) => csvLine(EXPORT_COLUMNS.map((c) => (p[c] === null ? null : String(p[c])))))
          .join('');
      expect(answer.text).toBe(expected);
      // A client's export: its own payments only, the same bytes as its part of the list.
      const own = await get('client2', '/v1/payments/export').buffer(true);
      const mine = newestFirst(all.filter((p) => p.client_id === 'client-2'));
      expect(own.text).toBe(
        csvLine([...EXPORT_COLUMNS]) +
          mine.map((p) => csvLine(EXPORT_COLUMNS.map((c) => (p[c] === null ? null : String(p[c]))))).join(''),
      );
      // Nothing matches: the header alone.
      const none = await get('admin', '/v1/payments/export?amount_min=999999').buffer(true);
      expect(none.text).toBe(csvLine([...EXPORT_COLUMNS]));
    });

    it('streams NDJSON, one PaymentView per line, with the filters and scope of the list', async () => {
      const answer = await get('client', '/v1/payments/export?format=ndjson&status=refunded').buffer(true);
      expect(answer.status).toBe(200);
      expect(answer.headers['content-type']).toMatch(/^application\/x-ndjson/);
      const lines = answer.text
        .split('\n')
        .filter((l: string) => l.length > 0)
        .map((l: string) => JSON.parse(l));
      expect(lines).toEqual(await listAll('client', { status: 'refunded' }));
      expect(lines.length).toBeGreaterThan(0);
    });

    it('streams more rows than one batch in order, nothing lost or repeated', async () => {
      // 4,500 extra settled payments of client-2 by SQL (the export reads 1,000 per batch).
      const template = all.find((p) => p.status === 'refunded' && p.client_id === 'client-2');
      await api.query(
        `WITH jobs AS (
           INSERT INTO job (job_id, client_id, state, payload, constraints, ttl_seconds, requested_at, expires_at, updated_at)
           SELECT gen_random_uuid(), 'client-2', 'canceled', '{}'::jsonb, '{}'::jsonb, 900, now(), now(), now()
             FROM generate_series(1, 4500)
           RETURNING job_id)
         INSERT INTO job_payments (payment_id, job_id, client_id, amount, currency, status, payer_address, refund_address,
                                   refund_transaction_hash, escrow_timeout_seconds, created_at, updated_at, refunded_at, expires_at)
         SELECT gen_random_uuid(), job_id, 'client-2', (row_number() OVER ())::numeric / 100000000, 'BTC', 'refunded',
                $1, $1, 'seeded', 3600, now() - random() * interval '1 day', now(), now(), now()
           FROM jobs`,
        [template.payer_address],
      );
      const answer = await get('admin', '/v1/payments/export?client_id=client-2').buffer(true);
      const records: string[][] = parse(answer.text);
      const listed = await listAll('admin', { client_id: 'client-2' }, 100);
      expect(listed.length).toBeGreaterThan(4500);
      expect(records.slice(1).map((r) => r[0])).toEqual(ids(listed));
      const summed = await summary('admin', 'client_id=client-2');
      expect(summed.totals[0].amount).toBe(sum(listed.map((p) => p.amount)).toFixed(8));
    });

    async function summary(who: Who, query: string): Promise<Body> {
      return expectStatus(await get(who, `/v1/payments/summary?${query}`), 200, `summary ${query}`);
    }

    /** 100,000 payments of a client of their own: far more than the socket buffers hold, so a COPY still runs while its client does not read. */
    async function seedBulk(): Promise<void> {
      await api.query(
        `WITH jobs AS (
           INSERT INTO job (job_id, client_id, state, payload, constraints, ttl_seconds, requested_at, expires_at, updated_at)
           SELECT gen_random_uuid(), 'client-bulk', 'canceled', '{}'::jsonb, '{}'::jsonb, 900, now(), now(), now()
             FROM generate_series(1, 100000)
           RETURNING job_id)
         INSERT INTO job_payments (payment_id, job_id, client_id, amount, currency, status, payer_address, refund_address,
                                   refund_transaction_hash, escrow_timeout_seconds, created_at, updated_at, refunded_at, expires_at)
         SELECT gen_random_uuid(), job_id, 'client-bulk', 0.001, 'BTC', 'refunded', 'payer', 'payer', 'seeded', 3600,
                now() - random() * interval '1 day', now(), now(), now()
           FROM jobs`,
      );
    }
    async function dropBulk(): Promise<void> {
      await api.query(`DELETE FROM job_payments WHERE client_id = 'client-bulk'`);
      await api.query(`DELETE FROM job WHERE client_id = 'client-bulk'`);
    }
    /** COPY statements running in the test database (the exports' own connections). */
    const copying = async () =>
      Number(
        (
          await api.query<{ n: string }>(
            `SELECT count(*) AS n FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle' AND query LIKE 'COPY (%'`,
          )
        )[0].n,
      );
    /** Polls until `copying()` is `n` (10 s at most) and returns the last count. */
    async function copyingBecomes(n: number): Promise<number> {
      let now = await copying();
      for (let i = 0; i < 100 && now !== n; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        now = await copying();
      }
      return now;
    }
    /** The bulk export on a real socket (to pause and drop it): the request, and its response once the head arrives. */
    async function bulkRequest(): Promise<{ request: ClientRequest; response: Promise<IncomingMessage> }> {
      const server = t.app.getHttpServer();
      if (!server.listening) await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { port } = server.address() as AddressInfo;
      let request!: ClientRequest;
      const response = new Promise<IncomingMessage>((resolve, reject) => {
        request = httpGet(
          {
            host: '127.0.0.1',
            port,
            path: '/v1/payments/export?client_id=client-bulk',
            headers: { 'X-Api-Key': api.key('admin') },
          },
          resolve,
        ).on('error', reject);
      });
      return { request, response };
    }
    const bulkExport = async () => (await bulkRequest()).response;

    it('a client that goes away mid-export leaves no connection busy', async () => {
      await seedBulk();
      try {
        const response = await bulkExport();
        expect(response.statusCode).toBe(200);
        // Read one chunk, then stop reading: the COPY waits on the full socket.
        await new Promise((resolve) => response.once('data', resolve));
        response.pause();
        expect(await copying()).toBe(1);
        response.destroy();
        expect(await copyingBecomes(0)).toBe(0);
        // Exports still run.
        const again = await get('admin', '/v1/payments/export?client_id=client-1').buffer(true);
        expect(again.status).toBe(200);
        expect(parse(again.text).length).toBe(all.filter((p) => p.client_id === 'client-1').length + 1);
      } finally {
        await dropBulk();
      }
    });

    it('runs at most four CSV exports at once per instance; the next starts when one ends', async () => {
      await seedBulk();
      const responses: IncomingMessage[] = [];
      try {
        const requests = Array.from({ length: 5 }, () =>
          bulkExport().then((response) => {
            response.pause();
            responses.push(response);
            return response;
          }),
        );
        expect(await copyingBecomes(4)).toBe(4);
        // The fifth waits for a place: still four statements, and no answer for it, a second later.
        await new Promise((resolve) => setTimeout(resolve, 1000));
        expect(await copying()).toBe(4);
        expect(responses).toHaveLength(4);
        responses[0].destroy();
        await Promise.all(requests);
        expect(responses).toHaveLength(5);
        expect(responses.every((r) => r.statusCode === 200)).toBe(true);
        expect(await copyingBecomes(4)).toBe(4);
      } finally {
        for (const r of responses) r.destroy();
        expect(await copyingBecomes(0)).toBe(0);
        await dropBulk();
      }
    });

    it('an export whose client left while it waited for a place holds no connection once its turn comes', async () => {
      await seedBulk();
      const responses: IncomingMessage[] = [];
      try {
        for (let i = 0; i < 4; i++) {
          const response = await bulkExport();
          response.pause();
          responses.push(response);
        }
        expect(await copyingBecomes(4)).toBe(4);
        // A fifth waits for a place; its client gives up meanwhile.
        const fifth = await bulkRequest();
        fifth.response.catch(() => undefined);
        await new Promise((resolve) => setTimeout(resolve, 500));
        fifth.request.destroy();
        await new Promise((resolve) => setTimeout(resolve, 500));
        // A place frees: the fifth export starts, finds its client gone and stops, so three remain.
        responses.shift()?.destroy();
        expect(await copyingBecomes(3)).toBe(3);
        await new Promise((resolve) => setTimeout(resolve, 1000));
        expect(await copying()).toBe(3);
      } finally {
        for (const r of responses) r.destroy();
        expect(await copyingBecomes(0)).toBe(0);
        await dropBulk();
      }
    });

    it('refuses miners and bad filters before streaming anything', async () => {
      expect((await get('miner', '/v1/payments/export')).status).toBe(403);
      const bad = await get('admin', '/v1/payments/export?format=xlsx');
      expect(bad.status).toBe(400);
      expect(bad.body.code).toBe('VALIDATION_FAILED');
      expect((await get('admin', '/v1/payments/export?created_from=soon')).status).toBe(400);
    });
  });

  describe('GET /v1/events', () => {
    /** Reads the feed from `after` until a page comes back empty. */
    async function drain(
      who: Who,
      after: string | null,
      extra = '',
    ): Promise<{ items: Body[]; cursor: string | null }> {
      const items: Body[] = [];
      let cursor = after;
      for (;;) {
        const page = expectStatus(
          await get(who, `/v1/events?limit=5${cursor ? `&after=${cursor}` : ''}${extra}`),
          200,
          'GET /v1/events',
        );
        items.push(...page.items);
        cursor = page.next_cursor;
        if (page.items.length === 0) return { items, cursor };
      }
    }

    it("serves every payment's audit trail as typed events, oldest first, each once", async () => {
      const { items } = await drain('admin', null);
      expect(new Set(items.map((e) => e.event_id)).size).toBe(items.length);
      const trail = await api.events(all[0].payment_id);
      const mine = items.filter((e) => e.payment_id === all[0].payment_id);
      expect(mine.map((e) => [e.from_status, e.to_status])).toEqual(trail.map((e) => [e.from, e.to]));
      expect(mine[0]).toMatchObject({ type: 'payment.created', job_id: all[0].job_id, to_status: 'pending' });
      expect(mine.map((e) => e.type)).toContain('payment.escrowed');
    });

    it('filters by type and scopes a client to its own payments', async () => {
      const created = (await drain('admin', null, '&types=payment.created')).items;
      expect(created.length).toBe(all.length);
      expect(created.every((e) => e.type === 'payment.created')).toBe(true);
      const clientIds = new Set(all.filter((p) => p.client_id === 'client-1').map((p) => p.payment_id));
      const own = (await drain('client', null)).items;
      expect(own.length).toBeGreaterThan(0);
      expect(own.every((e) => clientIds.has(e.payment_id))).toBe(true);
      expect((await get('client', '/v1/events?types=payment.paid')).status).toBe(400);
      expect((await get('client', '/v1/events?after=xyz')).status).toBe(400);
      expect((await get('client', '/v1/events?limit=501')).status).toBe(400);
      expect((await get('miner', '/v1/events')).status).toBe(403);
    });

    it('never skips an event whose transaction commits after later ones (out-of-order commits)', async () => {
      const start = (await drain('admin', null)).cursor;
      const target = all.find((p) => p.status === 'released');
      const a = new Client({ connectionString: t.databaseUrl });
      await a.connect();
      try {
        // Transaction A takes its event id first, then stays open while B commits later events.
        await a.query('BEGIN');
        const [aEvent] = (
          await a.query(
            `INSERT INTO payment_events (payment_id, from_status, to_status, reason, actor)
             VALUES ($1, 'released', 'released', 'out_of_order_test', 'test') RETURNING event_id::text AS event_id`,
            [target.payment_id],
          )
        ).rows;
        const b = await api.paidJob('client', { payment_amount: '0.0004' });
        const bEvents = await api.query<{ event_id: string }>(
          `SELECT event_id::text AS event_id FROM payment_events WHERE payment_id = $1 ORDER BY event_id`,
          [b.payment_id],
        );
        // The trap for an id cursor: B's committed events have higher ids than A's invisible one.
        expect(bEvents.length).toBeGreaterThan(0);
        expect(bEvents.every((e) => BigInt(e.event_id) > BigInt(aEvent.event_id))).toBe(true);

        // While A is open, B's events are held back (they would otherwise move the cursor past A's).
        const during = await drain('admin', start);
        expect(during.items).toEqual([]);
        expect(during.cursor).toBe(start);

        await a.query('COMMIT');
        const after = await drain('admin', during.cursor);
        expect(after.items.map((e) => e.event_id)).toEqual([aEvent.event_id, ...bEvents.map((e) => e.event_id)]);
        expect(after.items[0]).toMatchObject({ payment_id: target.payment_id, reason: 'out_of_order_test' });
        // Nothing repeats afterwards.
        expect((await drain('admin', after.cursor)).items).toEqual([]);
        expectStatus(await api.cancel('client', b.job_id), 200, 'cancel');
      } finally {
        await a.query('ROLLBACK').catch(() => undefined);
        await a.end();
      }
    });

    it('types an escrow extension as payment.escrow_extended, never a second payment.escrowed', async () => {
      const job = await api.paidJob('client', { payment_amount: '0.0004' });
      const extended = await t.http
        .post(`/v1/jobs/${job.job_id}/extend`)
        .set('X-Api-Key', api.key('client'))
        .send({ seconds: 60 });
      expectStatus(extended, 200, 'extend');
      const ours = (items: Body[]) => items.filter((e) => e.payment_id === job.payment_id).map((e) => e.type);
      expect(ours((await drain('admin', null)).items)).toEqual([
        'payment.created',
        'payment.escrowed',
        'payment.escrow_extended',
      ]);
      expect(ours((await drain('admin', null, '&types=payment.escrowed')).items)).toEqual(['payment.escrowed']);
      expect(ours((await drain('client', null, '&types=payment.escrow_extended')).items)).toEqual([
        'payment.escrow_extended',
      ]);
    });
  });
});
