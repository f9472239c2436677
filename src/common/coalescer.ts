import { AsyncResource } from 'node:async_hooks';

/** What one item of a group came to: its value, or the error its single call would have thrown. */
export type ItemOutcome<O> = { value: O; error?: undefined } | { error: unknown; value?: undefined };

/** What a coalescer tells its metrics: how many requests wait, and the size of each group carried out. */
export interface CoalescerObserver {
  waiting(depth: number): void;
  carried(groupSize: number): void;
}

export interface CoalescerOptions<I, O> {
  /** Most requests carried out as one group (0 or 1: every request alone). */
  maxGroup: number;
  /**
   * Lanes (default 1): groups that may be in their first step at once. Within a lane the
   * next group starts when the last one hands off, so up to two per lane are in flight;
   * more lanes make smaller groups (measured on 2 cores: no more throughput, more CPU).
   */
  lanes?: number;
  /** One request alone: the single path, no added cost when there is nothing to share. */
  one(input: I): Promise<O>;
  /**
   * Many requests as one set (one transaction, one daemon call…), an outcome per input, in
   * order. It throws only when nothing was committed (then each request goes alone); once
   * something is committed, a failure must come back as the items' outcomes instead.
   * `handOff`, called once its first transaction has committed (before the daemon call),
   * lets the lane's next group start beside this one's remaining steps.
   */
  many(inputs: I[], handOff: () => void): Promise<ItemOutcome<O>[]>;
  observer?: CoalescerObserver;
}

/**
 * Group commit for concurrent requests of one kind. A request that finds a lane free
 * goes at once, alone. Requests that arrive while every lane is busy wait for one to
 * free up and then go together as its next group, so under load each group's transaction,
 * daemon call and recording are shared by everyone who arrived meanwhile, and under
 * light load nobody waits for company. If a group fails as a whole before committing
 * anything, each of its requests is carried out alone, so one request can never fail its
 * neighbours.
 */
export class Coalescer<I, O> {
  private readonly waiting: { input: I; resolve: (value: O) => void; reject: (error: unknown) => void }[] = [];
  private inFlight = 0;
  private readonly lanes: number;
  /**
   * Groups run in the async context the coalescer was made in (start-up), not in that of
   * the request before them: a group serves many requests, so its log lines must not
   * carry one request's id (nestjs-pino keeps it in AsyncLocalStorage).
   */
  private readonly startDrain = AsyncResource.bind(() => void this.drain());

  constructor(private readonly options: CoalescerOptions<I, O>) {
    this.lanes = Math.max(1, options.lanes ?? 1);
  }

  submit(input: I): Promise<O> {
    if (this.options.maxGroup < 2) return this.options.one(input);
    if (this.inFlight < this.lanes) {
      // A lane is free: this request goes at once, alone, in its own context; whoever
      // arrives meanwhile goes next on this lane (or another that frees up), as a group.
      this.inFlight++;
      this.options.observer?.carried(1);
      return this.options.one(input).finally(() => this.startDrain());
    }
    return new Promise<O>((resolve, reject) => {
      this.waiting.push({ input, resolve, reject });
      this.options.observer?.waiting(this.waiting.length);
    });
  }

  /**
   * A lane's groups overlap by one step: the next group starts once the last one has
   * handed off (its first transaction committed), so its transaction runs while the last
   * one is at the daemon and recording — the stages of two groups fill each other's
   * waits instead of running in series. At most two groups per lane are in flight.
   */
  private async drain(): Promise<void> {
    let older: Promise<void> = Promise.resolve();
    let latest: Promise<void> = Promise.resolve();
    try {
      for (;;) {
        await older;
        if (this.waiting.length === 0) {
          await latest;
          // Nothing awaited between this check and the lane's release: a request arriving
          // later finds the lane free and goes at once.
          if (this.waiting.length === 0) return;
        }
        const group = this.waiting.splice(0, this.options.maxGroup);
        this.options.observer?.waiting(this.waiting.length);
        this.options.observer?.carried(group.length);
        let handOff: () => void = () => undefined;
        const handedOff = new Promise<void>((resolve) => (handOff = resolve));
        const done = this.carryOut(group, handOff).finally(handOff);
        await handedOff;
        older = latest;
        latest = done;
      }
    } finally {
      this.inFlight--;
    }
  }

  private async carryOut(group: Coalescer<I, O>['waiting'], handOff: () => void): Promise<void> {
    if (group.length === 1) {
      const [only] = group;
      await this.options.one(only.input).then(only.resolve, only.reject);
      return;
    }
    let outcomes: ItemOutcome<O>[];
    try {
      outcomes = await this.options.many(
        group.map((request) => request.input),
        handOff,
      );
    } catch {
      await Promise.all(group.map((request) => this.options.one(request.input).then(request.resolve, request.reject)));
      return;
    }
    group.forEach((request, i) => {
      const outcome = outcomes[i];
      if (outcome.error !== undefined) request.reject(outcome.error);
      else request.resolve(outcome.value as O);
    });
  }
}
