import { Semaphore } from './concurrency';

/** Lets the promise callbacks queued so far run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('Semaphore', () => {
  it('lets `limit` holders in at once and the next one in as soon as a holder releases', async () => {
    const slots = new Semaphore(2);
    const first = await slots.acquire();
    await slots.acquire();
    let thirdIn = false;
    const third = slots.acquire().then((release) => {
      thirdIn = true;
      return release;
    });
    await settle();
    expect(thirdIn).toBe(false);
    first();
    await third;
    expect(thirdIn).toBe(true);
  });

  it('serves waiters first come, first served', async () => {
    const slots = new Semaphore(1);
    const held = await slots.acquire();
    const order: string[] = [];
    const waiters = ['a', 'b', 'c'].map((name) =>
      slots.acquire().then((release) => {
        order.push(name);
        release();
      }),
    );
    held();
    await Promise.all(waiters);
    expect(order).toEqual(['a', 'b', 'c']);
  });

  it('counts a release called twice once', async () => {
    const slots = new Semaphore(1);
    const release = await slots.acquire();
    release();
    release();
    await slots.acquire();
    let secondIn = false;
    void slots.acquire().then(() => (secondIn = true));
    await settle();
    expect(secondIn).toBe(false);
  });
});
