/** Opens a load-fixtures source (a file under an allowed root, an s3:// URL, or inline rows). */
import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { Payload } from '../../queues/index.ts';
import { PermanentError } from '../../src/errors.ts';
import { parseS3Url } from '../../src/storage/object-store.ts';
import { s3UrlAllowed, type TenantScope } from '../../src/storage/tenant-scope.ts';
import { formatFromName, recordsOf, type SourceRecord } from './records.ts';

type Source = Payload<'load-fixtures'>['source'];

/**
 * Refuses paths outside the tenant's folders, after resolving symlinks (a link cannot escape either),
 * and anything but a regular file.
 */
export async function resolveAllowedPath(file: string, roots: readonly string[]): Promise<string> {
  const notAllowed = new PermanentError(
    'source_not_allowed',
    `source file ${file} is outside this tenant's folders (DBFLEET_FILE_ROOTS)`,
  );
  // As written first, before touching the file system: whether a path outside the tenant's folders
  // exists is not for its jobs to learn.
  const written = path.resolve(file);
  if (!roots.some((root) => written.startsWith(path.resolve(root) + path.sep))) throw notAllowed;
  let real: string;
  try {
    real = await realpath(written);
  } catch {
    throw new PermanentError('source_not_found', `source file ${file} does not exist`);
  }
  for (const root of roots) {
    const realRoot = await realpath(path.resolve(root)).catch(() => undefined);
    if (realRoot && real.startsWith(realRoot + path.sep)) {
      if (!(await stat(real)).isFile())
        throw new PermanentError('source_not_a_file', `source ${file} is not a regular file`);
      return real;
    }
  }
  throw notAllowed;
}

export async function openRecords(
  source: Source,
  format: Payload<'load-fixtures'>['format'],
  deps: { s3: S3Client; scope: TenantScope },
): Promise<AsyncGenerator<SourceRecord[]>> {
  if (source.type === 'inline') {
    return (async function* () {
      yield source.rows.map((value, i) => ({ line: i + 1, value }));
    })();
  }
  const name = source.type === 'file' ? source.path : source.url;
  const fmt = format ?? formatFromName(name);
  if (!fmt)
    throw new PermanentError(
      'unknown_format',
      `cannot tell the format of ${name}: set format to ndjson, json or csv`,
    );
  let stream: Readable;
  if (source.type === 'file') {
    // 64 KiB reads (Node's default): each read becomes a chunk of records that stay alive until the
    // chunk is done. With 1 MiB reads, ~7,000 parsed rows outlived young-generation collections, got
    // promoted, and old-generation collections took the worker from 3.4 to 4.5 µs of CPU per row.
    stream = createReadStream(await resolveAllowedPath(source.path, deps.scope.fileRoots), {
      highWaterMark: 64 * 1024,
    });
  } else {
    if (!s3UrlAllowed(source.url, deps.scope))
      throw new PermanentError(
        'source_not_allowed',
        `source ${source.url} is outside this tenant's S3 prefixes (DBFLEET_S3_SOURCES)`,
      );
    const { bucket, key } = parseS3Url(source.url);
    const out = await deps.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    if (!(out.Body instanceof Readable)) throw new Error(`unexpected S3 body for ${source.url}`);
    stream = out.Body;
  }
  if (name.endsWith('.gz')) {
    const gunzip = createGunzip();
    stream.on('error', (err) => gunzip.destroy(err));
    stream = stream.pipe(gunzip);
  }
  return recordsOf(fmt, stream);
}
