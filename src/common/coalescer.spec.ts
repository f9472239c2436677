import { AsyncLocalStorage } from 'node:async_hooks';
import { Coalescer, ItemOutcome } from './coalescer';

/** A coalescer over doubling, recording how it was called; `gate` holds the calls until released. */
function doubling(maxGroup: number, lanes?: number) {
  const calls: string[] = [];
  const observed: string[] = [];
  let release: () => void = () => undefined;
  let gate = new Promise<void>((resolve) => (release = resolve));
  const coalescer = new Coalescer<number, number>({
    maxGroup,
    lanes,
    observer: {
      waiting: (depth) => observed.push(`waiting ${depth}`),
      carried: (size) => observed.push(`group of ${size}`),
    },
    one: async (n) => {
      calls.push(`one(${n})`);
      await gate;
      if (n < 0) throw new Error(`negative ${n}`);
      return n * 2;
    },
    many: async (ns) => {
      calls.push(`many(${ns.join(',')})`);
      await gate;
      if (ns.includes(13)) throw new Error('the whole group failed');
      return ns.map((n): ItemOutcome<number> => (n < 0 ? { error: new Error(`negative ${n}`) } : { value: n * 2 }));
    },
  });
  return {
    coalescer,
    calls,
    observed,
    open: () => release(),
    close: () => (gate = new Promise<void>((resolve) => (release = resolve))),
  };
}

