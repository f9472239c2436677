import { ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, WriteStream } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

// Only Node built-ins here: Jest global setup imports this file, and it must not
// pull in the daemon's ESM-only dependencies.

/** Set for spawned daemons: exit when the parent closes our stdin (e.g. the parent died). */
export const EXIT_WITH_PARENT_ENV = 'WALLET_DAEMON_EXIT_WITH_PARENT';

export interface SpawnWalletDaemonOptions {
  databaseUrl: string;
  token: string;
  /** 0 = any free port. Unset: WALLET_DAEMON_PORT of this process, else 20000. */
  port?: number;
  /** Hex master seed; unset: the seed file under dataDir. */
  seed?: string;
  dataDir?: string;
  /** Extra environment (e.g. WALLET_FAULT_*, LOG_LEVEL); wins over everything else. */
  env?: Record<string, string>;
  /** Append the daemon's stdout and stderr here; unset: they are dropped. */
  logFile?: string;
  /** How long to wait for the listening line. */
  startTimeoutMs?: number;
  /** How long stop() waits after SIGTERM before SIGKILL. */
  stopGraceMs?: number;
  /** The compiled main.js; unset: found next to this file or under dist/. */
  entry?: string;
}

export interface SpawnedWalletDaemon {
  /** Base URL, e.g. `http://127.0.0.1:43121`. */
  url: string;
  /** SIGTERM, then SIGKILL after the grace period (5 s); resolves once the process has exited. */
  stop(): Promise<void>;
  child: ChildProcess;
}

const DEFAULT_START_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 5_000;
/** How much of stderr to keep for the error message of a failed start. */
const STDERR_TAIL_CHARS = 8_000;

/**
 * The compiled daemon entry point. From dist it sits beside this file; from the
 * sources (Jest, ts-node) it is `<repo>/dist/src/wallet-daemon/main.js`.
 */
export function resolveWalletDaemonEntry(): string {
  const candidates = [
    join(__dirname, 'main.js'),
    resolve(__dirname, '..', '..', 'dist', 'src', 'wallet-daemon', 'main.js'),
  ];
  const found = candidates.find((candidate) => existsSync(candidate));
  if (!found) {
    throw new Error(`wallet daemon is not built (looked for ${candidates.join(', ')}); run \`npx nest build\` first`);
  }
  return found;
}

/** Starts the local wallet daemon as a child process and resolves once it listens. */
export async function spawnWalletDaemon(options: SpawnWalletDaemonOptions): Promise<SpawnedWalletDaemon> {
  const entry = options.entry ?? resolveWalletDaemonEntry();
  const child = spawn(process.execPath, [entry], {
    env: daemonEnv(options),
    stdio: ['pipe', 'pipe', 'pipe'],
    // A process group of its own: Ctrl-C in a terminal signals the whole foreground group,
    // and the daemon would stop while the coordinator still finishes its requests; the
    // coordinator stops it after them. It still exits with its parent (stdin closes).
    detached: true,
  });
  const log = openLog(options.logFile);
  const stopped = new Promise<void>((done) => child.once('exit', () => done()));
  let stderrTail = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderrTail = (stderrTail + chunk.toString('utf8')).slice(-STDERR_TAIL_CHARS);
    log?.write(chunk);
  });

  const url = await waitForListening(child, options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS, log, () => stderrTail);

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), options.stopGraceMs ?? STOP_GRACE_MS);
        await stopped;
        clearTimeout(killer);
      }
      child.stdin?.destroy();
      await closeLog(log);
    })());
  return { url, stop, child };
}

function daemonEnv(options: SpawnWalletDaemonOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    WALLET_DATABASE_URL: options.databaseUrl,
    WALLET_DAEMON_TOKEN: options.token,
    [EXIT_WITH_PARENT_ENV]: '1',
  };
  if (options.port !== undefined) env.WALLET_DAEMON_PORT = String(options.port);
  if (options.seed !== undefined) env.WALLET_SEED = options.seed;
  if (options.dataDir !== undefined) env.DATA_DIR = options.dataDir;
  return { ...env, ...options.env };
}

function openLog(logFile: string | undefined): WriteStream | undefined {
  if (!logFile) return undefined;
  mkdirSync(dirname(logFile), { recursive: true });
  return createWriteStream(logFile, { flags: 'a' });
}

function closeLog(log: WriteStream | undefined): Promise<void> {
  return new Promise((done) => (log ? log.end(() => done()) : done()));
}

/**
 * Reads stdout line by line until the `"listening":true` line; every line is
 * forwarded to the log (or dropped). stdout keeps being drained afterwards so the
 * daemon never blocks on a full pipe.
 */
function waitForListening(
  child: ChildProcess,
  timeoutMs: number,
  log: WriteStream | undefined,
  stderrTail: () => string,
): Promise<string> {
  return new Promise((resolveUrl, reject) => {
    let settled = false;
    const fail = (problem: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      const stderr = stderrTail().trim();
      reject(new Error(`wallet daemon ${problem}${stderr ? `:\n${stderr}` : ''}`));
    };
    const timer = setTimeout(() => fail(`did not start within ${timeoutMs} ms`), timeoutMs);

    createInterface({ input: child.stdout! }).on('line', (line) => {
      log?.write(`${line}\n`);
      if (settled) return;
      const url = listeningUrl(line);
      if (url) {
        settled = true;
        clearTimeout(timer);
        resolveUrl(url);
      }
    });
    child.once('error', (error) => fail(`could not be started (${error.message})`));
    // 'close' rather than 'exit': by then stderr has been read to the end.
    child.once('close', (code, signal) => fail(`exited before listening (code ${code}, signal ${signal})`));
  });
}

function listeningUrl(line: string): string | undefined {
  if (!line.includes('"listening":true')) return undefined;
  try {
    const parsed = JSON.parse(line) as { listening?: unknown; url?: unknown };
    return parsed.listening === true && typeof parsed.url === 'string' ? parsed.url : undefined;
  } catch {
    return undefined;
  }
}
