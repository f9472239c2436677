import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../config/app-config';
import {
  assertServerCanReach,
  canEnterAs,
  embeddedServerUser,
  existingAncestors,
  firstUnenterable,
} from './server-user-access';

// A private directory as `mktemp -d` makes it (0700, owned by root), DATA_DIR inside it.
const PRIVATE = '/tmp/tmp.Xy12';
const DATA_DIR = `${PRIVATE}/data`;
const PG = `${DATA_DIR}/pg`;
const existing = new Set(['/', '/tmp', PRIVATE, DATA_DIR]);
const exists = (dir: string) => existing.has(dir);
const postgres = { name: 'postgres', switchTo: { uid: 101, gid: 104 } };

describe('embeddedServerUser', () => {
  it('is postgres with its ids when we are root', () => {
    expect(embeddedServerUser(0, () => ({ uid: 101, gid: 104 }))).toEqual(postgres);
  });

  it('is postgres, still to be created, when we are root and it does not exist yet', () => {
    expect(embeddedServerUser(0, () => undefined)).toEqual({ name: 'postgres', missing: true });
  });

  it('is ourselves, with no switch, when we are not root', () => {
    const lookup = jest.fn();
    const user = embeddedServerUser(1000, lookup);
    expect(user.switchTo).toBeUndefined();
    expect(user.missing).toBeUndefined();
    expect(lookup).not.toHaveBeenCalled();
  });
});

describe('existingAncestors', () => {
  it('lists the directories from / down to the path, stopping at the first that does not exist', () => {
    expect(existingAncestors(PG, exists)).toEqual(['/', '/tmp', PRIVATE, DATA_DIR]);
    expect(existingAncestors('/tmp/nope/deeper', exists)).toEqual(['/', '/tmp']);
  });
});

describe('firstUnenterable', () => {
  it('finds the outermost directory the user cannot enter', () => {
    const canEnter = (dir: string) => dir !== PRIVATE && dir !== DATA_DIR;
    expect(firstUnenterable(PG, canEnter, exists)).toBe(PRIVATE);
  });

  it('is undefined when every existing directory on the way can be entered', () => {
    expect(firstUnenterable(PG, () => true, exists)).toBeUndefined();
  });
});

describe('assertServerCanReach', () => {
  it('refuses a DATA_DIR inside a directory the server user cannot enter, naming DATA_DIR, the user and the fix', () => {
    const act = () => assertServerCanReach(DATA_DIR, PG, postgres, (dir) => dir !== PRIVATE, exists);
    expect(act).toThrow(ConfigError);
    expect(act).toThrow(
      `DATA_DIR (${DATA_DIR}): the embedded PostgreSQL runs as user postgres (initdb and postgres refuse to run as root), ` +
        `which cannot enter ${PRIVATE}. Fix: put DATA_DIR where postgres can reach it (every directory above it searchable, e.g. mode 0755), ` +
        `or let postgres through with chmod o+x ${PRIVATE}, ` +
        `or set DATABASE_URL to a PostgreSQL server of your own.`,
    );
  });

  it('names our own user, without the root explanation, when the server runs as us', () => {
    expect(() => assertServerCanReach(DATA_DIR, PG, { name: 'alice' }, (dir) => dir !== '/tmp', exists)).toThrow(
      /^DATA_DIR \(.*\): the embedded PostgreSQL runs as user alice, which cannot enter \/tmp\. Fix: .*chmod o\+x \/tmp/,
    );
  });

  it('accepts a DATA_DIR the server user can reach', () => {
    expect(() => assertServerCanReach(DATA_DIR, PG, postgres, () => true, exists)).not.toThrow();
  });
});

describe('canEnterAs a postgres user that does not exist yet', () => {
  // It will own nothing and be in no group: only the "other" search bit lets it in.
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'server-user-access-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('enters a directory with o+x and not one without', () => {
    const canEnter = canEnterAs({ name: 'postgres', missing: true });
    chmodSync(dir, 0o701);
    expect(canEnter(dir)).toBe(true);
    chmodSync(dir, 0o770);
    expect(canEnter(dir)).toBe(false);
  });
});
