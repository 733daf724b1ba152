/** The demo app's collections and indexes. Idempotent, as MongoDB migrations must be. */
import { mongoMigration } from '../../src/migrations/types.ts';

const collections = ['sessions', 'listening_events', 'audit_log'];

export default mongoMigration({
  async up({ db }) {
    const existing = new Set((await db.listCollections({}, { nameOnly: true }).toArray()).map((c) => c.name));
    for (const name of collections) if (!existing.has(name)) await db.createCollection(name);
    // createIndex is a no-op when the same index exists.
    await db.collection('sessions').createIndex({ userId: 1 });
    await db.collection('sessions').createIndex({ expiresAt: 1 });
    await db.collection('listening_events').createIndex({ userId: 1, playedAt: 1 });
    await db.collection('audit_log').createIndex({ userId: 1 });
  },
  async down({ db }) {
    const existing = new Set((await db.listCollections({}, { nameOnly: true }).toArray()).map((c) => c.name));
    for (const name of collections) if (existing.has(name)) await db.collection(name).drop();
  },
});
