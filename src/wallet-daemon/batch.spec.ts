import { BatchRun, distinctRounds, PendingItem } from './batch';
import type { StoredResponse } from './idempotency';
import type { Db } from './ledger';
import type { BatchItem } from './requests';

/** Items as `key/subject` strings, e.g. `k1/e1`; `-/e1` has no key (a single call without one). */
const items = (...specs: string[]): BatchItem[] =>
  specs.map((spec) => {
    const [key, subject] = spec.split('/');
    return { idempotencyKey: key === '-' ? undefined : key, body: { subject } };
  });
const subject = (item: BatchItem) => String(item.body.subject);

describe('distinctRounds', () => {
  it.each([
    ['no repeats: one round', ['k1/e1', 'k2/e2', 'k3/e3'], [[0, 1, 2]]],
    ['a repeated key goes after its first use', ['k1/e1', 'k2/e2', 'k1/e1'], [[0, 1], [2]]],
    ['a repeated subject under another key goes after it', ['k1/e1', 'k2/e1'], [[0], [1]]],
    ['three uses of one key: three rounds, in request order', ['k1/e1', 'k1/e1', 'k1/e1'], [[0], [1], [2]]],
    [
      'an item goes after the latest item it shares anything with',
      ['k1/e1', 'k2/e1', 'k1/e3', 'k4/e4'],
      [
        [0, 3],
        [1, 2],
      ],
    ],
    ['a chain through key then subject', ['k1/e1', 'k1/e2', 'k3/e2'], [[0], [1], [2]]],
    ['items without a key are told apart by subject alone', ['-/e1', '-/e2', '-/e1'], [[0, 1], [2]]],
    ['empty', [], []],
  ])('%s', (_name, specs, rounds) => {
    expect(distinctRounds(items(...specs), subject)).toEqual(rounds);
  });

  it('every round has distinct keys and subjects, and shared items keep request order', () => {
    const batch = items('a/1', 'b/2', 'a/2', 'c/1', 'b/3', 'a/1', 'd/4', 'c/4');
    const rounds = distinctRounds(batch, subject);
    const roundOf = new Map(rounds.flatMap((round, r) => round.map((index) => [index, r] as const)));
    for (const round of rounds) {
      expect(new Set(round.map((i) => batch[i].idempotencyKey)).size).toBe(round.length);
      expect(new Set(round.map((i) => subject(batch[i]))).size).toBe(round.length);
    }
    batch.forEach((item, i) =>
      batch.slice(0, i).forEach((earlier, j) => {
        if (earlier.idempotencyKey === item.idempotencyKey || subject(earlier) === subject(item))
          expect(roundOf.get(j)).toBeLessThan(roundOf.get(i) as number);
      }),
    );
    expect(rounds.flat().sort((x, y) => x - y)).toEqual(batch.map((_item, i) => i));
  });
});

describe('BatchRun: answers stored with their keys', () => {
  /** A database that claims every key and records the statements it was sent. */
  function claimingDb() {
    const statements: string[] = [];
    const db: Db = {
      query: ((text: string, values: unknown[][]) => {
        statements.push(text.trim().split(/\s+/).slice(0, 2).join(' '));
        const rows = text.includes('INSERT INTO wallet_daemon.idempotency_keys')
          ? values[0].map((key) => ({ idempotency_key: key }))
          : [];
        return Promise.resolve({ rows, rowCount: rows.length });
      }) as unknown as Db['query'],
    };
    return { db, statements };
  }
  const item = (key: string): BatchItem => ({ idempotencyKey: key, body: { escrow_id: key } });
  const answer = (body: object): StoredResponse => ({ statusCode: 200, body });

  it('writes no second statement for an answer stored with its claim, and answers it', async () => {
    const { db, statements } = claimingDb();
    const run = new BatchRun<PendingItem>(db, [item('k1')]);
    const [claimed] = await run.claimKeys([{ index: 0, key: 'k1', route: 'r' }], () =>
      answer({ state: 'released', a: 1 }),
    );
    // The same answer, built again (another object, keys in another order).
    const results = await run.finish([{ item: claimed, response: answer({ a: 1, state: 'released' }) }]);
    expect(statements).toEqual(['INSERT INTO']);
    expect(results).toEqual([
      { idempotency_key: 'k1', status: 200, body: { a: 1, state: 'released' }, replayed: false },
    ]);
  });

  it('fails the whole batch when the answer given is not the one stored with the key', async () => {
    const { db } = claimingDb();
    const run = new BatchRun<PendingItem>(db, [item('k1')]);
    const [claimed] = await run.claimKeys([{ index: 0, key: 'k1', route: 'r' }], () => answer({ state: 'released' }));
    await expect(run.storeAnswers([{ item: claimed, response: answer({ state: 'refunded' }) }])).rejects.toThrow(
      'the answer stored with idempotency key k1 is not the answer given',
    );
  });

  it('stores by a later update the answers not known at the claim', async () => {
    const { db, statements } = claimingDb();
    const run = new BatchRun<PendingItem>(db, [item('k1')]);
    const [claimed] = await run.claimKeys([{ index: 0, key: 'k1', route: 'r' }]);
    await run.finish([{ item: claimed, response: answer({ state: 'held' }) }]);
    expect(statements).toEqual(['INSERT INTO', 'UPDATE wallet_daemon.idempotency_keys']);
  });
});
