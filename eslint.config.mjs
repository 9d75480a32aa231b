import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'data/**', '.kura/**', '.scratch/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  { files: ['**/*.mjs'], languageOptions: { globals: globals.node } },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    // Sans-IO: firmware and the protocol state machines never touch Node I/O, timers or wall time.
    files: ['firmware/**/*.ts', 'target/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [
        { group: ['node:fs', 'node:fs/*', 'fs', 'fs/*', 'node:net', 'net', 'node:dgram', 'dgram', 'node:child_process', 'child_process', 'node:timers', 'node:timers/*', 'timers', 'node:http', 'node:https', 'node:os', 'os'], message: 'firmware/ and target/ are sans-IO: take a HAL interface instead.' },
        // ring.js: a plain FIFO, the same on every HAL (the WAN emulation's receivers use it too).
        { group: ['**/hal/*', '!**/hal/types.js', '!**/hal/clock.js', '!**/hal/block-device.js', '!**/hal/transport.js', '!**/hal/ring.js'], message: 'firmware/ and target/ may import only HAL interfaces, not implementations.' },
      ] }],
      'no-restricted-globals': ['error',
        { name: 'setTimeout', message: 'use the HAL Clock' }, { name: 'setInterval', message: 'use the HAL Clock' },
        { name: 'setImmediate', message: 'use the HAL Clock' }, { name: 'Date', message: 'use the HAL Clock' },
        { name: 'performance', message: 'use the HAL Clock' }, { name: 'process', message: 'firmware has no process' }],
    },
  },
);
