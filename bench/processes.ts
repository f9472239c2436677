import { ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { progress, sleep, waitFor } from './util';

// ------------------------------------------------------------------ cleanup

type Cleanup = { name: string; run: () => Promise<void> };
const cleanups: Cleanup[] = [];
let cleaning: Promise<void> | undefined;

/** Registers work to undo at the end; runs last-registered first. Returns an unregister function. */
export function onCleanup(name: string, run: () => Promise<void>): () => void {
  const entry = { name, run };
  cleanups.push(entry);
  return () => {
    const i = cleanups.indexOf(entry);
    if (i >= 0) cleanups.splice(i, 1);
  };
}

export function cleanupAll(): Promise<void> {
  return (cleaning ??= (async () => {
    while (cleanups.length) {
      const entry = cleanups.pop() as Cleanup;
      try {
        await withTimeout(entry.run(), 20_000, entry.name);
      } catch (error) {
        process.stderr.write(`[bench] cleanup "${entry.name}" failed: ${(error as Error).message}\n`);
      }
    }
  })());
}

/** Ctrl-C, SIGTERM and crashes all stop what the benchmark started before exiting. */
export function installSignalHandlers(): void {
  let signalled = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signalled++;
    if (signalled > 1) {
      process.stderr.write(`[bench] ${signal} again: exiting without finishing cleanup\n`);
      process.exit(130);
    }
    process.stderr.write(`\n[bench] ${signal}: stopping everything the benchmark started…\n`);
    void cleanupAll().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('uncaughtException', (error) => {
    process.stderr.write(`[bench] uncaught: ${error.stack ?? error}\n`);
    void cleanupAll().finally(() => process.exit(1));
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]);
}

// ------------------------------------------------------------------ the coordinator process

export interface Coordinator {
  url: string;
  pid: number;
  child: ChildProcess;
  rss: RssSampler;
  /** Throws when the process is gone (crashed, or killed by something else on the machine). */
  assertAlive(during: string): void;
  stop(): Promise<void>;
}

/** Repository root (dist-bench/bench/… → ../..). */
export const ROOT = resolve(__dirname, '..', '..');
/** The coordinator compiled with this benchmark (`npm run bench` builds into dist-bench/). */
export const COORDINATOR_ENTRY = resolve(__dirname, '..', 'src', 'main.js');

/**
 * Starts `node dist/src/main.js` as its own process with the given environment and waits
 * for /health/ready. Its output goes to `logFile`. The preload makes it exit if the
 * benchmark dies without stopping it.
 */
export async function startCoordinator(
  name: string,
  env: Record<string, string>,
  logFile: string,
  profileDir?: string,
): Promise<Coordinator> {
  mkdirSync(dirname(logFile), { recursive: true });
  const log = createWriteStream(logFile, { flags: 'a' });
  // The coordinator of the bench's own build (dist-bench/), so `npm test` rebuilding dist/ beside it changes nothing here.
  const entry = COORDINATOR_ENTRY;
  const preload = join(__dirname, 'exit-with-parent.js');
  // --profile: a V8 CPU profile of the whole process, written when it exits.
  const profile = profileDir
    ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${name}.cpuprofile`]
    : [];
  // BENCH_NODE_ARGS: V8/Node flags for the coordinators (e.g. --max-semi-space-size=8), to measure a setting.
  const nodeArgs = process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const child = spawn(process.execPath, [...nodeArgs, ...profile, '-r', preload, entry], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  let exitInfo: string | undefined;
  child.once('exit', (code, signal) => {
    exitInfo = `code ${code}, signal ${signal}`;
    if (!stopping)
      progress(`!! coordinator ${name} (pid ${child.pid}) exited unexpectedly (${exitInfo}); log: ${logFile}`);
  });

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      rss.stop();
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(killer);
      }
      child.stdin?.destroy();
      await new Promise<void>((done) => log.end(() => done()));
    })());
  const unregister = onCleanup(`coordinator ${name}`, stop);
  const rss = new RssSampler(child.pid as number);

  const url = `http://127.0.0.1:${env.PORT}`;
  try {
    await waitFor(`${name} coordinator /health/ready`, 60_000, async () => {
      if (exitInfo) throw new Error(`coordinator exited (${exitInfo}); see ${logFile}`);
      const answer = await fetch(`${url}/health/ready`);
      return answer.status === 200;
    });
  } catch (error) {
    await stop();
    unregister();
    if (exitInfo)
      throw new Error(
        `coordinator ${name} exited before it was ready (${exitInfo}); log: ${logFile}\n${tail(logFile)}`,
        { cause: error },
      );
    throw error;
  }
  rss.start();
  return {
    url,
    pid: child.pid as number,
    child,
    rss,
    assertAlive: (during: string) => {
      if (exitInfo) throw new Error(`coordinator ${name} exited during ${during} (${exitInfo}); log: ${logFile}`);
    },
    stop: async () => {
      await stop();
      unregister();
    },
  };
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-20).join('\n');
  } catch {
    return '';
  }
}

// ------------------------------------------------------------------ memory

/** Samples VmRSS every 200 ms (per-phase peaks) and reads VmHWM (the process's own peak). */
export class RssSampler {
  private timer: NodeJS.Timeout | undefined;
  private phasePeak = 0;
  lastHwmKb = 0;

  constructor(readonly pid: number) {}

  start(): void {
    this.timer = setInterval(() => this.sample(), 200);
    this.timer.unref();
  }

  stop(): void {
    this.sample();
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Peak RSS since the previous call (MiB), then starts a new phase. */
  takePhasePeakMb(): number {
    this.sample();
    const peak = this.phasePeak;
    this.phasePeak = 0;
    return Math.round(peak / 1024);
  }

  /** VmHWM: the kernel's record of the process's peak resident set (MiB). */
  hwmMb(): number {
    this.sample();
    return Math.round(this.lastHwmKb / 1024);
  }

  private sample(): void {
    try {
      const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
      const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      const hwm = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
      if (rss > this.phasePeak) this.phasePeak = rss;
      if (hwm > this.lastHwmKb) this.lastHwmKb = hwm;
    } catch {
      // the process is gone; keep the last values
    }
  }
}

export async function stopQuietly(what: { stop(): Promise<void> } | undefined): Promise<void> {
  if (!what) return;
  await what.stop().catch((error) => progress(`stopping failed: ${(error as Error).message}`));
  await sleep(0);
}
