import { isMainThread } from 'node:worker_threads';

/**
 * Preloaded into the coordinator processes the benchmark starts (`node -r …`): when the
 * benchmark dies without cleaning up (SIGKILL, crash), its end of our stdin pipe closes
 * and this process exits too, so no coordinator is left listening. Worker threads (the
 * CSV export's) load preloads too, but their stdin is not the pipe: only the main thread
 * watches it.
 */
if (isMainThread && !process.stdin.isTTY) {
  process.stdin.on('close', () => process.exit(0));
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}
