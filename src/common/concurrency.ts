/** Runs `work` over `items` with at most `limit` in flight (daemon calls from sweeps and re-drives). */
export async function runWithConcurrency<T>(
  items: T[],
  limit: number,
  work: (item: T) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await work(items[next++]);
  });
  await Promise.all(workers);
}
