import { Webhook } from 'standardwebhooks';
import { newWebhookSecret, WebhookSigner } from './webhook-signer';

describe('WebhookSigner', () => {
  const body = JSON.stringify({ type: 'payment.created', data: { event_id: 'e1' } });
  const at = new Date();
  const headers = (signature: string) => ({
    'webhook-id': 'e1',
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': signature,
  });

  it('makes whsec_ secrets of 32 random bytes', () => {
    const secret = newWebhookSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(newWebhookSecret()).not.toBe(secret);
  });

  it('signs so that the library verifies', () => {
    const secret = newWebhookSecret();
    const signature = new WebhookSigner().sign([secret], 'e1', at, body);
    expect(signature).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    expect(new Webhook(secret).verify(body, headers(signature))).toEqual(JSON.parse(body));
  });

  it('during an overlap, both secrets verify; a third does not', () => {
    const [old, fresh] = [newWebhookSecret(), newWebhookSecret()];
    const signature = new WebhookSigner().sign([fresh, old], 'e1', at, body);
    expect(signature.split(' ')).toHaveLength(2);
    expect(() => new Webhook(old).verify(body, headers(signature))).not.toThrow();
    expect(() => new Webhook(fresh).verify(body, headers(signature))).not.toThrow();
    expect(() => new Webhook(newWebhookSecret()).verify(body, headers(signature))).toThrow();
  });

  it('a changed body or id fails verification', () => {
    const secret = newWebhookSecret();
    const signature = new WebhookSigner().sign([secret], 'e1', at, body);
    expect(() => new Webhook(secret).verify(body + ' ', headers(signature))).toThrow();
    expect(() => new Webhook(secret).verify(body, { ...headers(signature), 'webhook-id': 'e2' })).toThrow();
  });
});
