import { randomBytes } from 'node:crypto';
import { WebhookSecretBox } from './webhook-secret-box';

describe('WebhookSecretBox', () => {
  const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw1rrc9QZ0Q1g=';

  it('seals with the operator key and opens again; the stored form does not contain the secret', () => {
    const box = new WebhookSecretBox(randomBytes(32));
    const stored = box.seal(secret);
    expect(stored).toMatch(/^enc:v1:/);
    expect(stored).not.toContain(secret.slice(6, 20));
    expect(box.seal(secret)).not.toBe(stored); // a fresh IV each time
    expect(box.open(stored)).toBe(secret);
  });

  it('without a key, secrets are stored as they are', () => {
    const box = new WebhookSecretBox(undefined);
    expect(box.seal(secret)).toBe(secret);
    expect(box.open(secret)).toBe(secret);
  });

  it('fails closed: a sealed secret with no key, or the wrong key, or altered, does not open', () => {
    const stored = new WebhookSecretBox(randomBytes(32)).seal(secret);
    expect(() => new WebhookSecretBox(undefined).open(stored)).toThrow(/WEBHOOK_SECRETS_KEY/);
    expect(() => new WebhookSecretBox(randomBytes(32)).open(stored)).toThrow();
    const key = randomBytes(32);
    const box = new WebhookSecretBox(key);
    const sealed = box.seal(secret);
    const altered = sealed.slice(0, -4) + (sealed.endsWith('AAA=') ? 'BBB=' : 'AAA=');
    expect(() => new WebhookSecretBox(key).open(altered)).toThrow();
  });

  it('refuses a key that is not 32 bytes', () => {
    expect(() => new WebhookSecretBox(randomBytes(16))).toThrow(/32 bytes/);
  });
});
