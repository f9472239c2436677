import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  KeyObject,
  sign,
  verify,
} from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
// RFC 8785 (JCS). ESM-only package: Node ≥ 20.19 require()s it natively.
import canonicalize from 'canonicalize';

export const RECEIPT_ALG = 'Ed25519' as const;
export const RECEIPT_KEY_FILE = 'receipt-signing-key.pem';

export interface ReceiptSignature {
  alg: typeof RECEIPT_ALG;
  key_id: string;
  /** base64url Ed25519 signature over the RFC 8785 form of the other receipt fields. */
  sig: string;
}

export interface ReceiptPublicKey {
  key_id: string;
  alg: typeof RECEIPT_ALG;
  public_key_pem: string;
}

export interface ReceiptSignerOptions {
  /** PKCS#8 PEM of an Ed25519 private key (`RECEIPT_SIGNING_KEY`). */
  signingKeyPem?: string;
  /** Where a development key is kept when no PEM is configured. */
  dataDir: string;
  /** In production a configured key is mandatory. */
  production?: boolean;
  /** SPKI PEMs of retired keys (`RECEIPT_PREVIOUS_PUBLIC_KEYS`), still published. */
  previousPublicKeysPem?: string[];
}

/** First 16 hex chars of sha256 over the SPKI DER public key. */
export function receiptKeyId(publicKey: KeyObject | string): string {
  const key = typeof publicKey === 'string' ? createPublicKey(publicKey) : publicKey;
  const der = key.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex').slice(0, 16);
}

/** The exact bytes that are signed: RFC 8785 canonical JSON, UTF-8. */
export function canonicalReceiptBytes(facts: Record<string, unknown>): Buffer {
  const json = canonicalize(facts);
  if (json === undefined) throw new TypeError('receipt facts are not JSON-serializable');
  return Buffer.from(json, 'utf8');
}

/** Signs receipt facts with the current key and publishes current + previous public keys. */
export class ReceiptSigner {
  readonly keyId: string;
  private readonly privateKey: KeyObject;
  private readonly keys: ReceiptPublicKey[];

  constructor(options: ReceiptSignerOptions) {
    this.privateKey = loadSigningKey(options);
    const publicKey = createPublicKey(this.privateKey);
    this.keyId = receiptKeyId(publicKey);

    this.keys = [describe(publicKey)];
    for (const pem of options.previousPublicKeysPem ?? []) {
      const previous = describe(parsePublicKey(pem));
      if (!this.keys.some((k) => k.key_id === previous.key_id)) this.keys.push(previous);
    }
  }

  sign(facts: Record<string, unknown>): ReceiptSignature {
    const sig = sign(null, canonicalReceiptBytes(facts), this.privateKey);
    return { alg: RECEIPT_ALG, key_id: this.keyId, sig: sig.toString('base64url') };
  }

  /** Current key first, then previous ones. */
  publicKeys(): ReceiptPublicKey[] {
    return this.keys.map((k) => ({ ...k }));
  }
}

/** A receipt as received: facts plus a `signature` whose fields are not yet trusted. */
export type SignedReceipt = Record<string, unknown> & {
  signature: { alg?: unknown; key_id?: unknown; sig?: unknown };
};

// 64 signature bytes in unpadded base64url; Buffer.from would silently skip junk.
const ED25519_SIG_BASE64URL = /^[A-Za-z0-9_-]{86}$/;

/**
 * Checks a receipt offline: drop `signature`, canonicalize the rest (RFC 8785),
 * verify the Ed25519 signature with the given public key (SPKI PEM).
 */
export function verifyReceipt(receipt: SignedReceipt, publicKeyPem: string): boolean {
  const { signature, ...facts } = receipt;
  if (signature?.alg !== RECEIPT_ALG) return false;
  if (typeof signature.sig !== 'string' || !ED25519_SIG_BASE64URL.test(signature.sig)) return false;
  const publicKey = createPublicKey(publicKeyPem);
  const sig = Buffer.from(signature.sig, 'base64url');
  try {
    return verify(null, canonicalReceiptBytes(facts), publicKey, sig);
  } catch {
    return false;
  }
}

function loadSigningKey(options: ReceiptSignerOptions): KeyObject {
  if (options.signingKeyPem?.trim()) {
    return parsePrivateKey(options.signingKeyPem, 'RECEIPT_SIGNING_KEY');
  }
  if (options.production) {
    // A key generated on the fly would make receipts unverifiable after a redeploy.
    throw new Error('RECEIPT_SIGNING_KEY is required in production (PKCS#8 PEM of an Ed25519 key)');
  }

  const path = join(options.dataDir, RECEIPT_KEY_FILE);
  try {
    return parsePrivateKey(readFileSync(path, 'utf8'), path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException | undefined)?.code !== 'ENOENT') throw err;
  }

  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const { privateKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  try {
    // 'wx': if another instance wrote the key first, use theirs.
    writeFileSync(path, pem, { mode: 0o600, flag: 'wx' });
    return privateKey;
  } catch (err) {
    if ((err as NodeJS.ErrnoException | undefined)?.code !== 'EEXIST') throw err;
    return parsePrivateKey(readFileSync(path, 'utf8'), path);
  }
}

function parsePrivateKey(pem: string, source: string): KeyObject {
  let key: KeyObject;
  try {
    // Env files often carry the PEM on one line with literal "\n".
    key = createPrivateKey(pem.replace(/\\n/g, '\n'));
  } catch {
    // Never include the key material in the message.
    throw new Error(`${source}: not a valid PEM private key`);
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new Error(`${source}: expected an Ed25519 key, got ${key.asymmetricKeyType}`);
  }
  return key;
}

function parsePublicKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem.replace(/\\n/g, '\n'));
  } catch {
    throw new Error('RECEIPT_PREVIOUS_PUBLIC_KEYS: not a valid PEM public key');
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new Error(`RECEIPT_PREVIOUS_PUBLIC_KEYS: expected an Ed25519 key, got ${key.asymmetricKeyType}`);
  }
  return key;
}

function describe(publicKey: KeyObject): ReceiptPublicKey {
  return {
    key_id: receiptKeyId(publicKey),
    alg: RECEIPT_ALG,
    public_key_pem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
  };
}
