import { defineConfig } from 'vitest/config';

const shared = {
  globalSetup: ['test/support/global-setup.ts'],
  setupFiles: ['test/support/setup-env.ts'],
  testTimeout: 120_000,
  hookTimeout: 120_000,
  pool: 'forks' as const,
};

export default defineConfig({
  test: {
    // Two cores: the services need one of them.
    maxWorkers: 2,
    projects: [
      { test: { ...shared, name: 'main', include: ['test/**/*.test.ts'], exclude: ['test/disruptive/**'] } },
      {
        // Tests that restart PostgreSQL or kill workers: alone, one file at a time, after the rest.
        test: {
          ...shared,
          name: 'disruptive',
          include: ['test/disruptive/**/*.test.ts'],
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
