/** One interface for where backups and fixture files live: an S3 bucket or a local folder. */
import type { Readable } from 'node:stream';

export interface PutOptions {
  /** S3 multipart part size (at least 5 MiB); 8 MiB by default. Ignored by a folder. */
  partSizeBytes?: number | undefined;
}

export interface StoredObject {
  key: string;
  size: number;
  /** When it was last written; listings give it (retention reads it), `head` may not. */
  lastModified?: Date;
}

export interface ObjectStore {
  /** A short description for logs, e.g. `s3://dbfleet` or `file:///var/backups`. */
  readonly location: string;
  /** Streams `body` to `key`; large bodies go up in parts. Visible only once complete. */
  put(key: string, body: Readable | Buffer | string, options?: PutOptions): Promise<void>;
  get(key: string): Promise<Readable>;
  /** null when there is no such object. */
  head(key: string): Promise<StoredObject | null>;
  list(prefix: string): AsyncIterable<StoredObject>;
  delete(key: string): Promise<void>;
}

/** `s3://bucket/some/key` -> { bucket, key } */
export function parseS3Url(url: string): { bucket: string; key: string } {
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(url);
  if (!match) throw new Error(`not an s3:// URL: ${url}`);
  return { bucket: match[1]!, key: match[2]! };
}
