import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { SECRET_PREFIX } from './webhook-events';

/** A fresh Standard Webhooks secret: `whsec_` and 32 random bytes in base64. */
export function newWebhookSecret(): string {
  return SECRET_PREFIX + randomBytes(32).toString('base64');
}

/**
 * Signs with the `standardwebhooks` library (never by hand). During a rotation's
 * overlap each live secret signs, and the `v1,<sig>` values are joined with a space,
 * as the specification allows several signatures, so a receiver holding either
 * secret verifies.
 */
export class WebhookSigner {
  private readonly signers = new Map<string, Webhook>();

  sign(secrets: readonly string[], messageId: string, timestamp: Date, body: string): string {
    return secrets.map((secret) => this.signer(secret).sign(messageId, timestamp, body)).join(' ');
  }

  private signer(secret: string): Webhook {
    let signer = this.signers.get(secret);
    if (!signer) {
      // A small cache: rotated-out secrets fall out when it is cleared.
      if (this.signers.size > 10_000) this.signers.clear();
      signer = new Webhook(secret);
      this.signers.set(secret, signer);
    }
    return signer;
  }
}
