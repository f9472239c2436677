/**
 * `--require`d through NODE_OPTIONS into processes the benchmark cannot start with
 * `--cpu-prof` itself (the wallet daemon is spawned by src/wallet-daemon/spawn.ts, and
 * Node refuses --cpu-prof in NODE_OPTIONS): profiles the whole process with the inspector
 * and writes BENCH_CPU_PROFILE when it exits. The in-process inspector session answers
 * synchronously, so this works from the 'exit' event.
 */
import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';

const target = process.env.BENCH_CPU_PROFILE;
if (target) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.start');
  let written = false;
  const write = () => {
    if (written) return;
    written = true;
    session.post('Profiler.stop', (error, result) => {
      if (!error && result) writeFileSync(target, JSON.stringify(result.profile));
    });
  };
  process.on('exit', write);
}
