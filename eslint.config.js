import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Code that runs on every request. On node 20's V8 an object spread followed by more
    // properties (`{ ...event, status }`) takes a slow path that makes a new hidden class for
    // every object it builds (about 3 µs each, and heap); an object rest is a runtime call. The
    // `served` event's spread alone was a fifth of the CPU of a cached small blob under wrk. Spell the fields out,
    // or put the spread last.
    files: ['middleware/**/*.ts', 'src/{access,events,lists,logging,manifests,memo,metrics}/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        { selector: 'ObjectExpression > SpreadElement:first-child ~ *', message: 'A spread followed by more properties is slow on node 20 (see eslint.config.js): spell the fields out, or put the spread last.' },
        { selector: 'ObjectPattern > RestElement', message: 'An object rest is a runtime call on every request (see eslint.config.js): name the fields.' },
      ],
    },
  },
);
