import { hash, timingSafeEqual } from 'node:crypto';

export type Role = 'client' | 'miner' | 'admin';
export const ROLES: readonly Role[] = ['client', 'miner', 'admin'];

/** Who is calling. The principal id — never the key — is what rows, responses and receipts carry. */
export interface Principal {
  role: Role;
  id: string;
  /** A client's default payer/refund address, when configured. */
  walletAddress?: string;
}

export interface ApiKeyEntry extends Principal {
  secret: string;
}

const PRINCIPAL_ID = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * Parses `API_KEYS`: comma-separated `role:principal_id:secret[:wallet_address]`.
 * Throws with a message naming the variable (never echoing a secret).
 */
export function parseApiKeys(raw: string): ApiKeyEntry[] {
  const entries = raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (entries.length === 0) throw new Error('API_KEYS: no entries');
  const seenSecrets = new Set<string>();
  return entries.map((entry, index) => {
    const parts = entry.split(':');
    if (parts.length < 3 || parts.length > 4) {
      throw new Error(`API_KEYS: entry #${index + 1} must be role:principal_id:secret[:wallet_address]`);
    }
    const [role, id, secret, walletAddress] = parts;
    if (!ROLES.includes(role as Role)) {
      throw new Error(`API_KEYS: entry #${index + 1} has unknown role "${role}" (client, miner or admin)`);
    }
    if (!PRINCIPAL_ID.test(id)) {
      throw new Error(`API_KEYS: entry #${index + 1} has an invalid principal id`);
    }
    if (secret.length < 8) {
      throw new Error(`API_KEYS: entry #${index + 1} has a secret shorter than 8 characters`);
    }
    if (seenSecrets.has(secret)) throw new Error(`API_KEYS: entry #${index + 1} reuses another entry's secret`);
    seenSecrets.add(secret);
    return { role: role as Role, id, secret, walletAddress: walletAddress || undefined };
  });
}

/**
 * Looks a presented key up in constant time with respect to the secrets: each secret is
 * hashed to a fixed length and every entry is compared, so timing reveals neither which
 * entry matched nor how much of a secret was right.
 */
export class ApiKeyRegistry {
  private readonly hashed: { digest: Buffer; principal: Principal }[];

  constructor(entries: ApiKeyEntry[]) {
    this.hashed = entries.map(({ secret, ...principal }) => ({ digest: sha256(secret), principal }));
  }

  authenticate(presented: string | undefined): Principal | undefined {
    if (!presented) return undefined;
    const digest = sha256(presented);
    let found: Principal | undefined;
    for (const entry of this.hashed) {
      if (timingSafeEqual(entry.digest, digest)) found = entry.principal;
    }
    return found;
  }

  principals(): Principal[] {
    return this.hashed.map((h) => h.principal);
  }
}

function sha256(s: string): Buffer {
  // One-shot hash: a Hash object per call cost several times more on every request.
  return hash('sha256', s, 'buffer');
}
