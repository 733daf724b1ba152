/** S3 answering 503 Slow Down: backup and restore retry with backoff and complete, exactly. */
import { expect } from 'vitest';
import { S3ObjectStore, createS3Client } from '../src/storage/s3.ts';
import { digests, fillTenant } from './support/backups.ts';
import { test } from './support/fixtures.ts';
import { faultyS3 } from './support/s3-faults.ts';

test('every S3 request refused once with 503: a multipart backup and its restore complete', async ({
  deps,
  env,
  tenant,
  spareTenant,
  client,
  startWorker,
}) => {
  await fillTenant(tenant, 50);
  // About 10 MB of incompressible bytes: a table object of two 5 MiB parts and more.
  await tenant.pg.withClient((c) =>
    c.query(`CREATE TABLE blobs (id int PRIMARY KEY, data bytea);
             INSERT INTO blobs SELECT i, sha256(int4send(i)) FROM generate_series(1, 320000) i`),
  );
  const s3 = await faultyS3(env.DBFLEET_S3_ENDPOINT!);
  const s3Client = createS3Client({ endpoint: s3.url, region: env.AWS_REGION });
  const objects = deps.objects;
  deps.objects = new S3ObjectStore(s3Client, env.DBFLEET_S3_BUCKET);
  try {
    startWorker();
    const backup = await (
      await client.enqueue('backup', { tenant: tenant.id })
    ).waitForResult({ timeoutMs: 120_000 });
    const afterBackup = s3.refused();
    // Each object, each part and the manifest was refused once and sent again.
    expect(afterBackup).toBeGreaterThanOrEqual(backup.objects + 1 + 2);
    expect(s3.requests()).toContainEqual(expect.stringMatching(/^PUT .*blobs\.copy\?.*partNumber=2/));
    const target = await spareTenant({ register: false });
    await (
      await client.enqueue('restore', {
        tenant: tenant.id,
        backupId: backup.backupId,
        targetTenant: target.id,
      })
    ).waitForResult({ timeoutMs: 120_000 });
    expect(s3.refused()).toBeGreaterThan(afterBackup);
    expect(await digests(target)).toEqual(await digests(tenant));
  } finally {
    deps.objects = objects;
    s3Client.destroy();
    await s3.close();
  }
});
