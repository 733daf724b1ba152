/**
 * The personal-data map: where a data subject's rows and documents are, and what erasure does to
 * each. Declared in the config module (`personalData`), checked here as declared, and against each
 * tenant's real schema before a job uses it (resolve.ts).
 */
import { IDENTIFIER, isReservedName } from '../../queues/fields.ts';

/** How a MongoDB field holds the subject id: a subject id arrives as text, and "42" never matches 42. */
export type MongoSubjectType = 'string' | 'number' | 'objectId';

/**
 * What anonymising puts in a field. Every strategy is computed from the subject id (never from the
 * value it replaces), so re-running an erasure writes the same values and nothing of the old value
 * survives in the new one:
 * - `null`: NULL (MongoDB: null);
 * - `{ fixed: v }`: the same value for everyone;
 * - `hash` / `{ hash: { domain } }`: a keyed hash (HMAC-SHA256 under the ledger key) of the subject
 *   id and the domain (default `subject`). Fields hashed in the same domain get the same pseudonym,
 *   in every table and collection, so joins between anonymised rows still hold. It keeps the field's
 *   type: text `anon_<hex>`, a negative integer in an integer column (or a MongoDB subject field held
 *   as a number), a UUID in a uuid column;
 * - `{ fake: 'email' | 'name' | 'phone' | 'text' }`: a deterministic fake of that kind
 *   (`anon_1f3a...@example.invalid`, `Anonymous 1f3a9c07`, ...), for fields that must keep a shape.
 */
export type AnonymiseStrategy =
  | 'null'
  | 'hash'
  | { fixed: string | number | boolean }
  | { hash: { domain?: string } }
  | { fake: 'email' | 'name' | 'phone' | 'text' };

export interface PersonalDataLocation {
  store: 'postgres' | 'mongo';
  /** Table or collection. At most one entry per table or collection. */
  name: string;
  /** The column or field that holds the subject id. Give this or `through`. */
  subjectField?: string;
  /** MongoDB only: how `subjectField` holds the id (default `string`); several when documents differ. */
  subjectType?: MongoSubjectType | MongoSubjectType[];
  /**
   * A path through another mapped location of the same store: rows whose `field` equals the `key` of
   * one of that location's rows for the subject (invoice lines through their invoice). Paths may be
   * chained; the key must not be one the location anonymises.
   */
  through?: { location: string; field: string; key: string };
  action: 'delete' | 'anonymise';
  /** For anonymise: each field to overwrite and how. */
  anonymise?: Record<string, AnonymiseStrategy>;
}

const FAKES = new Set(['email', 'name', 'phone', 'text']);
const MONGO_TYPES = new Set(['string', 'number', 'objectId']);

function strategyProblem(s: unknown): string | undefined {
  if (s === 'null' || s === 'hash') return undefined;
  if (typeof s !== 'object' || s === null) return 'must be null, hash, {fixed}, {hash: {domain}} or {fake}';
  const keys = Object.keys(s);
  if (keys.length !== 1) return 'must have exactly one of fixed, hash, fake';
  const o = s as Record<string, unknown>;
  if ('fixed' in o)
    return ['string', 'number', 'boolean'].includes(typeof o.fixed)
      ? undefined
      : 'fixed must be a string, number or boolean';
  if ('fake' in o) return FAKES.has(o.fake as string) ? undefined : 'fake must be email, name, phone or text';
  if ('hash' in o) {
    const h = o.hash as Record<string, unknown> | null;
    if (typeof h !== 'object' || h === null) return 'hash must be an object';
    const extra = Object.keys(h).filter((k) => k !== 'domain');
    if (extra.length) return `hash: unknown option ${extra[0]}`;
    return h.domain === undefined || (typeof h.domain === 'string' && h.domain.length > 0)
      ? undefined
      : 'hash.domain must be a non-empty string';
  }
  return `unknown strategy ${keys[0]}`;
}

export const locationId = (l: { store: string; name: string }) => `${l.store}:${l.name}`;

/** What is wrong with the map as declared (no database needed); empty when nothing. */
export function mapProblems(map: readonly PersonalDataLocation[]): string[] {
  const problems: string[] = [];
  const byId = new Map<string, PersonalDataLocation>();
  const name = (where: string, value: unknown) => {
    if (typeof value !== 'string' || !IDENTIFIER.test(value))
      problems.push(`${where}: ${JSON.stringify(value)} is not an identifier`);
    else if (isReservedName(value))
      problems.push(`${where}: ${value} is reserved for the fleet's own records`);
  };
  map.forEach((l, i) => {
    const at = `personalData[${i}]`;
    const known = ['store', 'name', 'subjectField', 'subjectType', 'through', 'action', 'anonymise'];
    for (const k of Object.keys(l)) if (!known.includes(k)) problems.push(`${at}: unknown field ${k}`);
    if (l.store !== 'postgres' && l.store !== 'mongo')
      problems.push(`${at}.store: must be postgres or mongo`);
    name(`${at}.name`, l.name);
    if (byId.has(locationId(l))) problems.push(`${at}: ${l.store} ${l.name} is mapped twice`);
    byId.set(locationId(l), l);
    if ((l.subjectField === undefined) === (l.through === undefined))
      problems.push(`${at}: give exactly one of subjectField and through`);
    if (l.subjectField !== undefined) name(`${at}.subjectField`, l.subjectField);
    if (l.subjectType !== undefined) {
      if (l.store !== 'mongo')
        problems.push(`${at}.subjectType: only for mongo (PostgreSQL has column types)`);
      const types = Array.isArray(l.subjectType) ? l.subjectType : [l.subjectType];
      if (types.length === 0 || types.some((t) => !MONGO_TYPES.has(t)))
        problems.push(`${at}.subjectType: must be string, number or objectId (or a list of them)`);
    }
    if (l.through) {
      name(`${at}.through.location`, l.through.location);
      name(`${at}.through.field`, l.through.field);
      name(`${at}.through.key`, l.through.key);
    }
    if (l.action !== 'delete' && l.action !== 'anonymise')
      problems.push(`${at}.action: must be delete or anonymise`);
    if (l.action === 'anonymise' && Object.keys(l.anonymise ?? {}).length === 0)
      problems.push(`${at}.anonymise: name the fields to anonymise`);
    if (l.action === 'delete' && l.anonymise) problems.push(`${at}.anonymise: only for action anonymise`);
    for (const [field, strategy] of Object.entries(l.anonymise ?? {})) {
      name(`${at}.anonymise.${field}`, field);
      const p = strategyProblem(strategy);
      if (p) problems.push(`${at}.anonymise.${field}: ${p}`);
    }
  });
  // Paths: to a mapped location of the same store, whose key it does not anonymise, without cycles.
  map.forEach((l, i) => {
    if (!l.through) return;
    const parent = byId.get(locationId({ store: l.store, name: l.through.location }));
    if (!parent) {
      problems.push(`personalData[${i}].through.location: ${l.store} ${l.through.location} is not mapped`);
      return;
    }
    if (parent.anonymise && l.through.key in parent.anonymise)
      problems.push(
        `personalData[${i}].through.key: ${l.through.location}.${l.through.key} is anonymised, so it cannot lead to the subject`,
      );
    const seen = new Set([locationId(l)]);
    for (let p: PersonalDataLocation | undefined = parent; p?.through;) {
      if (seen.has(locationId(p))) {
        problems.push(`personalData[${i}].through: the path from ${l.name} runs in a circle`);
        break;
      }
      seen.add(locationId(p));
      p = byId.get(locationId({ store: p.store, name: p.through.location }));
    }
  });
  return problems;
}
