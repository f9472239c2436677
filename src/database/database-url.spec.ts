import { databaseNameOf, withDatabaseName } from './database-url';

describe('withDatabaseName', () => {
  it('replaces the database of an embedded-server URL and keeps its socket query', () => {
    const url = 'postgres://postgres:postgres@127.0.0.1:41234/coordinator?host=%2Ftmp%2Fdata%20dir%2Fpg';
    expect(withDatabaseName(url, 'wallet_daemon')).toBe(
      'postgres://postgres:postgres@127.0.0.1:41234/wallet_daemon?host=%2Ftmp%2Fdata%20dir%2Fpg',
    );
  });

  it('keeps credentials, port and every query parameter of a plain URL', () => {
    expect(
      withDatabaseName(
        'postgres://app:p%40ss@db.internal:6432/coordinator?sslmode=require&application_name=x',
        'wallet_daemon',
      ),
    ).toBe('postgres://app:p%40ss@db.internal:6432/wallet_daemon?sslmode=require&application_name=x');
  });

  it('adds a database to a URL that names none', () => {
    expect(withDatabaseName('postgresql://app@db.internal', 'wallet_daemon')).toBe(
      'postgresql://app@db.internal/wallet_daemon',
    );
  });

  it('encodes a name that needs it, and databaseNameOf reads it back', () => {
    const url = withDatabaseName('postgres://h/coordinator?host=%2Fs', 'a b/c');
    expect(url).toBe('postgres://h/a%20b%2Fc?host=%2Fs');
    expect(databaseNameOf(url)).toBe('a b/c');
  });
});
