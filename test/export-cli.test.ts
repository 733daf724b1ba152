/**
 * The export-subject and exports commands, run as an operator runs them, and the bundle opened the
 * way the person does: with the export's own key and tools/open-export.mjs, nothing of dbfleet.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect, onTestFinished } from 'vitest';
import { cliFor } from './support/cli.ts';
import { ADA, ADA_COUNTS, fillPeople, forgetExports, readOpened } from './support/exports.ts';
import { ROOT, test } from './support/fixtures.ts';

const run = promisify(execFile);

test('export-subject, exports list, open, key, expire; the person opens the bundle with open-export.mjs', async ({
  env,
  deps,
  tenant,
  startWorker,
  tmp,
}) => {
  onTestFinished(() => forgetExports(deps, tenant.id));
  await fillPeople(tenant);
  startWorker();
  const cli = cliFor(env, { DBFLEET_LOCAL_STORAGE_DIR: tmp });
  const json = async (...args: string[]) => JSON.parse((await cli(...args)).stdout);

  await expect(cli('export-subject', tenant.id, ADA.id, '--expires', '10')).rejects.toMatchObject({
    code: 1,
    stderr: expect.stringMatching(/--expires: 60 to 604800 seconds/),
  });

  const made = await cli('export-subject', tenant.id, ADA.id, '--local', '--expires', '3600', '--wait');
  const { result } = JSON.parse(made.stdout);
  expect(result).toMatchObject({ destination: 'local', records: 14, keyId: 'test-1' });
  expect(made.stderr).toMatch(
    /"progress":\{"phase":"read","locations":\d+,"locationsTotal":7,"records":\d+\}/,
  );
  expect(existsSync(result.link)).toBe(true);

  const listed = await json('exports', 'list', '--tenant', tenant.id, '--subject', ADA.id);
  expect(listed).toEqual([
    expect.objectContaining({ export: result.exportId, state: 'ready', records: 14, destination: 'local' }),
  ]);
  expect(await json('exports', 'list', '--tenant', tenant.id, '--subject', '770001235')).toEqual([]);

  // The operator opens it: checked, and written out.
  const out = path.join(tmp, 'opened');
  expect((await json('exports', 'open', result.exportId, '--out', out)).files).toHaveLength(7);
  const byOperator = await readOpened(out);
  expect(
    Object.fromEntries(byOperator.manifest.files.map((f) => [f.path.replace(/\.json$/, ''), f.records])),
  ).toEqual(ADA_COUNTS);
  await expect(cli('exports', 'open', result.exportId, '--out', out)).rejects.toMatchObject({
    stderr: expect.stringMatching(/is not empty/),
  });

  // The person gets the link (here: a copy of the bundle) and, by another channel, the key.
  const handed = await json('exports', 'key', result.exportId);
  expect(handed).toMatchObject({ export: result.exportId, name: result.objectKey });
  const bundle = path.join(tmp, 'downloaded-bundle');
  await copyFile(result.link, bundle);
  const tool = path.join(ROOT, 'tools/open-export.mjs');
  const mine = path.join(tmp, 'mine');
  await run(process.execPath, [tool, '--bundle', bundle, '--name', handed.name, '--out', mine], {
    env: { ...process.env, DBFLEET_EXPORT_KEY: handed.key },
  });
  const byPerson = await readOpened(mine);
  expect(byPerson.text).toEqual(byOperator.text);

  // The operator's way with the same tool: master key and key.json, the bundle's size and hash checked.
  const keyJson = path.join(path.dirname(result.link), 'key.json');
  await run(
    process.execPath,
    [tool, '--bundle', bundle, '--key-file', keyJson, '--out', path.join(tmp, 'ops')],
    {
      env: { ...process.env },
    },
  );
  expect((await readOpened(path.join(tmp, 'ops'))).text).toEqual(byOperator.text);

  // A flipped byte, or the wrong name (another export's key), and the tool refuses, writing nothing.
  const flipped = await readFile(bundle);
  flipped[flipped.length - 20] = flipped[flipped.length - 20]! ^ 1;
  await writeFile(path.join(tmp, 'flipped'), flipped);
  for (const [file, name] of [
    [path.join(tmp, 'flipped'), handed.name],
    [bundle, `exports/${tenant.id}/another/bundle`],
  ]) {
    const refused = path.join(tmp, `refused-${path.basename(file)}-${name.length}`);
    await expect(
      run(process.execPath, [tool, '--bundle', file, '--name', name, '--out', refused], {
        env: { ...process.env, DBFLEET_EXPORT_KEY: handed.key },
      }),
    ).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/open-export: refused: chunk \d+ does not authenticate/),
    });
    expect(existsSync(refused)).toBe(false);
  }

  // Not yet expired: expire deletes nothing. Past its expiry: deleted, and opening it is refused.
  expect(await json('exports', 'expire')).toEqual({ deleted: [], failed: [] });
  await deps.control.pool.query(
    `UPDATE dbfleet.subject_exports SET expires_at = now() - interval '1 second' WHERE prefix = $1 AND export_id = $2`,
    [deps.prefix, result.exportId],
  );
  expect(await json('exports', 'expire')).toEqual({ deleted: [result.exportId], failed: [] });
  expect(existsSync(result.link)).toBe(false);
  expect(existsSync(keyJson)).toBe(false);
  expect((await json('exports', 'list', '--tenant', tenant.id))[0]).toMatchObject({ state: 'deleted' });
  await expect(
    cli('exports', 'open', result.exportId, '--out', path.join(tmp, 'late')),
  ).rejects.toMatchObject({
    code: 1,
    stderr: expect.stringMatching(/expired and was deleted/),
  });
});
