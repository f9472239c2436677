import { ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, WriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../../src/database/embedded-postgres';
import type { WalletDaemonHelper } from './daemon';
import { PRINCIPALS, type KeyName } from './app';

/**
 * The compiled coordinator (`node dist/src/main.js`) as a child process of the test:
 * for what an in-process app cannot show — SIGKILL in the middle of a settlement, and
 * several independent instances sweeping one database.
 */

/** `npx nest build` puts the entry point here. */
export const COORDINATOR_ENTRY = resolve(__dirname, '../../dist/src/main.js');
/** Where spawned coordinators append their output (warnings and errors at LOG_LEVEL=warn). */
export const COORDINATOR_LOG_FILE = resolve(__dirname, '../../.data/test-logs/coordinator.log');

// Generous: on a loaded 2-core machine a start (migrations included) can take tens of seconds.
const READY_TIMEOUT_MS = 60_000;
const NPM_START_READY_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 5_000;
const OUTPUT_TAIL_CHARS = 8_000;

/** What a coordinator process needs to know about the callers and wallets of a test. */
export interface CoordinatorIdentity {
  databaseUrl: string;
  daemon: WalletDaemonHelper;
  keys: Record<KeyName, string>;
  clientWallet: string;
  client2Wallet: string;
}

export interface CoordinatorProcess {
  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  url: string;
  pid: number;
  child: ChildProcess;
  /** SIGKILL: no shutdown hooks, no chance to finish what is in flight. Resolves once it exited. */
  kill(): Promise<void>;
  /** SIGTERM, then SIGKILL after a grace period. Resolves once it exited. */
  stop(): Promise<void>;
  /** SIGSTOP: frozen in place, timers and connections included, until `resume`. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** The last lines it wrote, for failure messages. */
  outputTail(): string;
}

/** The API_KEYS entry list `startTestApp` configures, so a spawned process knows the same callers. */
export function apiKeysOf(identity: CoordinatorIdentity): string {
  const { keys } = identity;
  return [
    `client:${PRINCIPALS.client}:${keys.client}:${identity.clientWallet}`,
    `client:${PRINCIPALS.client2}:${keys.client2}:${identity.client2Wallet}`,
    `miner:${PRINCIPALS.miner}:${keys.miner}`,
    `miner:${PRINCIPALS.miner2}:${keys.miner2}`,
    `admin:${PRINCIPALS.admin}:${keys.admin}`,
  ].join(',');
}

/** A TCP port nobody listens on right now. */
export { freePort };

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Last line of defence: a test worker that exits must not leave coordinators running. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
}

/**
 * Spawns `node dist/src/main.js` with only the environment given here (nothing leaks in
 * from the test worker's own env) and resolves once `/health/ready` answers 200.
 */
export async function spawnCoordinator(
  identity: CoordinatorIdentity,
  env: Record<string, string> = {},
): Promise<CoordinatorProcess> {
  return spawnMain({
    DATABASE_URL: identity.databaseUrl,
    WALLET_DAEMON_URL: identity.daemon.endpoint.url,
    WALLET_DAEMON_TOKEN: identity.daemon.endpoint.token,
    API_KEYS: apiKeysOf(identity),
    SWEEPS_ENABLED: 'true',
    ESCROW_MIN_TIMEOUT_SECONDS: '1',
    // Tests send bursts from one principal; rate limiting has its own spec.
    RATE_LIMIT_PER_MINUTE: '0',
    ...env,
  });
}

/**
 * `node dist/src/main.js` as `npm start` runs it for a newcomer: no DATABASE_URL (embedded
 * PostgreSQL under DATA_DIR), no WALLET_DAEMON_URL (local daemon spawned), demo keys. Give
 * it a DATA_DIR and a WALLET_DAEMON_PORT of its own. Resolves once `/health/ready` answers
 * 200; rejects with its output if it exits first.
 */
