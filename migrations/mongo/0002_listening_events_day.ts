/**
 * Backfill a derived field in place: each listening event gets `day` (UTC date of `playedAt`), which
 * daily reports group by. Per-document (`map`), batched, checkpointed, resumable.
 */
import { mongoMigration } from '../../src/migrations/types.ts';

export default mongoMigration({
  async up({ backfill }) {
    await backfill({
      name: 'day',
      collection: 'listening_events',
      filter: { day: { $exists: false } },
      map: (doc) =>
        doc.playedAt instanceof Date ? { $set: { day: doc.playedAt.toISOString().slice(0, 10) } } : null,
      batchSize: 2_000,
    });
  },
  async down({ db }) {
    // Idempotent: unsetting a missing field is a no-op.
    await db.collection('listening_events').updateMany({}, { $unset: { day: '' } });
  },
});
