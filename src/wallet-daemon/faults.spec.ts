import { FaultInjector, faultSettingsError } from './faults';

/** A random source that replays the given draws. */
function draws(...values: number[]): () => number {
  return () => values.shift() ?? 0.5;
}

describe('FaultInjector', () => {
  it('does nothing by default', async () => {
    const faults = new FaultInjector();
    await expect(faults.decide()).resolves.toBe('none');
    expect(faults.current()).toEqual({ fail_rate: 0, latency_ms: 0, drop_rate: 0 });
  });

  it('fails with probability fail_rate, before any drop', async () => {
    const faults = new FaultInjector({ fail_rate: 0.5, latency_ms: 0, drop_rate: 1 }, draws(0.4, 0.6, 0.9));
    await expect(faults.decide()).resolves.toBe('fail');
    await expect(faults.decide()).resolves.toBe('drop');
  });

  it('drops with probability drop_rate', async () => {
    const faults = new FaultInjector({ fail_rate: 0, latency_ms: 0, drop_rate: 0.3 }, draws(0.9, 0.2, 0.9, 0.5));
    await expect(faults.decide()).resolves.toBe('drop');
    await expect(faults.decide()).resolves.toBe('none');
  });

  it('always fails at rate 1 and never at rate 0', async () => {
    const always = new FaultInjector({ fail_rate: 1, latency_ms: 0, drop_rate: 0 }, draws(0.999999));
    await expect(always.decide()).resolves.toBe('fail');
    const never = new FaultInjector({ fail_rate: 0, latency_ms: 0, drop_rate: 0 }, draws(0, 0));
    await expect(never.decide()).resolves.toBe('none');
  });

  it('waits latency_ms first', async () => {
    const faults = new FaultInjector({ fail_rate: 0, latency_ms: 60, drop_rate: 0 });
    const started = Date.now();
    await faults.decide();
    expect(Date.now() - started).toBeGreaterThanOrEqual(55);
  });

  it('updates only the given fields', () => {
    const faults = new FaultInjector({ fail_rate: 0.1, latency_ms: 5, drop_rate: 0.2 });
    expect(faults.update({ latency_ms: 0 })).toEqual({ fail_rate: 0.1, latency_ms: 0, drop_rate: 0.2 });
  });
});

describe('faultSettingsError', () => {
  it('accepts valid settings and partial ones', () => {
    expect(faultSettingsError({ fail_rate: 1, latency_ms: 0, drop_rate: 0.5 })).toBeNull();
    expect(faultSettingsError({})).toBeNull();
  });

  it.each([
    [{ fail_rate: 2 }, 'fail_rate'],
    [{ fail_rate: '0.5' }, 'fail_rate'],
    [{ drop_rate: -0.1 }, 'drop_rate'],
    [{ latency_ms: 1.5 }, 'latency_ms'],
    [{ latency_ms: 600_000 }, 'latency_ms'],
  ])('rejects %j naming the field', (patch, field) => {
    expect(faultSettingsError(patch)).toMatch(new RegExp(`^${field}`));
  });
});