describe('Coalescer', () => {
  it('a request with nothing in flight goes at once, alone', async () => {
    const { coalescer, calls, open } = doubling(10);
    open();
    await expect(coalescer.submit(4)).resolves.toBe(8);
    expect(calls).toEqual(['one(4)']);
  });

  it('requests arriving while a group is in flight go together as the next group, each with its own answer', async () => {
    const { coalescer, calls, open } = doubling(10);
    const first = coalescer.submit(1);
    const rest = [2, 3, 4].map((n) => coalescer.submit(n));
    open();
    await expect(Promise.all([first, ...rest])).resolves.toEqual([2, 4, 6, 8]);
    expect(calls).toEqual(['one(1)', 'many(2,3,4)']);
  });

  it('tells its observer the queue depth and each group size', async () => {
    const { coalescer, observed, open } = doubling(2);
    const all = [1, 2, 3, 4].map((n) => coalescer.submit(n));
    open();
    await Promise.all(all);
    expect(observed).toEqual([
      'group of 1',
      'waiting 1',
      'waiting 2',
      'waiting 3',
      'waiting 1',
      'group of 2',
      'waiting 0',
      'group of 1',
    ]);
  });

  it('groups are at most maxGroup long', async () => {
    const { coalescer, calls, open } = doubling(2);
    const all = [1, 2, 3, 4, 5, 6].map((n) => coalescer.submit(n));
    open();
    await Promise.all(all);
    expect(calls).toEqual(['one(1)', 'many(2,3)', 'many(4,5)', 'one(6)']);
  });

  it('with two lanes, two requests go at once, alone, and the rest wait for a lane as groups', async () => {
    const { coalescer, calls, open } = doubling(10, 2);
    const all = [1, 2, 3, 4, 5].map((n) => coalescer.submit(n));
    // Before anything finishes: both lanes busy with one request each, the rest queued.
    expect(calls).toEqual(['one(1)', 'one(2)']);
    open();
    await expect(Promise.all(all)).resolves.toEqual([2, 4, 6, 8, 10]);
    // The first lane to free up takes everything that waited; the other finds nothing left.
    expect(calls).toEqual(['one(1)', 'one(2)', 'many(3,4,5)']);
  });

  it('a lane frees up when its queue is empty: later requests go at once again', async () => {
    const { coalescer, calls, open } = doubling(10, 2);
    open();
    await Promise.all([coalescer.submit(1), coalescer.submit(2)]);
    await expect(coalescer.submit(3)).resolves.toBe(6);
    expect(calls).toEqual(['one(1)', 'one(2)', 'one(3)']);
  });

  it("a refused item fails only its own request, never its neighbours'", async () => {
    const { coalescer, open } = doubling(10);
    const first = coalescer.submit(1);
    const rest = [2, -3, 4].map((n) => coalescer.submit(n).catch((error: Error) => error.message));
    open();
    await first;
    await expect(Promise.all(rest)).resolves.toEqual([4, 'negative -3', 8]);
  });

  it('a group that fails as a whole is carried out again request by request', async () => {
    const { coalescer, calls, open } = doubling(10);
    const first = coalescer.submit(1);
    const rest = [2, 13, 4].map((n) => coalescer.submit(n));
    open();
    await first;
    await expect(Promise.all(rest)).resolves.toEqual([4, 26, 8]);
    expect(calls).toEqual(['one(1)', 'many(2,13,4)', 'one(2)', 'one(13)', 'one(4)']);
  });

  it("a lone request runs in its own async context, a group outside any one request's (no request's log context on a group's lines)", async () => {
    const requestContext = new AsyncLocalStorage<string>();
    const seen: (string | undefined)[] = [];
    const coalescer = new Coalescer<number, number>({
      maxGroup: 10,
      one: async (n) => (seen.push(requestContext.getStore()), n),
      many: async (ns) => (seen.push(requestContext.getStore()), ns.map((n) => ({ value: n }))),
    });
    await requestContext.run('request-1', () =>
      Promise.all([coalescer.submit(1), coalescer.submit(2), coalescer.submit(3)]),
    );
    expect(seen).toEqual(['request-1', undefined]);
  });

  it('the next group starts once the last one hands off, beside its remaining steps; at most two groups in flight', async () => {
    const events: string[] = [];
    /** Per group: hand off when `commit` opens, finish when `finish` opens. */
    const gates = new Map<string, { commit: () => void; finish: () => void }>();
    const gate = () => {
      let open: () => void = () => undefined;
      return { promise: new Promise<void>((resolve) => (open = resolve)), open: () => open() };
    };
    let releaseOne: () => void = () => undefined;
    const coalescer = new Coalescer<number, number>({
      maxGroup: 10,
      one: async (n) => {
        events.push(`one(${n}) starts`);
        await new Promise<void>((resolve) => (releaseOne = resolve));
        return n;
      },
      many: async (ns, handOff) => {
        const name = ns.join(',');
        const commit = gate();
        const finish = gate();
        gates.set(name, { commit: commit.open, finish: finish.open });
        events.push(`many(${name}) starts`);
        await commit.promise;
        handOff();
        await finish.promise;
        events.push(`many(${name}) ends`);
        return ns.map((n) => ({ value: n }));
      },
    });
    const flush = () => new Promise((resolve) => setImmediate(resolve));
    const answers = [coalescer.submit(1), coalescer.submit(2), coalescer.submit(3)];
    releaseOne();
    await flush();
    expect(events).toEqual(['one(1) starts', 'many(2,3) starts']);

    answers.push(coalescer.submit(4), coalescer.submit(5));
    await flush();
    expect(events).toHaveLength(2); // 4 and 5 wait: group (2,3) has not committed yet
    gates.get('2,3')!.commit();
    await flush();
    expect(events).toEqual(['one(1) starts', 'many(2,3) starts', 'many(4,5) starts']);

    answers.push(coalescer.submit(6), coalescer.submit(7));
    gates.get('4,5')!.commit();
    await flush();
    // (4,5) handed off, but (2,3) is still in flight: a third group would make three.
    expect(events).toHaveLength(3);
    gates.get('2,3')!.finish();
    await flush();
    expect(events.slice(3)).toEqual(['many(2,3) ends', 'many(6,7) starts']);

    gates.get('6,7')!.commit();
    gates.get('4,5')!.finish();
    gates.get('6,7')!.finish();
    await expect(Promise.all(answers)).resolves.toEqual([1, 2, 3, 4, 5, 6, 7]);
    // The lane is free again: a later request goes at once, alone.
    const later = coalescer.submit(8);
    await flush();
    expect(events.at(-1)).toBe('one(8) starts');
    releaseOne();
    await expect(later).resolves.toBe(8);
  });

  it('maxGroup below 2 turns coalescing off: every request alone, at once', async () => {
    const { coalescer, calls, open } = doubling(0);
    const all = [1, 2, 3].map((n) => coalescer.submit(n));
    open();
    await expect(Promise.all(all)).resolves.toEqual([2, 4, 6]);
    expect(calls).toEqual(['one(1)', 'one(2)', 'one(3)']);
  });
});
