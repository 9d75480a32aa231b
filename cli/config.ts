/**
 * The controller node's configuration file (YAML or JSON): volumes and their backing media,
 * portals, targets with LUNs, CHAP and ACLs. Validated with zod; every error names the field
 * path and what is wrong, so a user can fix the file without reading code.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

const UNITS: Record<string, number> = {
  '': 1, b: 1, k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12,
  kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40,
};

/** "1GiB", "512MiB", "4k", 1048576 -> bytes. */
export function parseSize(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  if (!m) return undefined;
  const unit = UNITS[m[2]!.toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Math.round(Number(m[1]) * unit);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

export const sizeSchema = z.union([z.string(), z.number()]).transform((v, ctx) => {
    const bytes = parseSize(v);
  if (bytes === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${v}" is not a size: use bytes or a number with a unit (e.g. 512MiB, 1GiB, 10GB)` });
    return z.NEVER;
  }
  return bytes;
});

const iqn = z.string().regex(/^(iqn\.\d{4}-\d{2}\.[a-z0-9.-]+(:.+)?|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16,32})$/,
  'must be an iSCSI name: iqn.YYYY-MM.reversed.domain[:suffix], eui.<16 hex> or naa.<hex>');

const chapSecret = z.object({
  user: z.string().min(1, 'must not be empty'),
  secret: z.string().min(12, 'must be 12 to 16 characters (RFC 7143 recommends at least 12; libiscsi and Linux require it)').max(255),
}).strict();

const fileBacking = z.object({
  type: z.literal('file'),
  path: z.string().min(1),
  /** false: every write is durable before it completes (O_DSYNC), reported as WCE=0. */
  writeCache: z.boolean().default(true),
  /** Where pread/pwrite run: inline on the event loop while the page cache answers fast (auto), or always one way. */
  io: z.enum(['auto', 'inline', 'threadpool']).default('auto'),
}).strict();
const memoryBacking = z.object({ type: z.literal('memory') }).strict();
const imageBacking = z.object({
  type: z.literal('image'),
  path: z.string().min(1),
  format: z.enum(['qcow2', 'raw']).default('qcow2'),
  cache: z.enum(['writeback', 'none']).default('writeback'),
}).strict();
const nbdBacking = z.object({
  type: z.literal('nbd'),
  socketPath: z.string().optional(),
  host: z.string().optional(),
  port: z.number().int().min(1).max(65535).optional(),
  exportName: z.string().default(''),
}).strict().refine((b) => (b.socketPath !== undefined) !== (b.host !== undefined && b.port !== undefined), {
  message: 'give either socketPath or host and port',
});

export const backingSchema = z.discriminatedUnion('type', [fileBacking, memoryBacking, imageBacking, nbdBacking]);
export type BackingConfig = z.infer<typeof backingSchema>;

const volumeSchema = z.object({
  name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, "_", "." and "-" only'),
  size: sizeSchema,
  blockSize: z.union([z.literal(512), z.literal(4096)]).default(512),
  /** One medium... */
  backing: backingSchema.optional(),
  /** ...or several, arranged by `layout` (a disc array: one medium control unit per medium). */
  media: z.array(backingSchema).min(1).optional(),
  layout: z.enum(['single', 'stripe', 'mirror']).default('single'),
  stripeSize: sizeSchema.default(64 * 1024),
  scheduler: z.enum(['fifo', 'sstf']).default('fifo'),
  mediumQueueDepth: z.number().int().min(1).max(1024).default(32),
  readOnly: z.boolean().default(false),
  /** Thin provisioned: UNMAP / WRITE SAME with UNMAP really deallocate; needs media that can. */
  thin: z.boolean().default(false),
  /** Media rate a background SANITIZE runs at, per second (0: as fast as the medium goes). */
  sanitizeRate: sizeSchema.default(128 * 2 ** 20),
  serial: z.string().max(32).optional(),
}).strict().superRefine((v, ctx) => {
  if ((v.backing === undefined) === (v.media === undefined)) {
    ctx.addIssue({ code: 'custom', path: ['backing'], message: 'give exactly one of "backing" (one medium) or "media" (a list)' });
  }
  const count = v.media?.length ?? 1;
  if (v.layout === 'single' && count !== 1) ctx.addIssue({ code: 'custom', path: ['layout'], message: `"single" takes one medium, ${count} given: use "stripe" or "mirror"` });
  if (v.layout !== 'single' && count < 2) ctx.addIssue({ code: 'custom', path: ['layout'], message: `"${v.layout}" needs at least two media in "media"` });
  if (v.size % v.blockSize !== 0) ctx.addIssue({ code: 'custom', path: ['size'], message: `must be a multiple of blockSize (${v.blockSize})` });
  if (v.size === 0) ctx.addIssue({ code: 'custom', path: ['size'], message: 'must be greater than zero' });
  if (v.layout === 'stripe' && v.stripeSize % v.blockSize !== 0) ctx.addIssue({ code: 'custom', path: ['stripeSize'], message: `must be a multiple of blockSize (${v.blockSize})` });
});
export type VolumeConfig = z.infer<typeof volumeSchema>;

const digestPolicy = z.enum(['none', 'optional', 'required'], {
  error: (issue) => `must be "none", "optional" or "required" (got ${JSON.stringify(issue.input)})`,
});
/** HeaderDigest / DataDigest: none = only None, optional = the initiator's choice, required = only CRC32C. */
const digestsSchema = z.object({ header: digestPolicy.optional(), data: digestPolicy.optional() }).strict();

const targetSchema = z.object({
  name: iqn,
  alias: z.string().optional(),
  luns: z.array(z.object({ lun: z.number().int().min(0).max(16383), volume: z.string() }).strict()).min(1),
  /** Initiator names allowed to log in; absent = everyone. */
  acl: z.array(iqn).optional(),
  chap: chapSecret.optional(),
  mutualChap: chapSecret.optional(),
  /** Overrides the node's `digests`, key by key. */
  digests: digestsSchema.optional(),
}).strict().superRefine((t, ctx) => {
  if (t.mutualChap && !t.chap) ctx.addIssue({ code: 'custom', path: ['mutualChap'], message: 'mutual CHAP needs "chap" too (the initiator authenticates first)' });
  const seen = new Set<number>();
  t.luns.forEach((l, i) => {
    if (seen.has(l.lun)) ctx.addIssue({ code: 'custom', path: ['luns', i, 'lun'], message: `LUN ${l.lun} is listed twice` });
    seen.add(l.lun);
  });
});

export const nodeConfigSchema = z.object({
  node: z.object({
    name: z.string().min(1).default('kura'),
    /** Where file volumes and runtime state live; relative to the config file. */
    dataDir: z.string().default('data'),
  }).strict().default({ name: 'kura', dataDir: 'data' }),
  portals: z.array(z.object({
    host: z.string().min(1),
    port: z.number().int().min(0).max(65535).default(3260),
    /** Target portal group = SCSI target port (ALUA, reservations); default: position in the list, from 1. */
    portalGroupTag: z.number().int().min(1).max(65535).optional(),
  }).strict()).min(1),
  bufferMemory: sizeSchema.default(256 * 2 ** 20),
  volumes: z.array(volumeSchema).min(1),
  targets: z.array(targetSchema).min(1),
  discoveryChap: chapSecret.optional(),
  /** Digest policy of discovery sessions and of every target that sets none. */
  digests: z.object({ header: digestPolicy.default('optional'), data: digestPolicy.default('optional') }).strict()
    .default({ header: 'optional', data: 'optional' }),
  nopInInterval: z.number().min(0).default(5000),
  /** ms an unanswered NOP-In may wait before the connection is dropped as dead. */
  nopInTimeout: z.number().min(0).default(120000),
  log: z.object({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'silent']).default('info') }).strict().default({ level: 'info' }),
}).strict().superRefine((c, ctx) => {
  const names = new Set<string>();
  c.volumes.forEach((v, i) => {
    if (names.has(v.name)) ctx.addIssue({ code: 'custom', path: ['volumes', i, 'name'], message: `volume "${v.name}" is defined twice` });
    names.add(v.name);
  });
  const targets = new Set<string>();
  c.targets.forEach((t, i) => {
    if (targets.has(t.name)) ctx.addIssue({ code: 'custom', path: ['targets', i, 'name'], message: `target "${t.name}" is defined twice` });
    targets.add(t.name);
    t.luns.forEach((l, j) => {
      if (!names.has(l.volume)) ctx.addIssue({ code: 'custom', path: ['targets', i, 'luns', j, 'volume'], message: `no volume named "${l.volume}" (known: ${[...names].join(', ')})` });
    });
  });
});

