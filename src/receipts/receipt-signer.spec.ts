import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  canonicalReceiptBytes,
  RECEIPT_KEY_FILE,
  ReceiptSigner,
  receiptKeyId,
  SignedReceipt,
  verifyReceipt,
} from './receipt-signer';

const facts = {
  receipt_id: '0190a1b2-0000-7000-8000-000000000001',
  payment_id: '0190a1b2-0000-7000-8000-000000000002',
  job_id: '0190a1b2-0000-7000-8000-000000000003',
  client_id: 'client-1',
  miner_id: 'miner-1',
  amount: '0.00100000',
  currency: 'BTC',
  status: 'released',
  payer: 'bcrt1qpayer',
  payee_address: 'bcrt1qpayee',
  transaction_hash: 'ab'.repeat(32),
  refund_transaction_hash: null,
  created_at: '2025-01-01T00:00:00.000Z',
  escrowed_at: '2025-01-01T00:00:01.000Z',
  released_at: '2025-01-01T00:10:00.000Z',
  refunded_at: null,
  verified: true,
  verified_at: '2025-01-01T00:10:05.000Z',
};

function pkcs8Pem(): string {
  return generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
}

describe('ReceiptSigner', () => {
  let dataDir: string;

  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'receipt-signer-'));
  });
  afterEach(() => {
    rmSync(dataDir, { recursive: true, force: true });
  });

  function signer(options: Partial<ConstructorParameters<typeof ReceiptSigner>[0]> = {}) {
    return new ReceiptSigner({ dataDir, ...options });
  }

  it('signs receipts that verify with the published key', () => {
    const s = signer({ signingKeyPem: pkcs8Pem() });
    const signature = s.sign(facts);
    expect(signature).toEqual({ alg: 'Ed25519', key_id: s.keyId, sig: expect.stringMatching(/^[A-Za-z0-9_-]{86}$/) });

    const [key] = s.publicKeys();
    expect(key).toEqual({ key_id: s.keyId, alg: 'Ed25519', public_key_pem: expect.stringContaining('PUBLIC KEY') });
    expect(verifyReceipt({ ...facts, signature }, key.public_key_pem)).toBe(true);
  });

  it('survives a JSON round trip (what a client does)', () => {
    const s = signer({ signingKeyPem: pkcs8Pem() });
    const wire = JSON.stringify({ ...facts, signature: s.sign(facts) });
    expect(verifyReceipt(JSON.parse(wire), s.publicKeys()[0].public_key_pem)).toBe(true);
  });

  it.each(Object.keys(facts))('fails verification when %s changes', (field) => {
    const s = signer({ signingKeyPem: pkcs8Pem() });
    const receipt: Record<string, unknown> = { ...facts, signature: s.sign(facts) };
    const original = receipt[field];
    receipt[field] =
      original === null ? 'x' : typeof original === 'boolean' ? !original : `${original as string | number}0`;
    expect(verifyReceipt(receipt as SignedReceipt, s.publicKeys()[0].public_key_pem)).toBe(false);
  });

  it('fails verification when a field is added or removed', () => {
    const s = signer({ signingKeyPem: pkcs8Pem() });
    const signature = s.sign(facts);
    const pem = s.publicKeys()[0].public_key_pem;
    expect(verifyReceipt({ ...facts, extra: 1, signature }, pem)).toBe(false);
    const { refunded_at: _dropped, ...fewer } = facts;
    expect(verifyReceipt({ ...fewer, signature }, pem)).toBe(false);
  });

  it('rejects a signature made by another key', () => {
    const mine = signer({ signingKeyPem: pkcs8Pem() });
    const theirs = signer({ signingKeyPem: pkcs8Pem() });
    const signature = theirs.sign(facts);
    expect(verifyReceipt({ ...facts, signature }, mine.publicKeys()[0].public_key_pem)).toBe(false);
  });

  it('rejects malformed signatures without throwing', () => {
    const s = signer({ signingKeyPem: pkcs8Pem() });
    const pem = s.publicKeys()[0].public_key_pem;
    const good = s.sign(facts);
    expect(verifyReceipt({ ...facts, signature: { ...good, alg: 'RS256' } }, pem)).toBe(false);
    expect(verifyReceipt({ ...facts, signature: { ...good, sig: 'not base64!' } }, pem)).toBe(false);
    expect(verifyReceipt({ ...facts, signature: { ...good, sig: 42 } }, pem)).toBe(false);
    // Junk that Buffer.from('…', 'base64url') would silently skip.
    expect(verifyReceipt({ ...facts, signature: { ...good, sig: `${good.sig}!!` } }, pem)).toBe(false);
    expect(verifyReceipt({ ...facts, signature: null as never }, pem)).toBe(false);
  });

  it('signs the canonical form, independent of key order', () => {
    const s = signer({ signingKeyPem: pkcs8Pem() });
    const reversed = Object.fromEntries(Object.entries(facts).reverse());
    // Ed25519 is deterministic, so equal bytes give equal signatures.
    expect(s.sign(reversed)).toEqual(s.sign(facts));
    expect(canonicalReceiptBytes({ b: 1, a: { d: [1, '2'], c: null } }).toString()).toBe(
      '{"a":{"c":null,"d":[1,"2"]},"b":1}',
    );
    expect(verifyReceipt({ ...reversed, signature: s.sign(facts) }, s.publicKeys()[0].public_key_pem)).toBe(true);
  });

  it('generates, persists (0600) and reloads a development key', () => {
    const nested = join(dataDir, 'nested', 'dir');
    const first = signer({ dataDir: nested });
    const file = join(nested, RECEIPT_KEY_FILE);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8')).toContain('BEGIN PRIVATE KEY');

    const second = signer({ dataDir: nested });
    expect(second.keyId).toBe(first.keyId);
    expect(verifyReceipt({ ...facts, signature: first.sign(facts) }, second.publicKeys()[0].public_key_pem)).toBe(true);
  });

  it('prefers the configured key over the key file', () => {
    const fileKey = signer();
    const pem = pkcs8Pem();
    const configured = signer({ signingKeyPem: pem });
    expect(configured.keyId).not.toBe(fileKey.keyId);
    expect(configured.keyId).toBe(signer({ signingKeyPem: pem }).keyId);
  });

  it('accepts a one-line PEM with literal \\n from an env file', () => {
    const pem = pkcs8Pem();
    expect(signer({ signingKeyPem: pem.replace(/\n/g, '\\n') }).keyId).toBe(signer({ signingKeyPem: pem }).keyId);
  });

  it('requires RECEIPT_SIGNING_KEY in production', () => {
    expect(() => signer({ production: true })).toThrow(/RECEIPT_SIGNING_KEY/);
    expect(() => signer({ production: true, signingKeyPem: pkcs8Pem() })).not.toThrow();
  });

  it('rejects bad or non-Ed25519 keys without echoing them', () => {
    const garbage = '-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----';
    expect(() => signer({ signingKeyPem: garbage })).toThrow('RECEIPT_SIGNING_KEY: not a valid PEM private key');
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    }) as string;
    expect(() => signer({ signingKeyPem: rsa })).toThrow(/RECEIPT_SIGNING_KEY: expected an Ed25519 key/);
    expect(() => signer({ previousPublicKeysPem: ['nope'] })).toThrow(/RECEIPT_PREVIOUS_PUBLIC_KEYS/);
  });

  it('keeps previous public keys listed after a rotation', () => {
    const old = signer({ signingKeyPem: pkcs8Pem() });
    const oldReceipt = { ...facts, signature: old.sign(facts) };
    const oldPem = old.publicKeys()[0].public_key_pem;

    const current = signer({ signingKeyPem: pkcs8Pem(), previousPublicKeysPem: [oldPem, oldPem] });
    const keys = current.publicKeys();
    expect(keys.map((k) => k.key_id)).toEqual([current.keyId, old.keyId]);

    // A client finds the key by key_id and verifies an old receipt.
    const key = keys.find((k) => k.key_id === oldReceipt.signature.key_id)!;
    expect(verifyReceipt(oldReceipt, key.public_key_pem)).toBe(true);
  });

  it('derives key_id from the SPKI DER', () => {
    const s = signer({ signingKeyPem: pkcs8Pem() });
    expect(s.keyId).toMatch(/^[0-9a-f]{16}$/);
    expect(receiptKeyId(s.publicKeys()[0].public_key_pem)).toBe(s.keyId);
  });
});
