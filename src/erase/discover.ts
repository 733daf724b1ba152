/**
 * `dbfleet erase check-map <tenant>`: the map against the tenant's schema (what an erase would
 * refuse), locations without an index on the field that finds the subject (every erase would scan
 * them), and columns and fields that look personal, by name or by a sample of their content, that
 * the map does not cover. Reports names and kinds only, never a value.
 */
import type { Document } from 'mongodb';
import { isReservedName } from '../../queues/fields.ts';
import type { FleetDeps } from '../runtime/deps.ts';
import { quoteCatalogName } from '../stores/identifiers.ts';
import { withPoolClient } from '../stores/postgres.ts';
import type { PersonalDataLocation } from './map.ts';
import { MapMismatchError, resolveMap } from './resolve.ts';

export type PersonalKind = 'email' | 'phone' | 'name' | 'address' | 'ip' | 'birth date' | 'national id';

const BY_NAME: [PersonalKind, RegExp][] = [
  ['email', /e_?mail/i],
  ['phone', /phone|mobile|^tel$|telephone|msisdn/i],
  ['name', /(^|_)(first|last|full|display|given|family|sur|user)_?name$|^name$|^username$/i],
  ['address', /address|street|postal|postcode|zip|^city$/i],
  ['ip', /(^|_)ip(_?addr(ess)?)?$|^ip[A-Z]|remote_?addr/i],
  ['birth date', /birth|^dob$/i],
  ['national id', /ssn|passport|national_?id|tax_?id/i],
];

const BY_CONTENT: [PersonalKind, RegExp][] = [
  ['email', /^[^\s@]+@[^\s@]+\.[^\s@]+$/],
  ['ip', /^(\d{1,3}\.){3}\d{1,3}$|^([0-9a-f]{1,4}:){7}[0-9a-f]{1,4}$|^(?=.*::)[0-9a-f:]{2,39}$/i],
  // A leading + or digits in groups: not an id, a date or a time.
  ['phone', /^\+\d[\d\s().-]{6,18}$|^\(?\d{2,5}\)?[\s.-]\d{3,4}[\s.-]?\d{3,5}$/],
];

export interface UnmappedField {
  store: 'postgres' | 'mongo';
  name: string;
  field: string;
  kind: PersonalKind;
  /** Found by its name, or by what a sample of its values looks like. */
  by: 'name' | 'content';
}

export interface MapCheck {
  tenant: string;
  /** What an erase would refuse: the map does not fit the schema. */
  problems: string[];
  /** Mapped locations whose subject or path field leads no index. */
  unindexed: string[];
  unmapped: UnmappedField[];
}

const SAMPLE = 200;

function kindOf(
  field: string,
  samples: unknown[],
): { kind: PersonalKind; by: 'name' | 'content' } | undefined {
  const leaf = field.split('.').at(-1)!;
  for (const [kind, re] of BY_NAME) if (re.test(leaf)) return { kind, by: 'name' };
  const strings = samples.filter((v): v is string => typeof v === 'string' && v.length > 0);
  if (strings.length === 0) return undefined;
  for (const [kind, re] of BY_CONTENT)
    if (strings.filter((v) => re.test(v)).length >= Math.max(1, strings.length / 2))
      return { kind, by: 'content' };
  return undefined;
}

function covered(map: readonly PersonalDataLocation[], store: string, name: string, field: string): boolean {
  const l = map.find((x) => x.store === store && x.name === name);
  if (!l) return false;
  return l.action === 'delete' || Object.hasOwn(l.anonymise ?? {}, field.split('.')[0]!);
}

/** Field paths of a document, nested objects flattened (`address.city`), with their values. */
function paths(doc: Document, prefix = '', out = new Map<string, unknown[]>()): Map<string, unknown[]> {
  for (const [k, v] of Object.entries(doc)) {
    const p = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype)
      paths(v as Document, p, out);
    else {
      if (!out.has(p)) out.set(p, []);
      out.get(p)!.push(v);
    }
  }
  return out;
}

export async function discoverUnmapped(deps: FleetDeps, tenant: string): Promise<MapCheck> {
  const map = deps.config.personalData ?? [];
  const at = deps.tenants.locate(tenant);
  const pool = deps.postgres.pool(at.postgresUrl);
  const mongo = deps.mongo.db(at.mongoUrl, at.namespace);
  const schema = at.namespace;
  const result: MapCheck = { tenant, problems: [], unindexed: [], unmapped: [] };
  await withPoolClient(pool, async (client) => {
    try {
      const resolved = await resolveMap(map, { pg: client, schema, mongo }, { tenant, indexes: true });
      for (const l of [...resolved.postgres, ...resolved.mongo])
        if (l.indexed === false)
          result.unindexed.push(`${l.store} ${l.name}.${l.subjectField ?? l.through!.field}`);
    } catch (err) {
      if (!(err instanceof MapMismatchError)) throw err;
      result.problems.push(...err.problems);
    }
    const { rows } = await client.query<{ table: string; column: string; text: boolean }>(
      `SELECT c.relname AS table, a.attname AS column,
              a.atttypid IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype) AS text
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
       WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY c.relname, a.attnum`,
      [schema],
    );
    for (const r of rows) {
      if (isReservedName(r.table) || covered(map, 'postgres', r.table, r.column)) continue;
      let samples: unknown[] = [];
      if (r.text) {
        const q = `SELECT ${quoteCatalogName(r.column)} AS v FROM ${quoteCatalogName(schema)}.${quoteCatalogName(r.table)}
                   WHERE ${quoteCatalogName(r.column)} IS NOT NULL LIMIT ${SAMPLE}`;
        samples = (await client.query<{ v: unknown }>(q)).rows.map((x) => x.v);
      }
      const k = kindOf(r.column, samples);
      if (k) result.unmapped.push({ store: 'postgres', name: r.table, field: r.column, ...k });
    }
  });
  for (const c of await mongo.listCollections({ type: 'collection' }, { nameOnly: true }).toArray()) {
    if (isReservedName(c.name)) continue;
    const fields = new Map<string, unknown[]>();
    for (const doc of await mongo.collection(c.name).find({}).limit(SAMPLE).toArray()) paths(doc, '', fields);
    for (const [field, samples] of fields) {
      if (field === '_id' && samples.every((v) => typeof v !== 'string')) continue;
      if (covered(map, 'mongo', c.name, field)) continue;
      const k = kindOf(field, samples);
      if (k) result.unmapped.push({ store: 'mongo', name: c.name, field, ...k });
    }
  }
  return result;
}