export type NodeConfig = z.infer<typeof nodeConfigSchema>;

export class ConfigError extends Error {
  constructor(readonly file: string, readonly problems: string[]) {
    super(`${file}: invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** `volumes[0].backing.path`: how errors name a field. */
export function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : (out ? '.' : '') + String(p);
  return out || '(top level)';
}

/** zod's issues as `field: problem` lines (what ConfigError lists). */
export function describeIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.flatMap((i) => flattenIssue(i, []));
}

/**
 * A value that matches no alternative of a union (a WAN profile: a preset name or an object) gets
 * zod's bare "Invalid input". Report instead the problems of the alternative the value was meant
 * for: not one that refuses its very type, and of those the one with the fewest problems.
 */
function flattenIssue(i: z.core.$ZodIssue, base: readonly PropertyKey[]): string[] {
  const path = [...base, ...i.path];
  if (i.code === 'invalid_union' && i.errors.length > 0) {
    const wrongType = (b: readonly z.core.$ZodIssue[]) => b.some((x) => x.path.length === 0 && (x.code === 'invalid_type' || x.code === 'invalid_value'));
    const meant = i.errors.filter((b) => !wrongType(b)).sort((a, b) => a.length - b.length)[0];
    if (meant !== undefined) return meant.flatMap((x) => flattenIssue(x, path));
    return [`${fieldPath(path)}: ${i.errors.map((b) => b.map((x) => x.message).join(', ')).join('; or ')}`];
  }
  return [`${fieldPath(path)}: ${i.message}`];
}

/** Validate an already-parsed object; `source` names it in errors. Relative paths resolve against `baseDir`. */
export function validateConfig(raw: unknown, source: string, baseDir: string): NodeConfig {
  const parsed = nodeConfigSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(source, describeIssues(parsed.error.issues));
  }
  const config = parsed.data;
  config.node.dataDir = isAbsolute(config.node.dataDir) ? config.node.dataDir : resolve(baseDir, config.node.dataDir);
  const rebase = (b: BackingConfig) => {
    if ((b.type === 'file' || b.type === 'image') && !isAbsolute(b.path)) b.path = resolve(config.node.dataDir, b.path);
    if (b.type === 'nbd' && b.socketPath && !isAbsolute(b.socketPath)) b.socketPath = resolve(config.node.dataDir, b.socketPath);
  };
  for (const v of config.volumes) {
    if (v.backing) rebase(v.backing);
    v.media?.forEach(rebase);
  }
  return config;
}

/** Read a YAML (or, by its name, JSON) file; syntax errors become a ConfigError naming the file. */
export function readConfigFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [`cannot read: ${(err as Error).message}`]);
  }
  try {
    return file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ConfigError(file, [`not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`]);
  }
}

export function loadConfig(file: string): NodeConfig {
  return validateConfig(readConfigFile(file), file, dirname(resolve(file)));
}

/** What `npm start` / `kura node` without --config runs: one 1 GiB file volume on 127.0.0.1:3260. */
export function defaultConfig(dataDir: string, port = 3260): NodeConfig {
  return validateConfig({
    node: { name: 'kura', dataDir },
    portals: [{ host: '127.0.0.1', port }],
    volumes: [{ name: 'vol0', size: '1GiB', blockSize: 512, backing: { type: 'file', path: 'vol0.img' } }],
    targets: [{ name: 'iqn.2026-11.dev.kura:vol0', luns: [{ lun: 0, volume: 'vol0' }] }],
  }, '(built-in default)', dataDir);
}
