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
];
