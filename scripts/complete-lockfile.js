#!/usr/bin/env node
// Some npm registries (mirrors, proxies) serve only the builds for the platforms they
// were filled from of packages that ship one optional package per platform
// (@swc/core-*, @unrs/resolver-binding-*); `npm install` against such a registry leaves
// the others out of package-lock.json, and `npm ci` then refuses the lockfile as "not
// in sync". This adds the missing optional entries (name,
// version, os/cpu/libc) exactly as npm writes them on a full registry; npm never fetches
// them on a platform they do not match. Run after `npm install <pkg>`: node scripts/complete-lockfile.js
const fs = require('node:fs');

const file = 'package-lock.json';
const lock = JSON.parse(fs.readFileSync(file, 'utf8'));
const platform =
  /(darwin|linux|win32|freebsd|android|sunos|aix|openbsd|openharmony|netbsd)-(x64|arm64|arm|ia32|ppc64|s390x|riscv64|loong64|mips64el|universal|wasm32)/;
const added = [];
for (const meta of Object.values(lock.packages)) {
  for (const [name, version] of Object.entries(meta.optionalDependencies ?? {})) {
    const key = `node_modules/${name}`;
    const match = platform.exec(name);
    if (lock.packages[key] || !match) continue;
    const [, os, cpu] = match;
    const entry = {
      version,
      cpu: cpu === 'universal' ? ['x64', 'arm64'] : [cpu],
      license: meta.license ?? 'UNKNOWN',
      optional: true,
      os: [os],
    };
    if (meta.dev) entry.dev = true;
    if (name.includes('musl')) entry.libc = ['musl'];
    else if (name.includes('gnu')) entry.libc = ['glibc'];
    lock.packages[key] = entry;
    added.push(key);
  }
}
const sorted = Object.fromEntries(
  Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : a > b ? 1 : 0)),
);
lock.packages = sorted;
fs.writeFileSync(file, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`complete-lockfile: added ${added.length} optional platform entries`);
