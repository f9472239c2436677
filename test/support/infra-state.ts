/**
 * What global setup started, for global teardown. Jest runs both in its parent process
 * but may load them as separate module instances, so the state lives on `globalThis`.
 */
export interface TestInfraState {
  adminUrl?: string;
  dbPrefix?: string;
  stopDaemon?: () => Promise<void>;
  stopEmbeddedPostgres?: () => Promise<void>;
}

const KEY = Symbol.for('coordinator.e2e.infra');

export function infraState(): TestInfraState {
  const holder = globalThis as unknown as Record<symbol, TestInfraState | undefined>;
  return (holder[KEY] ??= {});
}
