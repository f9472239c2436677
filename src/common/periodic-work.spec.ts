import type { Logger } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { PeriodicWork } from './periodic-work';

/** A run that stays in flight until `finish()` (or `fail(error)`) is called. */
function heldRun() {
  let finish!: () => void;
  let fail!: (error: Error) => void;
  const done = new Promise<void>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  return { done, finish, fail };
}

/** Lets the promise callbacks queued so far run (setImmediate stays real under the fake timers). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('PeriodicWork', () => {
  let scheduler: SchedulerRegistry;
  let errors: unknown[][];
  let work: PeriodicWork;

  beforeEach(() => {
    jest.useFakeTimers({ doNotFake: ['setImmediate'] });
    scheduler = new SchedulerRegistry();
    errors = [];
    const logger = { error: (...args: unknown[]) => errors.push(args) } as unknown as Logger;
    work = new PeriodicWork(scheduler, logger, 'sweep');
  });
  afterEach(() => jest.useRealTimers());

  it('skips a tick while the previous run is still in flight, and runs again once it has ended', async () => {
    const runs: ReturnType<typeof heldRun>[] = [];
    work.every('deadlines', 100, () => {
      const run = heldRun();
      runs.push(run);
      return run.done;
    });
    jest.advanceTimersByTime(350);
    expect(runs).toHaveLength(1);
    runs[0].finish();
    await settle();
    jest.advanceTimersByTime(100);
    expect(runs).toHaveLength(2);
  });

  it('logs a failed run with its name and runs again at the next tick', async () => {
    let calls = 0;
    work.every('redrive', 100, async () => {
      calls++;
      throw new Error('database unreachable');
    });
    jest.advanceTimersByTime(100);
    await settle();
    expect(errors).toEqual([
      [{ err: new Error('database unreachable'), work: 'redrive' }, 'sweep failed; will run again'],
    ]);
    jest.advanceTimersByTime(100);
    await settle();
    expect(calls).toBe(2);
  });

  it('does not log an error the owner marked as expected', async () => {
    class Stopped extends Error {}
    work.every(
      'reconciliation',
      100,
      async () => {
        throw new Stopped('stopped at a page boundary');
      },
      (error) => error instanceof Stopped,
    );
    jest.advanceTimersByTime(100);
    await settle();
    expect(errors).toEqual([]);
  });

  it('stop() removes only its own intervals and waits for the runs in flight', async () => {
    const other = setInterval(() => undefined, 1000);
    scheduler.addInterval('another-module', other);
    const run = heldRun();
    work.every('deadlines', 100, () => run.done);
    jest.advanceTimersByTime(100);

    let stopped = false;
    const stopping = work.stop().then(() => (stopped = true));
    await settle();
    expect(stopped).toBe(false);
    expect(scheduler.getIntervals()).toEqual(['another-module']);

    run.finish();
    await stopping;
    expect(stopped).toBe(true);
    clearInterval(other);
  });

  it('refuses a name already registered, so two works cannot share one', () => {
    work.every('deadlines', 100, async () => undefined);
    expect(() => work.every('deadlines', 100, async () => undefined)).toThrow();
  });
});
