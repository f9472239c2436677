import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

const PREFIX = 'enc:v1:';

/**
 * Webhook signing secrets at rest. With an operator key (`WEBHOOK_SECRETS_KEY`, 32 bytes in
 * base64) each secret is stored sealed with AES-256-GCM (`enc:v1:<iv>:<tag>:<ciphertext>`),
 * so a database dump or a replica does not hand out the keys that sign webhooks; without
 * one (development) they are stored as they are. Opening is cached: a worker opens the
 * same few secrets for every delivery.
 */
export class WebhookSecretBox {
  private readonly opened = new Map<string, string>();

  constructor(private readonly key: Buffer | undefined) {
    if (key && key.length !== 32) throw new Error('WEBHOOK_SECRETS_KEY must be 32 bytes');
  }

  seal(secret: string): string {
    if (!this.key) return secret;
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const sealed = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()]);
    return `${PREFIX}${iv.toString('base64')}:${cipher.getAuthTag().toString('base64')}:${sealed.toString('base64')}`;
  }

  /** A stored secret in the clear; throws when it is sealed and the key is missing or wrong (fail closed). */
  open(stored: string): string {
    if (!stored.startsWith(PREFIX)) return stored;
    const cached = this.opened.get(stored);
    if (cached !== undefined) return cached;
    if (!this.key) throw new Error('a webhook secret is sealed but WEBHOOK_SECRETS_KEY is not set');
    const [iv, tag, sealed] = stored.slice(PREFIX.length).split(':');
    const decipher = createDecipheriv('aes-256-gcm', this.key, Buffer.from(iv, 'base64'));
    decipher.setAuthTag(Buffer.from(tag, 'base64'));
    const secret = Buffer.concat([decipher.update(Buffer.from(sealed, 'base64')), decipher.final()]).toString('utf8');
    if (this.opened.size > 10_000) this.opened.clear();
    this.opened.set(stored, secret);
    return secret;
  }
}
