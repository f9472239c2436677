#!/usr/bin/env node
/*
 * Fails when README.md or a Markdown file under docs/ links to something that is not in
 * the repository: a relative target that does not exist, a target outside the repository,
 * or a `#fragment` that names no heading of the target file. Absolute URLs (http:, https:,
 * mailto:) are not checked. Run by `npm run lint`.
 *
 *   node scripts/check-doc-links.js [file.md ...]
 */
'use strict';
const { existsSync, readFileSync, readdirSync, statSync } = require('node:fs');
const { dirname, join, relative, resolve, sep } = require('node:path');

const ROOT = resolve(__dirname, '..');

function markdownFiles() {
  const files = [join(ROOT, 'README.md')];
  const walk = (dir) => {
    if (!existsSync(dir)) return;
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith('.md')) files.push(path);
    }
  };
  walk(join(ROOT, 'docs'));
  return files;
}

/** Markdown text without fenced code blocks and inline code spans, where a `[x](y)` is not a link. */
function withoutCode(text) {
  const lines = [];
  let fence = null;
  for (const line of text.split('\n')) {
    const opener = /^\s*(`{3,}|~{3,})/.exec(line);
    if (fence) {
      if (opener && opener[1][0] === fence[0] && opener[1].length >= fence.length) fence = null;
      lines.push('');
    } else if (opener) {
      fence = opener[1];
      lines.push('');
    } else {
      lines.push(line.replace(/(`+)[^`]*?\1/g, ''));
    }
  }
  return lines.join('\n');
}

/** Link targets: inline `[text](target "title")`, `<img src>`/`<a href>`, and `[label]: target` definitions. */
function linkTargets(text) {
  const prose = withoutCode(text);
  const targets = [];
  for (const m of prose.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) targets.push(m[1]);
  for (const m of prose.matchAll(/<(?:a|img)\s[^>]*?(?:href|src)="([^"]+)"/g)) targets.push(m[1]);
  for (const m of prose.matchAll(/^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/gm)) targets.push(m[1]);
  return targets;
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchors(text) {
  const seen = new Map();
  const result = new Set();
  for (const line of withoutCode(text).split('\n')) {
    const heading = /^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!heading) continue;
    const plain = heading[1]
      .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
      .replace(/<[^>]+>/g, '')
      .toLowerCase();
    const base = plain
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .trim()
      .replace(/\s/g, '-');
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    result.add(count ? `${base}-${count}` : base);
  }
  return result;
}

function check(files) {
  const problems = [];
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const where = relative(ROOT, file);
    for (const target of linkTargets(text)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // http:, https:, mailto:
      const [pathPart, fragment] = target.split('#', 2);
      const path = decodeURIComponent(pathPart);
      const resolved = path ? resolve(dirname(file), path) : file;
      if (resolved !== ROOT && !resolved.startsWith(ROOT + sep)) {
        problems.push(`${where}: ${target} points outside the repository`);
        continue;
      }
      if (!existsSync(resolved)) {
        problems.push(`${where}: ${target} does not exist`);
        continue;
      }
      if (fragment && resolved.endsWith('.md') && !anchors(readFileSync(resolved, 'utf8')).has(fragment)) {
        problems.push(`${where}: ${target} names no heading of ${relative(ROOT, resolved)}`);
      }
    }
  }
  return problems;
}

if (require.main === module) {
  const files = process.argv.length > 2 ? process.argv.slice(2).map((f) => resolve(f)) : markdownFiles();
  const problems = check(files);
  for (const problem of problems) console.error(problem);
  if (problems.length) {
    console.error(`${problems.length} dangling link(s) in ${files.length} Markdown file(s)`);
    process.exit(1);
  }
  console.log(`links ok in ${files.length} Markdown file(s)`);
}

module.exports = { anchors, check, linkTargets };