export function spawnAsNpmStart(
  env: Record<string, string>,
  options: { ownProcessGroup?: boolean } = {},
): Promise<CoordinatorProcess> {
  // initdb, migrations and the daemon's start all come before it is ready.
  return spawnMain({ NODE_ENV: 'development', ...env }, NPM_START_READY_TIMEOUT_MS, options.ownProcessGroup);
}

/**
 * `ownProcessGroup`: the process leads a process group of its own, as a command started
 * in a terminal does, so a test can signal the whole group the way Ctrl-C does
 * (`process.kill(-pid, 'SIGINT')`).
 */
async function spawnMain(
  env: Record<string, string>,
  readyTimeoutMs = READY_TIMEOUT_MS,
  ownProcessGroup = false,
): Promise<CoordinatorProcess> {
  if (!existsSync(COORDINATOR_ENTRY)) {
    throw new Error(`coordinator is not built (${COORDINATOR_ENTRY} missing); run \`npx nest build\` first`);
  }
  installExitHook();
  const port = env.PORT ? Number(env.PORT) : await freePort();
  const dataDir = await mkdtemp(join(tmpdir(), 'coordinator-proc-'));
  const child = spawn(process.execPath, [COORDINATOR_ENTRY], {
    env: {
      NODE_ENV: 'test',
      TZ: 'UTC',
      PATH: process.env.PATH ?? '',
      PORT: String(port),
      LOG_LEVEL: 'warn',
      DATA_DIR: dataDir,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: ownProcessGroup,
  });
  live.add(child);
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  void exited.then(() => {
    live.delete(child);
    return rm(dataDir, { recursive: true, force: true });
  });

  const log = openLog();
  let tail = '';
  const collect = (chunk: Buffer) => {
    tail = (tail + chunk.toString('utf8')).slice(-OUTPUT_TAIL_CHARS);
    log.write(chunk);
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  void exited.then(() => log.end());

  const url = `http://127.0.0.1:${port}`;
  const signal = async (name: NodeJS.Signals, graceMs?: number) => {
    if (child.exitCode === null && child.signalCode === null) {
      if (name === 'SIGTERM') child.kill('SIGCONT');
      child.kill(name);
      const killer = graceMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      if (killer) clearTimeout(killer);
    }
  };
  const started: CoordinatorProcess = {
    url,
    pid: child.pid as number,
    child,
    kill: () => signal('SIGKILL'),
    stop: () => signal('SIGTERM', STOP_GRACE_MS),
    pause: () => void child.kill('SIGSTOP'),
    resume: () => void child.kill('SIGCONT'),
    outputTail: () => tail,
  };

  try {
    await waitReady(url, child, readyTimeoutMs);
  } catch (error) {
    await started.kill();
    throw new Error(`${(error as Error).message}\n--- coordinator output ---\n${tail}`, { cause: error });
  }
  return started;
}

async function waitReady(url: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`coordinator exited before it was ready (code ${child.exitCode}, signal ${child.signalCode})`);
    }
    try {
      const response = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(2_000) });
      if (response.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`coordinator at ${url} not ready within ${timeoutMs} ms`);
    await sleep(100);
  }
}

function openLog(): WriteStream {
  mkdirSync(dirname(COORDINATOR_LOG_FILE), { recursive: true });
  return createWriteStream(COORDINATOR_LOG_FILE, { flags: 'a' });
}

/** Stops every coordinator this worker spawned and that still runs (for afterAll). */
export async function stopAllCoordinators(): Promise<void> {
  await Promise.all(
    [...live].map(
      (child) =>
        new Promise<void>((done) => {
          if (child.exitCode !== null || child.signalCode !== null) return done();
          child.once('exit', () => done());
          // A test may have paused it (SIGSTOP); a paused process never handles SIGTERM.
          child.kill('SIGCONT');
          child.kill('SIGTERM');
          setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS).unref();
        }),
    ),
  );
}
