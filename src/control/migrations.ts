/**
 * The control database's own schema, as an append-only list: never edit an entry that has shipped,
 * add a new one. Applied under an advisory lock so concurrent starters do not race.
 */
export const controlMigrations: readonly { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: 'tenants, job audit, load rejections',
    sql: `
      CREATE TABLE dbfleet.tenants (
        id          text PRIMARY KEY,
        created_at  timestamptz NOT NULL DEFAULT now(),
        status      text NOT NULL DEFAULT 'active'
      );

      -- One row per job (not per attempt): the latest state plus the attempt count.
      CREATE TABLE dbfleet.job_runs (
        prefix          text NOT NULL,
        queue           text NOT NULL,
        job_id          text NOT NULL,
        tenant          text NOT NULL,
        requested_by    text,
        payload_digest  text NOT NULL,
        status          text NOT NULL,
        attempts        integer NOT NULL DEFAULT 0,
        enqueued_at     timestamptz,
        started_at      timestamptz,
        finished_at     timestamptz,
        duration_ms     integer,
        result_summary  jsonb,
        error_code      text,
        error_message   text,
        updated_at      timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (prefix, queue, job_id)
      );
      CREATE INDEX job_runs_tenant ON dbfleet.job_runs (tenant, updated_at DESC);

      -- Rows a load-fixtures job refused, by source record number. No row contents: they may be personal.
      CREATE TABLE dbfleet.load_rejections (
        prefix      text NOT NULL,
        job_id      text NOT NULL,
        line        bigint NOT NULL,
        reason      text NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (prefix, job_id, line)
      );
    `,
  },
  {
    version: 2,
    name: 'append-only job audit events; job_runs becomes a view',
    // Jobs no longer write the audit log themselves: they append to a Redis stream before they are
    // acknowledged, and one drainer copies the stream here in large COPY batches (audit-drain.ts).
    // Appending is about a third of an upsert's cost, and every attempt's outcome is kept.
    sql: `
      CREATE TABLE dbfleet.job_events (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        prefix          text NOT NULL,
        queue           text NOT NULL,
        job_id          text NOT NULL,
        tenant          text NOT NULL,
        requested_by    text,
        payload_digest  text NOT NULL,
        status          text NOT NULL,
        attempt         integer NOT NULL,
        enqueued_at     timestamptz,
        started_at      timestamptz,
        finished_at     timestamptz,
        duration_ms     integer,
        result_summary  jsonb,
        error_code      text,
        error_message   text,
        recorded_at     timestamptz NOT NULL
      );
      CREATE INDEX job_events_job ON dbfleet.job_events (prefix, queue, job_id, id);
      CREATE INDEX job_events_tenant ON dbfleet.job_events (tenant, recorded_at);

      INSERT INTO dbfleet.job_events (prefix, queue, job_id, tenant, requested_by, payload_digest, status, attempt,
                                      enqueued_at, started_at, finished_at, duration_ms, result_summary,
                                      error_code, error_message, recorded_at)
      SELECT prefix, queue, job_id, tenant, requested_by, payload_digest, status, attempts, enqueued_at, started_at,
             finished_at, duration_ms, result_summary, error_code, error_message, updated_at
      FROM dbfleet.job_runs ORDER BY updated_at;
      DROP TABLE dbfleet.job_runs;

      -- The latest event of each job, with its attempt count: what job_runs held before.
      CREATE VIEW dbfleet.job_runs AS
      SELECT DISTINCT ON (e.prefix, e.queue, e.job_id)
             e.prefix, e.queue, e.job_id, e.tenant, e.requested_by, e.payload_digest, e.status,
             max(e.attempt) OVER job AS attempts, e.enqueued_at, min(e.started_at) OVER job AS started_at,
             e.finished_at, e.duration_ms, e.result_summary, e.error_code, e.error_message,
             e.recorded_at AS updated_at
      FROM dbfleet.job_events e
      WINDOW job AS (PARTITION BY e.prefix, e.queue, e.job_id)
      ORDER BY e.prefix, e.queue, e.job_id, e.id DESC;

      -- How far the drainer has copied each prefix's audit stream (a Redis stream entry id).
      CREATE TABLE dbfleet.audit_cursor (
        prefix   text PRIMARY KEY,
        last_id  text NOT NULL
      );
    `,
  },
  {
    version: 3,
    name: 'cheaper job_events inserts: json summary, job id and BRIN time indexes',
    // Every job adds a row here, on the same machines as the jobs: measured per row copied, 12 µs of
    // PostgreSQL CPU before, 7 µs after. The summary is kept as written (json: validated, not
    // converted; it is read back whole, never searched inside). Lookups by job go through job_id
    // alone (ids are long and nearly unique; prefix and queue are filtered after). Per-tenant
    // reads are over time windows, which a BRIN on recorded_at (in insertion order) narrows for
    // almost no insert cost; the tenant is filtered after.
    sql: `
      DROP VIEW dbfleet.job_runs;
      ALTER TABLE dbfleet.job_events ALTER COLUMN result_summary TYPE json;
      DROP INDEX dbfleet.job_events_job;
      DROP INDEX dbfleet.job_events_tenant;
      CREATE INDEX job_events_job_id ON dbfleet.job_events (job_id);
      CREATE INDEX job_events_recorded_at ON dbfleet.job_events USING brin (recorded_at);
      CREATE VIEW dbfleet.job_runs AS
      SELECT DISTINCT ON (e.prefix, e.queue, e.job_id)
             e.prefix, e.queue, e.job_id, e.tenant, e.requested_by, e.payload_digest, e.status,
             max(e.attempt) OVER job AS attempts, e.enqueued_at, min(e.started_at) OVER job AS started_at,
             e.finished_at, e.duration_ms, e.result_summary, e.error_code, e.error_message,
             e.recorded_at AS updated_at
      FROM dbfleet.job_events e
      WINDOW job AS (PARTITION BY e.prefix, e.queue, e.job_id)
      ORDER BY e.prefix, e.queue, e.job_id, e.id DESC;
    `,
  },
  {
    version: 4,
    name: 'leaner audit rows: epoch-ms times, text summary; job_events becomes a view over job_event_log',
    // Measured per row COPYed (200,000 rows, in 2,000-row transactions): 5.1 µs of PostgreSQL before,
    // 2.7 µs after, and about 60 fewer bytes per event through Redis. Times are written as epoch
    // milliseconds (parsing four timestamptz per row was a third of the cost), the summary as text
    // (it is only read back whole), finished_at is derived (it is the event's time for completed and
    // failed), and the id no longer has a unique index (its sequence makes it unique; it only orders
    // a job's events). Job ids compare bytewise ("C"): the index only serves equality, and under a
    // linguistic collation each comparison on insert costs a strcoll (random 40-character ids, in a
    // C.UTF-8 database: 4.2–4.8 µs per row before, 3.9–4.1 after). Readers keep the same columns
    // and types through the job_events view; its recorded_at is indexed (BRIN over the same
    // expression), so time windows stay cheap.
    sql: `
      DROP VIEW dbfleet.job_runs;
      CREATE TABLE dbfleet.job_event_log (
        id              bigint GENERATED ALWAYS AS IDENTITY (CACHE 1000),
        prefix          text NOT NULL,
        queue           text NOT NULL,
        job_id          text COLLATE "C" NOT NULL,
        tenant          text NOT NULL,
        requested_by    text,
        payload_digest  text NOT NULL,
        status          text NOT NULL,
        attempt         integer NOT NULL,
        enqueued_ms     bigint,
        started_ms      bigint,
        duration_ms     integer,
        result_summary  text,
        error_code      text,
        error_message   text,
        recorded_ms     bigint NOT NULL
      );
      INSERT INTO dbfleet.job_event_log (prefix, queue, job_id, tenant, requested_by, payload_digest, status,
                                         attempt, enqueued_ms, started_ms, duration_ms, result_summary,
                                         error_code, error_message, recorded_ms)
      SELECT prefix, queue, job_id, tenant, requested_by, payload_digest, status, attempt,
             (extract(epoch FROM enqueued_at) * 1000)::bigint, (extract(epoch FROM started_at) * 1000)::bigint,
             duration_ms, result_summary::text, error_code, error_message,
             (extract(epoch FROM recorded_at) * 1000)::bigint
      FROM dbfleet.job_events ORDER BY id;
      DROP TABLE dbfleet.job_events;
      CREATE INDEX job_event_log_job_id ON dbfleet.job_event_log (job_id);
      CREATE INDEX job_event_log_recorded_at ON dbfleet.job_event_log
        USING brin ((to_timestamp(recorded_ms / 1000.0::float8)));

      CREATE VIEW dbfleet.job_events AS
      SELECT id, prefix, queue, job_id, tenant, requested_by, payload_digest, status, attempt,
             to_timestamp(enqueued_ms / 1000.0::float8) AS enqueued_at,
             to_timestamp(started_ms / 1000.0::float8) AS started_at,
             CASE WHEN status IN ('completed', 'failed') THEN to_timestamp(recorded_ms / 1000.0::float8) END
               AS finished_at,
             duration_ms, result_summary::json AS result_summary, error_code, error_message,
             to_timestamp(recorded_ms / 1000.0::float8) AS recorded_at
      FROM dbfleet.job_event_log;

      CREATE VIEW dbfleet.job_runs AS
      SELECT DISTINCT ON (e.prefix, e.queue, e.job_id)
             e.prefix, e.queue, e.job_id, e.tenant, e.requested_by, e.payload_digest, e.status,
             max(e.attempt) OVER job AS attempts, e.enqueued_at, min(e.started_at) OVER job AS started_at,
             e.finished_at, e.duration_ms, e.result_summary, e.error_code, e.error_message,
             e.recorded_at AS updated_at
      FROM dbfleet.job_events e
      WINDOW job AS (PARTITION BY e.prefix, e.queue, e.job_id)
      ORDER BY e.prefix, e.queue, e.job_id, e.id DESC;
    `,
  },
  {
    version: 5,
    name: 'load rejections keyed by run; tenants registered per deployment (prefix)',
    // Job ids repeat (they restart when Redis loses its data; an idempotency key names a new job once
    // the old one is removed), so a load's rejections are keyed by its run id, unique for all time.
    // Rows from before were written under the key their run used then, prefix:job id.
    //
    // Workers of the version before still insert rows without a run id during a rolling upgrade;
    // a trigger gives them the key they meant.
    //
    // Deployments that share a control database (different DBFLEET_PREFIX) each have their own
    // tenants: one's `migrate --all` must not reach another's. A tenant registered before belongs to
    // each deployment whose jobs ran for it (the audit log says which); one no job ever ran for stays
    // shared (prefix ''), seen by every deployment as before. Whoever applies this migration claims
    // nothing: a test run or a one-shot command may be first.
    sql: `
      ALTER TABLE dbfleet.load_rejections ADD COLUMN run_id text;
      UPDATE dbfleet.load_rejections SET run_id = prefix || ':' || job_id;
      ALTER TABLE dbfleet.load_rejections
        ALTER COLUMN run_id SET NOT NULL,
        DROP CONSTRAINT load_rejections_pkey,
        ADD PRIMARY KEY (run_id, line);
      CREATE INDEX load_rejections_prefix ON dbfleet.load_rejections (prefix, job_id);
      CREATE FUNCTION dbfleet.load_rejections_run_id() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          NEW.run_id := coalesce(NEW.run_id, NEW.prefix || ':' || NEW.job_id);
          RETURN NEW;
        END $$;
      CREATE TRIGGER load_rejections_run_id BEFORE INSERT ON dbfleet.load_rejections
        FOR EACH ROW EXECUTE FUNCTION dbfleet.load_rejections_run_id();

      ALTER TABLE dbfleet.tenants ADD COLUMN prefix text NOT NULL DEFAULT '';
      ALTER TABLE dbfleet.tenants DROP CONSTRAINT tenants_pkey, ADD PRIMARY KEY (prefix, id);
      INSERT INTO dbfleet.tenants (prefix, id, created_at, status)
      SELECT seen.prefix, t.id, t.created_at, t.status
      FROM dbfleet.tenants t
      JOIN (SELECT DISTINCT prefix, tenant FROM dbfleet.job_event_log) seen ON seen.tenant = t.id
      WHERE seen.prefix <> '';
      DELETE FROM dbfleet.tenants t
      WHERE t.prefix = '' AND EXISTS (SELECT 1 FROM dbfleet.tenants o WHERE o.id = t.id AND o.prefix <> '');
    `,
  },
  {
    version: 6,
    name: 'audit dead letters: stream entries the drainer cannot copy',
    // An audit stream entry the drainer cannot read, or whose COPY text PostgreSQL refuses for its
    // data (SQLSTATE class 22 or 23) or stops reading early (an end-of-data marker), is moved here in
    // the same transaction as the drain cursor, so the events behind it are copied rather than
    // waiting forever. The entry is kept byte for byte: its field names and values alternating, as
    // the stream held them (an entry of migration 4's format is {e4, <COPY text>}). error_code is the SQLSTATE, or
    // no_events_field / copy_ended_early; never the server's message, which quotes the refused values.
    sql: `
      CREATE TABLE dbfleet.audit_dead_letters (
        prefix       text NOT NULL,
        entry_id     text NOT NULL,
        fields       bytea[] NOT NULL,
        error_code   text NOT NULL,
        recorded_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (prefix, entry_id)
      );
    `,
  },
  {
    version: 7,
    name: 'audit events carry their run id; job_runs has a row per run',
    // A job id names different runs over time (an idempotency key reused once its job is removed; ids
    // restarting after Redis lost its data), so each event records its run, and job_runs gives each
    // run's latest state. Events from before have no run id: each job's form one run, as before.
    // The views are replaced, not dropped, so views and grants built on them survive (run_id is a
    // new last column).
    sql: `
      ALTER TABLE dbfleet.job_event_log ADD COLUMN run_id text COLLATE "C";
      CREATE OR REPLACE VIEW dbfleet.job_events AS
      SELECT id, prefix, queue, job_id, tenant, requested_by, payload_digest, status, attempt,
             to_timestamp(enqueued_ms / 1000.0::float8) AS enqueued_at,
             to_timestamp(started_ms / 1000.0::float8) AS started_at,
             CASE WHEN status IN ('completed', 'failed') THEN to_timestamp(recorded_ms / 1000.0::float8) END
               AS finished_at,
             duration_ms, result_summary::json AS result_summary, error_code, error_message,
             to_timestamp(recorded_ms / 1000.0::float8) AS recorded_at, run_id
      FROM dbfleet.job_event_log;

      CREATE OR REPLACE VIEW dbfleet.job_runs AS
      SELECT DISTINCT ON (e.prefix, e.queue, e.job_id, e.run_id)
             e.prefix, e.queue, e.job_id, e.tenant, e.requested_by, e.payload_digest, e.status,
             max(e.attempt) OVER run AS attempts, e.enqueued_at, min(e.started_at) OVER run AS started_at,
             e.finished_at, e.duration_ms, e.result_summary, e.error_code, e.error_message,
             e.recorded_at AS updated_at, e.run_id
      FROM dbfleet.job_events e
      WINDOW run AS (PARTITION BY e.prefix, e.queue, e.job_id, e.run_id)
      ORDER BY e.prefix, e.queue, e.job_id, e.run_id, e.id DESC;
    `,
  },
  {
    version: 8,
    name: 'backup catalog',
    // Every backup of every tenant, per deployment: its state from the moment it starts (so crashed,
    // incomplete ones are found), where its objects and manifest are, and what a verify found. A
    // backup is restorable only when complete, and only its manifest (written last) makes it so:
    // the catalog is the index, the manifest the truth. Read and written by src/backup/catalog.ts.
    sql: `
      CREATE TABLE dbfleet.backups (
        prefix        text NOT NULL,
        backup_id     text NOT NULL,
        tenant        text NOT NULL,
        run_id        text NOT NULL,
        state         text NOT NULL CHECK (state IN ('running', 'complete', 'failed', 'deleted')),
        destination   text NOT NULL CHECK (destination IN ('s3', 'local')),
        manifest_key  text NOT NULL,
        key_id        text,
        started_at    timestamptz NOT NULL DEFAULT now(),
        finished_at   timestamptz,
        objects       integer,
        records       bigint,
        stored_bytes  bigint,
        error_code    text,
        verified_at   timestamptz,
        verify_result text,
        PRIMARY KEY (prefix, backup_id)
      );
      CREATE INDEX backups_tenant ON dbfleet.backups (prefix, tenant, started_at DESC);
    `,
  },
  {
    version: 9,
    name: 'backup heartbeat; restore records',
    // A running backup touches updated_at after each object, so one a crash left behind is told from
    // one still going. Each restore run is recorded with what it replaced: the target's schema and
    // collections as they were are renamed aside, not dropped, until an operator drops them on
    // purpose. Read and written by src/backup/catalog.ts and src/backup/restore-records.ts.
    sql: `
      ALTER TABLE dbfleet.backups ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
      CREATE TABLE dbfleet.restores (
        prefix                text NOT NULL,
        run_id                text NOT NULL,
        backup_id             text NOT NULL,
        source_tenant         text NOT NULL,
        target_tenant         text NOT NULL,
        state                 text NOT NULL CHECK (state IN ('running', 'complete', 'failed')),
        started_at            timestamptz NOT NULL DEFAULT now(),
        finished_at           timestamptz,
        replaced_schema       text,
        replaced_collections  text,
        replaced_dropped_at   timestamptz,
        erasures_reapplied    integer,
        error_code            text,
        PRIMARY KEY (prefix, run_id)
      );
      CREATE INDEX restores_target ON dbfleet.restores (prefix, target_tenant, started_at DESC);
    `,
  },
  {
    version: 10,
    name: 'erasure ledger; subject exports',
    // The ledger is the durable record that an erasure was asked for and done: who asked, when, what
    // changed where, whether the verify pass found nothing left. It never holds the subject id in the
    // clear: a keyed hash to find a subject's erasures, and the id sealed under the ledger key, which
    // only a restore opens, to erase the person again from restored data. Written by
    // src/erase/ledger.ts; exports by src/erase/export-records.ts.
    sql: `
      CREATE TABLE dbfleet.erasures (
        prefix          text NOT NULL,
        erasure_id      text NOT NULL,
        tenant          text NOT NULL,
        requested_by    text,
        subject_hash    text NOT NULL,
        subject_sealed  text NOT NULL,
        key_id          text NOT NULL,
        state           text NOT NULL CHECK (state IN ('running', 'complete', 'failed')),
        requested_at    timestamptz NOT NULL DEFAULT now(),
        finished_at     timestamptz,
        locations       jsonb,
        deleted         bigint,
        anonymised      bigint,
        verified        boolean,
        error_code      text,
        PRIMARY KEY (prefix, erasure_id)
      );
      CREATE INDEX erasures_tenant ON dbfleet.erasures (prefix, tenant, requested_at);
      CREATE INDEX erasures_subject ON dbfleet.erasures (prefix, subject_hash);

      CREATE TABLE dbfleet.subject_exports (
        prefix        text NOT NULL,
        export_id     text NOT NULL,
        tenant        text NOT NULL,
        requested_by  text,
        subject_hash  text NOT NULL,
        destination   text NOT NULL CHECK (destination IN ('s3', 'local')),
        object_key    text NOT NULL,
        key_id        text,
        records       bigint,
        stored_bytes  bigint,
        created_at    timestamptz NOT NULL DEFAULT now(),
        expires_at    timestamptz NOT NULL,
        deleted_at    timestamptz,
        PRIMARY KEY (prefix, export_id)
      );
      CREATE INDEX subject_exports_expiry ON dbfleet.subject_exports (expires_at) WHERE deleted_at IS NULL;
    `,
  },
  {
    version: 11,
    name: 'cleanup progress; load rejections by tenant',
    // A cleanup of the fleet's own records commits each batch with its progress row here, so a
    // crashed run resumes with exact counts (src/cleanup/control-records.ts). Rejections get their
    // tenant, so that one tenant's retention never reaches another's; older rows take it from the
    // audit log of the job that refused them.
    sql: `
      CREATE TABLE dbfleet.cleanup_progress (
        prefix      text NOT NULL,
        run_id      text NOT NULL,
        policy      text NOT NULL,
        matched     bigint NOT NULL,
        deleted     bigint NOT NULL,
        batches     integer NOT NULL,
        longest_ms  integer NOT NULL,
        done        boolean NOT NULL,
        updated_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (prefix, run_id, policy)
      );
      ALTER TABLE dbfleet.load_rejections ADD COLUMN tenant text;
      UPDATE dbfleet.load_rejections r SET tenant = e.tenant
        FROM (SELECT DISTINCT prefix, job_id, tenant FROM dbfleet.job_event_log WHERE queue = 'load-fixtures') e
       WHERE e.prefix = r.prefix AND e.job_id = r.job_id;
      CREATE INDEX load_rejections_tenant ON dbfleet.load_rejections (prefix, tenant, created_at);
    `,
  },
];
