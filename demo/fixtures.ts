/**
 * Row schemas for the demo app, used by load-fixtures to validate each record. For PostgreSQL targets
 * the object's keys are the columns COPY writes, in this order.
 */
import { z } from 'zod';

const id = z.coerce.number().int().positive();
/** PostgreSQL parses timestamps itself: validate the text and pass it through, no Date round trip. */
const timestamp = z.union([z.iso.datetime({ offset: true }), z.iso.date()]);
/**
 * MongoDB stores what it is given: turn ISO text into a Date so that queries compare dates. Not
 * z.coerce.date(), which turns null into 1970-01-01 (and a retention policy would then delete it).
 */
const when = z
  .union([z.date(), z.iso.datetime({ offset: true }), z.iso.date()])
  .transform((v) => new Date(v));
/**
 * JSON booleans, or their CSV spellings. Not z.coerce.boolean(), which makes any non-empty text true,
 * the text `false` included.
 */
const bool = z.union([
  z.boolean(),
  z.enum(['true', 'false', 't', 'f', '1', '0']).transform((v) => v === 'true' || v === 't' || v === '1'),
]);

export const fixtures = {
  users: z.object({
    id,
    email: z.email(),
    display_name: z.string().min(1).max(100),
    country: z.string().length(2).nullable().default(null),
    birth_year: z.coerce.number().int().min(1900).max(2026).nullable().default(null),
    created_at: timestamp,
  }),
  playlists: z.object({
    id,
    user_id: id,
    name: z.string().min(1).max(200),
    is_public: bool,
    created_at: timestamp,
  }),
  playlist_tracks: z.object({
    playlist_id: id,
    position: z.coerce.number().int().min(0),
    track_id: z.string().min(1),
    added_at: timestamp,
  }),
  consent: z.object({
    user_id: id,
    purpose: z.enum(['marketing', 'analytics', 'personalisation']),
    granted: bool,
    updated_at: timestamp,
  }),
  sessions: z.object({
    _id: z.string().min(1),
    userId: id,
    device: z.string(),
    createdAt: when,
    /** null: the session does not expire. */
    expiresAt: when.nullable(),
  }),
  listening_events: z.object({
    _id: z.string().min(1),
    userId: id,
    trackId: z.string().min(1),
    playedAt: when,
    msPlayed: z.number().int().min(0),
    device: z.string(),
  }),
  audit_log: z.object({
    _id: z.string().min(1),
    userId: id,
    action: z.string(),
    at: when,
    ip: z.string(),
  }),
};
