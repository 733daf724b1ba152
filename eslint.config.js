import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'stubs/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': ['error', { allow: ['error'] }],
    },
  },
  {
    // vitest fixtures must destructure their (empty) context: `async ({}, use) => ...`
    files: ['test/**'],
    rules: { 'no-empty-pattern': 'off' },
  },
  {
    files: ['src/cli/**', 'bench/**', 'demo/**', 'scripts/**'],
    rules: { 'no-console': 'off' },
  },
);
