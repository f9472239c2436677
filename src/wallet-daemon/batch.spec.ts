import { distinctRounds } from './batch';
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
