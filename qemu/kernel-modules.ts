/**
 * The kernel modules a guest needs, with everything they depend on, in load order. Debian's kernel
 * package ships no modules.dep (depmod runs at install time), so dependencies come from where depmod
 * gets them: each module's `.modinfo` (depends=, and softdep= "pre:" resolved through alias=).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { modinfo } from './elf.js';

export interface ModuleSet {
  /** Modules in an order where each comes after everything it depends on. */
  order: { name: string; path: string }[];
  /** Requested modules that are built into the kernel (nothing to load). */
  builtin: string[];
}

const norm = (name: string) => name.replace(/-/g, '_');

function walk(dir: string, out: string[]): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (e.name.endsWith('.ko')) out.push(p);
  }
  return out;
}

/**
 * `moduleDir` is /lib/modules/<version> of the unpacked kernel package. Roots missing from this
 * kernel are an error unless listed in `optional` (e.g. CPU-specific crypto that may not exist).
 */
export function resolveModules(moduleDir: string, roots: string[], optional: string[] = []): ModuleSet {
  const files = walk(join(moduleDir, 'kernel'), []);
  const byName = new Map(files.map((f) => [norm(basename(f, '.ko')), f]));
  const builtinFile = join(moduleDir, 'modules.builtin');
  const builtin = new Set(existsSync(builtinFile)
    ? readFileSync(builtinFile, 'utf8').split('\n').filter(Boolean).map((l) => norm(basename(l, '.ko'))) : []);
  // Aliases (for softdeps such as "pre: crypto-crc32c") only from the crypto modules: reading every
  // module's .modinfo would cost seconds for nothing.
  let aliases: Map<string, string> | undefined;
  const alias = (a: string) => {
    if (!aliases) {
      aliases = new Map();
      for (const f of files.filter((p) => /\/(crypto|lib)\//.test(relative(moduleDir, p)))) {
        for (const [k, v] of modinfo(readFileSync(f), f)) if (k === 'alias') aliases.set(v, norm(basename(f, '.ko')));
      }
    }
    return aliases.get(a);
  };

  const order: { name: string; path: string }[] = [];
  const done = new Set<string>();
  const visiting = new Set<string>();
  const builtinRoots: string[] = [];
  const visit = (name: string, why: string, soft: boolean) => {
    const n = norm(name);
    if (done.has(n) || visiting.has(n)) return;
    if (builtin.has(n)) {
      if (why === 'requested') builtinRoots.push(n);
      return;
    }
    const file = byName.get(n);
    if (!file) {
      const target = alias(name);
      if (target) return visit(target, why, soft);
      if (soft || optional.includes(name)) return;
      throw new Error(`kernel module "${name}" (${why}) is not in ${moduleDir}`);
    }
    visiting.add(n);
    const info = modinfo(readFileSync(file), file);
    for (const [k, v] of info) {
      if (k === 'depends') for (const d of v.split(',').filter(Boolean)) visit(d, `needed by ${n}`, false);
      if (k === 'softdep') {
        // "pre: a b post: c": pre-modules load first; post-modules are not needed to work.
        const pre = /pre:\s*([^:]*?)(?:\s+post:|$)/.exec(v)?.[1];
        for (const d of pre?.split(/\s+/).filter(Boolean) ?? []) visit(d, `softdep of ${n}`, true);
      }
    }
    visiting.delete(n);
    done.add(n);
    order.push({ name: n, path: file });
  };
  for (const r of roots) visit(r, 'requested', optional.includes(r));
  return { order, builtin: builtinRoots };
}
