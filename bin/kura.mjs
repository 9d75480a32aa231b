#!/usr/bin/env node
// The `kura` command: builds on first use, then runs the compiled CLI.
import { ensureBuild } from '../scripts/ensure.mjs';

try {
  ensureBuild();
} catch (err) {
  process.stderr.write(`kura: ${err.message}\n`);
  process.exit(1);
}
await import('../dist/cli/kura.js');
