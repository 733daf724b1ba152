/**
 * An S3 endpoint that answers 503 Slow Down to the first try of every request it has not seen
 * before, and forwards everything else to the real S3-compatible server: each request succeeds only
 * if its sender retries it.
 */
import { createServer, request, type Server } from 'node:http';

export interface FaultyS3 {
  url: string;
  /** How many requests were answered 503. */
  refused(): number;
  /** Every distinct request seen: method and path with query. */
  requests(): string[];
  /** How many were passed on. */
  passed(): number;
  close(): Promise<void>;
}

export async function faultyS3(target: string): Promise<FaultyS3> {
  const upstream = new URL(target);
  const seen = new Set<string>();
  let refused = 0;
  let passed = 0;
  const server: Server = createServer((req, res) => {
    const id = `${req.method} ${req.url}`;
    if (!seen.has(id)) {
      seen.add(id);
      refused++;
      req.resume();
      req.on('end', () => {
        res.writeHead(503, { 'content-type': 'application/xml', 'retry-after': '0' });
        res.end(
          '<?xml version="1.0"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>',
        );
      });
      return;
    }
    passed++;
    const forward = request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    forward.on('error', (err) => res.destroy(err));
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    refused: () => refused,
    requests: () => [...seen],
    passed: () => passed,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
