/**
 * Expand and backfill: a new nullable column, filled in batches so the live table is never locked
 * for long. (The contract step, making it NOT NULL, would be a later migration once every writer
 * sets it.)
 */
import { postgresMigration } from '../../src/migrations/types.ts';

export default postgresMigration({
  // The backfill commits batch by batch.
  transaction: false,
  async up({ client, backfill }) {
    await client.query('ALTER TABLE users ADD COLUMN IF NOT EXISTS email_domain text');
    await backfill({
      name: 'email_domain',
      table: 'users',
      set: `email_domain = lower(split_part(email, '@', 2))`,
      where: 'email_domain IS NULL',
      batchSize: 5_000,
    });
  },
  async down({ client }) {
    await client.query('ALTER TABLE users DROP COLUMN IF EXISTS email_domain');
  },
});
