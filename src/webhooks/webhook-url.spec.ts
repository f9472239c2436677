import { checkWebhookUrl, isPublicAddress } from './webhook-url';

describe('webhook URL rules', () => {
  it.each([
    '127.0.0.1',
    '10.1.2.3',
    '172.16.0.1',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '255.255.255.255',
    '::1',
    '::',
    'fe80::1',
    'fd12:3456::1',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '::ffff:10.0.0.1',
    '64:ff9b::a00:1',
  ])('%s is not public', (address) => {
    expect(isPublicAddress(address)).toBe(false);
  });

  it.each(['93.184.216.34', '8.8.8.8', '2606:4700:4700::1111', '::ffff:8.8.8.8'])('%s is public', (address) => {
    expect(isPublicAddress(address)).toBe(true);
  });

  const resolveTo =
    (...addresses: string[]) =>
    async () =>
      addresses;

  it('accepts https and http to public addresses', async () => {
    await expect(checkWebhookUrl('https://hooks.example/x', false, resolveTo('93.184.216.34'))).resolves.toBeTruthy();
    await expect(checkWebhookUrl('http://93.184.216.34/x', false)).resolves.toBeTruthy();
  });

  it.each([
    ['http://127.0.0.1:8080/hook', resolveTo()],
    ['http://[::1]/hook', resolveTo()],
    ['https://[fe80::1]/hook', resolveTo()],
    ['https://internal.example/hook', resolveTo('10.0.0.5')],
    // One private address among public ones is enough to refuse (the client may connect to it).
    ['https://mixed.example/hook', resolveTo('93.184.216.34', '192.168.0.10')],
    ['https://v6.example/hook', resolveTo('fd00::1')],
    ['ftp://93.184.216.34/x', resolveTo()],
    ['https://user:pw@93.184.216.34/x', resolveTo()],
    ['not a url', resolveTo()],
  ])('refuses %s', async (url, resolver) => {
    await expect(checkWebhookUrl(url, false, resolver)).rejects.toMatchObject({ code: 'WEBHOOK_URL_NOT_ALLOWED' });
  });

  it('refuses a host that does not resolve', async () => {
    const failing = async () => {
      throw new Error('ENOTFOUND');
    };
    await expect(checkWebhookUrl('https://nowhere.invalid/', false, failing)).rejects.toMatchObject({
      code: 'WEBHOOK_URL_NOT_ALLOWED',
    });
  });

  it('allows private addresses when the operator switched them on', async () => {
    await expect(checkWebhookUrl('http://127.0.0.1:8080/hook', true)).resolves.toBeTruthy();
    await expect(checkWebhookUrl('ftp://127.0.0.1/', true)).rejects.toMatchObject({ code: 'WEBHOOK_URL_NOT_ALLOWED' });
  });
});
